"""`gen-series drift`: what a new QEMU release does to the series.

The spec is walked on both releases the way `generate` applies it (each
change on the tree the earlier changes made), but the walk goes on past a
change that fails, so that one run lists everything to fix.  Each change
is then:

    resolved   the anchor resolves on both, on the same line
    moved      it resolves on both, on another line
    ambiguous  the scope or the match is there more than once
    missing    the scope or the match is not there
    failed     it resolves but the action or template fails
    added      only the new release takes it (`when:`)
    dropped    only the old release takes it (`when:`)

A missing or ambiguous anchor comes with its nearest candidates in the new
tree: functions (or structs, ...) by name and body, the match elsewhere in
the file, the lines most like what the anchor matched on the old release.
"""

import dataclasses
import difflib
import logging
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from generator import csyntax, gitops
from generator.generate import anchors, edits, walk
from generator.qemutree import BaseTree
from generator.source import SourceInfo
from generator.spec.model import Anchor, Series
from generator.spec.templates import make_env

logger = logging.getLogger(__name__)

FAILING = ("missing", "ambiguous", "failed")
CANDIDATES = 3          # nearest candidates listed per anchor
CONTEXT = 3             # lines either side compared for an ambiguous match


QAPI_DOC_RE = re.compile(r"^# @([\w-]+):\s*$", re.MULTILINE)


class FileChange(TypedDict):
    """Upstream's change to one file the series reads."""
    added: int                  # lines
    removed: int
    old: bool                   # the file is in the old release
    new: bool                   # and in the new one


@dataclass
class Placement:
    """One anchor on one tree (lines are 1-based)."""
    status: str                 # resolved, missing, ambiguous, failed, inactive
    reason: str = ""
    line: int | None = None     # first line of the anchored region
    scope_line: int | None = None
    text: str = ""              # the anchored lines
    matched: str = ""           # the text the match matched
    hits: tuple[int, ...] = ()  # lines of every hit, when ambiguous
    context: str = ""           # the lines around it


@dataclass
class Candidate:
    what: str                   # e.g. "function 'virt_cpu_post_init'"
    where: str                  # file:line
    score: float                # 0..1, 1 the closest

    def __str__(self) -> str:
        return f"{self.what} at {self.where} ({self.score:.2f})"


@dataclass
class ChangeDrift:
    id: str
    patch: str
    file: str
    anchor: str
    spec: str                   # where the change is in the spec
    status: str
    old: Placement
    new: Placement
    candidates: list[Candidate] = field(default_factory=list)

    @property
    def code_changed(self) -> bool:
        return self.old.status == self.new.status == "resolved" and \
            self.old.text != self.new.text


@dataclass
class ProbeDrift:
    name: str
    file: str
    old: bool
    new: bool
    spec: str


@dataclass
class Report:
    old: str                    # release versions
    new: str
    probes: list[ProbeDrift]
    changes: list[ChangeDrift]
    files: dict[str, FileChange]
    problems: list[str]         # why the series does not render on `new`

    @property
    def renders(self) -> bool:
        return not self.problems

    @property
    def flipped(self) -> list[ProbeDrift]:
        return [p for p in self.probes if p.old != p.new]


# ---- one tree ---------------------------------------------------------------

# one release's walk(): (probe facts, change id -> Placement, problems)
Walk = tuple[dict[str, bool], dict[str, Placement], list[str]]


def locate(text: str, path: str,
           anchor: Anchor) -> tuple[Placement, anchors.Region | None]:
    """(Placement, Region or None): where `anchor` is in `text`, or why it
    is not (missing or ambiguous).  One resolve when it is there: the
    diagnosis only runs on a failure."""
    try:
        region = anchors.resolve(text, path, anchor)
    except anchors.NotFound as e:
        return _diagnose(text, path, anchor, str(e)), None
    return _resolved(text, region), region


def _resolved(text: str, region: anchors.Region) -> Placement:
    lines = text.splitlines(keepends=True)
    matched = text[region.span[0]:region.span[1]] if region.span else ""
    return Placement("resolved", line=region.start + 1,
                     text="".join(lines[region.start:region.end]),
                     matched=matched, context="".join(
                         lines[max(0, region.start - CONTEXT):
                               region.start + CONTEXT + 1]))


