"""generator/ passes mypy with pyproject.toml's [tool.mypy] settings:
strict, every module.  It runs as a test so that CI (the README's test
command) runs it."""

import subprocess
import sys

from conftest import PROJECT


def test_generator_passes_mypy():
    # the files and the settings come from pyproject.toml; its cache in
    # .mypy_cache makes a second run take about a second
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=PROJECT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, \
        f"mypy failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
    assert "Success: no issues found" in proc.stdout
