"""Keys in the database: loading them into the in-memory index, and the master key's bootstrap."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
import re
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
from turnout.storage.refusal import StartRefused
from turnout.storage.tables import api_keys, instance_checks

log = logging.getLogger("turnout.keys")

__all__ = [
    "MASTER_KEY_ID",
    "MasterKeyOutcome",
    "load_hash_secret",
    "load_keys",
    "master_principal",
    "secret_source",
    "verify_hash_secret",
]

CHECK_NAME = "key_hash_secret"
CHECK_LABEL = b"turnout: the key-hash secret of this database's instances"
_HEX_SECRET = re.compile(r"(?:[0-9A-Fa-f]{2}){32,}")


def load_hash_secret(configured: Secret | None, data_dir: Path) -> bytes:
    """The HMAC secret keys are hashed with: configured, or generated once into the data directory
    (readable by the owner only). Instances sharing a database must share it (`verify_hash_secret`).
    The file holds the secret in hex; a configured secret in hex (what the file holds, at least 32
    bytes' worth) means the same bytes, so the file's content can be given as the variable."""
    if configured is not None:
        return decode_secret(configured.reveal())
    path = secret_path(data_dir)
    try:
        return _read_secret_file(path)
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_bytes(32)
    fresh = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value.hex())
    try:
        os.link(fresh, path)  # complete, or not there at all: an instance starting beside this one
    except FileExistsError:  # made it first; theirs is the one
        return _read_secret_file(path)
    finally:
        fresh.unlink()
    return value


def secret_path(data_dir: Path) -> Path:
    return data_dir / "key-hash.secret"


def decode_secret(text: str) -> bytes:
    """A configured secret: hex (as the data directory's file holds it) or, otherwise, its text."""
    value = text.strip()
    if _HEX_SECRET.fullmatch(value):
        return bytes.fromhex(value)
    return text.encode()


def _read_secret_file(path: Path) -> bytes:
    try:
        return bytes.fromhex(path.read_text().strip())
    except ValueError as error:
        raise StartRefused(f"{path} is corrupt; restore it from backup (keys cannot be checked)") from error


def secret_source(configured: Secret | None, data_dir: Path) -> str:
    """Where this instance's key-hash secret comes from, for the operator."""
    return configured.source if configured is not None else str(secret_path(data_dir))


def secret_check(secret: bytes) -> str:
    """What the database keeps of the secret: an HMAC of a fixed label (the secret is not
    recoverable from it)."""
    return hmac.new(secret, CHECK_LABEL, hashlib.sha256).hexdigest()


async def verify_hash_secret(db: Database, secret: bytes, source: str) -> None:
    """Refuse to start unless this instance hashes keys with the secret the first instance on this
    database used (recorded by it): with another, every key would be refused."""
    check = secret_check(secret)
    insert = db.insert_new(instance_checks, "name").values(
        name=CHECK_NAME, value=check, created_at=dt.datetime.now(dt.UTC)
    )
    async with db.engine.begin() as conn:
        await conn.execute(insert)
        stored = (
            await conn.execute(sa.select(instance_checks.c.value).where(instance_checks.c.name == CHECK_NAME))
        ).scalar()
    if stored == check:
        return
    raise StartRefused(
        f"this instance's key-hash secret ({source}) is not the one the instances sharing this database "
        "hash keys with, so it would refuse every key. Give every instance the same secret: copy the "
        "content of key-hash.secret from the data directory of an instance that works into this "
        "instance's data directory (replacing the file there), or set TURNOUT_KEY_HASH_SECRET (or "
        "auth.key_hash_secret) to that content on every instance."
    )


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
        made = await conn.execute(
            db.insert_new(api_keys, "id").values(
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
        if not made.rowcount:  # an instance starting at the same moment generated it: that one stands
            stored = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == MASTER_KEY_ID))).one()
            index.add(stored.key_hash, master_principal(stored.name))
            return MasterKeyOutcome(source="stored (hashed) in the database")
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
