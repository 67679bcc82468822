"""C syntax trees (tree-sitter-c): the one parser every module shares.

`parse()` keeps the trees of the texts seen last, so that the probes, the
edits and the checks of one run parse each file's text once; given the
file's path, it re-parses an edited text incrementally from the tree of
the file's previous text (a series edits the same big files many times).
"""

from collections import OrderedDict
from collections.abc import Iterator
from functools import lru_cache

import tree_sitter
import tree_sitter_c

C_SUFFIXES = (".c", ".h", ".inc", ".c.inc", ".h.inc")

_TREES: "OrderedDict[str, tree_sitter.Tree]" = OrderedDict()
_TREES_KEPT = 16
_LAST: dict[str, tuple[bytes, tree_sitter.Tree]] = {}   # path -> text, tree


@lru_cache(maxsize=1)
def _parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_c.language()))


def is_c(path: str) -> bool:
    return path.endswith(C_SUFFIXES)


def parse(text: str, path: str | None = None) -> tree_sitter.Tree:
    """The syntax tree of `text`, the contents of `path` if given (shared:
    do not edit it)."""
    tree = _TREES.get(text)
    data = text.encode()
    if tree is not None:
        _TREES.move_to_end(text)
        if path:
            # the next edit of `path` re-parses from this tree
            _LAST[path] = (data, tree)
        return tree
    last = _LAST.get(path) if path else None
    if last is not None:
        old = last[1].copy()
        _describe_edit(old, last[0], data)
        tree = _parser().parse(data, old)
    else:
        tree = _parser().parse(data)
    if path:
        _LAST[path] = (data, tree)
    _TREES[text] = tree
    if len(_TREES) > _TREES_KEPT:
        _TREES.popitem(last=False)
    return tree


