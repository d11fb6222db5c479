"""A small tmpfs mounted by a test: a real filesystem that fills up, runs out of inodes or turns
read-only when the test says so. Mounting needs root (CAP_SYS_ADMIN); where the machine does not
allow it the test is skipped, saying why."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


class Tmpfs:
    def __init__(self, path: Path, *, size: str = "1m", inodes: int = 64) -> None:
        self.path = path
        self.size = size
        self.inodes = inodes
        self._filler = path / ".filler"
        self._inode_files: list[Path] = []
        self.mounted = False

    def mount(self) -> Tmpfs:
        self.path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root, and this test runs as an ordinary user")
        done = _mount(
            "-t",
            "tmpfs",
            "-o",
            f"size={self.size},nr_inodes={self.inodes},mode=0700",
            "tmpfs",
            str(self.path),
        )
        if done.returncode != 0:
            pytest.skip(f"this machine does not allow mounting a tmpfs: {done.stderr.strip()}")
        self.mounted = True
        return self

    def fill_space(self) -> None:
        """Write a file until the filesystem has not one byte left for it."""
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (65536, 4096, 1):
                while True:
                    try:
                        os.write(fd, b"\0" * chunk)
                    except OSError as error:
                        if error.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)
        assert os.statvfs(self.path).f_bavail == 0

    def free_space(self) -> None:
        self._filler.unlink()

    def fill_inodes(self) -> None:
        """Create empty files until no inode is left."""
        while True:
            path = self.path / f".inode-{len(self._inode_files)}"
            try:
                path.touch()
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                break
            self._inode_files.append(path)
        assert os.statvfs(self.path).f_favail == 0

    def free_inodes(self) -> None:
        for path in self._inode_files:
            path.unlink()
        self._inode_files.clear()

    def read_only(self) -> None:
        """Remount read-only (refused by the kernel while a file on it is open for writing)."""
        done = _mount("-o", "remount,ro", str(self.path))
        assert done.returncode == 0, done.stderr

    def writable(self) -> None:
        done = _mount("-o", "remount,rw", str(self.path))
        assert done.returncode == 0, done.stderr

    def unmount(self) -> None:
        if not self.mounted:
            return
        done = subprocess.run(["umount", str(self.path)], capture_output=True, text=True, check=False)
        if done.returncode != 0:  # still busy (a gateway that failed to stop): detach it anyway
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)
        self.mounted = False
