"""Structure invariants: spec data (kind + parameters) checked on the
patched tree by a small library of checkers.

Function-level kinds read pycparser's AST of the real, preprocessed
function (cparse.py); series-level kinds read the series' own diffs and the
patched tree.  A checker returns a list of violations; each names the
patch, the file and the function.  A new invariant is a spec entry; a new
kind is one function here, one line in CHECKERS and its parameters in
model.INVARIANT_KINDS.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pycparser import c_ast

from generator import csyntax, gitops
from generator.check import cparse
from generator.output import written
from generator.output.written import WrittenSeries
from generator.spec.model import Invariant


@dataclass
class Context:
    src: Path               # the patched tree (a git repo, tip checked out)
    build_dirs: list[Path]  # configured builds with compile_commands.json
    commits: list[tuple[Path, str]]     # (patch file, commit sha), in order
    base: str

    def git(self, *args: str, ok_codes: tuple[int, ...] = (0,)) -> str:
        return gitops.read(self.src, *args, ok_codes=ok_codes)

    def patch_touching(self, path: str, function: str) -> tuple[str, str]:
        """The last patch of the series that changed `function`, and the
        spec changes of it that wrote the function's lines there (from
        the series' map; "" without one)."""
        patch, sha = self._last_commit_touching(path, function)
        if patch is None:
            return "(no patch of the series)", ""
        series = WrittenSeries.at(patch.parent)
        changes = series.changes_in(
            patch, path, _function_lines(_show(self, sha, path), function))
        return patch.name, series.describe_changes(changes)

    def _last_commit_touching(self, path: str,
                              function: str) -> tuple[Path | None, str]:
        """(patch file, commit) of the last patch that changed
        `function`."""
        # git exits 128 when no commit of the range has the function
        out = self.git("log", "--format=%H", f"-L:{function}:{path}",
                       "--no-patch", f"{self.base}..HEAD", ok_codes=(0, 128))
        shas = [line for line in out.splitlines() if re.match(r"^[0-9a-f]{40}$",
                                                              line)]
        patches = {sha: patch for patch, sha in self.commits}
        for sha in shas:
            if sha in patches:
                return patches[sha], sha
        return None, ""


def _function_lines(text: str, function: str) -> range:
    """The lines (1-based) of `function`'s definition in `text`."""
    for name, _, node in csyntax.function_definitions(text):
        if name == function:
            return range(node.start_point[0] + 1, node.end_point[0] + 2)
    return range(0)


# ---- walking pycparser's AST ----------------------------------------------

def _calls(node: c_ast.Node, name: str | None = None) -> list[c_ast.FuncCall]:
    """FuncCall nodes below `node`, in source order."""
    found = []

    class Visitor(c_ast.NodeVisitor):  # type: ignore[misc]  # pycparser: no types
        def visit_FuncCall(self, call: c_ast.FuncCall) -> None:
            if isinstance(call.name, c_ast.ID) and \
                    (name is None or call.name.name == name):
                found.append(call)
            self.generic_visit(call)

    Visitor().visit(node)
    return found


def _mentions(node: c_ast.Node | None, ident: str) -> bool:
    class Visitor(c_ast.NodeVisitor):  # type: ignore[misc]  # pycparser: no types
        hit = False

        def visit_ID(self, n: c_ast.ID) -> None:
            if n.name == ident:
                Visitor.hit = True

    if node is None:
        return False
    Visitor().visit(node)
    return Visitor.hit


def _blocks(node: c_ast.Node) -> list[c_ast.Compound]:
    """Every compound statement below `node`, outermost first."""
    found = []

    class Visitor(c_ast.NodeVisitor):  # type: ignore[misc]  # pycparser: no types
        def visit_Compound(self, block: c_ast.Compound) -> None:
            found.append(block)
            self.generic_visit(block)

    Visitor().visit(node)
    return found


def _line(node: c_ast.Node) -> int:
    return node.coord.line if node.coord else 0


# ---- function-level kinds --------------------------------------------------

def _function(ctx: Context, inv: Invariant) -> c_ast.FuncDef:
    """The invariant's function, parsed (model.INVARIANT_KINDS requires a
    file for these kinds)."""
    if inv.file is None:
        raise cparse.ParseFailed(f"invariant '{inv.id}' names no file")
    return cparse.parse_function(ctx.build_dirs, inv.file, inv["function"])


