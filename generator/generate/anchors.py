"""Find a spec anchor in a file's text, by code structure, never by line number.

A scope (function, struct, enum, declaration) is found with tree-sitter-c;
a QAPI definition by its doc comment and expression.  An optional `match`
regex must then occur exactly once inside the scope.  Inside a function, a
match that starts on the first line of a statement selects that whole
statement (an `if` with its body, a call spanning lines); anywhere else it
selects the matched lines.

The result is a `Region` of whole lines (0-based, end exclusive), which the
edit actions use.
"""

import re
import signal
import threading
from dataclasses import dataclass
from itertools import accumulate
from types import FrameType
from typing import NoReturn

import tree_sitter

from generator.csyntax import is_c, parse, scope_nodes, walk
from generator.errors import AnchorError
from generator.generate import regioncache
from generator.spec.model import Anchor

# A `match` regex gets this long on one file: a catastrophic pattern such
# as (a+)+$ would otherwise run for ever.  Python's re checks for signals
# while it matches, so an alarm stops it.
MATCH_SECONDS = 5.0

BODY_TYPES = ("compound_statement", "field_declaration_list",
              "enumerator_list", "initializer_list")


class _MatchTimeout(Exception):
    pass


def _raise_timeout(signum: int, frame: FrameType | None) -> NoReturn:
    raise _MatchTimeout()


def _find_all(anchor: Anchor, text: str,
              path: str) -> list[re.Match[str]]:
    """Every match of the anchor's regex in `text`, within MATCH_SECONDS
    (bounded in the main thread, where signals are delivered)."""
    assert anchor.match is not None     # resolve() calls it with one
    if threading.current_thread() is not threading.main_thread() or \
            signal.getitimer(signal.ITIMER_REAL)[0]:
        return list(anchor.match.finditer(text))
    previous = signal.signal(signal.SIGALRM, _raise_timeout)
    try:
        signal.setitimer(signal.ITIMER_REAL, MATCH_SECONDS)
        try:
            return list(anchor.match.finditer(text))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _MatchTimeout:
        raise AnchorError(f"{path}: /{anchor.match.pattern}/ ran for more "
                          f"than {MATCH_SECONDS:g} s; simplify the regular "
                          "expression (nested repetition?)", anchor.info)
    finally:
        signal.signal(signal.SIGALRM, previous)


class NotFound(Exception):
    """Why an anchor did not resolve (the caller adds item, file, release)."""


@dataclass(frozen=True)
class Region:
    start: int                  # first line, including a leading comment
    end: int                    # one past the last line
    # (first line inside braces, line of '}')
    body: tuple[int, int] | None = None
    node: tree_sitter.Node | None = None    # for C scopes
    # (start, end) offsets of the text matched
    span: tuple[int, int] | None = None


def _leading_comment_start(lines: list[str], first: int) -> int:
    """Extend `first` upwards over a comment block directly above it."""
    i = first
    if i > 0 and lines[i - 1].rstrip().endswith("*/"):
        while i > 0:
            i -= 1
            if lines[i].lstrip().startswith("/*"):
                return i
        return first
    while i > 0 and lines[i - 1].lstrip().startswith("//"):
        i -= 1
    return i


def _body_of(node: tree_sitter.Node | None) -> tree_sitter.Node | None:
    if node is None:
        return None
    body = node.child_by_field_name("body")
    if body is not None and body.type in BODY_TYPES:
        return body
    for n in walk(node):
        if n is not node and n.type in BODY_TYPES:
            return n
    return None


def _region_of_node(lines: list[str], node: tree_sitter.Node,
                    with_comment: bool = True) -> Region:
    start = node.start_point[0]
    end = node.end_point[0] + 1
    # a declaration's ';' may follow on the next line of a struct body
    if end < len(lines) and lines[end].strip() == ";":
        end += 1
    body = _body_of(node)
    inner = (body.start_point[0] + 1, body.end_point[0]) if body else None
    return Region(_leading_comment_start(lines, start) if with_comment
                  else start, end, inner, node)


def _qapi_region(lines: list[str], name: str) -> Region:
    """A QAPI definition: its '##' doc block and the expression after it."""
    doc_re = re.compile(rf"^# @{re.escape(name)}:\s*$")
    hits = [i for i, line in enumerate(lines) if doc_re.match(line)]
    if len(hits) != 1:
        raise NotFound(f"QAPI definition '{name}' "
                       + ("not found" if not hits else "documented twice"))
    start = hits[0]
    while start > 0 and lines[start].rstrip() != "##":
        start -= 1
    end = hits[0] + 1
    while end < len(lines) and lines[end].rstrip() != "##":
        end += 1
    depth, i = 0, end + 1
    while i < len(lines):
        depth += lines[i].count("{") - lines[i].count("}")
        i += 1
        if depth == 0 and lines[i - 1].strip():
            break
    return Region(start, i)


