"""`gen-series explain`: where a line of a generated series comes from (the
spec item and the template line), and back: the lines of the series a spec
item or a template line made.  Read from the series-map.json `generate`
writes beside the series (provenance.py); its paths are relative to the
project, as the spec's own error messages show them.
"""

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NotRequired, TypedDict, overload

from generator.errors import CheckFailed, ToolError
from generator.output.outdir import COVER_LETTER, MAP_NAME, sha256
from generator.output.written import WrittenSeries


class PatchEntry(TypedDict):
    spec: str               # file:line
    subject: str


class ChangeEntry(TypedDict):
    """provenance.Tracker._change_entry()'s."""
    patch: str
    item: str | None
    file: str
    action: str
    spec: str               # file:line
    applied: bool
    data: NotRequired[str]
    template: NotRequired[str]


# a file's rows: JSON arrays, typed by position
Added = tuple[int, str | None, int | None]  # line, change, template line
Removed = tuple[int, str | None]            # line, change
Hunk = tuple[int, int, str, list[str]]      # first, last, file, changes


class FileEntry(TypedDict):
    """provenance._patch_map()'s."""
    patch: str
    sha256: str
    hunks: list[Hunk]
    added: list[Added]
    removed: list[Removed]


@dataclass(frozen=True)
class SeriesMap:
    dir: Path
    patches: dict[str, PatchEntry]      # patch id ->
    changes: dict[str, ChangeEntry]     # change id ->
    files: dict[str, FileEntry]         # patch file name ->

    def patch_text(self, name: str) -> list[str]:
        """The lines of one patch file, refused if it is not the one the
        map was written for."""
        data = WrittenSeries.at(self.dir).file(name)
        if sha256(data) != self.files[name]["sha256"]:
            raise ToolError(f"{self.dir / name}: changed since generate "
                            f"wrote {MAP_NAME}: generate the series again")
        return data.decode("utf-8").split("\n")


def load(series_dir: Path) -> SeriesMap:
    data = WrittenSeries.at(series_dir).series_map
    return SeriesMap(series_dir, data["patches"], data["changes"],
                     data["files"])


def _describe(smap: SeriesMap, change_id: str) -> str:
    c = smap.changes[change_id]
    return f"{c['spec']}: {c['item']}"


def _source(change: ChangeEntry, line: int | None) -> str:
    """Where a `+` line's text comes from: template or data-file line."""
    if "data" in change:
        return f"data: {change['data']}:{line}"
    if change["action"] == "make-non-static":
        return ("template: none (make-non-static drops `static` from the "
                "line; the spec item is its source)")
    return f"template: {change['template']}:{line}"


# ---- patch line -> spec item and template line ---------------------------

def patch_name(smap: SeriesMap, what: str) -> str:
    """A patch file named by its name or its number (9, 0009)."""
    name: str | None = os.path.basename(what)
    if re.fullmatch(r"\d{1,4}", what):
        name = next((n for n in sorted(smap.files) if int(n[:4]) ==
                     int(what)), None)
        if name is None and int(what) == 0:
            return COVER_LETTER
    if name is None or name not in smap.files and name != COVER_LETTER:
        raise ToolError(f"{what}: no such patch in {smap.dir} (patches "
                        f"0001 to {len(smap.files):04d})")
    return name


def explain_line(smap: SeriesMap, what: str, number: int) -> list[str]:
    """The lines `explain PATCH:LINE` prints."""
    name = patch_name(smap, what)
    if name == COVER_LETTER:
        text = WrittenSeries.at(smap.dir).file(name).decode(
            "utf-8", errors="replace").split("\n")
        _in_range(name, text, number)
        return [f"{name}:{number}: {text[number - 1]}",
                "the cover letter: the spec's `series: cover:` and the "
                "patches' subjects"]
    text = smap.patch_text(name)
    _in_range(name, text, number)
    entry = smap.files[name]
    head = f"{name}:{number}: {text[number - 1]}"
    added = {n: (cid, line) for n, cid, line in entry["added"]}
    if number in added:
        cid, line = added[number]
        if cid is None:
            raise CheckFailed(f"{head}: not traced to a spec item")
        return [head, f"spec: {_describe(smap, cid)}",
                _source(smap.changes[cid], line)]
    removed = dict(entry["removed"])
    if number in removed and (remover := removed[number]):
        return [head, "an upstream line, removed by "
                f"{_describe(smap, remover)}"]
    hunk = next((h for h in entry["hunks"] if h[0] <= number <= h[1]), None)
    if hunk is not None:
        what = "the hunk header" if number == hunk[0] else \
            "upstream context"
        return [head, f"{what}, in the hunk of {hunk[2]} made by"] + \
            [f"  {_describe(smap, cid)}" for cid in hunk[3]]
    patch = smap.patches[entry["patch"]]
    diffstat = text.index("---") + 1 if "---" in text else len(text)
    diffs = next((n for n, line in enumerate(text, 1)
                  if line.startswith("diff --git ")), len(text))
    what = ("the mail header or commit message" if number < diffstat else
            "the diffstat" if number < diffs else "a diff header")
    return [head, f"{what} of patch '{entry['patch']}' ({patch['spec']})"]


def _in_range(name: str, text: list[str], number: int) -> None:
    count = len(text) - (text[-1] == "")
    if not 1 <= number <= count:
        raise ToolError(f"{name}:{number}: the file has lines 1 to {count}")


# ---- spec item or template line -> patch lines ---------------------------

