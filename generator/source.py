"""Where something came from, for error messages."""

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


def display_path(path: Path) -> str:
    """`path` relative to the working directory when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return os.path.normpath(str(path))


@dataclass(frozen=True)
class SourceInfo:
    file: str
    line: int | None = None
    item: str | None = None     # e.g. "change 'qdev-property' of patch 'qdev-admin'"

    def at(self, line: int | None = None, item: str | None = None) -> "SourceInfo":
        return SourceInfo(self.file, line if line is not None else self.line,
                          item if item is not None else self.item)

    def __str__(self) -> str:
        loc = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{loc}: in {self.item}" if self.item else loc


def confined(root: Path, relative: str) -> Path | None:
    """`root / relative` if it stays inside `root` once symbolic links are
    followed, else None: a spec names paths under a root (the QEMU tree,
    the templates, the spec's directory) and must not reach out of it."""
    if not relative or Path(relative).is_absolute():
        return None
    top = Path(root).resolve()
    path = (top / relative).resolve()
    return path if path.is_relative_to(top) and path != top else None


def plain_name(name: str) -> bool:
    """One file name, not a path: no directory part, not `.` or `..`
    (what a series directory, a series map or a .dsc may name)."""
    return bool(name) and "/" not in name and "\0" not in name and \
        name not in (".", "..")


def open_input(path: Path) -> BinaryIO:
    """An input file opened for reading; it must be a regular file (a
    symbolic link to one is followed).  It is opened without blocking, so
    that a FIFO or a device named as an input is refused, not waited on:
    OSError "not a regular file" naming `path`."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_input(path: Path) -> bytes:
    """The bytes of an input file (open_input)."""
    with open_input(path) as f:
        return f.read()


class NotRegularFile(OSError):
    """An input that is a FIFO, a device, a socket or a directory."""

    def __init__(self, path: Path | str):
        super().__init__(errno.EINVAL, "not a regular file (a FIFO, a "
                         "device, a socket or a directory)", str(path))
