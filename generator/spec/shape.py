"""Shape checks without context (QAPI's expr.py): a key the item does not
take, a missing one, a name not in its set, a string that is not one; each
error located at the key or item it is about."""

import re
import unicodedata
from pathlib import Path

from generator.errors import SpecError
from generator.source import SourceInfo
from generator.spec.load import Data, Node

ID_RE = re.compile(r"^[a-z][a-z0-9-]*$")


# what a mail header's display name or address may not hold: control
# characters (CR, NEL, ESC, ...), line and paragraph separators, text
# direction overrides (they make the name read otherwise), and the
# surrogates Python makes of bytes that are not UTF-8
BIDI_CONTROLS = set("\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                    "\u2066\u2067\u2068\u2069")


def header_unsafe(text: str) -> str | None:
    """The first character of `text` that must not go into a mail header
    (From:, To:, Cc:, a trailer), or None."""
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Cs") or \
                ch in BIDI_CONTROLS:
            return ch
    return None


def check_keys(node: Data, what: str, required: tuple[str, ...],
                optional: tuple[str, ...] = (),
                at: SourceInfo | None = None) -> None:
    """`at` locates `node` when it is not a mapping (a scalar keeps no line:
    its parent's key does)."""
    if not isinstance(node, Node):
        raise SpecError(f"{what} must be a mapping", info_of(node) or at)
    allowed = required + optional
    for key in node:
        check_name(key, allowed, "key", node.key_info[key].at(
            item=node.info.item))
    missing = [k for k in required if k not in node]
    if missing:
        raise SpecError(f"missing key '{missing[0]}'", node.info)


def check_name(name: Data, valid: tuple[str, ...], what: str,
                info: SourceInfo,
                plural: str | None = None) -> None:
    """QAPI's "unknown X; valid Xs are ..." for every name a spec picks
    from a fixed set (keys, actions, invariant kinds, model fields)."""
    if name not in valid:
        raise SpecError(f"unknown {what} '{name}'; valid "
                        f"{plural or what + 's'} are "
                        + ", ".join(f"'{v}'" for v in valid), info)


def info_of(node: Data) -> SourceInfo | None:
    info: SourceInfo | None = getattr(node, "info", None)
    return info


def key_at(node: Node, key: str) -> SourceInfo:
    """Where `key` of `node` is, in the item `node` describes."""
    return node.key_info.get(key, node.info).at(item=node.info.item)


def string(node: Node, key: str, default: str | None = None) -> str:
    value = node.get(key, default)
    if not isinstance(value, str) or (not value and default is None):
        raise SpecError(f"'{key}' must be a non-empty string", key_at(node, key))
    return value


def one_line(node: Node, key: str) -> str:
    """A one-line text that git keeps as written: a subject (git would
    take a blank subject's next paragraph instead, and a newline would
    split the subject)."""
    text = string(node, key)
    if not text.strip():
        raise SpecError(f"'{key}' must not be blank", key_at(node, key))
    if len(text.splitlines()) > 1 or text.endswith(("\n", "\r")):
        raise SpecError(f"'{key}' must be one line", key_at(node, key))
    if (bad := header_unsafe(text)) is not None:
        raise SpecError(f"'{key}' holds {bad!r}, which a mail header may "
                        "not hold", key_at(node, key))
    if text != text.strip():
        raise SpecError(f"'{key}' must not start or end with blanks "
                        "(git strips them)", key_at(node, key))
    return text


def items(node: Node, key: str) -> list[Data]:
    value = node.get(key, [])
    if not isinstance(value, list):
        raise SpecError(f"'{key}' must be a list", key_at(node, key))
    return value


def tree_path(node: Node, key: str) -> str:
    """A path in the QEMU tree: relative, without '..', so that no spec
    reads or writes outside the tree (symbolic links are refused when
    the tree is read, edits.tree_file())."""
    text = string(node, key)
    parts = Path(text).parts
    if Path(text).is_absolute() or ".." in parts or "\0" in text or \
            not parts or text.endswith("/"):
        raise SpecError(f"'{key}' must be a file's path relative to the "
                        f"QEMU tree, without '..', not '{text}'",
                        key_at(node, key))
    return text


def located(node: Node, info: SourceInfo) -> Node:
    """A copy of the mapping `node` located at `info` (the loaded one
    keeps its own: source info is never changed)."""
    copy = Node(node)
    copy.info, copy.key_info = info, node.key_info
    return copy


def in_item(node: Data, item: str | None,
            at: SourceInfo | None = None) -> Node:
    """The mapping `node`, its messages naming the spec item it describes
    (a copy: use the result); `at` locates a value that is not a
    mapping."""
    if not isinstance(node, Node):
        raise SpecError(f"{item} must be a mapping",
                        SourceInfo(at.file, at.line) if at else None)
    return located(node, node.info.at(item=item))


def check_id(node: Node, key: str, seen: dict[str, SourceInfo],
              kind: str) -> str:
    ident = string(node, key)
    if not ID_RE.match(ident):
        raise SpecError(f"{kind} id '{ident}' must be lower-case letters, "
                        "digits and '-'", node.key_info[key])
    if ident in seen:
        raise SpecError(f"duplicate {kind} id '{ident}' (first defined at "
                        f"{seen[ident]})", node.key_info[key])
    seen[ident] = node.key_info[key]
    return ident


def mapping(node: Node, key: str) -> Node:
    """`node[key]`, a mapping in `node`'s item; an empty one if absent."""
    if key not in node:
        return located(Node(), node.info)
    value = node[key]
    if not isinstance(value, Node):
        raise SpecError(f"'{key}' must be a mapping", key_at(node, key))
    return located(value, value.info.at(item=node.info.item))


def expression(node: Node, key: str) -> None:
    """A model expression's text (compiled by refmodel.py, which names
    its syntax errors with this line)."""
    value = node[key]
    if not isinstance(value, (str, bool, int)) or value == "":
        raise SpecError(f"'{key}' must be an expression (a string)",
                        key_at(node, key))
