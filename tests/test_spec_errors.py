"""Golden tests for bad specs, in the style of QEMU's tests/qapi-schema.

Each tests/spec-errors/<case>.yaml opens with a comment saying what it
breaks; <case>.err holds the one error line gen-series must print.
Regenerate the .err files with GEN_SERIES_REGENERATE=1 (then review them).
Every case must exit with status 2, print no traceback and write nothing.
"""

import os
from pathlib import Path

import pytest
from conftest import PROJECT, run_gen_series

CASES = sorted((PROJECT / "tests" / "spec-errors").glob("*.yaml"))


@pytest.mark.parametrize("spec", CASES, ids=[c.stem for c in CASES])
def test_spec_error(spec: Path, minitree, tmp_path):
    out = tmp_path / "out"
    rel = spec.relative_to(PROJECT)
    proc = run_gen_series("-q", "generate", "--spec", rel,
                          "--templates", rel.parent / "templates",
                          "--qemu", minitree, "--out", out)
    expected = spec.with_suffix(".err")
    if os.environ.get("GEN_SERIES_REGENERATE"):
        expected.write_text(proc.stderr)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, "one error line expected"
    assert proc.stderr == expected.read_text()
    assert not out.exists(), "nothing may be written on error"
