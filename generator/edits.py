"""Place rendered text at a resolved anchor: one small handler per action.

ACTIONS is the one table of actions: model.py checks a change against it
(which keys the action needs), apply_change() runs its handler.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from generator import anchors
from generator.anchors import Anchor, Region
from generator.errors import AnchorError, GenError
from generator.source import SourceInfo
from generator.specload import decode_text

# (lines, region, new lines, anchor) -> lines
Handler = Callable[[list[str], Region, list[str], Anchor], list[str]]


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _insert_before(lines: list[str], region: Region, new: list[str],
                   anchor: Anchor) -> list[str]:
    return lines[:region.start] + new + lines[region.start:]


def _insert_after(lines: list[str], region: Region, new: list[str],
                  anchor: Anchor) -> list[str]:
    return lines[:region.end] + new + lines[region.end:]


def _replace(lines: list[str], region: Region, new: list[str],
             anchor: Anchor) -> list[str]:
    return lines[:region.start] + new + lines[region.end:]


def _insert_at_start(lines: list[str], region: Region, new: list[str],
                     anchor: Anchor) -> list[str]:
    first, _ = _body(region)
    return lines[:first] + new + lines[first:]


def _insert_at_end(lines: list[str], region: Region, new: list[str],
                   anchor: Anchor) -> list[str]:
    _, closing = _body(region)
    return lines[:closing] + new + lines[closing:]


def _body(region: Region) -> tuple[int, int]:
    if region.body is None:
        raise anchors.NotFound("the anchor has no { body } to insert into")
    return region.body


def _make_non_static(lines: list[str], region: Region, new: list[str],
                     anchor: Anchor) -> list[str]:
    node = region.node
    spec = next((c for c in (node.children if node else [])
                 if c.type == "storage_class_specifier"
                 and c.text == b"static"), None)
    if spec is None:
        raise anchors.NotFound(f"{anchor.describe()} is not static")
    row, col = spec.start_point
    raw = lines[row].encode()
    rest = raw[col + len(b"static"):].lstrip(b" \t")
    lines = list(lines)
    lines[row] = (raw[:col] + rest).decode()
    return lines


def _replace_match(lines: list[str], region: Region, new: list[str],
                   anchor: Anchor) -> list[str]:
    """Replace only the matched text, e.g. one call inside a statement."""
    text = "".join(lines)
    assert region.span is not None      # the action's anchor has a match
    start, end = region.span
    return _lines(text[:start] + "".join(new).rstrip("\n") + text[end:])


@dataclass(frozen=True)
class Action:
    handler: Handler | None     # None: the action writes the whole file
    anchor: bool                # needs 'anchor'
    template: bool              # needs 'template'
    source: bool = False        # needs 'source' (copy-file's bytes)
    match: bool = False         # its anchor needs a 'match'


ACTIONS = {
    "insert-before": Action(_insert_before, anchor=True, template=True),
    "insert-after": Action(_insert_after, anchor=True, template=True),
    "replace": Action(_replace, anchor=True, template=True),
    "insert-at-start": Action(_insert_at_start, anchor=True, template=True),
    "insert-at-end": Action(_insert_at_end, anchor=True, template=True),
    "replace-match": Action(_replace_match, anchor=True, template=True,
                            match=True),
    "make-non-static": Action(_make_non_static, anchor=True, template=False),
    "create-file": Action(None, anchor=False, template=True),
    "copy-file": Action(None, anchor=False, template=False, source=True),
}


def tree_file(root: Path, file: str, info: SourceInfo, where: str) -> Path:
    """`root / file`, refused when a symbolic link in the tree leads
    elsewhere (even inside the tree: git would commit the link, not the
    edit).  The scratch tree holds the links HEAD holds, as links."""
    path = Path(root).resolve() / file
    if path.resolve() != path:
        raise AnchorError(f"{where}: reached through a symbolic link; "
                          "gen-series edits only regular files", info)
    return path


def read_tree_file(root: Path, file: str, info: SourceInfo,
                   release: str) -> str:
    """The text of an existing file of the tree, for an anchor or probe."""
    where = f"{file} (QEMU {release})"
    path = tree_file(root, file, info, where)
    if not path.is_file():
        raise AnchorError(f"{where}: no such file", info)
    try:
        return decode_text(path.read_bytes(), where)
    except GenError as e:
        raise AnchorError(str(e), info)


class Change(Protocol):
    """What apply_change() reads of a model.Change (model imports this
    module: it cannot import model)."""

    @property
    def file(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def anchor(self) -> Anchor | None: ...
    @property
    def info(self) -> SourceInfo: ...


def apply_change(root: Path, change: Change, rendered: str | bytes | None,
                 release: str) -> None:
    """Apply one change (a model.Change) to the tree at `root`, in place
    (`rendered` is the source's bytes for copy-file)."""
    where = f"{change.file} (QEMU {release})"
    path = tree_file(root, change.file, change.info, where)
    if change.action == "copy-file":
        path.parent.mkdir(parents=True, exist_ok=True)
        assert isinstance(rendered, bytes)  # the source's bytes
        path.write_bytes(rendered)
        return
    if change.action == "create-file":
        if path.exists():
            raise AnchorError(f"{where}: cannot create, it already exists",
                              change.info)
        path.parent.mkdir(parents=True, exist_ok=True)
        assert isinstance(rendered, str)    # the rendered template
        path.write_text(rendered, encoding="utf-8")
        return
    # an anchored action: its template's text, or none (make-non-static)
    assert change.anchor is not None and not isinstance(rendered, bytes)
    text = read_tree_file(root, change.file, change.info, release)
    try:
        region = anchors.resolve(text, change.file, change.anchor)
        handler = ACTIONS[change.action].handler
        assert handler is not None      # an anchored action has one
        lines = handler(_lines(text), region, _lines(rendered or ""),
                        change.anchor)
    except anchors.NotFound as e:
        raise AnchorError(f"{where}: {e}", change.info)
    path.write_text("".join(lines), encoding="utf-8")
