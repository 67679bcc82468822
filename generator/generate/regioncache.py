"""Anchor resolutions kept between runs, so that a warm `generate` parses
no C file: what anchors.resolve() found (the region's lines, body and
matched span, or why the anchor is not there), keyed by the file's exact
text, its path and the anchor.

One JSON file per base tree (cache_dir()/anchors/<key>.json), read when a
walk begins and written again (atomically, by rename) when it ends if it
missed: it then holds the entries that walk used.  Each entry carries a
checksum of its key and value; an entry that fails it, or is not of the
expected shape, is ignored (the anchor is resolved again), never
trusted.  A file that cannot be read or written only makes the run
slower: the output is the same with or without the cache.
"""

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from generator.paths import cache_dir

# bump when what resolve() returns for the same input changes
VERSION = "1"

# the value of an entry: ("region", start, end, body, span) or
# ("missing", reason)
Value = tuple[object, ...]

_active: "_Cache | None" = None


class _Cache:
    def __init__(self, path: Path):
        self.path = path
        self.loaded: dict[str, Value] = _read(path)
        self.used: dict[str, Value] = {}
        self.missed = False


def _checksum(key: str, value: object) -> str:
    data = json.dumps([VERSION, key, value], separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()


def _valid(value: object) -> bool:
    """The shape of a stored value (its numbers are checked at use)."""
    if not isinstance(value, list) or not value:
        return False
    if value[0] == "missing":
        return len(value) == 2 and isinstance(value[1], str)
    if value[0] != "region" or len(value) != 5:
        return False
    pairs = [value[3], value[4]]
    return all(type(v) is int for v in value[1:3]) and all(
        p is None or (isinstance(p, list) and len(p) == 2 and
                      all(type(v) is int for v in p)) for p in pairs)


def _read(path: Path) -> dict[str, Value]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    found: dict[str, Value] = {}
    for key, entry in raw.items():
        if isinstance(entry, list) and len(entry) == 2 and \
                _valid(entry[0]) and entry[1] == _checksum(key, entry[0]):
            found[key] = tuple(entry[0])
    return found


def _write(path: Path, entries: dict[str, Value]) -> None:
    data = json.dumps({key: [list(value), _checksum(key, list(value))]
                       for key, value in sorted(entries.items())},
                      separators=(",", ":"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass    # no cache next time: slower, same output


@contextlib.contextmanager
def session(name: str) -> Iterator[None]:
    """Use (and afterwards update) the cache file of base tree `name`."""
    global _active
    safe = re.sub(r"[^0-9A-Za-z._-]", "_", name)
    cache = _Cache(cache_dir() / "anchors" / f"{safe}.json")
    previous, _active = _active, cache
    try:
        yield
    finally:
        _active = previous
    if cache.missed or len(cache.used) != len(cache.loaded):
        _write(cache.path, cache.used)


def key(text: str, path: str, kind: str | None, name: str | None,
        match: re.Pattern[str] | None) -> str | None:
    """The entry's key, or None outside a session."""
    if _active is None:
        return None
    pattern = None if match is None else [match.pattern, match.flags]
    data = json.dumps([hashlib.sha256(text.encode()).hexdigest(), path,
                       kind, name, pattern])
    return hashlib.sha256(data.encode()).hexdigest()


def get(key: str | None) -> Value | None:
    if _active is None or key is None:
        return None
    value = _active.loaded.get(key)
    if value is not None:
        _active.used[key] = value
    return value


def put(key: str | None, value: Value) -> None:
    if _active is None or key is None:
        return
    _active.used[key] = value
    _active.missed = True


def forget(key: str | None) -> None:
    """An entry that did not fit its text: resolved again, replaced."""
    if _active is not None and key is not None:
        _active.loaded.pop(key, None)
        _active.used.pop(key, None)
