"""API keys: how they are made, stored (hashed) and recognised on the hot path (in memory)."""
