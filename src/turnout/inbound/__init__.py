"""Other APIs clients speak, translated to and from turnout's canonical (OpenAI chat) shape."""
