"""Versions of a series, as b4 keeps them: a stable change-id, the previous
version kept beside the new one, and "Changes in vN" in the cover letter.

Everything here works on a rendered series, {file name: bytes}, after
`series.generate` made it and before `outdir.replace_series` writes it:

    change-id    `YYYYMMDD-<slug>-<hash>` as `b4 prep` writes it, under
                 `base-commit:` at the end of the cover letter.  The same for
                 every version: taken from the previous version's cover
                 letter when it has one, else made from the spec's series
                 name and date.
    changes      the previous version (a series directory) and the new one
                 paired by `gen-series diff` (rangediff.py); each pair told
                 in words, per patch, after the cover letter's blurb, with
                 range-diff's own text of the changed pairs below.
    keep         `--out DIR` holding an older version K: it is copied to
                 `DIR.vK/` (through outdir's transaction) before DIR is
                 replaced, and that copy is the previous version.
"""

import dataclasses
import difflib
import hashlib
import logging
import re
import tempfile
from pathlib import Path

from generator.errors import ToolError, read_text_input
from generator.output import outdir, rangediff
from generator.output.written import WrittenSeries
from generator.qemutree import BaseTree
from generator.source import read_input
from generator.spec.model import Series

logger = logging.getLogger(__name__)

BASE_COMMIT_RE = re.compile(r"^base-commit: \S+\n", re.M)
SUBJECT_RE = re.compile(r"^Subject: (.*(?:\n .*)*)", re.M)
# format-patch's shortlog: "Author Name (N):", then the subjects indented
SHORTLOG_RE = re.compile(r"^\S.* \(\d+\):\n(?:  .*\n)+", re.M)


# ---- identity of a series across versions -------------------------------

