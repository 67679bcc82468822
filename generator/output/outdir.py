"""`--out DIR` as a transaction: the series in it is replaced whole or not
at all, and a file gen-series did not write is never replaced or removed.

The series is its NNNN-*.patch files and series-map.json (SERIES_FILE);
what gen-series keeps in DIR besides it:

  .gen-series-manifest   "sha256  name" of each file it wrote; it replaces
                         or removes a file only while it still has that
                         hash (or while the index of a git work tree around
                         DIR holds it, as for a committed series)
  .gen-series-staging-*  a run's new files while it writes them; one left
                         by a killed run is deleted by the next run
  .gen-series-commit/    the complete new series, its manifest, the list
                         of files to remove and the hashes of the files it
                         replaces (a file changed since is not replaced:
                         the run that finishes the move stops instead).
                         Renaming the staging directory
                         to this name is the commit point: from then on the
                         new series is the one in DIR, and whichever run
                         comes next finishes moving it in.

A directory being written is locked (flock on the directory itself), so two
runs into the same DIR take turns.
"""

import errno
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from generator.errors import ToolError

# the files of a series: its patches and the map beside them (provenance.py)
SERIES_FILE = re.compile(r"^(\d{4}-.*\.patch|series-map\.json)$")
COVER_LETTER = "0000-cover-letter.patch"
# each line's spec change and template line (generate/provenance.py)
MAP_NAME = "series-map.json"
MAP_FORMAT = 1
MANIFEST = ".gen-series-manifest"
STAGING_PREFIX = ".gen-series-staging-"
JOURNAL = ".gen-series-commit"
REMOVE = ".remove"      # in JOURNAL: "sha256  name" of each file to remove
REPLACE = ".replace"    # in JOURNAL: "sha256  name" of each file it
                        # replaces as it was then (ABSENT: none there)
ABSENT = "0" * 64
MANIFEST_HEAD = ("# written by gen-series: the files it wrote here, which "
                 "it may replace or remove\n")


def write_if_changed(path: Path, data: bytes) -> None:
    """Write `data` unless `path` holds it already (its mtime kept), through
    a temporary file so that a reader never sees half of it."""
    if path.is_file() and path.stat().st_size == len(data) and \
            path.read_bytes() == data:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_usable(out: str | Path) -> Path:
    """`--out` as given, refused in one line before anything is rendered if
    it cannot hold a series; nothing is created."""
    if not out:
        raise ToolError("--out: an empty path names no directory")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ToolError(f"--out {out}: exists and is not a directory")
    where = path
    while not where.exists():
        if where.is_symlink():
            raise ToolError(f"--out {out}: {where} is a dangling symlink")
        where = where.parent
    if not where.is_dir():
        raise ToolError(f"--out {out}: {where} is not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=where))
    except OSError as e:
        raise ToolError(f"--out {out}: cannot write into {where}: "
                        f"{e.strerror}")
    return path


@contextmanager
def locked(out: Path) -> Iterator[None]:
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes) -> None:
    """Write a new file and flush it to the disk before it is renamed into
    place (a rename can reach the disk before the data otherwise)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def format_hashes(hashes: dict[str, str]) -> bytes:
    return "".join(f"{h}  {name}\n"
                   for name, h in sorted(hashes.items())).encode()


def parse_hashes(text: str) -> dict[str, str]:
    """name -> sha256; lines that are not "sha256  NAME" for a series file
    (a damaged or hand-edited manifest) vouch for nothing."""
    hashes = {}
    for line in text.splitlines():
        h, sep, name = line.partition("  ")
        if sep and re.fullmatch(r"[0-9a-f]{64}", h) and SERIES_FILE.match(name):
            hashes[name] = h
    return hashes


def read_manifest(out: Path) -> dict[str, str]:
    try:
        return parse_hashes((out / MANIFEST).read_text(errors="replace"))
    except FileNotFoundError:
        return {}


def recover(out: Path) -> None:
    """Finish what a killed run left: its staging directories go (the
    series before it is intact); a committed journal is moved in."""
    if not out.is_dir():
        return
    with locked(out):
        try:
            _recover(out)
        except OSError as e:
            raise ToolError(f"--out {out}: cannot finish the run that was "
                            f"interrupted there: {e.strerror}")


def _recover(out: Path) -> None:
    for stale in out.glob(STAGING_PREFIX + "*"):
        shutil.rmtree(stale)
    if (out / JOURNAL).is_dir():
        _complete(out)


def _current_hash(path: Path) -> str:
    """sha256 of the file at `path`, ABSENT if there is none; a directory
    or another non-file there hashes to no file's hash."""
    try:
        return sha256(path.read_bytes())
    except FileNotFoundError:
        return ABSENT
    except IsADirectoryError:
        return "a directory"


