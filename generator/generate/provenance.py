"""Where each line of a generated series comes from: the spec item (change)
and the template line that produced it, written beside the series as
`series-map.json` (`gen-series explain` reads it).

While `generate` applies the changes, every file it edits keeps a list
parallel to its lines: None for an upstream line, else the Origin of the
line (the change, and the template line, data-file line or nothing that
produced it).  An edit is diffed (old lines against new) so that only the
lines it inserts or replaces take the change's origin.  At each commit the
origins of the changed files are kept; once format-patch has written the
series, each `+` line of a patch takes the origin of its target line.

Jinja2 keeps no map from output lines to template lines, so each template
is rendered a second time with a marker before every newline of its literal
text: the newline that ends an output line names the template line it came
from.  The marked rendering must equal the real one once the markers are
dropped; else the template's lines stay unknown (the map says so, and the
acceptance test fails).
"""

import difflib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import unidiff

from generator.output.outdir import MAP_FORMAT, sha256
from generator.source import SourceInfo
from generator.spec.model import Change, Patch, Series
from generator.spec.templates import render_string

MARK = "\x1e{}\x1f"
MARK_RE = re.compile("\x1e(\\d+)\x1f")
TAG_RE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)


@dataclass(frozen=True)
class Origin:
    change: str             # the change's id (unique in a spec)
    line: int | None        # template line; data-file line for copy-file;
                            # None for make-non-static (no template)


def split_lines(text: str) -> list[str]:
    """Lines as git counts them: split at "\\n" only."""
    lines = text.split("\n")
    tail = lines.pop()
    return [line + "\n" for line in lines] + ([tail] if tail else [])


def file_lines(path: Path) -> list[str]:
    """The lines of `path` (none if it does not exist), bytes that are not
    UTF-8 kept as surrogates (copy-file writes binary tables)."""
    try:
        return split_lines(path.read_bytes().decode("utf-8",
                                                    "surrogateescape"))
    except FileNotFoundError:
        return []


def marked_source(source: str) -> str:
    """`source` with MARK(line) before each newline that Jinja2 outputs:
    not those inside a tag, nor those a block or comment tag trims."""
    inside: set[int] = set()
    for m in TAG_RE.finditer(source):
        inside.update(i for i in range(m.start(), m.end())
                      if source[i] == "\n")
    out, line = [], 1
    for i, ch in enumerate(source):
        if ch == "\n":
            if i not in inside and not source.endswith(("%}", "#}"), 0, i):
                out.append(MARK.format(line))
            line += 1
        out.append(ch)
    if source and not source.endswith("\n"):
        out.append(MARK.format(line))   # render() ends the text with "\n"
    return "".join(out)


def template_lines(marked: str, rendered: str) -> list[int | None] | None:
    """The template line of each line of `rendered`, from its marked
    rendering; None if the two disagree."""
    lines = split_lines(marked)
    end = None
    if lines and not lines[-1].endswith("\n"):
        if MARK_RE.sub("", lines[-1]):
            lines[-1] += "\n"          # as render() ends the text
        else:
            end = MARK_RE.findall(lines.pop())[-1]   # a final block tag
    if MARK_RE.sub("", "".join(lines)) != rendered:
        return None
    numbers: list[int | None] = []
    pending = 0
    for line in lines:
        found = MARK_RE.findall(line)
        if found:
            # lines a multi-line value produced end where its tag's line does
            numbers.extend([int(found[-1])] * (pending + 1))
            pending = 0
        else:
            pending += 1
    last = int(end) if end else numbers[-1] if numbers else None
    return numbers + [last] * pending


@dataclass
class _File:
    lines: list[str]
    origins: list[Origin | None]        # per line; None: upstream
    before_patch: list[int | None]      # its number when the patch began


@dataclass
class _Commit:
    patch: Patch
    changes: frozenset[str]     # ids of the changes applied in it
    lines: dict[str, list[str]]     # file -> its lines after the commit
    # file -> Origin per line after the commit
    origins: dict[str, list[Origin | None]]
    # (file, line before the patch) -> change id
    removed: dict[tuple[str, int], str]


