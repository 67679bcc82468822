"""The package's shape: imports flow one way, git is spoken in one module,
templates avoid Jinja's `{{0}}` trap."""

import ast
import re
import subprocess
import sys
from pathlib import Path

from conftest import PROJECT, make_git_tree

PACKAGE = PROJECT / "generator"
MINI_SPEC = PROJECT / "tests" / "fixtures" / "mini-spec.yaml"
MINI_TEMPLATES = PROJECT / "tests" / "spec-errors" / "templates"


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set:
    """The generator modules `name` imports, at any depth of its code
    (a lazy import inside a function counts: it only hides a cycle)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            # `from generator import anchors` names a module; a class
            # imported from one names that module
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name and \
                    not name.startswith(target + "."):
                found.add(target)
    return found - {"generator"}


def test_imports_have_no_cycle():
    graph = {name: imports_of(name) for name in MODULES}
    state = {}

    def visit(name, path):
        if state.get(name) == "done":
            return
        if state.get(name) == "open":
            cycle = path[path.index(name):] + [name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        state[name] = "open"
        for dep in sorted(graph[name]):
            visit(dep, path + [name])
        state[name] = "done"

    for name in graph:
        visit(name, [])


def test_the_cycle_finder_finds_one(monkeypatch):
    real = imports_of
    monkeypatch.setitem(globals(), "imports_of", lambda name: real(name) | (
        {"generator.generate.anchors"} if name == "generator.csyntax" else set()))
    try:
        test_imports_have_no_cycle()
    except AssertionError as e:
        assert "generator.csyntax" in str(e)
    else:
        raise AssertionError("a planted cycle was not found")


def test_every_module_imports_alone():
    code = ("import importlib, sys\n"
            "importlib.import_module(sys.argv[1])\n")
    for name in MODULES:
        if name.endswith("__main__"):
            continue
        proc = subprocess.run([sys.executable, "-c", code, name],
                              cwd=PROJECT, capture_output=True, text=True)
        assert proc.returncode == 0, f"{name}: {proc.stderr}"


# the pipeline's folders, in order: each may import the base modules
# (generator/*.py but cli) and the folders before it, never a later one
STAGES = ("spec", "output", "generate", "build", "kvm", "check", "review")
TOP = ("generator.cli", "generator.__main__", "generator.commands")


def stage_of(name: str) -> int:
    """0 for the base, 1.. for the folders in pipeline order, last the
    command line."""
    if any(name == top or name.startswith(top + ".") for top in TOP):
        return len(STAGES) + 1
    parts = name.split(".")
    if len(parts) > 1 and parts[1] in STAGES:
        return STAGES.index(parts[1]) + 1
    return 0


def upward_imports() -> list:
    return [f"{name} ({stage_of(name)}) imports {dep} ({stage_of(dep)})"
            for name in MODULES for dep in sorted(imports_of(name))
            if stage_of(dep) > stage_of(name)]


def test_every_folder_is_a_stage():
    folders = {p.name for p in PACKAGE.iterdir()
               if (p / "__init__.py").is_file()}
    assert folders == set(STAGES) | ({"commands"} & folders)


def test_no_module_imports_a_later_stage():
    assert not upward_imports(), "\n".join(upward_imports())


def test_the_direction_test_finds_an_upward_import(monkeypatch):
    real = imports_of
    monkeypatch.setitem(globals(), "imports_of", lambda name: real(name) | (
        {"generator.review.drift"} if name == "generator.spec.model"
        else set()))
    assert upward_imports() == [
        "generator.spec.model (1) imports generator.review.drift (7)"]


def test_one_walk_of_the_spec():
    """generate, drift and tables share generate/walk.py: no other module
    renders a change, applies one or reads a base tree's files."""
    walkers = {}
    for name, path in MODULES.items():
        text = path.read_text()
        for needle in ("apply_change(", "read_files(",
                       "from generator.spec.templates import render,",
                       "from generator.spec.templates import render\n"):
            if needle in text and not text.count(f"def {needle}"):
                walkers.setdefault(needle, set()).add(name)
    assert walkers == {"apply_change(": {"generator.generate.walk"},
                       "read_files(": {"generator.generate.walk"},
                       "from generator.spec.templates import render,":
                           {"generator.generate.walk"}}


def test_no_module_is_over_600_lines():
    """The project's guideline: a module a newcomer can read whole."""
    long = {name: n for name, path in MODULES.items()
            if (n := len(path.read_text().splitlines())) > 600}
    assert not long, long


def test_generate_does_not_need_pycparser(tmp_path):
    """`generate` works with pycparser (a `check` dependency) unimportable."""
    qemu = make_git_tree(PROJECT / "tests" / "fixtures" / "minitree",
                         tmp_path / "qemu")
    code = ("import sys\n"
            "sys.modules['pycparser'] = None\n"
            "sys.modules['pycparserext'] = None\n"
            "from generator.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run(
        [sys.executable, "-c", code, "-q", "generate", "--spec", MINI_SPEC,
         "--templates", MINI_TEMPLATES, "--qemu", qemu,
         "--out", tmp_path / "out"],
        cwd=PROJECT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "out").glob("*.patch"))) == 3


def test_git_is_spoken_only_in_gitops():
    offenders = []
    for name, path in MODULES.items():
        if name == "generator.gitops":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\brepo\.git\.|\bgit\.(Repo|Git)\b|^import git$|"
                         r"\[\s*[\"']git[\"']", line):
                offenders.append(f"{path.relative_to(PROJECT)}:{n}: "
                                 f"{line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_templates_avoid_the_double_brace_trap():
    """`{{0}}` in C renders as `0`: Jinja reads it as an expression."""
    trap = re.compile(r"\{\{(?!-?\s*[A-Za-z_(\"'])")
    for root in (PROJECT / "templates", MINI_TEMPLATES):
        for path in root.rglob("*"):
            if not path.is_file() or path.suffix in (".dat", ".dsl"):
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            raw = re.sub(r"\{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\}", "",
                         text, flags=re.S)
            for m in trap.finditer(raw):
                line = raw.count("\n", 0, m.start()) + 1
                raise AssertionError(f"{path.relative_to(PROJECT)}:{line}: "
                                     "'{{' not followed by a name")


def test_the_readme_pipeline_table_names_every_module():
    """The README's table of modules is the map a newcomer reads: it names
    every module of generator/ by its path, and nothing that is gone."""
    readme = (PROJECT / "README.md").read_text()
    table = readme.split("## The pipeline", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(generator/[\w/]+\.py)`", table))
    modules = {str(p.relative_to(PROJECT)) for p in PACKAGE.rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    assert modules == named
