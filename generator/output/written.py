"""A written series read back (b4's LoreSeries): one object for what
`generate` wrote into a directory.

`WrittenSeries` holds its patches in order, its cover letter and what
that says (base commit, version, change-id), and series-map.json (the
spec change behind each line); `build`, `check`, `diff`, the versions
and `explain` read a series through it.  Each patch file is parsed once
per file version (unidiff): which files it changes, which lines it adds
and removes.
"""

import json
import re
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import unidiff

from generator.errors import CheckFailed, ToolError, read_text_input
from generator.output.outdir import (
    COVER_LETTER,
    JOURNAL,
    MAP_FORMAT,
    MAP_NAME,
    sha256,
)
from generator.source import confined, plain_name, read_input

SUBJECT_NUMBER = re.compile(r"^Subject: \[[^\]]*?\b(\d+)/(\d+)\]", re.M)
BASE_COMMIT_RE = re.compile(r"^base-commit: ([0-9a-f]+)$", re.M)
CHANGE_ID_RE = re.compile(r"^change-id: (\S+)$", re.M)
SUBJECT_RE = re.compile(r"^Subject: (.*(?:\n .*)*)", re.M)
VERSION_RE = re.compile(r"^\[[^\]]*\bv(\d+)\b[^\]]*\]")
# the patch files a map may name: files of the series directory itself
PATCH_NAME = re.compile(r"\d{4}-[^/\0]*\.patch")


@dataclass(frozen=True)
class PatchFile:
    path: Path
    files: tuple[str, ...]  # every file the patch changes, in diff order
    kept: tuple[str, ...]   # those it does not delete
    added: dict[str, frozenset[int]]    # file -> added line numbers
    # per file in diff order: (file, lines removed, lines added), the
    # lines' text without where they are
    lines: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = ()
    # file -> {added line number in the file: its line in the patch file}
    added_at: dict[str, dict[int, int]] = field(default_factory=dict)


def parse(path: Path) -> PatchFile:
    """The parsed patch at `path` (re-read when the file changes)."""
    stat = Path(path).stat()
    return _parse(Path(path).resolve(), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=256)
def _parse(path: Path, mtime_ns: int, size: int) -> PatchFile:
    diff = unidiff.PatchSet.from_filename(str(path), encoding="utf-8")
    return PatchFile(
        path,
        tuple(pf.path for pf in diff),
        tuple(pf.path for pf in diff if not pf.is_removed_file),
        {pf.path: frozenset(line.target_line_no for hunk in pf
                            for line in hunk if line.is_added
                            and line.target_line_no is not None)
         for pf in diff},
        tuple((pf.path, tuple(line.value for h in pf for line in h
                              if line.is_removed),
               tuple(line.value for h in pf for line in h if line.is_added))
              for pf in diff),
        {pf.path: {line.target_line_no: line.diff_line_no for hunk in pf
                   for line in hunk if line.is_added
                   and line.target_line_no is not None
                   and line.diff_line_no is not None}
         for pf in diff})


def changed_files(patch: Path, with_removed: bool = True) -> list[str]:
    """The files one patch changes (without those it deletes)."""
    parsed = parse(patch)
    return list(parsed.files if with_removed else parsed.kept)


def touched_c_files(patches: list[Path]) -> list[str]:
    """The C files a series changes, in order."""
    files = []
    for patch in patches:
        for path in changed_files(patch, with_removed=False):
            if path.endswith(".c") and path not in files:
                files.append(path)
    return files


def version_of(cover: str) -> int:
    """The version a cover letter's subject carries (`[PATCH v3 0/5]`);
    1 without one, as git format-patch writes v1."""
    subject = SUBJECT_RE.search(cover)
    found = subject and VERSION_RE.match(subject.group(1).replace("\n", ""))
    return int(found.group(1)) if found else 1