# (index in the new file, new lines) -> the template (or data-file) line
# of each
Sources = Callable[[int, list[str]], Sequence[int | None]]


@dataclass
class Tracker:
    """Follows the lines `generate` writes (see the module comment)."""
    series: Series
    env: jinja2.Environment
    context: dict[str, object]
    files: dict[str, _File] = field(default_factory=dict)
    commits: list[_Commit] = field(default_factory=list)
    # id -> (Change, data file)
    applied: dict[str, tuple[Change, Path | None]] = field(
        default_factory=dict)
    _removed: dict[tuple[str, int], str] = field(default_factory=dict)
    # file -> change ids
    _pending: dict[str, set[str]] = field(default_factory=dict)
    _marked_env: jinja2.Environment | None = None

    def lines(self, path: Path, file: str) -> list[str]:
        """The lines of `file` (at `path`) as the last edit left them,
        without reading it again; read if no change edited it yet."""
        state = self.files.get(file)
        return state.lines if state is not None else file_lines(path)

    def edited(self, change: Change, before: list[str], after: list[str],
               rendered: str | bytes | None) -> None:
        """`change` turned `before` into `after` (the lines of its file),
        with `rendered` from its template (the data file's bytes for
        copy-file)."""
        state = self.files.get(change.file)
        if state is None or state.lines != before:
            state = _File(before, [None] * len(before),
                          list(range(1, len(before) + 1)))
        sources = self._sources(change, rendered)
        origins: list[Origin | None] = []
        numbers: list[int | None] = []
        for tag, i1, i2, j1, j2 in _opcodes(before, after):
            if tag == "equal":
                origins += state.origins[i1:i2]
                numbers += state.before_patch[i1:i2]
                continue
            for n in state.before_patch[i1:i2]:
                if n is not None:
                    self._removed[(change.file, n)] = change.id
            origins += [Origin(change.id, line)
                        for line in sources(j1, after[j1:j2])]
            numbers += [None] * (j2 - j1)
        self.files[change.file] = _File(after, origins, numbers)
        self.applied[change.id] = (change, self._data_file(change))
        self._pending.setdefault(change.file, set()).add(change.id)

    def _data_file(self, change: Change) -> Path | None:
        """copy-file's source, as series.copy_source names it."""
        if change.action != "copy-file":
            return None
        assert change.source is not None    # a copy-file change has one
        return self.series.templates / render_string(
            self.env, change.source, self.context, change.info)

    def _sources(self, change: Change,
                 rendered: str | bytes | None) -> Sources:
        """A function: (index in the new file, new lines) -> the template
        (or data-file) line of each."""
        if change.action == "copy-file":
            return lambda start, lines: range(start + 1,
                                              start + 1 + len(lines))
        if change.action == "make-non-static" or not change.template:
            return lambda start, lines: [None] * len(lines)
        assert not isinstance(rendered, bytes)  # copy-file's only
        text = rendered or ""
        if self._marked_env is None:
            # its own cache: a marked template must not replace the plain
            # one in the env's
            self._marked_env = self.env.overlay(
                loader=jinja2.FunctionLoader(self._marked_template),
                cache_size=400)
        try:
            marked = self._marked_env.get_template(change.template).render(
                **{**self.context, **change.params})
        except jinja2.TemplateError:
            marked = ""     # the markers broke the template: lines unknown
        numbers = template_lines(marked, text) or []
        return lambda start, lines: _match(lines, split_lines(text), numbers)

    def _marked_template(self, name: str) -> str:
        path = self.series.templates / name
        return marked_source(path.read_text(encoding="utf-8"))

    def committed(self, patch: Patch) -> None:
        """The changes since the last commit are `patch`."""
        pending = sorted(self._pending)
        self.commits.append(_Commit(
            patch, frozenset().union(*self._pending.values()),
            {f: self.files[f].lines for f in pending},
            {f: list(self.files[f].origins) for f in pending},
            self._removed))
        for f in pending:
            state = self.files[f]
            state.before_patch = list(range(1, len(state.origins) + 1))
        self._removed, self._pending = {}, {}

    def series_map(self, patch_files: list[tuple[str, bytes]]) -> bytes:
        """The map of the series whose patches (cover letter excluded) are
        `patch_files`, (name, bytes) in order, as written beside it: every
        spec item (those this release leaves out too, so that a spec line
        finds its item) and, per patch file, the origin of each line of its
        diff."""
        root = self._root()
        items: dict[str, dict[str, str]] = {}
        changes: dict[str, dict[str, object]] = {}
        for patch in self.series.patches:
            items[patch.id] = {"spec": _at(patch.info, root),
                               "subject": patch.subject}
            for change in patch.changes:
                changes[change.id] = self._change_entry(patch, change, root)
        patches = {name: _patch_map(data, commit, root)
                   for (name, data), commit in zip(patch_files, self.commits,
                                                   strict=True)}
        return _dump({"format": MAP_FORMAT, "patches": items,
                      "changes": changes, "files": patches}).encode()

    def _change_entry(self, patch: Patch, change: Change, root: Path
                      ) -> dict[str, object]:
        entry: dict[str, object] = {
            "patch": patch.id, "item": change.info.item,
            "file": change.file, "action": change.action,
            "spec": _at(change.info, root),
            "applied": change.id in self.applied}
        data = self.applied.get(change.id, (None, None))[1]
        if data is not None:
            entry["data"] = _rel(data, root)
        elif change.template:
            entry["template"] = _rel(self.series.templates / change.template,
                                     root)
        return entry

    def _root(self) -> Path:
        """The directory the map's paths are relative to: the one holding
        the spec files and the templates (the project)."""
        paths = [self.series.templates.resolve()] + [
            Path(info.file).resolve() for patch in self.series.patches
            for info in (patch.info, *(c.info for c in patch.changes))]
        return Path(os.path.commonpath(paths))