def _diagnose(text: str, path: str, anchor: Anchor,
              reason: str) -> Placement:
    """Why `anchor` does not resolve: its scope or its match is missing or
    there more than once (the hits' lines), or something else."""
    lines = text.splitlines(keepends=True)
    scope_line: int | None = None
    start, end = 0, len(lines)
    if anchor.scope_kind:
        try:
            scope = anchors.resolve(text, path,
                                    dataclasses.replace(anchor, match=None))
        except anchors.NotFound:
            hits = _scope_lines(text, path, anchor)
            return Placement("ambiguous" if len(hits) > 1 else "missing",
                             reason, hits=tuple(hits))
        scope_line, start, end = scope.start + 1, scope.start, scope.end
    if anchor.match is not None:
        window = "".join(lines[start:end])
        hits = [start + window.count("\n", 0, m.start()) + 1
                for m in anchor.match.finditer(window)]
        if len(hits) != 1:
            return Placement("ambiguous" if hits else "missing", reason,
                             scope_line=scope_line, hits=tuple(hits))
    return Placement("failed", reason, scope_line=scope_line)


def _scope_lines(text: str, path: str, anchor: Anchor) -> list[int]:
    """The line of every definition of the anchor's scope."""
    if anchor.scope_kind == "qapi":
        return [text.count("\n", 0, m.start()) + 1
                for m in QAPI_DOC_RE.finditer(text)
                if m.group(1) == anchor.scope_name]
    if not csyntax.is_c(path) or anchor.scope_kind is None or \
            anchor.scope_name is None:
        return []
    return [n.start_point[0] + 1 for n in
            csyntax.scope_nodes(csyntax.parse(text).root_node, anchor.scope_kind,
                           anchor.scope_name)]


class _Placements(walk.Visitor):
    """drift's consumer of the walk: where each change's anchor was."""

    def __init__(self) -> None:
        self.placements: dict[str, Placement] = {}

    def change(self, outcome: walk.Outcome) -> None:
        self.placements[outcome.change.id] = placement(outcome)


def placement(outcome: walk.Outcome) -> Placement:
    """An Outcome as a Placement: where the anchor was, or why not."""
    change, error = outcome.change, outcome.error
    if outcome.status == "inactive":
        return Placement("inactive", outcome.reason)
    if outcome.status != "failed":
        return _resolved(outcome.original, outcome.region) \
            if outcome.original is not None and outcome.region is not None \
            else Placement("resolved")
    if isinstance(error, edits.Unplaced):
        if error.original is None:
            return Placement("missing", error.reason)
        if error.region is not None:     # the anchor is there: the action
            return dataclasses.replace(    # failed
                _resolved(error.original, error.region), status="failed",
                reason=error.reason)
        assert change.anchor is not None    # only anchored changes are
        return _diagnose(error.original, change.file, change.anchor,
                         error.reason)
    return Placement("failed", outcome.reason)


def walk_release(series: Series, base: BaseTree) -> Walk:
    """Apply the spec to `base` as `generate` does (the same walk), but go
    on after a change fails.  Returns (probe facts, change id -> Placement,
    problems that are not a change's: a probe's file missing, a message
    template)."""
    env = make_env(series.templates)
    with tempfile.TemporaryDirectory(prefix="gen-series-drift-") as tmp:
        tree = walk.read_base(series, base, Path(tmp))
        logger.info(f"walking the spec on QEMU {base.version}")
        visitor = _Placements()
        done = walk.walk(series, base, tree, env, visitor, keep_going=True)
    return done.facts, visitor.placements, done.problems


# ---- two trees -------------------------------------------------------------

def compare(series: Series, old: BaseTree, new: BaseTree) -> Report:
    return compare_walks(series, old, walk_release(series, old),
                         new, walk_release(series, new))


