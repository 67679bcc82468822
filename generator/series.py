"""Spec + base tree -> commits in a scratch clone -> `git format-patch`.

The output is byte-identical on every run: fixed identities and dates from
the spec, git's user configuration ignored, and files written only when
their contents change.
"""

import tempfile
from pathlib import Path

from generator import anchors, edits, gitops, outdir, patchfiles, provenance
from generator.errors import AnchorError, CheckFailed, ToolError
from generator.model import Series
from generator.qemutree import BaseTree
from generator.render import make_env, render, render_string
from generator.source import display_path


def next_release(version: str) -> str:
    """The QEMU feature release after `version` (x.0, x.1, x.2, x+1.0)."""
    major, minor = (int(p) for p in version.split(".")[:2])
    return f"{major + 1}.0" if minor >= 2 else f"{major}.{minor + 1}"


def evaluate_probes(series: Series, root: Path, release: str) -> dict:
    """Each probe's truth value on the (unpatched) tree at `root`."""
    facts = {}
    for name, probe in series.probes.items():
        path = root / probe.file
        if not path.is_file():
            raise AnchorError(f"{probe.file} (QEMU {release}): no such file",
                              probe.info)
        facts[name] = anchors.exists(path.read_text(encoding="utf-8"),
                                     probe.file, probe.anchor)
    return facts


def template_context(series: Series, base: BaseTree, facts: dict) -> dict:
    return {
        **series.params,
        "probes": {k.replace("-", "_"): v for k, v in facts.items()},
        "tree": {"version": base.version,
                 "since": next_release(base.version)},
    }


def _commit_message(series: Series, patch, appendix: str = "") -> str:
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


def validate(series: Series, files: list, applied: list) -> None:
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


def copy_source(series: Series, env, change, context: dict) -> Path:
    """The data file a copy-file change writes (e.g. an expected ACPI
    table), under the templates directory."""
    return series.templates / render_string(env, change.source, context,
                                            change.info)


def generate(series: Series, base: BaseTree, out: Path,
             progress=lambda msg: None, missing_data_ok: bool = False) -> list:
    """Write the series for `base` into `out` (replaced whole, see
    outdir.py); return its files.

    With `missing_data_ok`, a copy-file change whose source does not exist
    yet leaves its file as it is (`gen-series tables` renders the series
    that way to make the expected ACPI tables for a new release)."""
    env = make_env(series.templates, missing_data_ok)
    with tempfile.TemporaryDirectory(prefix="gen-series-") as tmp:
        tmp = Path(tmp)
        progress(f"cloning the QEMU {base.version} base")
        root = tmp / "tree"
        try:
            repo = gitops.scratch_clone(base.repo, base.commit, root,
                                        sparse=True)
            for path in sorted({p.file for p in series.probes.values()} |
                               {c.file for p in series.patches
                                for c in p.changes}):
                gitops.checkout_file(repo, path)
        except ToolError as e:
            raise base.unreadable(e.msg) from None
        facts = evaluate_probes(series, root, base.version)
        context = template_context(series, base, facts)
        tracker = provenance.Tracker(series, env, context)  # provenance
        applied = []
        patches = [p for p in series.patches
                   if p.when is None or p.when.holds(facts)]
        for n, patch in enumerate(patches, 1):
            progress(f"[{n}/{len(patches)}] {patch.subject}")
            changed = set()
            for change in patch.changes:
                if change.when and not change.when.holds(facts):
                    continue
                text = None
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
                    text = source.read_bytes()
                before = provenance.file_lines(root / change.file)  # provenance
                edits.apply_change(root, change, text, base.version)
                tracker.edited(change, before,  # provenance
                               provenance.file_lines(root / change.file), text)
                changed.add(change.file)
            appendix = render(env, series.templates, patch.message_template,
                              context, patch.info) \
                if patch.message_template else ""
            if not gitops.commit_paths(repo, changed,
                                       _commit_message(series, patch,
                                                       appendix),
                                       series.author, series.date):
                raise CheckFailed(f"patch '{patch.id}' changes nothing on "
                                  f"QEMU {base.version}", patch.info)
            tracker.committed(patch)  # provenance
            applied.append((patch, changed))

        staged = tmp / "out"
        files = gitops.format_patch(repo, base.commit, staged, series.author,
                                    series.date, subject_prefix(series))
        _fill_cover_letter(files[0], series)
        validate(series, files[1:], applied)

        return outdir.replace_series(out, {
            **{f.name: f.read_bytes() for f in files},
            provenance.MAP_NAME: tracker.series_map(files[1:])})  # provenance
