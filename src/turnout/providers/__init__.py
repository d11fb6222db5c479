"""Upstream providers: one package per wire format, over one shared HTTP client."""
