"""Shared fixtures: the project root, the QEMU releases in ../shared, and
small git trees made for the toolkit's own tests."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from generator import gitops

PROJECT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GEN_SERIES_SHARED", PROJECT.parent / "shared"))
QEMU_SRC = SHARED / "qemu-src"

# The QEMU releases the series targets: release -> Debian source package.
RELEASES = {
    "10.2.2": QEMU_SRC / "qemu_10.2.2+ds-1.dsc",
    "10.0.13": QEMU_SRC / "qemu_10.0.13+ds-0+deb13u1.dsc",
}
PINNED = "10.2.2"


def run_gen_series(*args, cwd=PROJECT, check=None):
    """Run the real CLI in a subprocess, as a user would."""
    proc = subprocess.run([sys.executable, "-m", "generator", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True)
    if check is not None:
        assert proc.returncode == check, proc.stderr
    return proc


def make_git_tree(src: Path, dest: Path) -> Path:
    """Copy `src` to `dest` and commit it, as a user's QEMU checkout."""
    shutil.copytree(src, dest)
    repo = gitops.init_repo(dest)
    gitops.commit_all(repo, "import", "Test <test@example.org>",
                      "2026-01-01T00:00:00+00:00")
    return dest


@pytest.fixture(scope="session")
def minitree(tmp_path_factory) -> Path:
    """A tiny QEMU-like git tree (tests/fixtures/minitree)."""
    return make_git_tree(PROJECT / "tests" / "fixtures" / "minitree",
                         tmp_path_factory.mktemp("mini") / "qemu")


def release_dsc(release: str) -> Path:
    dsc = RELEASES[release]
    if not dsc.is_file():
        pytest.skip(f"{dsc} is not there")
    return dsc