def make_change_id(name: str, date: str) -> str:
    """b4's change-id form, made from the spec alone so that anyone who
    generates the series gets the same one: the day of `date`, a slug of
    the series name, 12 hex digits of the name's hash."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{date[:10].replace('-', '')}-{slug}-{digest}"


def add_change_id(files: dict[str, bytes],
                  change_id: str) -> dict[str, bytes]:
    """The series with `change-id:` under the cover letter's
    `base-commit:`, where b4 writes it."""
    text = files[outdir.COVER_LETTER].decode("utf-8")
    at = BASE_COMMIT_RE.search(text)
    if at is None:
        raise ToolError(f"{outdir.COVER_LETTER}: no base-commit line to put "
                        "the change-id under")
    text = text[:at.end()] + f"change-id: {change_id}\n" + text[at.end():]
    return {**files, outdir.COVER_LETTER: text.encode("utf-8")}


# ---- keeping the previous version -----------------------------------------

def archive_dir(out: Path, version: int) -> Path:
    out = out.resolve()
    return out.with_name(f"{out.name}.v{version}")


def _kept_bytes(path: Path) -> bytes:
    """A file of a series to keep: a regular file (a FIFO never blocks)."""
    try:
        return read_input(path)
    except OSError as e:
        raise ToolError(f"--keep-version: {path}: {e.strerror}")


def keep_previous(out: Path, version: int) -> Path | None:
    """Copy the version K of the series in `out`, older or newer, to
    `out.vK/` (a rerun of the same version replaces it, as generate does);
    return the directory holding version `version - 1`, if there is one.

    The copy goes through outdir's transaction, so it is whole or absent,
    and an `out.vK/` that holds another series is refused, never
    replaced: a kept version is not rewritten."""
    kept = WrittenSeries.at(out, "--keep-version").version
    if kept is not None:
        if kept != version:
            series = {p.name: _kept_bytes(p) for p in sorted(out.iterdir())
                      if outdir.SERIES_FILE.match(p.name)}
            target = archive_dir(out, kept)
            held = {p.name: _kept_bytes(p) for p in target.glob("*")
                    if outdir.SERIES_FILE.match(p.name)} \
                if target.is_dir() else {}
            if held and held != series:
                raise ToolError(f"--keep-version: {target} already holds "
                                f"another v{kept} of the series; move it "
                                "away and run again")
            logger.info(f"keeping v{kept} in {target}")
            outdir.replace_series(target, series)
    if version == 1:
        return None
    previous = archive_dir(out, version - 1)
    if WrittenSeries.at(previous, "--previous").cover is None:
        logger.info(f"no v{version - 1} in {previous}: no 'Changes in "
                    f"v{version}'")
        return None
    return previous


# ---- "Changes in vN" --------------------------------------------------------

def _message(text: str) -> tuple[str, str]:
    """(subject without the [PATCH ...] numbering, body) of a patch mail."""
    head, _, rest = text.partition("\n\n")
    found = SUBJECT_RE.search(head)
    subject = re.sub(r"^\[[^\]]*\] ", "", found.group(1).replace("\n", "")
                     if found else "")
    return subject, rest.split("\n---\n", 1)[0].strip("\n")


def _changed_lines(patch: Path) -> dict[str, list[str]]:
    """path -> the lines a patch removes and adds, in order, '-'/'+'
    prefixed: what a reviewer reads in the patch, without its context."""
    return {path: [f"-{line}" for line in removed] +
            [f"+{line}" for line in added]
            for path, removed, added in rangediff.essence(patch)[1]}


def describe_pair(pair: rangediff.Pair, old_dir: Path,
                  new_dir: Path) -> list[str]:
    """What changed in one `changed` pair, in words."""
    # a changed pair is in both versions
    assert pair.old is not None and pair.new is not None
    old, new = Path(old_dir) / pair.old, Path(new_dir) / pair.new
    words = []
    old_subject, old_body = _message(read_text_input(old, "--previous"))
    new_subject, new_body = _message(new.read_text(encoding="utf-8"))
    if old_subject != new_subject:
        words.append(f'subject changed (was "{old_subject}")')
    if old_body != new_body:
        words.append("commit message changed")
    before, after = _changed_lines(old), _changed_lines(new)
    for path in [*after, *(p for p in before if p not in after)]:
        if path not in before:
            words.append(f"now also changes {path}")
        elif path not in after:
            words.append(f"no longer changes {path}")
        elif before[path] != after[path]:
            plus = minus = 0
            matcher = difflib.SequenceMatcher(None, before[path], after[path],
                                              autojunk=False)
            for tag, i1, i2, j1, j2 in matcher.get_opcodes():
                if tag != "equal":
                    minus += i2 - i1
                    plus += j2 - j1
            words.append(f"code changed in {path} (+{plus} -{minus})")
    return words


def _number(name: str | None) -> str:
    return name[:4] if name else "-"


def _match_by_subject(pairs: list[rangediff.Pair]) -> list[rangediff.Pair]:
    """A patch range-diff found too different to pair shows up dropped and
    added: with the same subject on both sides it is the same patch, changed."""
    dropped = {p.subject: p for p in pairs if p.verdict == "dropped"}
    added = {p.subject: p for p in pairs if p.verdict == "added"}
    twins = dropped.keys() & added.keys()
    out = [p for p in pairs
           if p.verdict not in ("added", "dropped") or p.subject not in twins]
    return out + [rangediff.Pair(dropped[s].old, added[s].new, s, "changed")
                  for s in sorted(twins)]


def format_changes(pairs: list[rangediff.Pair], old_dir: Path, new_dir: Path,
                   version: int) -> str:
    """The "Changes in vN:" section: one line per patch that is new,
    changed or dropped, in the new series' order; the unchanged grouped."""
    lines = [f"Changes in v{version}:"]
    unchanged: list[str] = []
    changed: list[rangediff.Pair] = []
    for p in sorted(_match_by_subject(pairs),
                    key=lambda p: (p.new or "9999", p.old or "")):
        if p.new:       # range-diff names a pair by its old subject
            p = dataclasses.replace(p, subject=_message(
                (Path(new_dir) / p.new).read_text(encoding="utf-8"))[0])
        moved = f" (v{version - 1} {_number(p.old)})" \
            if p.old and p.new and p.old[:4] != p.new[:4] else ""
        if p.verdict in ("same", "context"):
            unchanged.append(_number(p.new) + moved)
        elif p.verdict == "added":
            lines.append(f"- {_number(p.new)} {p.subject}: new in "
                         f"v{version}")
        elif p.verdict == "dropped":
            lines.append(f"- dropped: v{version - 1} {_number(p.old)} "
                         f"{p.subject}")
        elif words := describe_pair(p, old_dir, new_dir):
            lines.append(f"- {_number(p.new)}{moved} {p.subject}: "
                         + "; ".join(words))
            changed.append(p)
        else:   # only headers (To:, Cc:) or the context differ
            unchanged.append(_number(p.new) + moved)
    if len(lines) == 1:
        lines.append("- no patch changed")
    if unchanged:
        lines.append("- unchanged: " + ", ".join(unchanged))
    if changed:
        lines += ["", f"Range-diff of the changed patches against "
                  f"v{version - 1}:"]
        for p in changed:
            lines += ["", f"  {_number(p.new)} (v{version - 1} "
                      f"{_number(p.old)}): {p.subject}",
                      p.range_diff.rstrip("\n")]
    return "\n".join(lines) + "\n"


