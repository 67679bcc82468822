"""Place rendered text at a resolved anchor: one small handler per action."""

from pathlib import Path

from generator import anchors, gitops
from generator.errors import AnchorError, GenError
from generator.model import Change
from generator.source import SourceInfo
from generator.specload import decode_text


def _lines(text: str) -> list:
    return text.splitlines(keepends=True)


def _insert_before(lines, region, new, anchor):
    return lines[:region.start] + new + lines[region.start:]


def _insert_after(lines, region, new, anchor):
    return lines[:region.end] + new + lines[region.end:]


def _replace(lines, region, new, anchor):
    return lines[:region.start] + new + lines[region.end:]


def _insert_at_start(lines, region, new, anchor):
    first, _ = _body(region)
    return lines[:first] + new + lines[first:]


def _insert_at_end(lines, region, new, anchor):
    _, closing = _body(region)
    return lines[:closing] + new + lines[closing:]


def _body(region):
    if region.body is None:
        raise anchors.NotFound("the anchor has no { body } to insert into")
    return region.body


def _make_non_static(lines, region, new, anchor):
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


def _replace_match(lines, region, new, anchor):
    """Replace only the matched text, e.g. one call inside a statement."""
    text = "".join(lines)
    start, end = region.span
    return _lines(text[:start] + "".join(new).rstrip("\n") + text[end:])


HANDLERS = {
    "insert-before": _insert_before,
    "insert-after": _insert_after,
    "replace": _replace,
    "insert-at-start": _insert_at_start,
    "insert-at-end": _insert_at_end,
    "replace-match": _replace_match,
    "make-non-static": _make_non_static,
}


def tree_file(root: Path, file: str, info: SourceInfo, where: str) -> Path:
    """`root / file`, refused when a symbolic link in the tree leads
    elsewhere (even inside the tree: git would commit the link, not the
    edit)."""
    path = Path(root).resolve() / file
    if path.resolve() != path or gitops.symlink_on_path(root, file):
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


def apply_change(root: Path, change: Change, rendered: str | bytes | None,
                 release: str) -> None:
    """Apply one change to the tree at `root`, in place (`rendered` is the
    source's bytes for copy-file)."""
    where = f"{change.file} (QEMU {release})"
    path = tree_file(root, change.file, change.info, where)
    if change.action == "copy-file":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rendered)
        return
    if change.action == "create-file":
        if path.exists():
            raise AnchorError(f"{where}: cannot create, it already exists",
                              change.info)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered, encoding="utf-8")
        return
    text = read_tree_file(root, change.file, change.info, release)
    try:
        region = anchors.resolve(text, change.file, change.anchor)
        lines = HANDLERS[change.action](_lines(text), region,
                                        _lines(rendered or ""), change.anchor)
    except anchors.NotFound as e:
        raise AnchorError(f"{where}: {e}", change.info)
    path.write_text("".join(lines), encoding="utf-8")
