"""Why an instance will not start on its database: a schema newer than this code, or a key-hash
secret the other instances sharing the database do not use. The message says what to do."""

from __future__ import annotations


class StartRefused(RuntimeError):
    """This instance must not serve on this database; `str()` is the message for the operator."""
