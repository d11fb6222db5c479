"""turnout's own HTTP/1.1 client for upstream calls (httptools-based, keep-alive pools)."""