def compare_walks(series: Series, old: BaseTree, old_walk: Walk,
                  new: BaseTree, new_walk: Walk) -> Report:
    """The report from each release's walk() (a walk serves both
    directions)."""
    old_facts, old_places, _ = old_walk
    new_facts, new_places, problems = new_walk
    problems = list(problems)
    probes = [ProbeDrift(name, p.file, old_facts[name], new_facts[name],
                         str(p.info)) for name, p in series.probes.items()]
    changes = []
    for patch in series.patches:
        for change in patch.changes:
            before, after = old_places[change.id], new_places[change.id]
            status = _status(before, after)
            if status is None:
                continue
            row = ChangeDrift(change.id, patch.id, change.file,
                              change.anchor.describe() if change.anchor
                              else change.action, str(change.info),
                              status, before, after)
            if after.status in ("missing", "ambiguous") and change.anchor:
                row.candidates = nearest(new, change.file, change.anchor,
                                         before, after)
            if after.status in FAILING:
                hint = f"; nearest: {row.candidates[0]}" \
                    if row.candidates else ""
                problems.append(f"{change.info}: {change.file} (QEMU "
                                f"{new.version}): {after.reason}{hint}")
            changes.append(row)
    return Report(old.version, new.version, probes, changes,
                  _file_changes(series, old, new), problems)


def _status(before: Placement, after: Placement) -> str | None:
    if after.status == "inactive":
        return None if before.status == "inactive" else "dropped"
    if after.status != "resolved":
        return after.status
    if before.status == "inactive":
        return "added"
    if before.status == "resolved" and before.line != after.line:
        return "moved"
    return "resolved"


def _file_changes(series: Series, old: BaseTree,
                  new: BaseTree) -> dict[str, FileChange]:
    """Lines added and removed upstream in each file the series reads."""
    paths = [p for p in walk.spec_files(series)
             if not any(c.file == p and c.action in ("create-file",
                                                     "copy-file")
                        for pt in series.patches for c in pt.changes)]
    with tempfile.TemporaryDirectory(prefix="gen-series-drift-") as tmp:
        repo = gitops.union_repo(Path(tmp), [old.repo, new.repo])
        stats = gitops.numstat(repo, old.commit, new.commit, paths)
    files: dict[str, FileChange] = {}
    for path in paths:
        added, removed = stats.get(path, (0, 0))
        files[path] = {
            "added": added, "removed": removed,
            "old": gitops.read_blob(old.repo, old.commit, path) is not None,
            "new": gitops.read_blob(new.repo, new.commit, path) is not None}
    return files


def _functions(text: str) -> dict[str | None, tuple[int, str]]:
    """name -> (first line, text) of every function definition, from one
    parse (resolving each name would parse the file again)."""
    return {name: (node.start_point[0] + 1, csyntax.node_text(node))
            for name, _, node in csyntax.function_definitions(text)}


# ---- nearest candidates ------------------------------------------------------