def check_call_order(ctx: Context, inv: Invariant) -> list[str]:
    """`first` is called before `then` in `function`."""
    fn = _function(ctx, inv)
    calls = [c.name.name for c in _calls(fn.body)]
    first, then = inv["first"], inv["then"]
    for name in (first, then):
        if name not in calls:
            return [f"{name}() is not called"]
    if calls.index(then) < calls.index(first):
        return [f"{then}() is called before {first}()"]
    return []


def _is_checked(items: list[c_ast.Node], i: int, call: c_ast.FuncCall) -> bool:
    stmt = items[i]
    nxt = items[i + 1] if i + 1 < len(items) else None
    if isinstance(stmt, (c_ast.If, c_ast.While, c_ast.DoWhile)) and \
            call in _calls(stmt.cond):
        return True
    if isinstance(stmt, c_ast.Return):
        return True
    target = None
    if isinstance(stmt, c_ast.Assignment) and stmt.rvalue is call:
        target = stmt.lvalue
    elif isinstance(stmt, c_ast.Decl) and stmt.init is call:
        target = c_ast.ID(stmt.name)
    if isinstance(target, c_ast.ID):
        return isinstance(nxt, c_ast.If) and _mentions(nxt.cond, target.name)
    if stmt is call and call.args and any(
            isinstance(a, c_ast.ID) and a.name == "errp"
            for a in call.args.exprs):
        # ERRP_GUARD() style: the next statement tests *errp
        return isinstance(nxt, c_ast.If) and _mentions(nxt.cond, "errp")
    return False


def check_calls_checked(ctx: Context, inv: Invariant) -> list[str]:
    """Every call to one of `calls` in `function` has its result (or, for
    an errp-style call, *errp) tested right away."""
    fn = _function(ctx, inv)
    problems = []
    for name in inv["calls"]:
        sites = _calls(fn.body, name)
        if not sites:
            problems.append(f"{name}() is not called")
        for call in sites:
            checked = False
            for block in _blocks(fn.body):
                items = block.block_items or []
                for i, stmt in enumerate(items):
                    if call in _calls(stmt) and not isinstance(
                            stmt, (c_ast.Compound, c_ast.For)):
                        checked = checked or _is_checked(items, i, call)
            if not checked:
                problems.append(f"the result of {name}() (line "
                                f"{_line(call)} of the function) is not "
                                "checked")
    return problems


def _leaves(stmt: c_ast.Node) -> bool:
    items = stmt.block_items if isinstance(stmt, c_ast.Compound) else [stmt]
    return bool(items) and isinstance(items[-1], (c_ast.Continue,
                                                  c_ast.Return, c_ast.Break))


def check_call_after_diversion(ctx: Context, inv: Invariant) -> list[str]:
    """`call` in `function` is only reached after an `if` that hands the
    other case to `diverted-to` and leaves (continue, break or return)."""
    fn = _function(ctx, inv)
    call_name, lazy = inv["call"], inv["diverted-to"]
    sites = _calls(fn.body, call_name)
    if not sites:
        return [f"{call_name}() is not called"]
    problems = []
    for call in sites:
        guarded = False
        for block in _blocks(fn.body):
            items = block.block_items or []
            for i, stmt in enumerate(items):
                if call in _calls(stmt) and not isinstance(stmt,
                                                           c_ast.Compound):
                    guarded = guarded or any(
                        isinstance(prev, c_ast.If) and
                        _calls(prev.iftrue, lazy) and _leaves(prev.iftrue)
                        for prev in items[:i])
        if not guarded:
            problems.append(f"{call_name}() is reachable without an earlier "
                            f"`if` that hands the case to {lazy}() and "
                            "leaves")
    return problems


# ---- series-level kinds ----------------------------------------------------

def _show(ctx: Context, sha: str, path: str) -> str:
    return ctx.git("show", f"{sha}:{path}")


def _tree_definitions(ctx: Context, name: str) -> list[str]:
    """Where `name` is defined in the patched tree, stubs and static
    inlines in headers left out (they are the other configurations)."""
    out = []
    files = ctx.git("grep", "-l", "-w", name, "--", "*.c", "*.h",
                    ok_codes=(0, 1)).split()
    for path in files:
        text = (ctx.src / path).read_text(errors="replace")
        for fname, line, node in csyntax.function_definitions(text):
            if fname != name:
                continue
            is_stub = "stub" in path
            is_inline = path.endswith(".h") and \
                b"inline" in (node.text or b"")[:200]
            if not is_stub and not is_inline:
                out.append(f"{path}:{line}")
    return out


