"""Configuration: one YAML file (or the environment) turned into frozen, validated `Settings`."""
