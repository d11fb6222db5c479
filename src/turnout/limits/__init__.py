"""Admission control: rate, token and concurrency limits (memory, or Redis for many instances)."""
