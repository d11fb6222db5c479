"""The `fake` provider: a real local upstream (HTTP on loopback) scripted by the model name."""
