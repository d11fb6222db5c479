"""Google's Gemini API (`generateContent`, `streamGenerateContent`, `batchEmbedContents`), behind
OpenAI's chat and embeddings formats, from the Developer API or from Vertex AI (`vertex.py`)."""
