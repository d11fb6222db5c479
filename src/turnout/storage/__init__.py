"""Durable state: SQLite by default (one file, WAL), PostgreSQL for several instances."""
