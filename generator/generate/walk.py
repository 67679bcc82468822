"""One walk of the spec over a base tree, for every consumer.

patches -> changes -> `when` -> render -> apply: each change is applied
on the tree the earlier changes left, and comes out as one `Outcome`.
The consumers (QAPI's schema.visit(visitor) is the model) differ only in
what they do with the outcomes: `generate` (series.py) stops at the
first failure and commits each patch; `drift` (review/drift.py) records
every outcome and goes on; `tables` renders with missing data files
tolerated.  `read_base()` is the one way to read a base tree's files.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jinja2

from generator import gitops
from generator.errors import AnchorError, GenError, SpecError, ToolError
from generator.generate import anchors, edits, regioncache
from generator.generate.anchors import Region
from generator.qemutree import BaseTree
from generator.source import confined, display_path, read_input
from generator.spec.model import Change, Patch, Series
from generator.spec.templates import render, render_string


def next_release(version: str) -> str:
    """The QEMU feature release after `version` (x.0, x.1, x.2, x+1.0)."""
    major, minor = (int(p) for p in version.split(".")[:2])
    return f"{major + 1}.0" if minor >= 2 else f"{major}.{minor + 1}"


def template_context(series: Series, base: BaseTree,
                     facts: Mapping[str, bool]) -> dict[str, object]:
    return {
        **series.params,
        "probes": {k.replace("-", "_"): v for k, v in facts.items()},
        "tree": {"version": base.version,
                 "since": next_release(base.version)},
    }


def spec_files(series: Series) -> list[str]:
    """Every file of the tree the spec reads or writes."""
    return sorted({p.file for p in series.probes.values()} |
                  {c.file for p in series.patches for c in p.changes})


@dataclass
class BaseFiles:
    """The base's files the spec reads, written into a plain directory
    (`root`); `repo` is a scratch repo borrowing the base's objects."""
    root: Path
    repo: gitops.Repo
    files: dict[str, tuple[int, bytes]]     # path -> (mode, bytes) at base


def read_base(series: Series, base: BaseTree, tmp: Path) -> BaseFiles:
    """The files `series` reads from `base`, under `tmp/tree` (only those:
    the commits are written from them in one stream)."""
    root = tmp / "tree"
    try:
        repo = gitops.scratch_repo(base.repo, tmp / "git")
        files = gitops.read_files(repo, base.commit, spec_files(series))
    except ToolError as e:
        raise base.unreadable(e.msg) from None
    for path, (mode, data) in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        if mode == gitops.SYMLINK_MODE:
            os.symlink(os.fsdecode(data), root / path)
        else:
            (root / path).write_bytes(data)
    root.mkdir(parents=True, exist_ok=True)
    return BaseFiles(root, repo, files)


def copy_source(series: Series, env: jinja2.Environment, change: Change,
                context: Mapping[str, object]) -> Path:
    """The data file a copy-file change writes (e.g. an expected ACPI
    table), under the templates directory."""
    assert change.source is not None    # a copy-file change has one
    name = render_string(env, change.source, context, change.info)
    path = confined(series.templates, name)
    if path is None:
        raise SpecError(f"source '{name}' is outside "
                        f"{display_path(series.templates)}/", change.info)
    return path


def missing_data(source: Path, release: str, change: Change) -> AnchorError:
    return AnchorError(f"{display_path(source)}: no such file for QEMU "
                       f"{release}; `gen-series tables` makes it",
                       change.info)


@dataclass(frozen=True)
class Outcome:
    """What one change did on one tree."""
    patch: Patch
    change: Change
    status: str         # applied, inactive (`when:`), no-data, failed
    # failed: the error as generate reports it, and why without the
    # location (a missing anchor's reason)
    error: GenError | None = None
    reason: str = ""
    # an anchored change: its file's text before the edit (None: no such
    # file) and the region its anchor resolved to
    original: str | None = None
    region: Region | None = None
    text: str | bytes | None = None     # rendered (copy-file: the data)

    @property
    def failed(self) -> bool:
        return self.status == "failed"


