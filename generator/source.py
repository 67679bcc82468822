"""Where something came from, for error messages."""

from dataclasses import dataclass


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
