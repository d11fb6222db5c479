"""Google's Gemini API (`generateContent`, `streamGenerateContent`, `batchEmbedContents`), behind
OpenAI's chat and embeddings formats."""
