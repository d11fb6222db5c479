"""Anthropic's Messages API (`POST /v1/messages`), behind OpenAI's chat format."""