def _opcodes(old: list[str],
             new: list[str]) -> list[tuple[str, int, int, int, int]]:
    """difflib's opcodes, the common head and tail cut first (an edit
    touches one place of a long file)."""
    head = _longest(lambda k: old[:k] == new[:k], min(len(old), len(new)))
    tail = _longest(lambda k: old[len(old) - k:] == new[len(new) - k:],
                    min(len(old), len(new)) - head)
    ops = [("equal", 0, head, 0, head)] if head else []
    matcher = difflib.SequenceMatcher(None, old[head:len(old) - tail],
                                      new[head:len(new) - tail],
                                      autojunk=False)
    ops += [(tag, i1 + head, i2 + head, j1 + head, j2 + head)
            for tag, i1, i2, j1, j2 in matcher.get_opcodes()]
    if tail:
        ops.append(("equal", len(old) - tail, len(old),
                    len(new) - tail, len(new)))
    return ops


def _longest(same: Callable[[int], bool], most: int) -> int:
    """The largest k <= most for which same(k) holds (same(0) does, and
    same(k) implies same(k - 1)): a binary search whose list compares run
    in C, for files of thousands of lines."""
    lo, hi = 0, most
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if same(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _match(lines: list[str], rendered: list[str],
           numbers: list[int | None]) -> list[int | None]:
    """The template line of each new line: the rendered line it equals, or
    holds (replace-match joins the first and last rendered lines with the
    rest of their line), searched in order from the last one found."""
    found: list[int | None] = []
    at = 0
    for line in lines:
        order = list(range(at, len(rendered))) + list(range(at))
        hit = next((k for k in order if rendered[k] == line), None)
        if hit is None:
            hit = next((k for k in order if rendered[k].strip()
                        and rendered[k].rstrip("\n") in line), None)
        if hit is not None:
            at = hit + 1
        found.append(numbers[hit] if hit is not None and hit < len(numbers)
                     else None)
    return found


def _rel(path: str | Path, root: Path) -> str:
    return os.path.relpath(Path(path).resolve(), root)


def _at(info: SourceInfo, root: Path) -> str:
    return f"{_rel(info.file, root)}:{info.line}"


def _no(number: int | None) -> int:
    """A line number unidiff gives a parsed line: in the patch file, in
    the source of a `-` line, in the target of a `+` line."""
    assert number is not None
    return number


def _patch_map(data: bytes, commit: _Commit,
               root: Path) -> dict[str, object]:
    """Per line of the patch file `data`: what its `+` and `-` lines come
    from, and the changes each hunk holds."""
    diff = unidiff.PatchSet(data.decode("utf-8"))
    # [line in the patch file, change id, template line]
    added: list[list[int | str | None]] = []
    removed: list[list[int | str | None]] = []  # [line, change id]
    hunks: list[list[object]] = []  # [first, last, file, change ids]
    for pf in diff:
        origins = _reconciled(pf, commit)
        for hunk in pf:
            # line in the patch file -> change id
            by_line: dict[int, str | None] = {}
            for line in hunk:
                if line.is_added:
                    origin = origins.get(_no(line.target_line_no))
                    change = origin.change if origin else None
                    added.append([_no(line.diff_line_no), change,
                                  origin.line if origin else None])
                    by_line[_no(line.diff_line_no)] = change
                elif line.is_removed:
                    by_line[_no(line.diff_line_no)] = commit.removed.get(
                        (pf.path, _no(line.source_line_no)))
            known = {n: c for n, c in by_line.items() if c}
            for line in hunk:
                if line.is_removed:
                    removed.append([_no(line.diff_line_no),
                                    _nearest(known, _no(line.diff_line_no))])
            lines = [_no(line.diff_line_no) for line in hunk]
            hunks.append([min(lines) - 1, max(lines), pf.path,
                          sorted(set(known.values()))])
    return {"patch": commit.patch.id, "sha256": sha256(data),
            "hunks": hunks, "added": added, "removed": removed}


def _nearest(known: dict[int, str], n: int) -> str | None:
    """The change of line `n` of a hunk, else of the nearest line whose
    change is known: the tracking and git may remove different ones of
    identical lines (blank lines) in one hunk."""
    if n in known or not known:
        return known.get(n)
    return known[min(known, key=lambda m: (abs(m - n), m))]


def _reconciled(pf: unidiff.PatchedFile,
                commit: _Commit) -> dict[int, Origin | None]:
    """target line -> Origin for the `+` lines of one file.  git's diff
    and the tracking may pick different ones of identical lines (a blank
    line, a closing brace inserted beside another): a `+` line the
    tracking saw as older takes the origin of the nearest identical line
    the patch added that git shows as context."""
    origins = commit.origins.get(pf.path, [])
    lines = commit.lines.get(pf.path, [])
    added = {_no(line.target_line_no): line.value for hunk in pf
             for line in hunk if line.is_added}
    ours = {n + 1 for n, o in enumerate(origins)
            if o is not None and o.change in commit.changes}
    spare = sorted(ours - set(added))
    result: dict[int, Origin | None] = {}
    for n, value in sorted(added.items()):
        if n in ours:
            result[n] = origins[n - 1]
            continue
        twins = [m for m in spare if lines[m - 1] == value]
        if twins:
            m = min(twins, key=lambda m: abs(m - n))
            spare.remove(m)
            result[n] = origins[m - 1]
    return result


def _dump(value: object, indent: str = "") -> str:
    """Deterministic JSON (sorted keys); a list holding a scalar on one
    line (a map entry, a hunk)."""
    inner = indent + " "
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {_dump(v, inner)}"
                 for k, v in sorted(value.items())]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}" + \
            ("\n" if not indent else "")
    if isinstance(value, list) and value and \
            all(isinstance(v, (dict, list)) for v in value):
        items = [inner + _dump(v, inner) for v in value]
        return "[\n" + ",\n".join(items) + f"\n{indent}]"
    return json.dumps(value, separators=(", ", ": "))
