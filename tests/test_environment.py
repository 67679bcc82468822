"""The installed toolkit is one that works: the dependency bounds in
pyproject.toml hold for what pip resolved, and a known-bad pair of
pycparser/pycparserext is refused in one line instead of showing up as
failed invariants."""

import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from conftest import PROJECT, release_dsc

from generator.check import cparse


def declared_bound(package: str) -> str:
    deps = tomllib.loads((PROJECT / "pyproject.toml").read_text())[
        "project"]["dependencies"]
    return next(d for d in deps if re.match(rf"{package}\b", d, re.I))


def test_the_installed_parser_pair_works():
    assert cparse.gnu_parser_class().__name__ == "GnuCParser"


def test_the_error_message_names_the_declared_bounds():
    for package in ("pycparser", "pycparserext"):
        bound = declared_bound(package).removeprefix(package)
        assert f"{package}{bound}" in cparse.SUPPORTED


def test_ci_runs_in_its_own_virtual_environment():
    if os.environ.get("CI") != "true":
        pytest.skip("only CI promises a fresh .venv")
    assert sys.prefix != sys.base_prefix, "tests run outside a venv"
    assert Path(sys.prefix).resolve() == (PROJECT / ".venv").resolve()


@pytest.mark.tree
def test_a_pycparser_too_new_for_pycparserext_is_one_clear_error(tmp_path):
    """pycparser 3.12 breaks pycparserext 2026.1 (a private method's
    signature changed): `check` must say so and exit 2 before building."""
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                          "--no-deps", "--target", site, "pycparser==3.12"],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr
    env = dict(os.environ, PYTHONPATH=str(site))
    proc = subprocess.run(
        [sys.executable, "-m", "generator", "-q", "check", "--qemu",
         release_dsc("10.2.2"), "--series", PROJECT / "patches" / "10.2.2",
         "--only", "invariants", "--build-dir", tmp_path / "build"],
        cwd=PROJECT, capture_output=True, text=True, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("gen-series: error: pycparserext "
                               f"{metadata.version('pycparserext')} does not "
                               "work with pycparser 3.12")
    assert "install pycparser>=3.0,<3.12" in lines[0]
    assert not (tmp_path / "build").exists(), "it built before refusing"

