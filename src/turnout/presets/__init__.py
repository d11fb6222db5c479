"""Published presets: assistants callable as `preset/<name>`."""
