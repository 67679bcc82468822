"""kvm-unit-tests' arm64 suite (../shared/kvm-unit-tests) as a peer suite:
the guest-side tests of PSCI, SMP, the GIC and the ITS, run under TCG on
the unpatched release, on the patched one as it is, and on the patched one
with every -smp N turned into -smp cpus=N,disabledcpus=1 (a disabled vCPU
present, which the guest must not notice).  No test may pass on the
unpatched build and fail on a patched one.

The suite is built once into the cache (cross gcc for arm64).  The tests
run are TESTS (a subset that covers what the series touches; set
GEN_SERIES_KUT_TESTS="a b c" for others, or "all")."""

import os
import re
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import SHARED, release_dsc, unpatched

from generator import paths

TARBALL_DIR = SHARED / "kvm-unit-tests"
TESTS = ["selftest-setup", "selftest-vectors-kernel", "selftest-smp",
         "psci", "gicv3-ipi", "gicv3-active", "its-introspection",
         "its-trigger", "timer"]

# The wrapper QEMU=... that gives every machine a disabled vCPU.  The
# GICv2 tests keep their -smp: disabled vCPUs need a GICv3 by design.
WRAPPER = """#!/bin/sh
gic=3
for a in "$@"; do
    case "$a" in *gic-version=2*) gic=2;; esac
done
if [ $gic = 2 ]; then exec "{qemu}" "$@"; fi
set -- "$@" END
while [ "$1" != END ]; do
    if [ "$1" = -smp ]; then
        set -- "$@" -smp "cpus=$2,disabledcpus=1"
        shift 2
        continue
    fi
    set -- "$@" "$1"
    shift
done
shift
exec "{qemu}" -machine gic-version=3 "$@"
"""


def kut_tree() -> Path:
    tarball = next(TARBALL_DIR.glob("kvm-unit-tests-*.tar.xz"), None)
    if tarball is None:
        pytest.skip(f"no kvm-unit-tests tarball in {TARBALL_DIR}")
    if not shutil.which("aarch64-linux-gnu-gcc"):
        pytest.skip("aarch64-linux-gnu-gcc is needed to build kvm-unit-tests")
    dest = paths.cache_dir() / tarball.name.removesuffix(".tar.xz")
    tree = dest / "kvm-unit-tests"
    if not (tree / "arm" / "psci.flat").exists():
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as tar:
            tar.extractall(dest, filter="tar")
        subprocess.run(["./configure", "--arch=arm64",
                        "--cross-prefix=aarch64-linux-gnu-"], cwd=tree,
                       check=True, capture_output=True)
        subprocess.run(["make", "-j2"], cwd=tree, check=True,
                       capture_output=True)
    return tree


def run_suite(tree: Path, qemu: Path, tests: list) -> dict:
    """{test: PASS | FAIL | SKIP} from run_tests.sh."""
    env = dict(os.environ, QEMU=str(qemu), ACCEL="tcg", TIMEOUT="120",
               MAX_SMP="4")
    proc = subprocess.run(["./run_tests.sh", "-j1",
                           *([] if tests == ["all"] else tests)],
                          cwd=tree, env=env, capture_output=True, text=True,
                          timeout=3600)
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)
    results = dict((name, verdict) for verdict, name in re.findall(
        r"^(PASS|FAIL|SKIP)\s+(\S+)", out, re.M))
    assert results, proc.stdout[-2000:] + proc.stderr[-2000:]
    return results


def wrapper(tmp_path: Path, qemu: Path) -> Path:
    script = tmp_path / "qemu-disabledcpus"
    script.write_text(WRAPPER.format(qemu=qemu))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.mark.slow
def test_no_kvm_unit_test_regresses(built, tmp_path):
    release, patched = built
    release_dsc(release)
    tree = kut_tree()
    tests = os.environ.get("GEN_SERIES_KUT_TESTS", " ".join(TESTS)).split()
    base = run_suite(tree, unpatched(release), tests)
    runs = {"patched": run_suite(tree, patched, tests),
            "patched, disabledcpus=1": run_suite(
                tree, wrapper(tmp_path, patched), tests)}
    report = "\n".join(
        f"{name}: unpatched {verdict}, " + ", ".join(
            f"{label} {res.get(name)}" for label, res in runs.items())
        for name, verdict in sorted(base.items()))
    for label, results in runs.items():
        regressed = [n for n, v in base.items()
                     if v == "PASS" and results.get(n) != "PASS"]
        assert not regressed, f"{label}: {regressed}\n{report}"
    print(report)
