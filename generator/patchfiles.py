"""A written series read back: its patch files in order, each parsed once.

`build`, `check` and `generate` (which parses what it wrote, to validate
it) all ask the same questions of a patch file: which files it changes,
which lines it adds.  unidiff answers them here, once per file version.
"""

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import unidiff

from generator.errors import CheckFailed, ToolError
from generator.outdir import COVER_LETTER, JOURNAL
from generator.source import confined, read_input

SUBJECT_NUMBER = re.compile(r"^Subject: \[[^\]]*?\b(\d+)/(\d+)\]", re.M)


@dataclass(frozen=True)
class PatchFile:
    path: Path
    files: tuple[str, ...]  # every file the patch changes, in diff order
    kept: tuple[str, ...]   # those it does not delete
    added: dict[str, frozenset[int]]    # file -> added line numbers


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


def series_files(series_dir: Path) -> list[Path]:
    """The patches of a series directory, in order, cover letter excluded."""
    if not series_dir.is_dir():
        raise ToolError(f"--series {series_dir}: no such directory")
    if (series_dir / JOURNAL).exists():
        raise ToolError(f"--series {series_dir}: a generate was interrupted "
                        "while replacing this series: run it again")
    files = sorted(p for p in series_dir.glob("[0-9][0-9][0-9][0-9]-*.patch")
                   if not p.name.startswith("0000-"))
    if not files:
        raise ToolError(f"--series {series_dir}: no NNNN-*.patch files")
    for path in files + [series_dir / COVER_LETTER]:
        check_member(series_dir, path)
    check_whole(series_dir, files)
    return files


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
