"""Shared fixtures: the project root, the QEMU releases in ../shared, and
small git trees made for the toolkit's own tests."""

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from qemu_session import Qemu

from generator import gitops, paths

PROJECT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GEN_SERIES_SHARED") or paths.SHARED)
QEMU_SRC = SHARED / "qemu-src"

# The QEMU releases the series targets: release -> Debian source package.
RELEASES = {
    "10.2.2": QEMU_SRC / "qemu_10.2.2+ds-1.dsc",
    "10.0.13": QEMU_SRC / "qemu_10.0.13+ds-0+deb13u1.dsc",
}
PINNED = "10.2.2"

# gen-series signs the patches with the user's git identity.  The tests
# give every process one, through git's own configuration variables (they
# win over any config file), so results do not depend on the machine; the
# committed series in patches/ carry it.
IDENTITY = ("Seed 3f869926 maintainers",
            "maintainers@users.noreply.r-seed-3f869926.example")
os.environ.update(GIT_CONFIG_COUNT="2",
                  GIT_CONFIG_KEY_0="user.name", GIT_CONFIG_VALUE_0=IDENTITY[0],
                  GIT_CONFIG_KEY_1="user.email",
                  GIT_CONFIG_VALUE_1=IDENTITY[1])
SIGNER = f"{IDENTITY[0]} <{IDENTITY[1]}>"


def patch_file(series_dir: Path, patch_id: str) -> str:
    """The file name of the spec's patch `patch_id` in a written series,
    read from its series-map.json: tests name patches by spec id, so that
    a patch added to the spec shifts no test's numbers."""
    smap = json.loads((series_dir / "series-map.json").read_text())
    names = [name for name, entry in smap["files"].items()
             if entry["patch"] == patch_id]
    assert len(names) == 1, f"{series_dir}: patch '{patch_id}': {names}"
    return names[0]


def patch_files(series_dir: Path) -> list[str]:
    """The patches of a written series (not the cover letter), in order."""
    return sorted(p.name for p in series_dir.glob("[0-9][0-9][0-9][0-9]-*.patch")
                  if not p.name.startswith("0000-"))


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


BUILD_ROOT = Path(os.environ.get("GEN_SERIES_BUILD_ROOT") or
                 paths.cache_dir() / "builds")


@pytest.fixture(scope="session", params=list(RELEASES))
def built(request):
    """The committed series for one release, applied and built with
    `gen-series build` (incremental: ~/.cache/gen-series/builds/<release>,
    or GEN_SERIES_BUILD_ROOT).  Yields (release, qemu-system-aarch64)."""
    release = request.param
    proc = run_gen_series("build", "--qemu", release_dsc(release),
                          "--series", PROJECT / "patches" / release,
                          "--build-dir", BUILD_ROOT / release,
                          "--target", "tests/unit/test-smp-parse")
    assert proc.returncode == 0, proc.stderr[-3000:]
    binary = Path(proc.stdout.strip().splitlines()[-1])
    assert binary.name == "qemu-system-aarch64" and binary.is_file()
    yield release, binary


@functools.cache
def unpatched(release: str) -> Path:
    """qemu-system-aarch64 of the unpatched release, built once into
    <build root>/unpatched-<release> (for comparisons with the series)."""
    from generator.build import build
    from generator.qemutree import resolve_base
    base = resolve_base(release_dsc(release))
    return build.build(base, None, BUILD_ROOT / f"unpatched-{release}")


def qmp(binary: Path, args: list, commands: list) -> list:
    """Run QEMU (-S, no defaults) and return its QMP replies to `commands`
    ({"execute": ...}), in order, each as it is: return or error."""
    with Qemu(binary, [*args, "-S"]) as vm:
        return [vm.cmd_obj(c) for c in commands]