def insert_into_cover(files: dict[str, bytes],
                      section: str) -> dict[str, bytes]:
    """`section` after the cover letter's blurb, before the shortlog."""
    text = files[outdir.COVER_LETTER].decode("utf-8")
    shortlogs = list(SHORTLOG_RE.finditer(text))
    if not shortlogs:
        raise ToolError(f"{outdir.COVER_LETTER}: no shortlog to put the changes before")
    at = shortlogs[-1].start()
    text = text[:at] + section + "\n" + text[at:]
    return {**files, outdir.COVER_LETTER: text.encode("utf-8")}


def changes_section(files: dict[str, bytes], previous_dir: Path,
                    old_base: BaseTree, new_base: BaseTree, version: int
                    ) -> str:
    """"Changes in vN" of the series `files` against the series in
    `previous_dir` (made on `old_base`)."""
    with tempfile.TemporaryDirectory(prefix="gen-series-v") as tmp:
        new_dir = Path(tmp)
        for name, data in files.items():
            (new_dir / name).write_bytes(data)
        try:
            pairs = rangediff.compare(old_base, Path(previous_dir),
                                      new_base, new_dir)
        except ToolError as e:
            raise ToolError(f"--previous: {e}")
        return format_changes(pairs, Path(previous_dir), new_dir, version)


def add_changes_section(files: dict[str, bytes], previous_dir: Path,
                        old_base: BaseTree, new_base: BaseTree, version: int
                        ) -> dict[str, bytes]:
    return insert_into_cover(files, changes_section(
        files, previous_dir, old_base, new_base, version))


def check_options(previous: Path | None, previous_qemu: str | None) -> None:
    """--previous-qemu is the base of --previous, nothing without it."""
    if previous_qemu is not None and previous is None:
        raise ToolError(f"--previous-qemu {previous_qemu}: it is the base of "
                        "--previous DIR, which is not given")


def check_previous(previous: Path, version: int) -> None:
    """--previous names an older version of the series."""
    found = WrittenSeries.at(previous, "--previous").version
    if found is None:
        raise ToolError(f"--previous {previous}: no {outdir.COVER_LETTER} there")
    if found >= version:
        raise ToolError(f"--previous {previous}: it is v{found} "
                        f"and the new series v{version}: give the new "
                        "version with -v")


def series_change_id(series: Series, previous: Path | None) -> str:
    """The previous version's change-id, so that it stays what was sent;
    else the one the spec makes."""
    return (previous and WrittenSeries.at(previous, "--previous").change_id) or \
        make_change_id(series.name, series.date)
