"""The `turnout` command: a thin shell over the same services the server runs."""