def _ratio(a: Sequence[str], b: Sequence[str]) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _stripped(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def nearest(tree: BaseTree, path: str, anchor: Anchor, old: Placement,
            new: Placement) -> list[Candidate]:
    """What the anchor most likely became in `tree`, closest first."""
    text = gitops.read_blob(tree.repo, tree.commit, path)
    if text is None:
        return _elsewhere(tree, anchor)
    # the walked tree holds the series' earlier changes; candidates are
    # named on the release itself, whose lines the user can look up
    if new.status == "ambiguous":
        return _rank_hits(text, path, anchor, old, new)
    if anchor.scope_kind and new.scope_line is None:
        found = _elsewhere(tree, anchor, exclude=path) + \
            _similar_scopes(text, path, anchor, old)
    else:
        found = _match_elsewhere(text, path, anchor) + \
            _similar_lines(text, path, anchor, old)
    found.sort(key=lambda c: -c.score)
    return found[:CANDIDATES]


def _region_text(text: str, path: str, kind: str,
                 name: str) -> tuple[int, str]:
    region = anchors.resolve(text, path, Anchor(kind, name, None,
                                                        SourceInfo(path)))
    lines = text.splitlines(keepends=True)
    return region.start + 1, "".join(lines[region.start:region.end])


def _similar_scopes(text: str, path: str, anchor: Anchor,
                    old: Placement) -> list[Candidate]:
    """Definitions of the same kind, by name and (when the old release
    showed it) by body: a renamed function keeps most of its body."""
    kind, name = anchor.scope_kind, anchor.scope_name
    if kind is None or name is None:
        return []
    if kind == "qapi":
        names = set(QAPI_DOC_RE.findall(text))
    elif csyntax.is_c(path):
        names = csyntax.scope_names(csyntax.parse(text).root_node, kind)
    else:
        return []
    old_body = _stripped(old.text) if old.status == "resolved" else None
    bodies = _functions(text) if kind == "function" else {}
    scored = []
    for other in names:
        score = _ratio(name, other)
        if old_body is not None and score > 0.2:
            try:
                line, body = bodies.get(other) or \
                    _region_text(text, path, kind, other)
            except anchors.NotFound:
                continue
            score = (score + _ratio(old_body, _stripped(body))) / 2
        else:
            line = None
        scored.append((score, other, line))
    scored.sort(key=lambda s: -s[0])
    out = []
    for score, other, line in scored[:CANDIDATES]:
        if line is None:
            try:
                line, _ = _region_text(text, path, kind, other)
            except anchors.NotFound:
                continue
        out.append(Candidate(f"{kind} '{other}'", f"{path}:{line}",
                             round(score, 2)))
    return out


def _elsewhere(tree: BaseTree, anchor: Anchor,
               exclude: str | None = None) -> list[Candidate]:
    """The scope, same name, in another file (code moved between files)."""
    if anchor.scope_kind != "function" or anchor.scope_name is None:
        return []
    name = re.escape(anchor.scope_name)
    hits = gitops.grep(tree.repo, tree.commit, rf"^([A-Za-z_].*[ *])?{name}\(",
                       ["*.c", "*.h", "*.inc"])
    return [Candidate(f"function '{anchor.scope_name}'", f"{p}:{n}", 1.0)
            for p, n, line in hits
            if p != exclude and not line.rstrip().endswith(";")][:CANDIDATES]


def _enclosing(text: str, path: str, line: int) -> str:
    """The function around `line` (1-based), for messages."""
    if not csyntax.is_c(path):
        return ""
    for name, (first, body) in _functions(text).items():
        if first <= line <= first + body.count("\n"):
            return f" in function '{name}'"
    return ""


def _match_elsewhere(text: str, path: str,
                     anchor: Anchor) -> list[Candidate]:
    """The match outside its scope: a block moved to another function."""
    if anchor.match is None or not anchor.scope_kind:
        return []
    out = []
    for m in anchor.match.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        out.append(Candidate(f"/{anchor.match.pattern}/"
                             f"{_enclosing(text, path, line)}",
                             f"{path}:{line}", 1.0))
    return out[:CANDIDATES]


def _needle(match: re.Pattern[str], old: Placement) -> list[str]:
    """What the match is looking for: the text it matched on the old
    release, else the pattern with its regex syntax dropped."""
    if old.status == "resolved" and old.matched.strip():
        return _stripped(old.matched)
    literal = re.sub(r"\\(.)", r"\1", re.sub(r"[\^$]|\\[swdbSWDB][*+?]?",
                                              "", match.pattern))
    return _stripped(literal)


def _similar_lines(text: str, path: str, anchor: Anchor,
                   old: Placement) -> list[Candidate]:
    """Lines of the scope (or file) most like what the match matched: a
    changed signature, a renamed argument."""
    lines = text.splitlines()
    start, end = 0, len(lines)
    if anchor.scope_kind:
        try:
            scope = anchors.resolve(text, path,
                                    dataclasses.replace(anchor, match=None))
            start, end = scope.start, scope.end
        except anchors.NotFound:
            pass
    if anchor.match is None:
        return []
    needle = "\n".join(_needle(anchor.match, old))
    size = max(1, needle.count("\n") + 1)
    scored = []
    for i in range(start, max(start + 1, end - size + 1)):
        window = "\n".join(line.strip() for line in lines[i:i + size])
        if window.strip():
            scored.append((_ratio(needle, window), i + 1, lines[i].strip()))
    scored.sort(key=lambda s: -s[0])
    return [Candidate(f"line '{snippet}'", f"{path}:{line}", round(score, 2))
            for score, line, snippet in scored[:CANDIDATES]]


def _rank_hits(text: str, path: str, anchor: Anchor, old: Placement,
               new: Placement) -> list[Candidate]:
    """Each hit of an ambiguous anchor, the one whose surroundings look
    most like the old release's first."""
    lines = text.splitlines()
    hits = _scope_lines(text, path, anchor) if new.scope_line is None \
        else _match_lines(text, path, anchor)
    reference = _stripped(old.context) if old.status == "resolved" else []
    out = []
    for line in hits:
        around = [s.strip() for s in lines[max(0, line - 1 - CONTEXT):
                                           line + CONTEXT] if s.strip()]
        score = _ratio(reference, around) if reference else 0.0
        out.append(Candidate(f"line '{lines[line - 1].strip()}'"
                             f"{_enclosing(text, path, line)}",
                             f"{path}:{line}", round(score, 2)))
    out.sort(key=lambda c: -c.score)
    return out


def _match_lines(text: str, path: str, anchor: Anchor) -> list[int]:
    """The lines of every hit of the match inside its scope, on `text`."""
    found, _ = locate(text, path, anchor)
    return list(found.hits)


# ---- output -----------------------------------------------------------------

def _lines_of(row: ChangeDrift) -> str:
    def at(p: Placement) -> str:
        return str(p.line) if p.line else "-"
    if row.status == "moved" and row.old.line and row.new.line:
        delta = row.new.line - row.old.line
        return f"{at(row.old)} -> {at(row.new)} ({delta:+d})"
    return at(row.new) if row.new.line else at(row.old)


def format_report(report: Report) -> str:
    """The readable report: probes that flip, changes that are not where
    they were, files, and what to do."""
    out = [f"QEMU {report.old} -> {report.new}: the series "
           + ("renders" if report.renders
              else f"does not render ({len(report.problems)} problems)"), ""]
    flipped = report.flipped
    out.append(f"probes that flip ({len(flipped)} of {len(report.probes)}):")
    for p in flipped:
        out.append(f"  {p.name:32} {str(p.old).lower():5} -> "
                   f"{str(p.new).lower():5}  {p.file}")
    out.append("")
    same = [r for r in report.changes if r.status == "resolved"
            and not r.code_changed]
    shown = [r for r in report.changes if r not in same]
    out.append(f"changes ({len(same)} resolved on the same line and "
               "unchanged, not listed; lines are in the tree as the "
               "earlier changes left it):")
    for r in shown:
        note = "  (anchored code changed)" if r.code_changed else ""
        out.append(f"  {r.status:9} {r.id:36} {r.file}:{_lines_of(r)}"
                   f"{note}")
        out.append(f"  {'':9} {r.anchor}")
        if r.status in FAILING:
            out.append(f"  {'':9} {r.new.reason}")
        for c in r.candidates:
            out.append(f"  {'':9} nearest: {c}")
    out.append("")
    out.append("upstream changes to the files the series reads "
               f"({report.old} -> {report.new}):")
    for path, f in sorted(report.files.items(),
                          key=lambda kv: -(kv[1]["added"] + kv[1]["removed"])):
        gone = "" if f["new"] else "  (not in the new release)"
        out.append(f"  +{f['added']:<5} -{f['removed']:<5} {path}{gone}")
    out.append("")
    if report.problems:
        out.append(f"to do before the series renders on {report.new}:")
        out += [f"  - {p}" for p in report.problems]
    else:
        review = [f"probe '{p.name}' is now {str(p.new).lower()}: review "
                  f"the changes with `when: {'' if p.new else 'not '}"
                  f"{p.name}` ({p.spec})" for p in flipped]
        review += [f"change '{r.id}': the code it anchors on changed "
                   f"({r.spec})" for r in report.changes if r.code_changed]
        out.append("to review:" if review else "nothing to review")
        out += [f"  - {line}" for line in review]
    return "\n".join(out) + "\n"


def to_json(report: Report) -> str:
    import json
    data = dataclasses.asdict(report)
    data["renders"] = report.renders
    data["flipped"] = [p.name for p in report.flipped]
    return json.dumps(data, indent=2) + "\n"
