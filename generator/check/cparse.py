"""Parse one function of a real, patched QEMU file with pycparser.

The file is preprocessed by the compiler exactly as the build compiles it
(its compile_commands.json entry: config headers, generated QAPI headers,
-D flags), so macros such as ERRP_GUARD() or error_setg() are expanded as
in the real build.  pycparser cannot parse all of glibc and QEMU's GNU C,
so only the function of interest is handed to it: tree-sitter finds it in
the preprocessed text, GNU attributes and asm labels are dropped, and every
type name it uses is declared in a short prelude.
"""

import json
import re
import shlex
import subprocess
from collections.abc import Sequence
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import tree_sitter
from pycparser import c_ast

from generator import csyntax
from generator.errors import ToolError

# pycparserext reaches into pycparser's private parser methods, so each of
# its releases works with a narrow range of pycparser releases only.  Keep
# in step with pyproject.toml.
SUPPORTED = "pycparser>=3.0,<3.12 with pycparserext>=2026.1,<2027"

PRELUDE_TYPES = {
    "_Float32": "float", "_Float64": "double", "_Float32x": "double",
    "_Float64x": "long double", "_Float128": "long double",
    "__int128_t": "long long", "__uint128_t": "unsigned long long",
    "__builtin_va_list": "int",
}
REWRITES = [(r"\b__int128\b", "long long"), (r"\b__signed__\b", "signed"),
            (r"\b__extension__\b", ""), (r"\b__restrict\b", ""),
            (r"\b__inline\b", "inline"), (r"\b_Noreturn\b", ""),
            (r"\b__volatile__\b", "volatile"), (r"\b__const\b", "const"),
            (r"\?\s*:", "? 0 :")]        # GNU "a ?: b"


class ParseFailed(Exception):
    pass


def _closing_paren(text: str, i: int) -> int:
    """Index of the ')' that closes the '(' at `i`."""
    depth = 0
    for j in range(i, len(text)):
        depth += {"(": 1, ")": -1}.get(text[j], 0)
        if depth == 0:
            return j
    return len(text) - 1


def _strip_balanced(text: str, keyword: str, replacement: str = "") -> str:
    """Replace `keyword (...)`, parentheses balanced, with `replacement`."""
    out, pos = [], 0
    for m in re.finditer(keyword, text):
        if m.start() < pos:
            continue
        i = m.end()
        while i < len(text) and text[i] in " \t\n":
            i += 1
        if i >= len(text) or text[i] != "(":
            continue
        out.append(text[pos:m.start()] + replacement)
        pos = _closing_paren(text, i) + 1
    out.append(text[pos:])
    return "".join(out)


def _strip_statement_expressions(text: str) -> str:
    """Replace GNU statement expressions `({ ... })` by 0: they come from
    macros (g_new, assert, QTAILQ...), whose insides no invariant reads."""
    out, pos = [], 0
    while (start := text.find("({", pos)) >= 0:
        out.append(text[pos:start] + "(0)")
        pos = _closing_paren(text, start) + 1
    out.append(text[pos:])
    return "".join(out)


def _compile_command(build_dirs: Sequence[str | Path],
                     rel_path: str) -> dict[str, str] | None:
    for build_dir in build_dirs:
        db = Path(build_dir) / "compile_commands.json"
        if not db.is_file():
            continue
        entries: list[dict[str, str]] = json.loads(db.read_text())
        for entry in entries:
            if entry["file"].endswith("/" + rel_path) or \
                    entry["file"] == rel_path:
                return entry
    return None


def preprocess(build_dirs: Sequence[str | Path], rel_path: str) -> str:
    """The preprocessed text of `rel_path`, as the build compiles it."""
    entry = _compile_command(build_dirs, rel_path)
    if entry is None:
        raise ToolError(f"{rel_path} is compiled by none of the builds "
                        f"({', '.join(map(str, build_dirs))})")
    args, out, skip = shlex.split(entry["command"]), [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("-o", "-MQ", "-MF"):
            skip = True
        elif a not in ("-c", "-MD") and not a.endswith("ccache"):
            out.append(a)
    out = [a for a in out if a != entry["file"]]
    proc = subprocess.run(out + ["-E", "-P", entry["file"]],
                          cwd=entry["directory"], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise ToolError(f"preprocessing {rel_path} failed:\n"
                        + proc.stderr[-2000:])
    return proc.stdout


C_TYPE_KEYWORDS = {"_Bool", "_Complex", "void", "char", "short", "int",
                   "long", "float", "double", "signed", "unsigned"}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "(not installed)"


@lru_cache(maxsize=1)
def gnu_parser_class() -> Any:    # a class; pycparserext has no types
    """pycparserext's GnuCParser, once proven to parse with the installed
    pycparser; a mismatched pair is a ToolError naming both packages
    (otherwise it shows up as every invariant failing)."""
    try:
        from pycparserext.ext_c_parser import GnuCParser
        GnuCParser().parse("static int f(int a) { if (a) { return a; } "
                           "return 0; }\n")
    except Exception as e:  # any failure here is the pair's, not the code's
        raise ToolError(
            f"pycparserext {_version('pycparserext')} does not work with "
            f"pycparser {_version('pycparser')} ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); install "
            f"{SUPPORTED} (pip install -e . does)")
    return GnuCParser


def _type_names(node: tree_sitter.Node) -> set[str]:
    names = set()
    for n in csyntax.walk(node):
        if n.type in ("type_identifier", "primitive_type"):
            names.add((n.text or b"").decode())
    return names - C_TYPE_KEYWORDS


@lru_cache(maxsize=64)
def _preprocessed(build_dirs: tuple[str, ...], rel_path: str) -> str:
    """The preprocessed file without the GNU extensions that throw
    tree-sitter off: the expansion of one VMSTATE_VARRAY_UINT32 (typeof
    in a cast) turned the rest of hw/arm/virt.c into one ERROR node, and
    every function below it disappeared."""
    text = _strip_statement_expressions(preprocess(list(build_dirs),
                                                   rel_path))
    text = _strip_balanced(text, r"\b__attribute__\b")
    text = _strip_balanced(text, r"\b__builtin_(types_compatible_p|"
                           r"choose_expr|offsetof|va_arg)\b", "0")
    return _strip_balanced(text, r"\b(typeof|__typeof__)\b", "int")


def parse_function(build_dirs: Sequence[str | Path], rel_path: str,
                   name: str) -> c_ast.FuncDef:
    """pycparser's AST of function `name` in `rel_path` (preprocessed)."""
    text = _preprocessed(tuple(map(str, build_dirs)), rel_path)
    nodes = list(csyntax.scope_nodes(csyntax.parse(text).root_node,
                                     "function", name))
    if not nodes:
        raise ParseFailed(f"function {name} is not in {rel_path}")
    node = nodes[0]
    source = _strip_balanced((node.text or b"").decode(),
                             r"\b(__asm__|__asm)\b")
    for pattern, repl in REWRITES:
        source = re.sub(pattern, repl, source)
    prelude = "".join(f"typedef {PRELUDE_TYPES.get(t, 'int')} {t};\n"
                      for t in sorted(_type_names(node)))
    try:
        ast = gnu_parser_class()().parse(prelude + source, f"{rel_path}:{name}")
    except Exception as e:      # pycparser raises plain ParseError types
        raise ParseFailed(f"pycparser cannot parse {name} in {rel_path}: "
                          f"{e}")
    funcs = [d for d in ast.ext if isinstance(d, c_ast.FuncDef)]
    return funcs[-1]