def _common_prefix(a: bytes, b: bytes) -> int:
    n, step = 0, 4096
    limit = min(len(a), len(b))
    while n < limit:
        if a[n:n + step] == b[n:n + step]:
            n += step
        elif step > 1:
            step = max(1, step // 16)
        else:
            break
    return min(n, limit)


def _point(data: bytes, offset: int) -> tuple[int, int]:
    row = data.count(b"\n", 0, offset)
    return row, offset - (data.rfind(b"\n", 0, offset) + 1)


def _describe_edit(tree: tree_sitter.Tree, old: bytes, new: bytes) -> None:
    """Tell `tree` (of `old`) which bytes became `new`'s."""
    start = _common_prefix(old, new)
    tail = _common_prefix(old[start:][::-1], new[start:][::-1])
    old_end, new_end = len(old) - tail, len(new) - tail
    tree.edit(start_byte=start, old_end_byte=old_end, new_end_byte=new_end,
              start_point=_point(old, start),
              old_end_point=_point(old, old_end),
              new_end_point=_point(new, new_end))


def walk(node: tree_sitter.Node,
         skip: tuple[str, ...] = ()) -> Iterator[tree_sitter.Node]:
    """`node` and every node below it, in source order; nodes of a type in
    `skip` are yielded but not entered."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if n.type not in skip:
            stack.extend(reversed(n.children))


# What a definition cannot be inside of: a function's body holds no
# function definition (and no file-scope declaration); skipping bodies
# makes a lookup visit a few thousand nodes of a big file, not a million.
NOT_FILE_SCOPE = ("compound_statement", "parameter_list", "initializer_list",
                  "argument_list")


# Nodes that cannot hold a definition of the kind looked for, beyond
# NOT_FILE_SCOPE: neither a function nor a file-scope declaration is ever
# inside a definition, declaration, struct body or macro; a struct or enum
# is inside a declaration or typedef, never inside a function (its body is
# skipped; what is left of it is the return type and name) or a macro.
_NO_DEFINITION = ("preproc_def", "preproc_function_def", "preproc_include",
                  "preproc_call", "comment", "string_literal")
_SKIP = {
    "function": NOT_FILE_SCOPE + _NO_DEFINITION + (
        "function_definition", "declaration", "type_definition",
        "field_declaration_list", "enumerator_list"),
    "struct": NOT_FILE_SCOPE + _NO_DEFINITION,
    "enum": NOT_FILE_SCOPE + _NO_DEFINITION,
}
_SKIP["declaration"] = _SKIP["function"]


def node_text(node: tree_sitter.Node) -> str:
    """A node's source text: parse() gives the parser the bytes, so every
    node of its trees has its text (None is for trees read by callback)."""
    text = node.text
    assert text is not None
    return text.decode()


def declared_name(declarator: tree_sitter.Node | None) -> str | None:
    """The identifier a (possibly nested) declarator declares."""
    while declarator is not None:
        if declarator.type in ("identifier", "type_identifier",
                               "field_identifier"):
            return node_text(declarator)
        declarator = _unparenthesized(
            declarator.child_by_field_name("declarator"))
    return None


def _unparenthesized(
        declarator: tree_sitter.Node | None) -> tree_sitter.Node | None:
    """`declarator` without the parentheses around it: `(*hook)`, `(f)`."""
    while declarator is not None and \
            declarator.type == "parenthesized_declarator":
        declarator = declarator.named_children[0] \
            if declarator.named_children else None
    return declarator


def definitions(root: tree_sitter.Node, kind: str
                ) -> Iterator[tuple[set[str], tree_sitter.Node]]:
    """(names, node) of every definition below `root` a `kind` scope can
    name: kind is function, struct, enum or (file-scope) declaration.  A
    struct has its tag and its typedef names; structs and enums declared
    inside a function body are not found."""
    for n in walk(root, skip=_SKIP[kind]):
        names: set[str | None] = set()
        node = n
        if kind == "function" and n.type == "function_definition":
            names.add(declared_name(n.child_by_field_name("declarator")))
        elif kind in ("struct", "enum") and n.type == f"{kind}_specifier":
            if n.child_by_field_name("body") is None:
                continue
            tag = n.child_by_field_name("name")
            parent = n.parent
            assert parent is not None   # a specifier is never the root
            if tag is not None:
                names.add(node_text(tag))
            if parent.type == "type_definition":
                names.update(declared_name(d) for d in
                             parent.children_by_field_name("declarator"))
            if parent.type in ("declaration", "type_definition"):
                node = parent
        elif kind == "declaration" and n.type == "declaration" and \
                n.parent is not None and \
                n.parent.type in ("translation_unit", "preproc_if",
                                  "preproc_ifdef", "preproc_else",
                                  "linkage_specification"):
            names.update(declared_name(d)
                         for d in n.children_by_field_name("declarator"))
        names.discard(None)
        if names:
            yield {name for name in names if name is not None}, node


def scope_nodes(root: tree_sitter.Node, kind: str,
                name: str) -> Iterator[tree_sitter.Node]:
    """The definitions of `name` below `root` (see definitions())."""
    for names, node in definitions(root, kind):
        if name in names:
            yield node


def scope_names(root: tree_sitter.Node, kind: str) -> set[str]:
    """Every name a `kind` scope could be anchored on below `root`."""
    return {name for names, _ in definitions(root, kind) for name in names}


def function_definitions(
        text: str) -> Iterator[tuple[str | None, int, tree_sitter.Node]]:
    """(name, line of its declarator (1-based), node) of every function
    defined in `text` (`int (f)(void) {` defines f); the name is None
    only where the parser recovered from an error."""
    for n in walk(parse(text).root_node):
        if n.type == "function_definition":
            decl = n.child_by_field_name("declarator")
            assert decl is not None     # the grammar requires one
            yield declared_name(decl), decl.start_point[0] + 1, n


def function_prototypes(
        text: str) -> Iterator[tuple[str, tree_sitter.Node]]:
    """(name, declaration node) of every function prototype in `text`; a
    function pointer (`void (*hook)(int);`) is a variable, not one."""
    for n in walk(parse(text).root_node):
        if n.type == "declaration":
            for d in n.children_by_field_name("declarator"):
                inner: tree_sitter.Node | None = d
                while inner is not None and inner.type == "pointer_declarator":
                    inner = inner.child_by_field_name("declarator")
                if inner is None or inner.type != "function_declarator":
                    continue
                target = _unparenthesized(
                    inner.child_by_field_name("declarator"))
                name = declared_name(target)
                if target is not None and \
                        target.type != "pointer_declarator" and name:
                    yield name, n
