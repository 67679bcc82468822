"""Place rendered text at a resolved anchor: one small handler per action.

The actions and what each needs are the model's (spec/model.py ACTIONS);
HANDLERS holds the code of each anchored one, apply_change() runs it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from generator.errors import AnchorError, GenError
from generator.generate import anchors
from generator.generate.anchors import Region
from generator.source import SourceInfo
from generator.spec.load import decode_text
from generator.spec.model import ACTIONS, Anchor, Change

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


# the anchored actions' handlers (model.ACTIONS says what each needs;
# create-file and copy-file write the whole file)
HANDLERS: dict[str, Handler] = {
    "insert-before": _insert_before,
    "insert-after": _insert_after,
    "replace": _replace,
    "insert-at-start": _insert_at_start,
    "insert-at-end": _insert_at_end,
    "replace-match": _replace_match,
    "make-non-static": _make_non_static,
}
assert set(HANDLERS) == {name for name, needs in ACTIONS.items()
                         if needs.anchor}


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


@dataclass(frozen=True)
class Placed:
    """Where an anchored change went: its file's text before the edit and
    the region its anchor resolved to."""
    original: str
    region: Region


class Unplaced(AnchorError):
    """An anchored change that could not be applied: why (`reason`,
    without the location), its file's text (None: no such file) and the
    region, when the anchor resolved but the action failed."""

    def __init__(self, msg: str, info: SourceInfo, reason: str,
                 original: str | None, region: Region | None = None):
        super().__init__(msg, info)
        self.reason, self.original, self.region = reason, original, region


def apply_change(root: Path, change: Change, rendered: str | bytes | None,
                 release: str) -> Placed | None:
    """Apply one change to the tree at `root`, in place (`rendered` is the
    source's bytes for copy-file); where an anchored one went."""
    where = f"{change.file} (QEMU {release})"
    path = tree_file(root, change.file, change.info, where)
    if change.action == "copy-file":
        path.parent.mkdir(parents=True, exist_ok=True)
        assert isinstance(rendered, bytes)  # the source's bytes
        path.write_bytes(rendered)
        return None
    if change.action == "create-file":
        if path.exists():
            raise AnchorError(f"{where}: cannot create, it already exists",
                              change.info)
        path.parent.mkdir(parents=True, exist_ok=True)
        assert isinstance(rendered, str)    # the rendered template
        path.write_text(rendered, encoding="utf-8")
        return None
    # an anchored action: its template's text, or none (make-non-static)
    assert change.anchor is not None and not isinstance(rendered, bytes)
    if not path.is_file():
        raise Unplaced(f"{where}: no such file", change.info,
                       f"{change.file}: no such file", None)
    text = read_tree_file(root, change.file, change.info, release)
    region = None
    try:
        region = anchors.resolve(
            text, change.file, change.anchor,
            need_node=change.action == "make-non-static")
        lines = HANDLERS[change.action](_lines(text), region,
                                        _lines(rendered or ""), change.anchor)
    except anchors.NotFound as e:
        raise Unplaced(f"{where}: {e}", change.info, str(e), text, region)
    # a new file, not the old one truncated: ext4 writes a file truncated
    # while it has unwritten data out to disk at once (auto_da_alloc),
    # which made rewriting the scratch files a tenth of a warm generate
    path.unlink()
    path.write_text("".join(lines), encoding="utf-8")
    return Placed(text, region)
