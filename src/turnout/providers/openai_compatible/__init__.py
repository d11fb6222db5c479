"""OpenAI's wire format: OpenAI itself and every service that speaks it (Azure, vLLM, Groq, ...)."""
