"""`gen-series diff`: two generated series compared patch by patch.

Each series is committed onto its own base (two versions of the series on
one release, or the same version on two releases), then `git range-diff`
pairs the patches.  A pair range-diff calls different is then told apart:

    same     nothing differs but line numbers
    context  the same lines added and removed, the same message: only the
             upstream context around them moved or changed (release drift)
    changed  lines added or removed, or the message, differ: a change to
             the series itself (e.g. a `when:` alternative)
    added    only in the new series
    dropped  only in the old series
"""

import logging
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from generator import gitops
from generator.errors import CheckFailed, ToolError, read_text_input
from generator.output import written
from generator.output.written import WrittenSeries
from generator.qemutree import BaseTree

logger = logging.getLogger(__name__)

SUMMARY_RE = re.compile(r"^\s*(\d+|-):\s+(\S+) ([=!<>]) +(\d+|-):\s+(\S+) (.*)$")
VERDICTS = {"=": "same", "<": "dropped", ">": "added"}
NUMBERING_RE = re.compile(r"^Subject: \[[^\]]*\] ", re.MULTILINE)

# a patch's message, and per file: (path, lines removed, lines added)
Essence = tuple[str, tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]]


@dataclass
class Pair:
    old: str | None             # patch file names
    new: str | None
    subject: str
    verdict: str                # same, context, changed, added, dropped
    range_diff: str = ""        # range-diff's own text for the pair


def _check_base(series_dir: Path, base: BaseTree) -> None:
    """The series was made on `base` (the cover letter says on which)."""
    made_on = WrittenSeries.at(series_dir, str(series_dir)).base_commit
    if made_on and made_on != base.commit:
        raise ToolError(f"{series_dir}: made on base-commit "
                        f"{made_on[:12]}, but {base.origin} is "
                        f"{base.commit[:12]} (QEMU {base.version})")


def essence(patch: Path) -> Essence:
    """What a patch says and does, without where: its message (numbering
    dropped) and, per file, the lines it removes and adds."""
    text = read_text_input(patch, str(patch.parent))
    head = NUMBERING_RE.sub("Subject: ", text.split("\n---\n", 1)[0])
    message = head[head.find("Subject: "):]
    return message, written.parse(patch).lines


def _commit_series(commit: Callable[[], str], base: BaseTree,
                   series_dir: Path, files: list[Path]) -> str:
    """The series committed onto its base; one that does not apply there
    is bad input (exit 2), named with git's first words."""
    for path in files:
        read_text_input(path, str(series_dir))     # UTF-8, a regular file
    try:
        return commit()
    except CheckFailed as e:
        said = "; ".join(ln for ln in e.msg.splitlines()[1:] if ln.strip())
        raise ToolError(f"{series_dir}: {e.msg.splitlines()[0]} on QEMU "
                        f"{base.version} ({base.origin}): {said}")


def compare(old: BaseTree, old_dir: Path, new: BaseTree,
            new_dir: Path) -> list[Pair]:
    """The pairs of patches of two series, in range-diff's order."""
    for series_dir, base in ((old_dir, old), (new_dir, new)):
        _check_base(series_dir, base)
    old_files = list(WrittenSeries.read(old_dir).patches)
    new_files = list(WrittenSeries.read(new_dir).patches)
    with tempfile.TemporaryDirectory(prefix="gen-series-diff-") as tmp:
        repo = gitops.union_repo(Path(tmp), [old.repo, new.repo])
        logger.info(f"committing {len(old_files)} patches onto QEMU "
                    f"{old.version}")
        old_tip = _commit_series(
            lambda: gitops.commit_patches(repo, old.commit, old_files), old,
            Path(old_dir), old_files)
        logger.info(f"committing {len(new_files)} patches onto QEMU "
                    f"{new.version}")
        new_tip = _commit_series(
            lambda: gitops.commit_patches(repo, new.commit, new_files), new,
            Path(new_dir), new_files)
        text = gitops.range_diff(repo, f"{old.commit}..{old_tip}",
                                 f"{new.commit}..{new_tip}")
    pairs: list[Pair] = []
    for line in text.splitlines():
        m = SUMMARY_RE.match(line)
        if m is None:
            if pairs:
                pairs[-1].range_diff += line + "\n"
            continue
        a, _, mark, b, _, subject = m.groups()
        before = old_files[int(a) - 1] if a != "-" else None
        after = new_files[int(b) - 1] if b != "-" else None
        verdict = VERDICTS.get(mark)
        if verdict is None:
            if before is None or after is None:     # "!" pairs two patches
                raise ToolError(f"git range-diff: cannot read {line!r}")
            verdict = ("context" if essence(before) == essence(after)
                       else "changed")
        pairs.append(Pair(before.name if before else None,
                          after.name if after else None, subject, verdict))
    return pairs


def format_pairs(pairs: list[Pair], old: str, new: str) -> str:
    counts = {v: sum(p.verdict == v for p in pairs)
              for v in ("same", "context", "changed", "added", "dropped")}
    out = [f"{old} -> {new}: " + ", ".join(f"{n} {v}" for v, n in
                                           counts.items()), ""]
    for p in pairs:
        out.append(f"  {p.verdict:8} {(p.old or '-')[:4]:>4} -> "
                   f"{(p.new or '-')[:4]:>4}  {p.subject}")
    series_changes = [p for p in pairs if p.verdict != "same"
                      and p.verdict != "context"]
    if series_changes:
        out += ["", "changes to the series (git range-diff):"]
        for p in series_changes:
            out.append(f"  {p.verdict} {p.old or '-'} -> {p.new or '-'}")
            out.append(p.range_diff.rstrip("\n"))
    return "\n".join(out) + "\n"


def to_json(pairs: list[Pair]) -> str:
    import dataclasses
    import json
    return json.dumps([dataclasses.asdict(p) for p in pairs], indent=2) + "\n"
