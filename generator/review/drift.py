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
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import jinja2
import tree_sitter

from generator import csyntax, gitops
from generator.errors import GenError
from generator.generate import anchors, edits
from generator.generate.series import copy_source, template_context
from generator.qemutree import BaseTree
from generator.source import SourceInfo
from generator.spec.model import Anchor, Change, Series
from generator.spec.templates import make_env, render

FAILING = ("missing", "ambiguous", "failed")
CANDIDATES = 3          # nearest candidates listed per anchor
CONTEXT = 3             # lines either side compared for an ambiguous match


# ---- names in C files (csyntax) --------------------------------------------

def _c_root(text: str) -> tree_sitter.Node:
    return csyntax.parse(text).root_node


def _c_scope_nodes(root: tree_sitter.Node, kind: str,
                   name: str) -> list[tree_sitter.Node]:
    return list(csyntax.scope_nodes(root, kind, name))


def _c_names(root: tree_sitter.Node, kind: str) -> set[str]:
    """Every name a `kind` scope could be anchored on in this file."""
    names: set[str | None] = set()
    for n in csyntax.walk(root):
        if kind == "function" and n.type == "function_definition":
            names.add(csyntax.declared_name(
                n.child_by_field_name("declarator")))
        elif kind in ("struct", "enum") and n.type == f"{kind}_specifier":
            tag = n.child_by_field_name("name")
            if tag is not None:
                names.add((tag.text or b"").decode())
            parent = n.parent
            if parent is not None and parent.type == "type_definition":
                names.update(csyntax.declared_name(d) for d in
                             parent.children_by_field_name("declarator"))
        elif kind == "declaration" and n.type == "declaration" and \
                n.parent is not None and n.parent.type == "translation_unit":
            names.update(csyntax.declared_name(d) for d in
                         n.children_by_field_name("declarator"))
    return {name for name in names if name is not None}


def _c_functions(root: tree_sitter.Node) -> dict[str | None, tuple[int, str]]:
    """name -> (first line, text) of every function definition, from one
    parse (resolving each name would parse the file again)."""
    found: dict[str | None, tuple[int, str]] = {}
    for n in csyntax.walk(root):
        if n.type == "function_definition":
            name = csyntax.declared_name(n.child_by_field_name("declarator"))
            found[name] = (n.start_point[0] + 1, (n.text or b"").decode())
    return found

# ---------------------------------------------------------------------------


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
    lines = text.splitlines(keepends=True)
    try:
        region = anchors.resolve(text, path, anchor)
    except anchors.NotFound as e:
        return _diagnose(text, path, anchor, str(e)), None
    matched = text[region.span[0]:region.span[1]] if region.span else ""
    return Placement("resolved", line=region.start + 1,
                     text="".join(lines[region.start:region.end]),
                     matched=matched, context="".join(
                         lines[max(0, region.start - CONTEXT):
                               region.start + CONTEXT + 1])), region


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
            _c_scope_nodes(_c_root(text), anchor.scope_kind,
                           anchor.scope_name)]


def _tree_files(series: Series) -> list[str]:
    return sorted({p.file for p in series.probes.values()} |
                  {c.file for p in series.patches for c in p.changes})


def walk(series: Series, base: BaseTree,
         progress: Callable[[str], None] = lambda msg: None) -> Walk:
    """Apply the spec to `base` as `generate` does, but go on after a
    change fails.  Returns (probe facts, change id -> Placement, problems
    that are not a change's: a probe's file missing, a message template)."""
    env = make_env(series.templates)
    placements: dict[str, Placement] = {}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gen-series-drift-") as tmp:
        root = Path(tmp)
        for path in _tree_files(series):
            text = gitops.read_blob(base.repo, base.commit, path)
            if text is not None:
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).write_text(text, encoding="utf-8")
        facts: dict[str, bool] = {}
        for name, probe in series.probes.items():
            probe_path = root / probe.file
            if not probe_path.is_file():
                problems.append(f"{probe.info}: {probe.file}: no such file")
                facts[name] = False
                continue
            facts[name] = locate(probe_path.read_text(encoding="utf-8"),
                                 probe.file, probe.anchor)[1] is not None
        context = template_context(series, base, facts)
        progress(f"walking the spec on QEMU {base.version}")
        for patch in series.patches:
            for change in patch.changes:
                when = change.when or patch.when
                if (patch.when and not patch.when.holds(facts)) or \
                        (change.when and not change.when.holds(facts)):
                    assert when is not None     # one of them is false
                    placements[change.id] = Placement(
                        "inactive", f"when: {'not ' if when.negate else ''}"
                        f"{when.probe}")
                    continue
                placements[change.id] = _place(series, env, context, root,
                                               change, base.version)
            if patch.message_template and (patch.when is None
                                           or patch.when.holds(facts)):
                try:
                    render(env, series.templates, patch.message_template,
                           context, patch.info)
                except GenError as e:
                    problems.append(str(e))
    return facts, placements, problems


def _place(series: Series, env: jinja2.Environment, context: dict[str, object],
           root: Path, change: Change, version: str) -> Placement:
    """Render and apply one change; where its anchor was, or why not."""
    placement = Placement("resolved")
    try:
        text: str | bytes | None = render(env, series.templates, change.template,
                      {**context, **change.params}, change.info) \
            if change.template else None
        if change.action == "copy-file":
            source = copy_source(series, env, change, context)
            if not source.is_file():
                return Placement("failed", f"{source.relative_to(series.templates)}"
                                 f": no such file for QEMU {version}; "
                                 "`gen-series tables` makes it")
            text = source.read_bytes()
        if change.anchor is None:
            edits.apply_change(root, change, text, version)
            return placement
        path = root / change.file
        if not path.is_file():
            return Placement("missing", f"{change.file}: no such file")
        # edits.apply_change() without resolving the anchor a second time
        original = path.read_text(encoding="utf-8")
        placement, region = locate(original, change.file, change.anchor)
        if region is None:
            return placement
        handler = edits.HANDLERS[change.action]
        assert not isinstance(text, bytes)  # copy-file's has no anchor
        lines = handler(
            original.splitlines(keepends=True), region,
            (text or "").splitlines(keepends=True), change.anchor)
        path.write_text("".join(lines), encoding="utf-8")
    except anchors.NotFound as e:
        return dataclasses.replace(placement, status="failed", reason=str(e))
    except GenError as e:
        return dataclasses.replace(placement, status="failed", reason=e.msg)
    return placement


# ---- two trees -------------------------------------------------------------

def compare(series: Series, old: BaseTree, new: BaseTree,
            progress: Callable[[str], None] = lambda msg: None) -> Report:
    return compare_walks(series, old, walk(series, old, progress),
                         new, walk(series, new, progress))


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
    paths = [p for p in _tree_files(series)
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
        names = _c_names(_c_root(text), kind)
    else:
        return []
    old_body = _stripped(old.text) if old.status == "resolved" else None
    bodies = _c_functions(_c_root(text)) if kind == "function" else {}
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
    for name, (first, body) in _c_functions(_c_root(text)).items():
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
