"""The `vertex:` block of a `type: vertex` provider, checked and resolved.

A service account calls the models of a project in a location: `project` (else
GOOGLE_CLOUD_PROJECT, else the key file's `project_id`), `location` (else GOOGLE_CLOUD_LOCATION,
else us-central1) and `credentials_file` (else GOOGLE_APPLICATION_CREDENTIALS). With an `api_key`
instead, it is Vertex AI's express mode: the global endpoint, no project, no block.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import msgspec
import orjson

from turnout.config.provider_kinds import ProviderKind
from turnout.config.provider_sections import ProviderSection, SectionInput, SectionResult
from turnout.config.settings import VertexSettings

DEFAULT_LOCATION = "us-central1"
API_HOST = "aiplatform.googleapis.com"
KEY_FIELDS = ("client_email", "private_key", "token_uri")  # what an access token is made from

_LOCATION = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:_-]{0,127}$")  # ids, and legacy `example.com:id`


class VertexConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Where a `type: vertex` provider's models run and whose service account calls them."""

    project: str | None = None
    location: str | None = None
    credentials_file: str | None = None


def read_vertex_section(given: SectionInput) -> SectionResult | None:
    """The `vertex:` block (or its environment variables): the location picks the URL unless one
    is written; without an api_key, a service account's key file authenticates."""
    path = f"{given.path}.vertex"
    cfg = None
    if given.cfg.vertex is not None:
        cfg = given.convert(given.cfg.vertex, VertexConfig, path)
        if cfg is None:
            return None
    express = given.cfg.api_key is not None
    vertex = check_vertex(cfg, express=express, environ=given.environ, path=path, problem=given.problem)
    if vertex is None:
        return None
    return SectionResult(
        base_url=given.base_url or vertex_base_url(vertex.location),
        api_key=given.cfg.api_key,
        settings={"vertex": vertex},
    )


def _is_vertex(kind: ProviderKind) -> bool:
    return kind.name == "vertex"


VERTEX_SECTION = ProviderSection(
    key="vertex",
    refusal="only Vertex AI providers take this section",
    applies=_is_vertex,
    read=read_vertex_section,
)


def vertex_base_url(location: str) -> str:
    """The API root of a location: `global` is served from the bare host, regions from their own."""
    host = API_HOST if location == "global" else f"{location}-{API_HOST}"
    return f"https://{host}/v1"


def check_vertex(
    cfg: VertexConfig | None,
    *,
    express: bool,
    environ: Mapping[str, str],
    path: str,
    problem: Callable[[str, str], None],
) -> VertexSettings | None:
    """The resolved block, or None after reporting each fault with its dotted path."""
    if express:
        if cfg is not None and any((cfg.project, cfg.location, cfg.credentials_file)):
            problem(
                path,
                "not used with api_key (Vertex AI express mode calls the global endpoint without a "
                "project): remove one or the other",
            )
            return None
        return VertexSettings(location="global")
    written = cfg or VertexConfig()
    ok = True
    location = written.location or environ.get("GOOGLE_CLOUD_LOCATION") or DEFAULT_LOCATION
    if not _LOCATION.match(location):
        where = "" if written.location else " (from GOOGLE_CLOUD_LOCATION)"
        problem(
            f"{path}.location{where}",
            f"not a Google Cloud location such as us-central1 or global: {location!r}",
        )
        ok = False
    file_name = written.credentials_file or environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    credentials, key_project, key_ok = None, None, True
    if not file_name:
        problem(
            f"{path}.credentials_file",
            "required: a service-account key file (or set GOOGLE_APPLICATION_CREDENTIALS); "
            "or give api_key for Vertex AI express mode",
        )
        ok = False
    else:
        credentials = Path(file_name).expanduser()
        error, key_project = _read_key_file(credentials)
        if error is not None:
            where = "" if written.credentials_file else " (from GOOGLE_APPLICATION_CREDENTIALS)"
            problem(f"{path}.credentials_file{where}", error)
            ok = key_ok = False
    project = written.project or environ.get("GOOGLE_CLOUD_PROJECT") or key_project
    if not project:
        if key_ok:  # a broken key file may well have named it
            problem(f"{path}.project", "required (or set GOOGLE_CLOUD_PROJECT)")
        ok = False
    elif not _PROJECT.match(project):
        where = "" if written.project else " (from the environment or the key file)"
        problem(f"{path}.project{where}", f"not a Google Cloud project id: {project!r}")
        ok = False
    if not ok:
        return None
    return VertexSettings(location=location, project=project, credentials_file=credentials)


def _read_key_file(path: Path) -> tuple[str | None, str | None]:
    """(the fault, None) or (None, the project it names). Nothing of its content is ever shown."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return f"no such file: {path}", None
    except OSError as error:
        return f"cannot read {path} ({error.strerror or type(error).__name__})", None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return f"{path} is not a JSON key file", None
    if not isinstance(data, dict):
        return f"{path} is not a JSON key file", None
    kind = data.get("type")
    if kind != "service_account":
        shown = f"'{kind}'" if isinstance(kind, str) and kind.isidentifier() else "other"
        return f"{path} holds {shown} credentials, not a service-account key (type service_account)", None
    missing = [k for k in KEY_FIELDS if not isinstance(data.get(k), str) or not data[k]]
    if missing:
        return f"{path} is a service-account key without {', '.join(missing)}", None
    project = data.get("project_id")
    return None, project if isinstance(project, str) and project else None
