"""Keys in the database: loading them into the in-memory index, and the master key's bootstrap."""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from turnout.config.secrets import Secret
from turnout.domain.principal import MASTER_PERSON
from turnout.governance.people import MASTER_KEY_ID, master_principal, principal_of
from turnout.keys.hashing import display_prefix, new_key
from turnout.keys.index import KeyIndex
from turnout.storage.database import Database
from turnout.storage.tables import api_keys

log = logging.getLogger("turnout.keys")

__all__ = ["MASTER_KEY_ID", "MasterKeyOutcome", "load_hash_secret", "load_keys", "master_principal"]


def load_hash_secret(configured: Secret | None, data_dir: Path) -> bytes:
    """The HMAC secret keys are hashed with: configured, or generated once into the data directory
    (readable by the owner only). Instances sharing a database must share it."""
    if configured is not None:
        return configured.reveal().encode()
    path = data_dir / "key-hash.secret"
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    except ValueError as error:
        raise RuntimeError(f"{path} is corrupt; restore it from backup (keys cannot be checked)") from error
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value.hex())
    return value


@dataclass(frozen=True, slots=True)
class MasterKeyOutcome:
    """`generated` holds the plaintext key when this start created it (to be shown once)."""

    source: str
    generated: str | None = None


async def load_keys(db: Database, index: KeyIndex, master: Secret | None) -> MasterKeyOutcome:
    """Fill `index` with every active key; make sure a master key exists."""
    if master is not None:
        index.add(index.hash(master.reveal()), master_principal("master key (" + master.source + ")"))
    index.as_of = dt.datetime.now(dt.UTC)  # before the read: what changes after it, `keys.sync` brings
    async with db.engine.connect() as conn:
        rows = (await conn.execute(sa.select(api_keys).where(api_keys.c.revoked_at.is_(None)))).all()
    has_stored_master = False
    for row in rows:
        if row.kind == "master":
            has_stored_master = True
            if master is not None:
                continue  # a configured master key replaces a generated one
            index.add(row.key_hash, master_principal(row.name))
        else:
            index.add(row.key_hash, principal_of(row))
    if master is not None:
        return MasterKeyOutcome(source=master.source)
    if has_stored_master:
        return MasterKeyOutcome(source="stored (hashed) in the database")
    key = new_key()
    key_hash = index.hash(key)
    now = dt.datetime.now(dt.UTC)
    async with db.engine.begin() as conn:
        await conn.execute(
            sa.insert(api_keys).values(
                id=MASTER_KEY_ID,
                key_hash=key_hash,
                prefix=display_prefix(key),
                name="generated master key",
                kind="master",
                role="owner",
                person=MASTER_PERSON,
                created_at=now,
                updated_at=now,
            )
        )
    index.add(key_hash, master_principal("generated master key"))
    return MasterKeyOutcome(source="generated on first start", generated=key)


async def replace_master_key(db: Database, index: KeyIndex) -> str:
    """Issue a new generated master key (the old one stops working: on every running instance
    that uses the generated one, within `keys.sync`'s interval). Returns it, to show once."""
    key = new_key()
    now = dt.datetime.now(dt.UTC)
    async with db.engine.begin() as conn:
        await conn.execute(sa.delete(api_keys).where(api_keys.c.id == MASTER_KEY_ID))
        await conn.execute(
            sa.insert(api_keys).values(
                id=MASTER_KEY_ID,
                key_hash=index.hash(key),
                prefix=display_prefix(key),
                name="generated master key",
                kind="master",
                role="owner",
                person=MASTER_PERSON,
                created_at=now,
                updated_at=now,
            )
        )
    return key
