"""Which upstream serves a request: alias resolution, and (later) strategies, retries and failover."""
