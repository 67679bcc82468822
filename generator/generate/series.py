"""Spec + base tree -> commits in a scratch clone -> `git format-patch`.

The output is byte-identical on every run: fixed identities and dates from
the spec, git's user configuration ignored, and files written only when
their contents change.
"""

import errno
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import jinja2

from generator import gitops
from generator.errors import CheckFailed, SpecError, ToolError
from generator.generate import provenance, walk
from generator.output import outdir
from generator.output.written import changed_files
from generator.qemutree import BaseTree
from generator.spec.model import Change, Patch, Series
from generator.spec.templates import make_env

logger = logging.getLogger(__name__)


def _commit_message(series: Series, patch: Patch,
                    appendix: str = "") -> str:
    trailers = "\n".join(f"Signed-off-by: {s}" for s in series.signoffs)
    body = patch.message + (f"\n\n{appendix.strip(chr(10))}"
                            if appendix.strip() else "")
    return f"{patch.subject}\n\n{body}\n\n{trailers}\n"


def subject_prefix(series: Series) -> str:
    return series.subject_prefix + \
        (f" v{series.version}" if series.version > 1 else "")


def _fill_cover_letter(path: Path, series: Series) -> None:
    text = path.read_text(encoding="utf-8")
    text = text.replace("*** SUBJECT HERE ***", series.cover_subject, 1)
    text = text.replace("*** BLURB HERE ***", series.cover_body, 1)
    path.write_text(text, encoding="utf-8")


def validate(series: Series, files: list[Path],
             applied: list[tuple[Patch, set[str]]]) -> None:
    """Parse the series back: each patch non-empty, touching only its files."""
    for path, (patch, changed) in zip(files, applied, strict=True):
        touched = changed_files(path)
        if not touched:
            raise CheckFailed(f"{path.name}: empty patch for patch "
                              f"'{patch.id}'")
        for file in touched:
            if file not in changed:
                raise CheckFailed(f"{path.name}: touches {file}, which "
                                  f"patch '{patch.id}' does not name")


def generate(series: Series, base: BaseTree, out: Path,
             missing_data_ok: bool = False,
             finish: Callable[[dict[str, bytes]], dict[str, bytes]]
             | None = None) -> list[Path]:
    """Write the series for `base` into `out` (replaced whole, see
    outdir.py); return its files.

    With `missing_data_ok`, a copy-file change whose source does not exist
    yet leaves its file as it is (`gen-series tables` renders the series
    that way to make the expected ACPI tables for a new release).
    `finish`, if given, turns the rendered {name: bytes} into what is
    written (versions.py, recipients.py)."""
    env = make_env(series.templates, missing_data_ok)
    try:
        with tempfile.TemporaryDirectory(prefix="gen-series-") as tmp:
            written, tracker = _render_series(series, base, Path(tmp), env,
                                              missing_data_ok)
            if finish:
                written = finish(written)
            # the map reads the patches as they are written, headers too
            patches = sorted(n for n in written if n != outdir.COVER_LETTER)
            written[outdir.MAP_NAME] = tracker.series_map(
                [(n, written[n]) for n in patches])
            return outdir.replace_series(out, written)
    except OSError as e:
        # the scratch files (or the pipe to git) in the temporary directory
        what = "the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) \
            else e.strerror
        raise ToolError(f"cannot stage the series in {tempfile.gettempdir()}: "
                        f"{what}; --out {out} is unchanged")


class _Committer(walk.Visitor):
    """generate's consumer of the walk: each patch's edited files become a
    commit; the provenance.Tracker follows every line."""

    def __init__(self, series: Series, tree: walk.BaseFiles,
                 env: jinja2.Environment, release: str):
        self.series, self.tree, self.env = series, tree, env
        self.release = release
        self.commits: list[tuple[str, dict[str, tuple[int, bytes]]]] = []
        self.applied: list[tuple[Patch, set[str]]] = []
        self.changed: set[str] = set()
        self.before: list[str] = []

    def begin(self, facts: dict[str, bool],
              context: dict[str, object]) -> None:
        self.tracker = provenance.Tracker(self.series, self.env, context)
        self.total = sum(1 for p in self.series.patches
                         if p.when is None or p.when.holds(facts))

    def begin_patch(self, patch: Patch) -> None:
        logger.info(f"[{len(self.commits) + 1}/{self.total}] "
                    f"{patch.subject}")

    def before_change(self, patch: Patch, change: Change) -> None:
        self.before = self.tracker.lines(self.tree.root / change.file,
                                         change.file)

    def change(self, outcome: walk.Outcome) -> None:
        if outcome.status != "applied":
            return
        change = outcome.change
        self.tracker.edited(change, self.before, provenance.file_lines(
            self.tree.root / change.file), outcome.text)
        self.changed.add(change.file)

    def end_patch(self, patch: Patch, appendix: str) -> None:
        edited: dict[str, tuple[int, bytes]] = {}
        files = self.tree.files
        for path in sorted(self.changed):
            data = (self.tree.root / path).read_bytes()
            mode, old = files.get(path, (0o100644, None))
            if data != old:
                edited[path] = files[path] = (mode, data)
        if not edited:
            raise SpecError("the patch changes nothing on "
                            f"QEMU {self.release}", patch.info)
        self.commits.append((_commit_message(self.series, patch, appendix),
                             edited))
        self.tracker.committed(patch)
        self.applied.append((patch, self.changed))
        self.changed = set()


def _render_series(series: Series, base: BaseTree, tmp: Path,
                   env: jinja2.Environment,
                   missing_data_ok: bool
                   ) -> tuple[dict[str, bytes], provenance.Tracker]:
    """The series' files {name: bytes}, made in the scratch dir `tmp`, and
    the provenance.Tracker that followed its lines."""
    logger.info(f"reading the QEMU {base.version} base")
    tree = walk.read_base(series, base, tmp)
    committer = _Committer(series, tree, env, base.version)
    walk.walk(series, base, tree, env, committer,
              missing_data_ok=missing_data_ok)
    tip = gitops.write_commits(tree.repo, base.commit, committer.commits,
                               series.author, series.date)
    staged = tmp / "out"
    written = gitops.format_patch(tree.repo, base.commit, staged,
                                  series.author, series.date,
                                  subject_prefix(series), tip)
    _fill_cover_letter(written[0], series)
    validate(series, written[1:], committer.applied)
    return {f.name: f.read_bytes() for f in written}, committer.tracker
