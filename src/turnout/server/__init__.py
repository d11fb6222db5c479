"""The HTTP edge: a raw ASGI app (no framework: measured faster, see docs/architecture.md)."""