class Visitor:
    """What a walk's consumer is told, in order; each method may be left
    as it is (a no-op)."""

    def begin(self, facts: dict[str, bool],
              context: dict[str, object]) -> None:
        """The probes were evaluated on the unpatched tree."""

    def begin_patch(self, patch: Patch) -> None:
        """An active patch (its `when:` holds) begins."""

    def before_change(self, patch: Patch, change: Change) -> None:
        """An active change is about to be applied."""

    def change(self, outcome: Outcome) -> None:
        """One change's outcome (an inactive one's too)."""

    def end_patch(self, patch: Patch, appendix: str) -> None:
        """An active patch's changes are applied; `appendix` is its
        rendered message template ("" without one)."""


@dataclass
class Walk:
    facts: dict[str, bool]
    problems: list[str]     # with keep_going: failures that are no change's


def walk(series: Series, base: BaseTree, tree: BaseFiles,
         env: jinja2.Environment, visitor: Visitor, *,
         keep_going: bool = False, missing_data_ok: bool = False) -> Walk:
    """Apply `series` to `tree` (read_base()), telling `visitor`.  A
    failure is raised, or with `keep_going` recorded (the change's Outcome,
    or the walk's problems) and the walk goes on.  Anchors resolved on
    an earlier walk of the same texts come from the regioncache."""
    with regioncache.session(base.commit):
        return _walk(series, base, tree, env, visitor, keep_going,
                     missing_data_ok)


def _walk(series: Series, base: BaseTree, tree: BaseFiles,
          env: jinja2.Environment, visitor: Visitor, keep_going: bool,
          missing_data_ok: bool) -> Walk:
    problems: list[str] = []

    def failed(error: GenError) -> None:
        if not keep_going:
            raise error
        problems.append(str(error))

    facts: dict[str, bool] = {}
    for name, probe in series.probes.items():
        try:
            text = edits.read_tree_file(tree.root, probe.file, probe.info,
                                        base.version)
        except GenError as e:
            failed(e)
            facts[name] = False
            continue
        facts[name] = anchors.exists(text, probe.file, probe.anchor)
    context = template_context(series, base, facts)
    visitor.begin(facts, context)
    for patch in series.patches:
        active = patch.when is None or patch.when.holds(facts)
        if active:
            visitor.begin_patch(patch)
        for change in patch.changes:
            if not active or (change.when and not change.when.holds(facts)):
                when = change.when or patch.when
                assert when is not None     # one of them is false
                visitor.change(Outcome(
                    patch, change, "inactive",
                    reason=f"when: {'not ' if when.negate else ''}"
                    f"{when.probe}"))
                continue
            visitor.before_change(patch, change)
            outcome = _apply(series, env, context, tree.root, patch, change,
                             base.version, missing_data_ok)
            if outcome.error is not None and not keep_going:
                raise outcome.error
            visitor.change(outcome)
        if not active:
            continue
        appendix = ""
        if patch.message_template:
            try:
                appendix = render(env, series.templates,
                                  patch.message_template, context, patch.info)
            except GenError as e:
                failed(e)
        visitor.end_patch(patch, appendix)
    return Walk(facts, problems)


def _apply(series: Series, env: jinja2.Environment,
           context: dict[str, object], root: Path, patch: Patch,
           change: Change, release: str, missing_data_ok: bool) -> Outcome:
    """Render and apply one change to the tree at `root`."""
    text: str | bytes | None = None
    try:
        if change.template:
            text = render(env, series.templates, change.template,
                          {**context, **change.params}, change.info)
        if change.action == "copy-file":
            source = copy_source(series, env, change, context)
            if not source.is_file():
                if missing_data_ok:
                    return Outcome(patch, change, "no-data")
                raise missing_data(source, release, change)
            text = read_input(source)
        placed = edits.apply_change(root, change, text, release)
    except edits.Unplaced as e:
        return Outcome(patch, change, "failed", e, e.reason, e.original,
                       text=text)
    except GenError as e:
        return Outcome(patch, change, "failed", e, e.msg, text=text)
    return Outcome(patch, change, "applied",
                   original=placed.original if placed else None,
                   region=placed.region if placed else None, text=text)
