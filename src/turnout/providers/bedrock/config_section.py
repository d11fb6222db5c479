"""The `aws:` block of a `type: bedrock` provider, checked and resolved.

Two ways to authenticate, as AWS's SDKs do: a Bedrock API key (`api_key`, else
AWS_BEARER_TOKEN_BEDROCK) sent as `Authorization: Bearer`; or access keys for SigV4 signing
(`access_key_id`, `secret_access_key`, `session_token`, else AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN). The region (else AWS_REGION, else AWS_DEFAULT_REGION)
picks the endpoint, `https://bedrock-runtime.{region}.amazonaws.com`, and is part of every
signature. Secrets are `env:` / `file:` references; the access key id (not a secret) may be written
as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import msgspec

from turnout.config.provider_kinds import ProviderKind
from turnout.config.provider_sections import ProviderSection, SectionInput, SectionResult
from turnout.config.secrets import Secret, is_reference
from turnout.config.settings import AwsSettings

BEARER_ENV = "AWS_BEARER_TOKEN_BEDROCK"
_REGION = re.compile(r"^[a-z]{2,}(-[a-z0-9]+)+$")
_ACCESS_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")


class AwsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A `type: bedrock` provider's region and access keys (secrets as env:/file: references)."""

    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None


def read_aws_section(given: SectionInput) -> SectionResult | None:
    """The `aws:` block (or its environment variables): the region picks the URL unless one is
    written; a Bedrock API key, else access keys, authenticate."""
    path = f"{given.path}.aws"
    cfg = None
    if given.cfg.aws is not None:
        cfg = given.convert(given.cfg.aws, AwsConfig, path)
        if cfg is None:
            return None
    explicit = None if given.base_url == given.kind.default_base_url else given.base_url
    checked = check_aws(
        cfg,
        api_key=given.cfg.api_key,
        base_url=explicit,
        environ=given.environ,
        path=path,
        problem=given.problem,
        secret=given.secret,
    )
    if checked is None:
        return None
    aws, key_reference = checked
    return SectionResult(
        base_url=explicit or bedrock_base_url(aws.region or ""),
        api_key=key_reference,
        settings={"aws": aws},
    )


def _is_bedrock(kind: ProviderKind) -> bool:
    return kind.wire == "bedrock"


AWS_SECTION = ProviderSection(
    key="aws",
    refusal="only Bedrock providers take this section",
    applies=_is_bedrock,
    read=read_aws_section,
)


def bedrock_base_url(region: str) -> str:
    return f"https://bedrock-runtime.{region}.amazonaws.com"


def check_aws(
    cfg: AwsConfig | None,
    *,
    api_key: str | None,
    base_url: str | None,
    environ: Mapping[str, str],
    path: str,
    problem: Callable[[str, str], None],
    secret: Callable[[str | None, str], Secret | None],
) -> tuple[AwsSettings, str | None] | None:
    """The resolved block and the reference of the Bedrock API key to use (None: sign with SigV4);
    or None after reporting each fault with its dotted path (`path` is `providers.<name>.aws`)."""
    written = cfg or AwsConfig()
    keys_written = any((written.access_key_id, written.secret_access_key, written.session_token))
    provider_path = path.removesuffix(".aws")
    if api_key is not None and keys_written:
        problem(path, "give either api_key (a Bedrock API key) or access keys, not both")
        return None
    if api_key is None and not keys_written and environ.get(BEARER_ENV):
        api_key = f"env:{BEARER_ENV}"  # as AWS's SDKs do: the Bedrock API key wins when set
    ok = True
    region = written.region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if region is None:
        if api_key is None or base_url is None:  # SigV4 signs with it; the default URL names it
            problem(f"{path}.region", "required (or set AWS_REGION), e.g. us-east-1")
            ok = False
    elif not _REGION.match(region):
        where = "" if written.region else " (from the environment)"
        problem(f"{path}.region{where}", f"not an AWS region such as us-east-1: {region!r}")
        ok = False
    if api_key is not None:
        return (AwsSettings(region=region), api_key) if ok else None
    if keys_written:
        key_ref, secret_ref, token_ref = (
            written.access_key_id,
            written.secret_access_key,
            written.session_token,
        )
    elif environ.get("AWS_ACCESS_KEY_ID"):
        key_ref, secret_ref = "env:AWS_ACCESS_KEY_ID", "env:AWS_SECRET_ACCESS_KEY"
        token_ref = "env:AWS_SESSION_TOKEN" if environ.get("AWS_SESSION_TOKEN") else None
    else:
        problem(
            f"{path}.access_key_id",
            "required: access keys (or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or a Bedrock "
            f"API key as {provider_path}.api_key (e.g. env:{BEARER_ENV})",
        )
        return None
    for name, ref in (("access_key_id", key_ref), ("secret_access_key", secret_ref)):
        if ref is None:
            problem(f"{path}.{name}", "required with the other access key fields")
            ok = False
    key_id = _access_key_id(key_ref, f"{path}.access_key_id", problem, secret)
    secret_key = secret(secret_ref, f"{path}.secret_access_key")
    token = secret(token_ref, f"{path}.session_token")
    if not ok or key_id is None or secret_key is None or (token_ref is not None and token is None):
        return None  # each fault reported already
    settings = AwsSettings(
        region=region, access_key_id=key_id, secret_access_key=secret_key, session_token=token
    )
    return settings, None


def _access_key_id(
    reference: str | None,
    where: str,
    problem: Callable[[str, str], None],
    secret: Callable[[str | None, str], Secret | None],
) -> Secret | None:
    """The access key id: a reference, or written as it is (it identifies a key; it is no secret)."""
    if reference is None:
        return None
    value = secret(reference, where) if is_reference(reference) else Secret(reference, where)
    if value is not None and not _ACCESS_KEY_ID.match(value.reveal()):
        problem(where, "not an AWS access key id (upper-case letters and digits, e.g. AKIA...)")
        return None
    return value
