"""Where something came from, for error messages."""

import os
from dataclasses import dataclass
from pathlib import Path


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