@dataclass(frozen=True)
class WrittenSeries:
    """A series directory as `generate` wrote it."""
    dir: Path
    patches: tuple[Path, ...]   # in order, the cover letter apart
    what: str       # how errors name the directory's role (--previous)

    @classmethod
    def at(cls, series_dir: Path, what: str = "--series") -> "WrittenSeries":
        """Whatever `series_dir` holds (nothing, if it is not there): for
        a directory that may or may not hold a series.  Its files are
        read when asked for, as regular UTF-8 files (`what` names the
        directory in the error otherwise)."""
        series_dir = Path(series_dir)
        return cls(series_dir, tuple(sorted(
            p for p in series_dir.glob("[0-9][0-9][0-9][0-9]-*.patch")
            if p.name != COVER_LETTER)), what)

    @cached_property
    def cover(self) -> str | None:
        """The cover letter's text, if there is one: a regular UTF-8
        file."""
        cover = self.dir / COVER_LETTER
        if not cover.exists():
            return None
        return read_text_input(cover, self.what)

    @classmethod
    def read(cls, series_dir: Path) -> "WrittenSeries":
        """The series in `series_dir`, which must be there and whole:
        its files regular files in it (no link out, no FIFO)."""
        series_dir = Path(series_dir)
        if not series_dir.is_dir():
            raise ToolError(f"--series {series_dir}: no such directory")
        if (series_dir / JOURNAL).exists():
            raise ToolError(f"--series {series_dir}: a generate was "
                            "interrupted while replacing this series: run "
                            "it again")
        series = cls.at(series_dir)
        if not series.patches:
            raise ToolError(f"--series {series_dir}: no NNNN-*.patch files")
        for path in series.patches + (series_dir / COVER_LETTER,):
            check_member(series_dir, path)
        check_whole(series_dir, list(series.patches))
        return series

    @property
    def base_commit(self) -> str | None:
        found = BASE_COMMIT_RE.search(self.cover or "")
        return found.group(1) if found else None

    @property
    def version(self) -> int | None:
        """The version its cover letter says (None without one)."""
        return version_of(self.cover) if self.cover is not None else None

    @property
    def change_id(self) -> str | None:
        found = CHANGE_ID_RE.search(self.cover or "")
        return found.group(1) if found else None

    @cached_property
    def series_map(self) -> dict[str, Any]:
        """series-map.json (generate writes it beside the series), checked
        to be one of this format."""
        path = self.dir / MAP_NAME
        if not path.exists() and not path.is_symlink():
            raise ToolError(f"--series {self.dir}: no {MAP_NAME}: generate "
                            "the series again (generate writes it)")
        if confined(self.dir, MAP_NAME) is None:
            raise ToolError(f"{path}: a link out of the series directory")
        try:
            data = json.loads(read_text_input(path, "--series"))
        except ValueError as e:
            raise ToolError(f"{path}: unreadable: {e}")
        if not isinstance(data, dict) or data.get("format") != MAP_FORMAT:
            raise ToolError(f"{path}: not a series map of format "
                            f"{MAP_FORMAT}: generate the series again")
        why = map_damage(data)
        if why is not None:
            raise ToolError(f"{path}: not as generate writes it ({why}): "
                            "generate the series again")
        return data

    def file(self, name: str) -> bytes:
        """A file of the series directory, by its plain name; never a
        file outside it (a link out), never one that is not a regular
        file."""
        path = confined(self.dir, name) if plain_name(name) else None
        if path is None:
            raise ToolError(f"{self.dir / name}: not a file of the series "
                            f"directory {self.dir}")
        try:
            return read_input(path)
        except OSError as e:
            raise ToolError(f"{self.dir / name}: {e.strerror}")

    def spec_patch(self, name: str) -> str | None:
        """The spec's id of the patch file `name`, from the map (None
        without a map, or for a file it does not know)."""
        try:
            entry = self.series_map["files"].get(name)
        except ToolError:
            return None
        return entry.get("patch") if isinstance(entry, dict) else None

    def changes_in(self, patch: Path, file: str,
                   lines: range) -> list[str]:
        """The spec changes (ids, from the map) whose lines the patch
        file `patch` adds to `file` within `lines` (its line numbers
        after the patch)."""
        added_at = parse(patch).added_at.get(file, {})
        try:
            entry = self.series_map["files"].get(patch.name)
        except ToolError:
            return []
        if not entry or entry.get("sha256") != sha256(read_input(patch)):
            return []       # not the patch the map was written for
        wrote = {diff_line: change
                 for diff_line, change, _ in entry.get("added", [])}
        found = [wrote.get(added_at[n]) for n in sorted(added_at)
                 if n in lines]
        return sorted({c for c in found if c})

    def describe_changes(self, ids: list[str]) -> str:
        """`change 'x' (specs/f.yaml:12)`, ... for the map's change ids."""
        changes = self.series_map["changes"]
        return ", ".join(f"change '{c}' ({changes[c]['spec']})"
                         if c in changes else f"change '{c}'" for c in ids)

    def c_files(self) -> list[str]:
        """The C files the series changes, in order."""
        return touched_c_files(list(self.patches))