def check_declarations_defined_and_documented(ctx: Context,
                                              inv: Invariant) -> list[str]:
    """Every function the series declares in a header has a doc comment
    and exactly one definition.  `undocumented` lists fnmatch patterns of
    names documented elsewhere (HMP handlers: in the .hx files)."""
    import fnmatch
    problems = []
    exempt = inv.params.get("undocumented", [])
    for patch_file, sha in ctx.commits:
        patch = patch_file.name
        for path, lines in written.parse(patch_file).added.items():
            if not path.endswith(".h"):
                continue
            text = _show(ctx, sha, path)
            file_lines = text.splitlines()
            for name, node in csyntax.function_prototypes(text):
                first = node.start_point[0] + 1
                if first not in lines:
                    continue
                above = file_lines[first - 2].strip() if first > 1 else ""
                documented_elsewhere = any(fnmatch.fnmatch(name, pattern)
                                           for pattern in exempt)
                if not above.endswith("*/") and not documented_elsewhere:
                    problems.append(f"{patch}: {path}: {name}() is declared "
                                    "without a doc comment")
                defs = _tree_definitions(ctx, name)
                if len(defs) != 1:
                    problems.append(
                        f"{patch}: {path}: {name}() is defined "
                        f"{len(defs)} times" +
                        (f" ({', '.join(defs)})" if defs else ""))
    return problems


def check_added_functions_used(ctx: Context, inv: Invariant) -> list[str]:
    """Every function a patch adds is used by the end of the series, or
    gone by then (a later patch replaced it: the migration blocker's
    test gives way to the migration's)."""
    problems = []
    for patch_file, sha in ctx.commits:
        patch = patch_file.name
        for path, lines in written.parse(patch_file).added.items():
            if not path.endswith((".c", ".h")):
                continue
            text = _show(ctx, sha, path)
            for name, line, _ in csyntax.function_definitions(text):
                if line not in lines or name is None or name == "main":
                    continue
                if _defined_at_tip(ctx, name) and \
                        not _referenced(ctx, name):
                    problems.append(f"{patch}: {path}: {name}() is added but "
                                    "never used")
    return problems


def _defined_at_tip(ctx: Context, name: str) -> bool:
    return any(fname == name
               for path in ctx.git("grep", "-l", "-w", name, "--", "*.c",
                                   "*.h", ok_codes=(0, 1)).split()
               for fname, _, _ in csyntax.function_definitions(
                   (ctx.src / path).read_text(errors="replace")))


def _referenced(ctx: Context, name: str) -> bool:
    """Is `name` used anywhere but in its definitions, prototypes and
    comments?"""
    # .hx files hold the monitor's command tables (.cmd = hmp_...)
    out = ctx.git("grep", "-n", "-w", name, "--", "*.c", "*.h", "*.inc",
                  "*.hx", ok_codes=(0, 1))
    skip: dict[str, set[int]] = {}
    for hit in out.splitlines():
        path, lineno, text = hit.split(":", 2)
        body = text.strip()
        if body.startswith(("*", "/*", "//")):
            continue
        if path not in skip:
            src = (ctx.src / path).read_text(errors="replace")
            own = {line for fname, line, _ in csyntax.function_definitions(src)
                   if fname == name}
            own |= {node.start_point[0] + 1 for pname, node in
                    csyntax.function_prototypes(src) if pname == name}
            skip[path] = own
        if int(lineno) not in skip[path]:
            return True
    return False


# kind -> its checker; the parameters each kind takes are the spec's
# (model.INVARIANT_KINDS)
CHECKERS: dict[str, Callable[[Context, Invariant], list[str]]] = {
    "call-order": check_call_order,
    "calls-checked": check_calls_checked,
    "call-after-diversion": check_call_after_diversion,
    "declarations-defined-and-documented":
        check_declarations_defined_and_documented,
    "added-functions-used": check_added_functions_used,
}


def evaluate(ctx: Context, inv: Invariant) -> list[str]:
    """Violations of one invariant, each naming patch, file and function."""
    checker = CHECKERS[inv.kind]
    try:
        problems = checker(ctx, inv)
    except cparse.ParseFailed as e:
        problems = [str(e)]
    if inv.file and problems:
        patch, wrote = ctx.patch_touching(inv.file, inv["function"])
        note = f" (written by {wrote})" if wrote else ""
        return [f"{patch}: {inv.file}: {inv['function']}(): {p}{note}"
                for p in problems]
    return problems
