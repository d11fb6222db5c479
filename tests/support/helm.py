"""Render a Helm chart without `helm`: the subset of Go templates (and Helm's functions) that
deploy/helm/turnout uses, and nothing more, so a template outside it fails loudly.

Actions: `{{ pipeline }}`, `{{- ... -}}` trimming, `{{/* comments */}}`, `define`, `if`/`else`,
`with`, `range [$k, $v :=] pipeline` over maps (sorted keys) and lists, all closed by `end`.
Operands: `.`, `.A.B`, `$`, `$.A.B`, `$name`, `$name.A`, "strings", integers, true/false,
`( pipeline )`. Functions: include, default, quote, toYaml, nindent, indent, trunc, trimSuffix,
sha256sum, required, not, eq, and, or. As in Helm, a missing map key reads as nothing (printed
empty), the piped value is a function's last argument, and toYaml drops its final newline.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
TOKEN = re.compile(
    r"""\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<number>-?\d+)|(?P<paren>[()|])|(?P<assign>:=)|(?P<comma>,)"""
    r"""|(?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)|(?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)"""
    r"""|(?P<ident>[A-Za-z_][A-Za-z0-9_]*))"""
)


class TemplateError(Exception):
    """A template outside the subset, or one that fails as Helm would fail it (`required`)."""


# ------------------------------------------------------------------ parsing


@dataclass
class Node:
    kind: str  # text | action | if | with | range | define
    text: str = ""
    pipeline: list[list[Any]] = field(default_factory=list)
    body: list[Node] = field(default_factory=list)
    otherwise: list[Node] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # range's variables, define's name


def _tokens(source: str) -> list[tuple[str, str]]:
    out, pos, source = [], 0, source.strip()
    while pos < len(source):
        match = TOKEN.match(source, pos)
        if match is None or match.end() == pos:
            raise TemplateError(f"cannot read {source[pos:]!r}")
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _pipeline(tokens: list[tuple[str, str]], pos: int = 0) -> tuple[list[list[Any]], int]:
    """Commands separated by `|`, each a list of operands; up to a closing `)` or the end."""
    commands: list[list[Any]] = [[]]
    while pos < len(tokens):
        kind, value = tokens[pos]
        if value == ")":
            return commands, pos + 1
        if value == "|":
            commands.append([])
        elif value == "(":
            inner, pos = _pipeline(tokens, pos + 1)
            commands[-1].append(("pipeline", inner))
            continue
        else:
            commands[-1].append((kind, value))
        pos += 1
    if any(not c for c in commands):
        raise TemplateError("an empty command in a pipeline")
    return commands, pos


def _split(template: str) -> list[tuple[str, str]]:
    """Text and actions, with `{{-`/`-}}` whitespace trimming applied and comments dropped."""
    parts: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for match in ACTION.finditer(template):
        text = template[pos : match.start()]
        if trim_next:
            text = text.lstrip()
        if match.group(1):
            text = text.rstrip()
        parts.append(("text", text))
        body = match.group(2).strip()
        if not (body.startswith("/*") and body.endswith("*/")):
            parts.append(("action", body))
        pos, trim_next = match.end(), bool(match.group(3))
    rest = template[pos:]
    parts.append(("text", rest.lstrip() if trim_next else rest))
    return [p for p in parts if p != ("text", "")]


def parse(template: str) -> list[Node]:
    root: list[Node] = []
    stack: list[Node] = []
    current = root
    for kind, body in _split(template):
        if kind == "text":
            current.append(Node("text", text=body))
            continue
        word = body.split(None, 1)[0]
        if word == "end":
            if not stack:
                raise TemplateError("an {{ end }} that closes nothing")
            stack.pop()
            current = _open_list(stack, root)
        elif word == "else":
            if not stack or body != "else" or stack[-1].kind not in ("if", "with"):
                raise TemplateError(f"unsupported {{{{ {body} }}}}")
            current = stack[-1].otherwise
        elif word in ("if", "with", "range", "define"):
            node = _block(word, body[len(word) :])
            current.append(node)
            stack.append(node)
            current = node.body
        else:
            current.append(Node("action", pipeline=_pipeline(_tokens(body))[0]))
    if stack:
        raise TemplateError(f"{{{{ {stack[-1].kind} }}}} is never closed")
    return root


def _open_list(stack: list[Node], root: list[Node]) -> list[Node]:
    if not stack:
        return root
    top = stack[-1]
    return top.otherwise if top.otherwise else top.body


def _block(word: str, rest: str) -> Node:
    tokens = _tokens(rest)
    if word == "define":
        if len(tokens) != 1 or tokens[0][0] != "string":
            raise TemplateError("define takes one quoted name")
        return Node("define", names=[_string(tokens[0][1])])
    names: list[str] = []
    if word == "range" and any(k == "assign" for k, _ in tokens):
        at = next(i for i, (k, _) in enumerate(tokens) if k == "assign")
        names = [v for k, v in tokens[:at] if k == "var"]
        tokens = tokens[at + 1 :]
    return Node(word, pipeline=_pipeline(tokens)[0], names=names)


def _string(literal: str) -> str:
    return str(yaml.safe_load(literal))  # a double-quoted YAML scalar reads Go's escapes alike


# ------------------------------------------------------------------ evaluation


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "") and not (isinstance(value, (dict, list)) and not value)


def _printed(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str)):
        return str(value)
    raise TemplateError(f"cannot print {type(value).__name__} {value!r} (use toYaml)")


def _fields(value: Any, path: str) -> Any:
    for name in [p for p in path.split(".") if p]:
        if not isinstance(value, Mapping):
            raise TemplateError(f"nil pointer evaluating .{name}")
        value = value.get(name)
    return value


def _quote(value: Any) -> str:
    text = _printed(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _to_yaml(value: Any) -> str:
    if value is None:
        return "null"
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=True).removesuffix("\n")


def _indent(width: int, text: str) -> str:
    return "\n".join(" " * width + line for line in text.split("\n"))


def _required(message: str, value: Any) -> Any:
    if value is None or value == "":
        raise TemplateError(message)
    return value


class Renderer:
    def __init__(self, defines: dict[str, list[Node]]) -> None:
        self.defines = defines
        self.functions: dict[str, Callable[..., Any]] = {
            "include": self._include,
            "default": lambda fallback, value=None: value if _truthy(value) else fallback,
            "quote": _quote,
            "toYaml": _to_yaml,
            "nindent": lambda width, text: "\n" + _indent(width, text),
            "indent": _indent,
            "trunc": lambda n, text: text[:n],
            "trimSuffix": lambda suffix, text: text.removesuffix(suffix),
            "sha256sum": lambda text: hashlib.sha256(text.encode()).hexdigest(),
            "required": _required,
            "not": lambda value: not _truthy(value),
            "eq": lambda a, b: a == b,
            "and": lambda *values: next((v for v in values if not _truthy(v)), values[-1]),
            "or": lambda *values: next((v for v in values if _truthy(v)), values[-1]),
        }

    def _include(self, name: str, dot: Any) -> str:
        if name not in self.defines:
            raise TemplateError(f"include of an undefined template {name!r}")
        return self.render(self.defines[name], dot, {"$": dot})

    def render(self, nodes: list[Node], dot: Any, scope: dict[str, Any]) -> str:
        out = []
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
            elif node.kind == "action":
                out.append(_printed(self.pipeline(node.pipeline, dot, scope)))
            elif node.kind in ("if", "with"):
                out.append(self._conditional(node, dot, scope))
            elif node.kind == "range":
                out.append(self._range(node, dot, scope))
        return "".join(out)

    def _conditional(self, node: Node, dot: Any, scope: dict[str, Any]) -> str:
        value = self.pipeline(node.pipeline, dot, scope)
        if not _truthy(value):
            return self.render(node.otherwise, dot, scope)
        return self.render(node.body, value if node.kind == "with" else dot, scope)

    def _range(self, node: Node, dot: Any, scope: dict[str, Any]) -> str:
        value = self.pipeline(node.pipeline, dot, scope)
        if isinstance(value, Mapping):
            items = [(k, value[k]) for k in sorted(value)]
        elif isinstance(value, list):
            items = list(enumerate(value))
        elif value is None:
            items = []
        else:
            raise TemplateError(f"cannot range over {value!r}")
        out = []
        for key, item in items:
            inner = dict(scope)
            if len(node.names) == 2:
                inner[node.names[0]], inner[node.names[1]] = key, item
            elif len(node.names) == 1:
                inner[node.names[0]] = item
            out.append(self.render(node.body, item, inner))
        return "".join(out)

    def pipeline(self, commands: list[list[Any]], dot: Any, scope: dict[str, Any]) -> Any:
        result: Any = _NOTHING
        for command in commands:
            result = self._command(command, dot, scope, result)
        return result

    def _command(self, command: list[Any], dot: Any, scope: dict[str, Any], piped: Any) -> Any:
        kind, value = command[0]
        if kind == "ident" and value not in ("true", "false", "nil"):
            if value not in self.functions:
                raise TemplateError(f"function {value!r} is outside the supported subset")
            args = [self._operand(a, dot, scope) for a in command[1:]]
            if piped is not _NOTHING:
                args.append(piped)
            return self.functions[value](*args)
        if len(command) != 1 or piped is not _NOTHING:
            raise TemplateError(f"{value!r} is not a function")
        return self._operand(command[0], dot, scope)

    def _operand(self, operand: tuple[str, Any], dot: Any, scope: dict[str, Any]) -> Any:
        kind, value = operand
        if kind == "field":
            return _fields(dot, value)
        if kind == "var":
            name, _, path = value.partition(".")
            if name not in scope:
                raise TemplateError(f"undefined variable {name}")
            return _fields(scope[name], path)
        if kind == "string":
            return _string(value)
        if kind == "number":
            return int(value)
        if kind == "pipeline":
            return self.pipeline(value, dot, scope)
        if kind == "ident":
            return {"true": True, "false": False, "nil": None}[value]
        raise TemplateError(f"unexpected {value!r}")


_NOTHING = object()


# ------------------------------------------------------------------ charts


def _merged(base: Any, override: Any) -> Any:
    """Helm's values merge: maps merge key by key, anything else replaces; null removes a key."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return override
    out = dict(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merged(base.get(key), value) if key in base else value
    return out


def render_chart(
    chart_dir: Path,
    overrides: dict[str, Any] | None = None,
    *,
    release: str = "turnout",
    namespace: str = "llm",
) -> dict[str, str]:
    """Each template file's rendered text, as `helm template` would print it (files starting with
    `_` only define templates)."""
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text(encoding="utf-8"))
    values = _merged(yaml.safe_load((chart_dir / "values.yaml").read_text(encoding="utf-8")), overrides or {})
    root = {
        "Values": values,
        "Release": {"Name": release, "Namespace": namespace, "Service": "Helm", "IsInstall": True},
        "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart.get("appVersion")},
    }
    files = {
        p.name: parse(p.read_text(encoding="utf-8")) for p in sorted((chart_dir / "templates").iterdir())
    }
    defines = {n.names[0]: n.body for nodes in files.values() for n in nodes if n.kind == "define"}
    renderer = Renderer(defines)
    return {
        name: renderer.render([n for n in nodes if n.kind != "define"], root, {"$": root})
        for name, nodes in files.items()
        if not name.startswith("_") and name.endswith((".yaml", ".yml"))
    }


def render_manifests(chart_dir: Path, overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The chart's Kubernetes objects, each rendered file read as YAML documents."""
    out = []
    for text in render_chart(chart_dir, overrides).values():
        out += [doc for doc in yaml.safe_load_all(text) if doc is not None]
    return out