def check_member(series_dir: Path, path: Path) -> None:
    """A file of a series directory is a regular file in it: not a link
    out of it, not a FIFO or a device (which would block a reader)."""
    if not path.exists() and not path.is_symlink():
        return
    if confined(series_dir, path.name) is None:
        raise ToolError(f"--series {series_dir}: {path.name} is a link out "
                        "of the directory")
    if not path.is_file():
        raise ToolError(f"--series {series_dir}: {path.name}: not a regular "
                        "file (a FIFO, a device, a socket or a directory)")


def check_whole(series_dir: Path, files: list[Path]) -> None:
    """A series with a patch missing, or whose `[... NN/MM]` subjects (and
    cover letter) disagree with its files, is not the series that was
    written: fail naming what is wrong."""
    numbers = [int(p.name[:4]) for p in files]
    missing = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
    if missing or len(set(numbers)) != len(numbers):
        what = (", ".join(f"{n:04d}" for n in missing) + " missing"
                if missing else "two patches share a number")
        raise CheckFailed(f"--series {series_dir}: the series is not whole: "
                          f"{what}")
    cover = series_dir / COVER_LETTER
    for path in ([cover] if cover.is_file() else []) + files:
        head = read_input(path).decode("utf-8", errors="replace")
        m = SUBJECT_NUMBER.search(head.split("\n\n", 1)[0])
        if m and (int(m[1]) != int(path.name[:4]) or int(m[2]) != len(files)):
            raise CheckFailed(
                f"--series {series_dir}: {path.name} says {m[1]}/{m[2]}, "
                f"but it is number {int(path.name[:4])} of {len(files)}")


def _is_row(row: object, types: tuple[tuple[type, ...], ...]) -> bool:
    return isinstance(row, list) and len(row) == len(types) and all(
        isinstance(v, t) and not isinstance(v, bool) or
        (v is None and type(None) in t) for v, t in zip(row, types, strict=True))


def _known(key: object, table: dict[str, object]) -> bool:
    return isinstance(key, str) and key in table


def map_damage(data: dict[str, object]) -> str | None:
    """What in a loaded map is not as provenance.py writes it, or None:
    names of files outside the series, values of the wrong type,
    references to changes or patches it does not hold."""
    patches, changes, files = (data.get(k) for k in
                               ("patches", "changes", "files"))
    if not (isinstance(patches, dict) and isinstance(changes, dict) and
            isinstance(files, dict)):
        return "patches, changes and files must be objects"
    for pid, p in patches.items():
        if not (isinstance(p, dict) and isinstance(p.get("spec"), str) and
                isinstance(p.get("subject"), str)):
            return f"patch {pid!r}"
    for cid, c in changes.items():
        if not (isinstance(c, dict) and _known(c.get("patch"), patches) and
                all(isinstance(c.get(k), str) for k in
                    ("file", "action", "spec")) and
                isinstance(c.get("item"), (str, type(None))) and
                isinstance(c.get("applied"), bool) and
                all(isinstance(c.get(k, ""), str)
                    for k in ("data", "template"))):
            return f"change {cid!r}"
    num, opt_num, opt_str = (int,), (int, type(None)), (str, type(None))
    for name, f in files.items():
        if not PATCH_NAME.fullmatch(name) or not plain_name(name):
            return f"{name!r} is not a patch file of the series"
        if not (isinstance(f, dict) and _known(f.get("patch"), patches) and
                isinstance(f.get("sha256"), str) and
                all(isinstance(f.get(k), list)
                    for k in ("hunks", "added", "removed"))):
            return f"file {name!r}"
        if not (all(_is_row(r, (num, opt_str, opt_num)) and
                    (r[1] is None or r[1] in changes) for r in f["added"])
                and all(_is_row(r, (num, opt_str)) and
                        (r[1] is None or r[1] in changes)
                        for r in f["removed"])
                and all(_is_row(h, (num, num, (str,), (list,))) and
                        all(_known(cid, changes) for cid in h[3])
                        for h in f["hunks"])):
            return f"the lines of {name!r}"
    return None
