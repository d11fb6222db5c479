"""Virtual keys: issued, listed, revoked and rotated through the admin API (and the CLI over it).

A key is shown in full once, when it is issued; the database keeps only its keyed hash and a
display prefix. Every change is written to the database and applied to this instance's in-memory
index at once, so a revoked key stops working here before the call that revoked it returns; every
write sets the row's `updated_at`, by which the other instances follow it (`keys.sync`).
Issuing follows `domain.key_policy`: never more than the issuer has, and for a user never a role
above theirs (in the key's team, or organisation-wide). Every key records its lineage (the person
it acts for and everyone who could use it, `governance.people`): when a person loses authority,
every key they could use loses it too (`enforce_people`). Nobody acts on a key whose role is above
their own.
Revoking keys one by one cannot do what needs a second admin in bulk: a team's last owner or admin
key, and a team's keys beyond `piecewise_revocations` within `piecewise_window`, are revoked (or
lowered) only when a second person approves (`revoke_team_keys` of the two-person rule). A key's
budget set by the organisation is changed by the organisation only. Every change is in the audit
log, written in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, cast

import msgspec
import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from turnout.config.settings import GovernanceSettings
from turnout.domain.errors import InvalidRequest, PermissionDenied, ResourceNotFound
from turnout.domain.key_policy import (
    ADMIN_ROLES,
    KeySpec,
    Lineage,
    budget_level,
    check_act_on,
    check_budget_level,
    check_issue,
    lineage_of_new_key,
    lineage_of_rotated_key,
    may_manage,
    may_oversee,
    one_person,
    outranks,
)
from turnout.domain.principal import Principal, Priority, Role
from turnout.domain.rate_limits import NO_LIMITS, RateLimits, check_within, parse_limits, stored_limits
from turnout.governance.approvals import Approvals
from turnout.governance.audit import AuditLog
from turnout.governance.people import People, active_admin_key, in_scope, principal_of
from turnout.keys.hashing import display_prefix, new_key
from turnout.keys.index import KeyIndex
from turnout.limits.book import LimitBook
from turnout.limits.priority import check_grantable, grantable, priority_of
from turnout.storage.database import Database
from turnout.storage.paging import FIRST, Keyset, Page, Paging
from turnout.storage.tables import (
    api_keys,
    audit_log,
    budgets,
    key_controllers,
    spend_rollups,
    team_members,
    teams,
    users,
)
from turnout.storage.times import from_unix, unix_seconds

GATE = "revoke_team_keys"  # the two-person rule's name for what revoking piecewise would reach
KEYS_ORDER = Keyset(api_keys.c.created_at, api_keys.c.id)  # how /admin/keys is paged


# What ends a key, counted against `governance.piecewise_revocations`: revoking it, bringing its
# expiry forward (audited as `key.expire`: the key stops working then, as if revoked), or rotating
# another person's key (`key.replace`: its replacement is the rotator's to hand over).
ENDINGS = ("key.revoke", "key.expire", "key.replace")


def _brings_expiry_forward(row: Any, changes: dict[str, Any]) -> bool:
    if "expires_at" not in changes or changes["expires_at"] is None:
        return False
    current = unix_seconds(row.expires_at)
    return current is None or changes["expires_at"] < current


async def _lifetime_spend(conn: AsyncConnection, key_id: str) -> int:
    """What the key has spent over its life (the ledger's all-time running total)."""
    query = sa.select(sa.func.coalesce(sa.func.sum(spend_rollups.c.cost_micros), 0)).where(
        spend_rollups.c.grain == "all", spend_rollups.c.dim == "key", spend_rollups.c.value == key_id
    )
    return int((await conn.execute(query)).scalar_one())


def describe(row: Any) -> dict[str, Any]:
    """A key as the admin API shows it: everything but the key itself (its prefix only)."""
    return {
        "id": row.id,
        "object": "key",
        "name": row.name,
        "prefix": row.prefix,
        "role": row.role,
        "team_id": row.team_id,
        "user_id": row.user_id,
        "models": orjson.loads(row.allowed_models) if row.allowed_models else None,
        "expires_at": unix_seconds(row.expires_at),
        "max_budget_micros": row.max_budget_micros,
        "limits": orjson.loads(row.limits) if row.limits else None,
        "metadata": orjson.loads(row.metadata) if row.metadata else {},
        "created_at": unix_seconds(row.created_at),
        "created_by": row.created_by,
        "person": row.person,
        "budget_set_level": row.budget_set_level,
        "revoked_at": unix_seconds(row.revoked_at),
        "rotated_to": row.rotated_to,
    }


async def check_owner(conn: AsyncConnection, spec: KeySpec) -> None:
    """The key's team and user exist, and the user holds at least the key's role there."""
    if spec.team_id is not None:
        team = await conn.execute(
            sa.select(teams.c.id).where(teams.c.id == spec.team_id, teams.c.deleted_at.is_(None))
        )
        if team.first() is None:
            raise InvalidRequest(f"No team with id '{spec.team_id}'.", param="team_id")
    if spec.user_id is None:
        return
    user = (
        await conn.execute(
            sa.select(users.c.role).where(users.c.id == spec.user_id, users.c.deleted_at.is_(None))
        )
    ).first()
    if user is None:
        raise InvalidRequest(f"No user with id '{spec.user_id}'.", param="user_id")
    held: str | None = user.role
    where = "organisation-wide"
    if spec.team_id is not None:
        held = (
            await conn.execute(
                sa.select(team_members.c.role).where(
                    team_members.c.team_id == spec.team_id, team_members.c.user_id == spec.user_id
                )
            )
        ).scalar()
        where = f"in the team '{spec.team_id}'"
        if held is None:
            raise PermissionDenied(
                f"The user '{spec.user_id}' is not a member of the team '{spec.team_id}'.", param="user_id"
            )
    if held is None or outranks(spec.role, cast("Role", held)):
        raise PermissionDenied(
            f"The user '{spec.user_id}' is '{held or 'no role'}' {where}: a key for them cannot have "
            f"the role '{spec.role}'.",
            param="role",
        )


class KeyService:
    def __init__(
        self,
        database: Database,
        index: KeyIndex,
        audit: AuditLog,
        approvals: Approvals | None = None,
        governance: GovernanceSettings | None = None,
        limit_book: LimitBook | None = None,
    ) -> None:
        self.database = database
        self.limit_book = limit_book if limit_book is not None else LimitBook()
        self.index = index
        self.audit = audit
        self.people = People(database)
        self.approvals = approvals
        self.governance = governance or GovernanceSettings()
        # told when a rotation moved a key's stored budgets to its replacement (spend.budgets reads
        # them again; other instances within their next read)
        self.budgets_moved: Callable[[], Awaitable[None]] | None = None
        if approvals is not None:
            approvals.register("revoke_key", self._revoke_approved, "revoke a key")
            approvals.register(
                "change_key",
                self._change_approved,
                "take a key's admin role away or bring its expiry forward",
            )

    async def issue(
        self,
        issuer: Principal,
        spec: KeySpec,
        *,
        limits: RateLimits | None = None,
        metadata: dict[str, Any] | None = None,
        request_id: str | None = None,
        action: str = "key.create",
        budget_set_level: str | None = None,
        lineage: Lineage | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """A new key (its plaintext, shown this once) and its description. Its budget counts as
        set at the issuer's level (`budget_set_level`: at that one, for a rotation's new key); its
        rate limits as asked, what they leave open filled from its team's defaults for new keys
        and from the issuer's own limits, never looser than either's (`_limits`). Its `lineage` is
        the issuer's (`lineage_of_new_key`) unless given (a rotation's: the replaced key's)."""
        spec = check_issue(issuer, spec)
        limits = self._limits(issuer, spec.team_id, limits, new=True)
        if action != "key.rotate":  # a rotation's new key keeps the class the old one had
            self._check_priority(issuer, priority_of(metadata), None)
        key = new_key()
        key_hash = self.index.hash(key)
        key_id = "key_" + secrets.token_hex(8)
        now = dt.datetime.now(dt.UTC)
        row = {
            "id": key_id,
            "key_hash": key_hash,
            "prefix": display_prefix(key),
            "name": spec.name,
            "kind": "virtual",
            "role": spec.role,
            "created_at": now,
            "updated_at": now,
            "team_id": spec.team_id,
            "user_id": spec.user_id,
            "allowed_models": None
            if spec.allowed_models is None
            else orjson.dumps(list(spec.allowed_models)).decode(),
            "expires_at": from_unix(spec.expires_at),
            "max_budget_micros": spec.max_budget_micros,
            "limits": None if limits is None else msgspec.json.encode(limits).decode(),
            "metadata": orjson.dumps(metadata).decode() if metadata else None,
            "created_by": issuer.key_id,
            "budget_set_level": None
            if spec.max_budget_micros is None
            else budget_set_level or budget_level(issuer),
        }
        async with self.database.engine.begin() as conn:
            await check_owner(conn, spec)
            if lineage is None:
                lineage = lineage_of_new_key(await self.people.lineage(conn, issuer), spec.user_id)
            await conn.execute(sa.insert(api_keys).values(**row, person=lineage.person))
            await conn.execute(
                sa.insert(key_controllers),
                [{"key_id": key_id, "person": person} for person in sorted(lineage.controllers)],
            )
            stored = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).one()
            described = describe(stored)
            await self.audit.record(
                conn,
                issuer,
                action,
                "key",
                key_id,
                team_id=spec.team_id,
                after=described,
                request_id=request_id,
            )
        self.index.add(key_hash, principal_of(stored))
        return key, described

    def _limits(
        self, issuer: Principal, team_id: str | None, limits: RateLimits | None, *, new: bool
    ) -> RateLimits | None:
        """A key's rate limits as `issuer` may set them: a new key's open measures filled from its
        team's defaults; for anyone but the master key, open measures filled from the issuer's own
        limits, and PermissionDenied for one looser than the issuer's or the team's."""
        book = self.limit_book
        asked = limits or NO_LIMITS
        if new and team_id is not None and team_id in book.key_defaults:
            asked = asked.under(book.key_defaults[team_id])
        if issuer.kind != "master":
            if issuer.limits is not None:
                asked = asked.under(issuer.limits)
                check_within(asked, issuer.limits, "the issuing key's", "limits")
            team = None if team_id is None else book.teams.get(team_id)
            if team is not None:
                check_within(asked.under(team), team, "the team's", "limits")
        return None if asked.empty else asked

    def _check_priority(self, issuer: Principal, asked: Priority | None, current: Priority | None) -> None:
        """PermissionDenied when `issuer` gives a key a class above their own (a class the key
        already has may stay)."""
        if asked is None or asked == current:
            return
        book = self.limit_book
        ceiling = grantable(issuer, book.team_priority(issuer.team_id), book.default_priority)
        check_grantable(asked, ceiling, "a key", "metadata.priority")

    async def find(self, key_hash: bytes) -> Principal | None:
        """The active virtual key with this hash, if the store has one (the index's lookup): within
        the database deadline (TimeoutError past it, which the index answers with a 503)."""
        return await self.database.within(self._find(key_hash))

    async def _find(self, key_hash: bytes) -> Principal | None:
        query = sa.select(api_keys).where(
            api_keys.c.key_hash == key_hash, api_keys.c.kind == "virtual", api_keys.c.revoked_at.is_(None)
        )
        async with self.database.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else principal_of(row)

    async def _managed(self, issuer: Principal, key_id: str, *, read: bool = False) -> Any:
        """The key, if `issuer` manages it (or, to `read` it, may oversee its team); 404 if not."""
        async with self.database.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(api_keys).where(api_keys.c.id == key_id, api_keys.c.kind == "virtual")
                )
            ).first()
        allowed = may_oversee if read else may_manage
        if row is None or not allowed(issuer, row.team_id):
            raise ResourceNotFound(f"No key with id '{key_id}'.", param="id")  # the same for hidden ones
        return row

    async def list(
        self, issuer: Principal, paging: Paging = FIRST, search: str | None = None
    ) -> tuple[list[dict[str, Any]], Page]:
        """A page of the keys `issuer` manages or, a viewer, oversees, oldest first (the query keeps
        to the issuer's team; `may_oversee` decides); with `search`, those whose name contains it
        (any case), or whose id or display prefix starts with it."""
        query = sa.select(api_keys).where(api_keys.c.kind == "virtual")
        if search:
            query = query.where(
                sa.or_(
                    sa.func.lower(api_keys.c.name).contains(search.lower(), autoescape=True),
                    api_keys.c.id.startswith(search, autoescape=True),
                    api_keys.c.prefix.startswith(search, autoescape=True),
                )
            )
        if issuer.kind != "master" and issuer.team_id is not None:
            query = query.where(api_keys.c.team_id == issuer.team_id)
        async with self.database.engine.connect() as conn:
            page = KEYS_ORDER.page((await conn.execute(KEYS_ORDER.select(query, paging))).all(), paging)
        return [describe(r) for r in page.rows if may_oversee(issuer, r.team_id)], page

    async def revoke(self, issuer: Principal, key_id: str, request_id: str | None = None) -> dict[str, Any]:
        """Revoke a key, or propose revoking it when that needs a second admin (`_gated`)."""
        row = await self._managed(issuer, key_id)
        check_act_on(issuer, row.role, "revoke")
        if row.revoked_at is None:
            why = await self._gated(issuer, row, revoking=True)
            if why is not None:
                return await self._propose(issuer, "revoke_key", row, {"key_id": key_id}, why, request_id)
        return await self._revoke(issuer, row, request_id)

    async def _revoke(self, issuer: Principal, row: Any, request_id: str | None) -> dict[str, Any]:
        key_id = row.id
        if row.revoked_at is None:
            self.index.touch(row.key_hash)
            now = dt.datetime.now(dt.UTC)
            async with self.database.engine.begin() as conn:
                await conn.execute(
                    sa.update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=now, updated_at=now)
                )
                after = describe(
                    (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).one()
                )
                await self.audit.record(
                    conn,
                    issuer,
                    "key.revoke",
                    "key",
                    key_id,
                    team_id=row.team_id,
                    before=describe(row),
                    after=after,
                    request_id=request_id,
                )
        self.index.remove(row.key_hash)  # here, now: before this call returns
        return await self.get(issuer, key_id)

    async def _revoke_approved(self, requester: Principal, params: dict[str, Any]) -> dict[str, Any]:
        """The approved revocation of one key, with its proposer's authority as it is now."""
        row = await self._managed(requester, str(params["key_id"]))
        check_act_on(requester, row.role, "revoke")
        return await self._revoke(requester, row, None)

    async def _gated(self, actor: Principal, row: Any, *, revoking: bool) -> str | None:
        """Why revoking `row` (or taking its admin role away, or bringing its expiry forward) needs a
        second person, or None: it is its team's last owner or admin key, or the team has had
        `piecewise_revocations` keys revoked (or their expiry brought forward) within
        `piecewise_window` — what `revoke_team_keys` would need one for."""
        if self.approvals is None or GATE not in self.governance.two_person_rule:
            return None
        now = dt.datetime.now(dt.UTC)
        scope = "the organisation" if row.team_id is None else f"the team '{row.team_id}'"
        why = None
        async with self.database.engine.connect() as conn:
            if row.role in ADMIN_ROLES:
                others = sa.select(sa.func.count()).where(
                    *active_admin_key(now), api_keys.c.id != row.id, in_scope(api_keys.c.team_id, row.team_id)
                )
                if not (await conn.execute(others)).scalar():
                    why = f"it is the last owner or admin key of {scope}"
            if why is None and revoking:
                since = now - dt.timedelta(seconds=self.governance.piecewise_window)
                recent = sa.select(sa.func.count()).where(
                    audit_log.c.action.in_(ENDINGS),
                    audit_log.c.at >= since,
                    in_scope(audit_log.c.team_id, row.team_id),
                )
                if (await conn.execute(recent)).scalar_one() >= self.governance.piecewise_revocations:
                    why = (
                        f"{self.governance.piecewise_revocations} keys of {scope} were revoked within "
                        f"{self.governance.piecewise_window:g}s"
                    )
        if why is None or not await self.people.another_could_approve(actor, row.team_id, now):
            return None
        return why

    async def _propose(
        self,
        actor: Principal,
        action: str,
        row: Any,
        params: dict[str, Any],
        why: str,
        request_id: str | None,
    ) -> dict[str, Any]:
        assert self.approvals is not None
        pending = await self.approvals.propose(
            actor, action, "key", row.id, team_id=row.team_id, params=params, request_id=request_id
        )
        return {**pending, "reason": f"A second admin must approve this: {why}."}

    async def revoke_matching(self, conn: AsyncConnection, *, team_id: str) -> dict[str, bytes]:
        """Revoke (in the caller's transaction) every active key of a team; their ids and hashes
        (`forget` them once the transaction commits)."""
        where = [api_keys.c.kind == "virtual", api_keys.c.revoked_at.is_(None), api_keys.c.team_id == team_id]
        rows = (await conn.execute(sa.select(api_keys.c.id, api_keys.c.key_hash).where(*where))).all()
        return await self._revoke_rows(conn, rows)

    async def _revoke_rows(self, conn: AsyncConnection, rows: Iterable[Any]) -> dict[str, bytes]:
        revoked = {r.id: r.key_hash for r in rows}
        if revoked:
            for key_hash in revoked.values():
                self.index.touch(key_hash)
            now = dt.datetime.now(dt.UTC)
            await conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.id.in_(list(revoked)))
                .values(revoked_at=now, updated_at=now)
            )
        return revoked

    def forget(self, revoked: Mapping[str, bytes]) -> None:
        for key_hash in revoked.values():
            self.index.remove(key_hash)

    async def enforce_people(
        self, conn: AsyncConnection, persons: Iterable[str]
    ) -> tuple[dict[str, bytes], tuple[str, ...]]:
        """After these people's authority changed (a role lowered, a team left, a user deleted):
        every key one of them could use holds no more than each person who could use it may
        give now (`People.ceiling`) — lowered to that, or revoked if one of them has no authority
        there at all. In the caller's transaction; (revoked ids and hashes, lowered ids): `forget`
        and `refresh` them once it commits."""
        revoke, lowered = [], []
        now = dt.datetime.now(dt.UTC)
        for key in await self.people.controlled_by(conn, persons):
            ceiling = await self.people.ceiling(conn, key)
            if ceiling is None:
                revoke.append(key)
            elif outranks(key.role, ceiling):
                self.index.touch(key.key_hash)
                await conn.execute(
                    sa.update(api_keys).where(api_keys.c.id == key.id).values(role=ceiling, updated_at=now)
                )
                lowered.append(key.id)
        return await self._revoke_rows(conn, revoke), tuple(lowered)

    async def refresh(self, key_ids: Iterable[str]) -> None:
        """Bring this instance's index up to date with these keys' stored state."""
        ids = list(key_ids)
        if not ids:
            return
        async with self.database.engine.connect() as conn:
            rows = (await conn.execute(sa.select(api_keys).where(api_keys.c.id.in_(ids)))).all()
        for row in rows:
            self._apply(row)

    def _apply(self, row: Any) -> None:
        """Put a virtual key's stored state, read after this instance changed it, in the index."""
        if row.revoked_at is not None:
            self.index.remove(row.key_hash)
        else:
            self.index.add(row.key_hash, principal_of(row))

    async def get(self, issuer: Principal, key_id: str) -> dict[str, Any]:
        return describe(await self._managed(issuer, key_id, read=True))

    async def update(
        self,
        issuer: Principal,
        key_id: str,
        changes: dict[str, Any],
        limits: Any,
        metadata: Any,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Change a key's name, role, models, expiry or budget (`changes`, KeySpec's field names),
        limits or metadata (msgspec.UNSET: unchanged). The key as changed must be one `issuer`
        could issue, and one its user may hold: the same rules as a new key's. Taking the last
        admin role of a team away is proposed, as revoking that key would be."""
        row = await self._managed(issuer, key_id)
        if row.revoked_at is not None:
            raise InvalidRequest("A revoked key cannot be changed.", param="id")
        check_act_on(issuer, row.role)
        new_role = changes.get("role", row.role)
        ending = _brings_expiry_forward(row, changes)  # a revocation, later: gated as one
        if ending or (row.role in ADMIN_ROLES and new_role not in ADMIN_ROLES):
            why = await self._gated(issuer, row, revoking=ending)
            if why is not None:
                params: dict[str, Any] = {"key_id": key_id, "changes": msgspec.to_builtins(changes)}
                if limits is not msgspec.UNSET:
                    params["limits"] = None if limits is None else limits.stored()
                if metadata is not msgspec.UNSET:
                    params["metadata"] = metadata
                return await self._propose(issuer, "change_key", row, params, why, request_id)
        return await self._update(issuer, row, changes, limits, metadata, request_id)

    async def _change_approved(self, requester: Principal, params: dict[str, Any]) -> dict[str, Any]:
        row = await self._managed(requester, str(params["key_id"]))
        if row.revoked_at is not None:
            raise InvalidRequest("A revoked key cannot be changed.", param="id")
        check_act_on(requester, row.role)
        changes = dict(params["changes"])
        if changes.get("allowed_models") is not None:
            changes["allowed_models"] = tuple(changes["allowed_models"])
        limits = params.get("limits", msgspec.UNSET)
        if limits is not msgspec.UNSET:
            limits = parse_limits(limits, "limits")
        metadata = params.get("metadata", msgspec.UNSET)
        return await self._update(requester, row, changes, limits, metadata, None)

    async def _update(
        self,
        issuer: Principal,
        row: Any,
        changes: dict[str, Any],
        limits: Any,
        metadata: Any,
        request_id: str | None,
    ) -> dict[str, Any]:
        key_id = row.id
        current = principal_of(row)
        spec = KeySpec(
            name=changes.get("name", row.name),
            role=changes.get("role", current.role),
            team_id=row.team_id,
            user_id=row.user_id,
            allowed_models=changes.get("allowed_models", current.allowed_models),
            expires_at=changes.get("expires_at", current.expires_at),
            max_budget_micros=changes.get("max_budget_micros", row.max_budget_micros),
        )
        if spec.max_budget_micros != row.max_budget_micros:
            check_budget_level(issuer, row.budget_set_level, "change or remove")
        spec = check_issue(issuer, spec)
        budget_level_now = row.budget_set_level
        if spec.max_budget_micros != row.max_budget_micros:
            budget_level_now = None if spec.max_budget_micros is None else budget_level(issuer)
        values: dict[str, Any] = {
            "name": spec.name,
            "role": spec.role,
            "allowed_models": None
            if spec.allowed_models is None
            else orjson.dumps(list(spec.allowed_models)).decode(),
            "expires_at": from_unix(spec.expires_at),
            "max_budget_micros": spec.max_budget_micros,
            "budget_set_level": budget_level_now,
            "updated_at": dt.datetime.now(dt.UTC),
        }
        if limits is not msgspec.UNSET:
            limits = self._limits(issuer, row.team_id, limits, new=False)
            values["limits"] = None if limits is None else msgspec.json.encode(limits).decode()
        if metadata is not msgspec.UNSET:
            self._check_priority(issuer, priority_of(metadata), current.priority)
            values["metadata"] = orjson.dumps(metadata).decode() if metadata else None
        self.index.touch(row.key_hash)  # a read in flight now must not undo this change
        async with self.database.engine.begin() as conn:
            await check_owner(conn, spec)
            if outranks(spec.role, current.role):
                await self._check_ceiling(conn, row, spec.role)
            await conn.execute(sa.update(api_keys).where(api_keys.c.id == key_id).values(**values))
            stored = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).one()
            described = describe(stored)
            await self.audit.record(
                conn,
                issuer,
                "key.expire" if _brings_expiry_forward(row, changes) else "key.update",
                "key",
                key_id,
                team_id=row.team_id,
                before=describe(row),
                after=described,
                request_id=request_id,
            )
        self._apply(stored)
        return described

    async def _check_ceiling(self, conn: AsyncConnection, row: Any, role: Role) -> None:
        """A key's role is never above what every person who could use it may hold there now (a
        key without a user acts for the person who issued it: raising it must not give that
        person back a role they lost)."""
        ceiling = await self.people.ceiling(conn, row)
        if ceiling is None or outranks(role, ceiling):
            raise PermissionDenied(
                f"This key cannot have the role '{role}': a person who could use it "
                f"{'has no authority there' if ceiling is None else f'holds at most {ceiling!r} there'}.",
                param="role",
            )

    async def rotate(
        self, issuer: Principal, key_id: str, grace: float, request_id: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """A new key with the old one's attributes; the old one keeps working for `grace` seconds."""
        old = await self._managed(issuer, key_id)
        if old.revoked_at is not None:
            raise InvalidRequest("A revoked key cannot be rotated.", param="id")
        check_act_on(issuer, old.role, "rotate")
        if grace < 0:
            raise InvalidRequest("'grace' cannot be negative.", param="grace")
        now = dt.datetime.now(dt.UTC)
        current = principal_of(old)  # its spec, with which the new key is issued
        max_budget = old.max_budget_micros
        async with self.database.engine.connect() as conn:
            if max_budget is not None:  # a lifetime budget: the new key has what the old one left
                max_budget = max(max_budget - await _lifetime_spend(conn, key_id), 0)
            # another person's key, rotated, is taken from them (the new one is the rotator's to
            # hand over): a revocation for the two-person rule
            mine, theirs = await self.people.lineage(conn, issuer), await self.people.lineage(conn, current)
            taken = not one_person(mine, theirs)
        if taken:
            why = await self._gated(issuer, old, revoking=True)
            if why is not None:
                raise PermissionDenied(
                    f"Rotating another person's key takes it from them, and that needs a second admin: "
                    f"{why}. Revoke it instead (proposed for approval), or let its person rotate it.",
                    code="approval_required",
                )
        spec = KeySpec(
            name=old.name,
            role=current.role,
            team_id=old.team_id,
            user_id=old.user_id,
            allowed_models=current.allowed_models,
            expires_at=current.expires_at,
            max_budget_micros=max_budget,
        )
        key, new = await self.issue(
            issuer,
            spec,
            limits=stored_limits(old.limits),
            metadata=orjson.loads(old.metadata) if old.metadata else None,
            request_id=request_id,
            action="key.rotate",
            budget_set_level=old.budget_set_level,
            lineage=lineage_of_rotated_key(theirs, mine),
        )
        until = now.timestamp() + grace
        if current.expires_at is not None:
            until = min(until, current.expires_at)
        self.index.touch(old.key_hash)
        async with self.database.engine.begin() as conn:
            await conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.id == key_id)
                .values(expires_at=from_unix(until), rotated_to=new["id"], updated_at=dt.datetime.now(dt.UTC))
            )
            # the budgets stored on the key move to its replacement (they cover the old key through
            # `rotated_to` for its grace); a key it replaced itself stops working now, so no key
            # works on out of their reach
            await conn.execute(
                sa.update(budgets)
                .where(budgets.c.scope == "key", budgets.c.subject_id == key_id)
                .values(subject_id=new["id"])
            )
            ended = (
                (
                    await conn.execute(
                        sa.update(api_keys)
                        .where(
                            api_keys.c.rotated_to == key_id,
                            api_keys.c.revoked_at.is_(None),
                            sa.or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > now),
                        )
                        .values(expires_at=now, updated_at=now)
                        .returning(api_keys.c.id)
                    )
                )
                .scalars()
                .all()
            )
            rotated_out = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).one()
            after = describe(rotated_out)
            await self.audit.record(
                conn,
                issuer,
                "key.replace" if taken else "key.rotate_out",
                "key",
                key_id,
                team_id=old.team_id,
                before=describe(old),
                after=after,
                request_id=request_id,
            )
        self._apply(rotated_out)
        await self.refresh(ended)
        if self.budgets_moved is not None:
            await self.budgets_moved()
        return key, new
