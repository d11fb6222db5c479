"""Cohere's v2 API (`/v2/chat`, `/v2/embed`), behind OpenAI's chat and embeddings formats."""
