"""Spec + base tree -> commits in a scratch clone -> `git format-patch`.

The output is byte-identical on every run: fixed identities and dates from
the spec, git's user configuration ignored, and files written only when
their contents change.
"""

import errno
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import jinja2

from generator import anchors, edits, gitops, outdir, patchfiles, provenance
from generator.errors import AnchorError, CheckFailed, SpecError, ToolError
from generator.model import Change, Patch, Series
from generator.qemutree import BaseTree
from generator.render import make_env, render, render_string
from generator.source import confined, display_path, read_input


def next_release(version: str) -> str:
    """The QEMU feature release after `version` (x.0, x.1, x.2, x+1.0)."""
    major, minor = (int(p) for p in version.split(".")[:2])
    return f"{major + 1}.0" if minor >= 2 else f"{major}.{minor + 1}"


def evaluate_probes(series: Series, root: Path,
                    release: str) -> dict[str, bool]:
    """Each probe's truth value on the (unpatched) tree at `root`."""
    facts = {}
    for name, probe in series.probes.items():
        text = edits.read_tree_file(root, probe.file, probe.info, release)
        facts[name] = anchors.exists(text, probe.file, probe.anchor)
    return facts


def template_context(series: Series, base: BaseTree,
                     facts: Mapping[str, bool]) -> dict[str, object]:
    return {
        **series.params,
        "probes": {k.replace("-", "_"): v for k, v in facts.items()},
        "tree": {"version": base.version,
                 "since": next_release(base.version)},
    }


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
        touched = patchfiles.changed_files(path)
        if not touched:
            raise CheckFailed(f"{path.name}: empty patch for patch "
                              f"'{patch.id}'")
        for file in touched:
            if file not in changed:
                raise CheckFailed(f"{path.name}: touches {file}, which "
                                  f"patch '{patch.id}' does not name")


def write_if_changed(path: Path, data: bytes) -> None:
    """Write `data` unless `path` holds it already (its mtime kept), through
    a temporary file so that a reader never sees half of it."""
    if path.is_file() and path.stat().st_size == len(data) and \
            path.read_bytes() == data:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


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


def generate(series: Series, base: BaseTree, out: Path,
             progress: Callable[[str], None] = lambda msg: None,
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
                                              progress, missing_data_ok)
            if finish:
                written = finish(written)
            # the map reads the patches as they are written, headers too
            patches = sorted(n for n in written if n != outdir.COVER_LETTER)
            written[provenance.MAP_NAME] = tracker.series_map(
                [(n, written[n]) for n in patches])
            return outdir.replace_series(out, written)
    except OSError as e:
        # the scratch files (or the pipe to git) in the temporary directory
        what = "the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) \
            else e.strerror
        raise ToolError(f"cannot stage the series in {tempfile.gettempdir()}: "
                        f"{what}; --out {out} is unchanged")


def _render_series(series: Series, base: BaseTree, tmp: Path,
                   env: jinja2.Environment, progress: Callable[[str], None],
                   missing_data_ok: bool
                   ) -> tuple[dict[str, bytes], provenance.Tracker]:
    """The series' files {name: bytes}, made in the scratch dir `tmp`, and
    the provenance.Tracker that followed its lines."""
    progress(f"reading the QEMU {base.version} base")
    # only the files the spec reads are written out, into a plain
    # directory; the commits are written from it in one stream
    root = tmp / "tree"
    try:
        repo = gitops.scratch_repo(base.repo, tmp / "git")
        files = gitops.read_files(
            repo, base.commit,
            sorted({p.file for p in series.probes.values()} |
                   {c.file for p in series.patches for c in p.changes}))
    except ToolError as e:
        raise base.unreadable(e.msg) from None
    for path, (mode, data) in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        if mode == gitops.SYMLINK_MODE:
            os.symlink(os.fsdecode(data), root / path)
        else:
            (root / path).write_bytes(data)
    facts = evaluate_probes(series, root, base.version)
    context = template_context(series, base, facts)
    tracker = provenance.Tracker(series, env, context)
    applied: list[tuple[Patch, set[str]]] = []
    commits: list[tuple[str, dict[str, tuple[int, bytes]]]] = []
    patches = [p for p in series.patches
               if p.when is None or p.when.holds(facts)]
    for n, patch in enumerate(patches, 1):
        progress(f"[{n}/{len(patches)}] {patch.subject}")
        changed: set[str] = set()
        for change in patch.changes:
            if change.when and not change.when.holds(facts):
                continue
            text: str | bytes | None = None
            if change.template:
                text = render(env, series.templates, change.template,
                              {**context, **change.params}, change.info)
            if change.action == "copy-file":
                source = copy_source(series, env, change, context)
                if not source.is_file():
                    if missing_data_ok:
                        continue
                    raise AnchorError(
                        f"{display_path(source)}: no such file for QEMU "
                        f"{base.version}; `gen-series tables` makes it",
                        change.info)
                text = read_input(source)
            before = tracker.lines(root / change.file, change.file)
            edits.apply_change(root, change, text, base.version)
            tracker.edited(change, before,
                           provenance.file_lines(root / change.file), text)
            changed.add(change.file)
        edited: dict[str, tuple[int, bytes]] = {}
        for path in sorted(changed):
            data = (root / path).read_bytes()
            mode, old = files.get(path, (0o100644, None))
            if data != old:
                edited[path] = files[path] = (mode, data)
        if not edited:
            raise SpecError("the patch changes nothing on "
                            f"QEMU {base.version}", patch.info)
        appendix = render(env, series.templates, patch.message_template,
                          context, patch.info) \
            if patch.message_template else ""
        commits.append((_commit_message(series, patch, appendix),
                        edited))
        tracker.committed(patch)
        applied.append((patch, changed))

    tip = gitops.write_commits(repo, base.commit, commits, series.author,
                               series.date)
    staged = tmp / "out"
    written = gitops.format_patch(repo, base.commit, staged, series.author,
                                  series.date, subject_prefix(series),
                                  tip)
    _fill_cover_letter(written[0], series)
    validate(series, written[1:], applied)

    return {f.name: f.read_bytes() for f in written}, tracker