def lines_of_change(smap: SeriesMap, change_id: str) -> list[str]:
    """The lines `explain --spec-item ID` prints: every `+` line of the
    series the change wrote."""
    if change_id not in smap.changes:
        raise ToolError(f"--spec-item {change_id}: no such change in the "
                        f"spec of {smap.dir}")
    change = smap.changes[change_id]
    found = [f"{_describe(smap, change_id)}"]
    lines = _added(smap, lambda cid, line: cid == change_id)
    if not lines:
        why = "leaves it out (`when:`)" if not change["applied"] else \
            "shows no text of it (a binary file)"
        found.append(f"no line of this series: the release {why}")
    return found + [f"{at}: {text}  ({_source(change, line)})"
                    for at, text, line in lines]


def lines_of_source(smap: SeriesMap, path: str,
                    number: int) -> list[str]:
    """The lines `explain FILE:LINE` prints for a spec file (the item at
    that line) or a template or data file (the lines it made)."""
    spec = _matching_paths(path, {e["spec"].rpartition(":")[0] for e in
                                  (*smap.changes.values(),
                                   *smap.patches.values())})
    if spec:
        return _spec_item_at(smap, spec, number)
    sources = _matching_paths(path, {
        source for c in smap.changes.values()
        if (source := c.get("template") or c.get("data")) is not None})
    if not sources:
        raise ToolError(f"{path}: neither a spec file nor a template of "
                        f"the series in {smap.dir}")
    ids = {cid for cid, c in smap.changes.items()
           if (c.get("template") or c.get("data")) == sources}
    lines = _added(smap, lambda cid, line: cid in ids and line == number,
                   with_change=True)
    head = f"{sources}:{number}: " + ", ".join(
        f"change '{cid}'" for cid in sorted(ids))
    if not lines:
        return [head, "no line of this series comes from this line"]
    # (every cid is one of ids)
    return [head] + [f"{at}: {text}  ({_describe(smap, cid)})"
                     for at, text, cid in lines if cid is not None]


def _matching_paths(path: str, known: set[str]) -> str | None:
    """The known (project-relative) path that `path` names: the same path,
    or its last components (kvm.yaml, kvm/create-host-vcpu.c.j2)."""
    want = Path(os.path.normpath(path)).parts
    hits = sorted(k for k in known
                  if Path(k).parts[-len(want):] == want or
                  want[-len(Path(k).parts):] == Path(k).parts)
    if len(hits) > 1:
        raise ToolError(f"{path}: names more than one file: "
                        + ", ".join(hits))
    return hits[0] if hits else None


def _spec_item_at(smap: SeriesMap, spec: str, number: int) -> list[str]:
    """The spec item that holds line `number` of `spec`: the last one
    starting at or before it."""
    starts = sorted(
        (int(e["spec"].rpartition(":")[2]), kind, key)
        for kind, table in (("patch", smap.patches), ("change", smap.changes))
        for key, e in table.items() if e["spec"].rpartition(":")[0] == spec)
    before = [s for s in starts if s[0] <= number]
    if not before:
        raise ToolError(f"{spec}:{number}: before the first patch of the "
                        "file")
    _, kind, key = before[-1]
    if kind == "change":
        return lines_of_change(smap, key)
    files = [n for n, e in sorted(smap.files.items()) if e["patch"] == key]
    patch = smap.patches[key]
    return [f"{patch['spec']}: patch '{key}' ({patch['subject']})",
            files[0] if files else "left out of this series (`when:`)"]


# (change, template line) -> is it wanted
Wanted = Callable[[str | None, int | None], bool]


@overload
def _added(smap: SeriesMap, wanted: Wanted,
           with_change: Literal[False] = False
           ) -> Sequence[tuple[str, str, int | None]]: ...


@overload
def _added(smap: SeriesMap, wanted: Wanted,
           with_change: Literal[True]
           ) -> Sequence[tuple[str, str, str | None]]: ...


def _added(smap: SeriesMap, wanted: Wanted, with_change: bool = False
           ) -> Sequence[tuple[str, str, str | int | None]]:
    """(patch:line, text, template line or change) of each `+` line whose
    (change, template line) is `wanted`."""
    found: list[tuple[str, str, str | int | None]] = []
    for name, entry in sorted(smap.files.items()):
        hits = [(n, cid, line) for n, cid, line in entry["added"]
                if wanted(cid, line)]
        if hits:
            text = smap.patch_text(name)
            for n, _, _ in hits:
                _in_range(name, text, n)
            found += [(f"{name}:{n}", text[n - 1],
                       cid if with_change else line) for n, cid, line in hits]
    return found


def explain(series_dir: Path, what: str | None, spec_item: str | None
            ) -> list[str]:
    """`gen-series explain`'s answer, as lines."""
    if (what is None) == (spec_item is None):
        raise ToolError("explain: give PATCH:LINE, FILE:LINE or "
                        "--spec-item ID (one of them)")
    smap = load(series_dir)
    if spec_item is not None:
        return lines_of_change(smap, spec_item)
    assert what is not None     # one of them is given
    where, _, number = what.rpartition(":")
    if not where or not number.isdigit():
        raise ToolError(f"{what}: expected PATCH:LINE (0009:123, "
                        "0009-name.patch:123) or FILE:LINE (a spec file or "
                        "a template)")
    if re.fullmatch(r"\d{1,4}", where) or where.endswith(".patch"):
        return explain_line(smap, where, int(number))
    return lines_of_source(smap, where, int(number))