def _check_replaced(out: Path, journal: Path, names: list[str]) -> None:
    """Refuse to move the journal in over a file that is not as it was
    when the run committed (edited or created since, by hand): that file
    was not written by gen-series, and is kept."""
    if not (journal / REPLACE).is_file():
        return      # a journal of a gen-series that did not record them
    expected = parse_hashes((journal / REPLACE).read_text(errors="replace"))
    for name in names:
        have = _current_hash(out / name)
        if have in (ABSENT, expected.get(name, ABSENT)) or \
                have == _current_hash(journal / name):
            continue
        raise ToolError(f"--out {out}: {name} was changed since the "
                        "interrupted run that is replacing it began: move "
                        "it away (or remove it) and run again to finish "
                        "that run")


def _complete(out: Path) -> None:
    """Move the committed series in; every step may be done again, so a
    run killed here is finished by the next."""
    journal = out / JOURNAL
    names = [n for n in sorted(os.listdir(journal)) if SERIES_FILE.match(n)]
    _check_replaced(out, journal, names)
    for name in names:
        os.replace(journal / name, out / name)
    remove = journal / REMOVE
    if remove.is_file():
        for name, h in parse_hashes(remove.read_text()).items():
            try:
                data = (out / name).read_bytes()
            except FileNotFoundError:
                continue
            if sha256(data) == h:   # else someone put a file there since
                os.unlink(out / name)
    if (journal / MANIFEST).is_file():
        _fsync_dir(out)
        # last: until it is in, the files it drops still count as ours
        os.replace(journal / MANIFEST, out / MANIFEST)
    _fsync_dir(out)
    shutil.rmtree(journal)


def _refuse(out: Path, name: str, manifest: dict[str, str]) -> ToolError:
    why = ("was changed since gen-series wrote it" if name in manifest
           else "was not written by gen-series")
    return ToolError(f"--out {out}: {name} {why}: move it away (or remove "
                     "it) and run again; nothing was written")


def replace_series(out: Path, files: dict[str, bytes]) -> list[Path]:
    """Make `files` (name -> bytes) the series in `out`; return their
    paths.  Unchanged files are not touched (their mtime kept)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ToolError(f"--out {out}: cannot create it: {e.strerror}")
    with locked(out):
        try:
            _recover(out)
            changed, remove = _plan(out, files)
        except OSError as e:
            raise ToolError(f"--out {out}: {e.strerror}: {e.filename}")
        new_manifest = MANIFEST_HEAD.encode() + format_hashes(
            {name: sha256(data) for name, data in files.items()})
        manifest = out / MANIFEST
        if changed or remove or not manifest.is_file() or \
                manifest.read_bytes() != new_manifest:
            _commit(out, changed, remove, new_manifest)
    return [out / name for name in sorted(files)]


def _plan(out: Path,
          files: dict[str, bytes]) -> tuple[dict[str, bytes], dict[str, str]]:
    """The files to write and those to remove (name -> hash); refused if
    that would replace or remove a file that is not ours to touch."""
    manifest = read_manifest(out)
    changed, remove, foreign = {}, {}, []
    existing = {p.name: p for p in out.iterdir() if SERIES_FILE.match(p.name)}
    for name, data in files.items():
        path = existing.get(name)
        if path is None:
            changed[name] = data
        elif not path.is_file():
            foreign.append(name)
        elif (old := path.read_bytes()) != data:
            changed[name] = data
            if manifest.get(name) != sha256(old):
                foreign.append(name)
    for name, path in existing.items():
        if name in files:
            continue
        if not path.is_file():
            foreign.append(name)
            continue
        remove[name] = sha256(path.read_bytes())
        if manifest.get(name) != remove[name]:
            foreign.append(name)
    if foreign:
        from generator.gitops import held_by_git
        held = held_by_git(out, [n for n in foreign if existing[n].is_file()])
        for name in sorted(foreign):
            if name not in held:
                raise _refuse(out, name, manifest)
    return changed, remove


def _commit(out: Path, changed: dict[str, bytes], remove: dict[str, str],
            new_manifest: bytes) -> None:
    try:
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
    except OSError as e:
        raise ToolError(f"--out {out}: cannot write into it: {e.strerror}; "
                        "nothing was written")
    try:
        replaced = {name: _current_hash(out / name) for name in changed}
        for name, data in sorted(changed.items()):
            _write_new(staging / name, data)
        _write_new(staging / REPLACE, format_hashes(replaced))
        _write_new(staging / REMOVE, format_hashes(remove))
        _write_new(staging / MANIFEST, new_manifest)
        _fsync_dir(staging)
        os.rename(staging, out / JOURNAL)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        what = "the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) \
            else e.strerror
        raise ToolError(f"--out {out}: cannot write the series: {what}; "
                        "the series there is unchanged")
    try:
        _fsync_dir(out)
        _complete(out)
    except OSError as e:
        raise ToolError(f"--out {out}: the new series is written but could "
                        f"not be moved in ({e.strerror}): run generate "
                        "again to finish")
