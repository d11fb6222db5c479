"""Build the Dockerfile's image without a container engine: its instructions read as Docker reads
them, its COPY sources taken through .dockerignore, and its RUN commands run on this machine with
every path the image owns (`/src`, `/wheels`, `/opt/turnout` ...) moved under a folder per stage.

Only commands the test knows are run (`KNOWN_COMMANDS`); a RUN of OS user set-up (`groupadd`,
`useradd`) is read, not run, and the user it makes is reported instead.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

# What the image's PATH holds before the Dockerfile changes it (python:*-slim).
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Paths of the base system: left as they are (never written by a command that is run).
SYSTEM = ("/usr/", "/bin/", "/sbin/", "/etc/", "/dev/", "/proc/", "/tmp/")
KNOWN_COMMANDS = {"python", "/opt/turnout/bin/pip"}
USER_SETUP = {"groupadd", "useradd"}
ABSOLUTE = re.compile(r"(?<![\w$.:/-])/[A-Za-z0-9_.][\w./-]*")


@dataclass
class Instruction:
    keyword: str
    flags: dict[str, str]
    args: str


def instructions(text: str) -> list[Instruction]:
    """The instructions, continuation lines joined and comment lines dropped."""
    out, pending = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        flags: dict[str, str] = {}
        rest = rest.strip()
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags[name] = value
            rest = rest.strip()
        out.append(Instruction(keyword.upper(), flags, rest))
    return out


def exec_form(args: str) -> list[str]:
    value = orjson.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not exec form: {args}"
    return value


def env_pairs(args: str) -> list[tuple[str, str]]:
    return [(k, v) for k, _, v in (word.partition("=") for word in shlex.split(args))]


# ------------------------------------------------------------------ .dockerignore


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches decides; `!` re-includes."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        if _matches(path, body.strip("/")):
            result = not negate
    return result


def _matches(path: str, pattern: str) -> bool:
    parts = path.split("/")
    if pattern.startswith("**/"):
        return any(_matches("/".join(parts[i:]), pattern[3:]) for i in range(len(parts)))
    depth = pattern.count("/") + 1
    return fnmatch.fnmatchcase("/".join(parts[:depth]), pattern)


def ignore_patterns(root: Path) -> list[str]:
    lines = (root / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


# ------------------------------------------------------------------ the build


@dataclass
class Image:
    """The runtime stage as built: where its paths are, and how it starts."""

    stages: dict[str, Path]
    env: dict[str, str] = field(default_factory=lambda: {"PATH": BASE_PATH})
    workdir: str = "/"
    user: str = "root"
    users_created: list[str] = field(default_factory=list)
    exposed: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    healthcheck_flags: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    stop_signal: str = "SIGTERM"
    ran: list[str] = field(default_factory=list)

    def host(self, container_path: str) -> Path:
        return self.stages["runtime"] / container_path.lstrip("/")

    def mapped(self, text: str) -> str:
        return map_paths(text, lambda p: str(self.host(p)))


def map_paths(text: str, to_host: Callable[[str], str]) -> str:
    """`text` with each absolute path the image owns replaced by `to_host(path)`."""

    def replace(match: re.Match[str]) -> str:
        path = match.group(0)
        return path if path.startswith(SYSTEM) or path in ("/usr", "/bin", "/tmp") else to_host(path)

    return ABSOLUTE.sub(replace, text)


class Builder:
    def __init__(self, context: Path, out: Path) -> None:
        self.context = context
        self.out = out
        self.patterns = ignore_patterns(context)
        self.stages: dict[str, Path] = {}
        self.interpreter = out / "interpreter"
        self.interpreter.mkdir(parents=True)
        base = getattr(sys, "_base_executable", sys.executable)  # the interpreter outside any venv
        (self.interpreter / "python").symlink_to(base)  # as the base image's python

    def build(self, dockerfile: Path) -> Image:
        stage = ""
        image: Image | None = None
        for ins in instructions(dockerfile.read_text(encoding="utf-8")):
            if ins.keyword == "FROM":
                stage = ins.args.split()[-1]
                self.stages[stage] = self.out / stage
                self.stages[stage].mkdir()
                image = Image(self.stages)  # a stage starts from the base image
            elif image is not None and ins.keyword != "ARG":
                self.apply(stage, ins, image)
        assert image is not None and stage == "runtime"
        return image

    def apply(self, stage: str, ins: Instruction, image: Image) -> None:
        k = ins.keyword
        if k == "WORKDIR":
            image.workdir = ins.args
            (self.stages[stage] / ins.args.lstrip("/")).mkdir(parents=True, exist_ok=True)
        elif k == "COPY":
            self.copy(stage, ins, image)
        elif k == "RUN":
            self.run(stage, ins, image)
        elif k == "ENV":
            for name, value in env_pairs(ins.args):
                image.env[name] = re.sub(r"\$\{?PATH\}?", image.env.get("PATH", ""), value)
        elif k == "USER":
            image.user = ins.args
        elif k == "VOLUME":
            image.volumes += exec_form(ins.args) if ins.args.startswith("[") else ins.args.split()
        elif k == "EXPOSE":
            image.exposed += ins.args.split()
        elif k == "HEALTHCHECK":
            assert ins.args.startswith("CMD "), "HEALTHCHECK CMD [...] (exec form) expected"
            image.healthcheck, image.healthcheck_flags = exec_form(ins.args[4:]), ins.flags
        elif k == "ENTRYPOINT":
            image.command = exec_form(ins.args) + image.command
        elif k == "CMD":
            image.command += exec_form(ins.args)
        elif k == "STOPSIGNAL":
            image.stop_signal = ins.args
        else:
            raise AssertionError(f"instruction {k} is not known to this test")

    def copy(self, stage: str, ins: Instruction, image: Image) -> None:
        assert "from" not in ins.flags, "the runtime stage takes the build's wheels through a RUN mount"
        *sources, dest = shlex.split(ins.args)
        target = self.stages[stage] / image.workdir.lstrip("/") / dest
        for source in sources:
            assert not ignored(source.rstrip("/"), self.patterns), f"COPY {source}: excluded by .dockerignore"
            self._copy_tree(self.context / source, target, source.rstrip("/"))

    def _copy_tree(self, source: Path, dest: Path, relative: str) -> None:
        if source.is_file():
            dest = dest / source.name if dest.is_dir() or str(dest).endswith("/") else dest
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
            return
        for path in sorted(source.rglob("*")):
            rel = f"{relative}/{path.relative_to(source).as_posix()}"
            if path.is_file() and not ignored(rel, self.patterns):
                out = dest / path.relative_to(source)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, out)

    def run(self, stage: str, ins: Instruction, image: Image) -> None:
        commands = [shlex.split(c)[0] for c in ins.args.split("&&")]
        if set(commands) <= USER_SETUP:
            image.users_created += [shlex.split(c)[-1] for c in ins.args.split("&&") if "useradd" in c]
            return
        assert set(commands) <= KNOWN_COMMANDS, f"RUN {ins.args}: a command this test does not know"
        mounts = {}
        if "mount" in ins.flags:
            spec = dict(part.split("=", 1) for part in ins.flags["mount"].split(","))
            assert spec["type"] == "bind"
            mounts[spec["target"]] = self.stages[spec["from"]] / spec["source"].lstrip("/")

        def to_host(path: str) -> str:
            for target, host in mounts.items():
                if path == target or path.startswith(target + "/"):
                    return str(host) + path[len(target) :]
            return str(self.stages[stage] / path.lstrip("/"))

        command = map_paths(ins.args, to_host)
        env = {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
        env |= {"PATH": f"{self.interpreter}:{BASE_PATH}", "HOME": str(self.out / "home")}
        cwd = self.stages[stage] / image.workdir.lstrip("/")
        done = subprocess.run(["/bin/sh", "-c", command], cwd=cwd, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"RUN {ins.args}\nfailed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        image.ran.append(ins.args)