def _statement_around(node: tree_sitter.Node | None,
                      scope: tree_sitter.Node) -> tree_sitter.Node | None:
    while node is not None and node != scope:
        if node.type.endswith("_statement") and node.type != \
                "compound_statement" or node.type == "declaration":
            return node
        node = node.parent
    return None


def resolve(text: str, path: str, anchor: Anchor,
            need_node: bool = False) -> Region:
    """The lines `anchor` designates in `text` (the contents of `path`).
    Inside a regioncache session the answer may come from an earlier run,
    without the syntax node (`need_node` asks for it: no cache)."""
    key = None if need_node else regioncache.key(
        text, path, anchor.scope_kind, anchor.scope_name, anchor.match)
    cached = regioncache.get(key)
    if cached is not None:
        region = _from_cache(cached, text)
        if region is not None:
            return region
        regioncache.forget(key)
    try:
        region = _resolve(text, path, anchor)
    except NotFound as e:
        regioncache.put(key, ("missing", str(e)))
        raise
    regioncache.put(key, ("region", region.start, region.end,
                          None if region.body is None else list(region.body),
                          None if region.span is None else list(region.span)))
    return region


def _from_cache(value: regioncache.Value, text: str) -> Region | None:
    """The cached answer (a Region, or NotFound raised), None when it
    cannot be one of `text`."""
    if value[0] == "missing":
        raise NotFound(str(value[1]))
    _, start, end, body, span = value
    # at most this many lines (splitlines() also splits at \r, \f...: an
    # entry of such a text may be resolved again, never trusted too far)
    lines = text.count("\n") + 1
    assert isinstance(start, int) and isinstance(end, int)
    if not 0 <= start <= end <= lines:
        return None
    pair: list[tuple[int, int] | None] = []
    for got, limit in ((body, lines), (span, len(text))):
        if got is None:
            pair.append(None)
            continue
        assert isinstance(got, list)
        if not 0 <= got[0] <= got[1] <= limit:
            return None
        pair.append((got[0], got[1]))
    return Region(start, end, pair[0], None, pair[1])


def _resolve(text: str, path: str, anchor: Anchor) -> Region:
    lines = text.splitlines(keepends=True)
    if anchor.scope_kind == "qapi":
        assert anchor.scope_name is not None    # a scope has a name
        scope = _qapi_region(lines, anchor.scope_name)
    elif anchor.scope_kind:
        assert anchor.scope_name is not None
        if not is_c(path):
            raise NotFound(f"a {anchor.scope_kind} scope needs a C file")
        root = parse(text, path).root_node
        nodes = list(scope_nodes(root, anchor.scope_kind, anchor.scope_name))
        if not nodes:
            raise NotFound(f"{anchor.scope_kind} '{anchor.scope_name}' "
                           "not found")
        if len(nodes) > 1:
            at = ", ".join(str(n.start_point[0] + 1) for n in nodes)
            raise NotFound(f"{anchor.scope_kind} '{anchor.scope_name}' is "
                           f"defined {len(nodes)} times (lines {at})")
        scope = _region_of_node(lines, nodes[0])
    else:
        scope = Region(0, len(lines))
    if anchor.match is None:
        return scope

    offsets = [0, *accumulate(map(len, lines))]
    window = text[offsets[scope.start]:offsets[scope.end]]
    hits = _find_all(anchor, window, path)
    where = f" in {anchor.scope_kind} '{anchor.scope_name}'" \
        if anchor.scope_kind else ""
    if not hits:
        raise NotFound(f"/{anchor.match.pattern}/ does not match{where}")
    if len(hits) > 1:
        raise NotFound(f"/{anchor.match.pattern}/ matches {len(hits)} "
                       f"times{where}; it must match once")
    begin = offsets[scope.start] + hits[0].start()
    span = (begin, offsets[scope.start] + hits[0].end())
    finish = offsets[scope.start] + max(hits[0].end() - 1, hits[0].start())
    first = text.count("\n", 0, begin)
    last = text.count("\n", 0, finish)
    if anchor.scope_kind == "function":
        # a match may start with indentation: look at its first token
        matched = hits[0].group(0)
        token = begin + len(matched) - len(matched.lstrip())
        byte = len(text[:token].encode())
        assert scope.node is not None   # a function's region has its node
        leaf = scope.node.descendant_for_byte_range(byte, byte)
        stmt = _statement_around(leaf, scope.node)
        if stmt is not None and stmt.start_point[0] == first:
            region = _region_of_node(lines, stmt, with_comment=False)
            return Region(min(first, region.start), max(last + 1, region.end),
                          region.body, stmt, span)
    return Region(first, last + 1, span=span)


def exists(text: str, path: str, anchor: Anchor) -> bool:
    try:
        resolve(text, path, anchor)
        return True
    except NotFound:
        return False
