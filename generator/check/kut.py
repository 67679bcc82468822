"""The `kut` step: kvm-unit-tests' arm64 suite, a suite nobody here wrote.

Every test its run_tests.sh runs for arm64 (the default set: not the
`nodefault` group; the KVM-only ones report SKIP under TCG) runs under TCG
on the unpatched base (built once per release beside the other builds,
its results cached), on the patched tip, and on the tip with a disabled
vCPU in every machine (WRAPPER turns each -smp N into
-smp cpus=N,disabledcpus=1; the guest must not notice).  A test that
passes on the base and does not pass on a patched run fails the step, by
name; every other difference is reported in its item's message.

The suite comes from ../shared/kvm-unit-tests (the tarball its SHA256SUMS
names), built once into the cache with the aarch64 cross compiler.
"""

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from generator import paths
from generator.build import build as qbuild
from generator.check.steps import CheckRun, StepResult
from generator.errors import CheckFailed
from generator.qemutree import BaseTree

logger = logging.getLogger(__name__)

CROSS_GCC = "aarch64-linux-gnu-gcc"
# run_tests.sh's settings: 4 vCPUs for the SMP tests (its default is the
# host's CPU count), a timeout per test for TCG on a busy host (tests that
# set their own, like timer's 10 s, keep it)
ENV = {"ACCEL": "tcg", "MAX_SMP": "4", "TIMEOUT": "180"}

# The wrapper (QEMU=...) that gives every machine a disabled vCPU.  The
# GICv2 tests keep their -smp: disabled vCPUs need a GICv3 by design.
# Each command line it runs is appended to {log}.
WRAPPER = """#!/bin/sh
gic=3
for a in "$@"; do
    case "$a" in *gic-version=2*) gic=2;; esac
done
if [ $gic = 2 ]; then echo "$@" >>"{log}"; exec "{qemu}" "$@"; fi
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
echo -machine gic-version=3 "$@" >>"{log}"
exec "{qemu}" -machine gic-version=3 "$@"
"""

RUNS = ("unpatched", "patched", "patched, disabledcpus=1")
RESULT_LINE = re.compile(r"^(PASS|FAIL|SKIP) (\S+)(?: (.*))?$", re.M)


@dataclass(frozen=True)
class Outcome:
    verdict: str        # PASS, FAIL or SKIP, as run_tests.sh says
    detail: str         # its summary or reason: "(14 tests)", "(timeout...)"
    seconds: float


def tarball(shared: Path | None = None) -> Path:
    """The tarball ../shared/kvm-unit-tests/SHA256SUMS names, checked."""
    folder = (shared or paths.SHARED) / "kvm-unit-tests"
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        raise CheckFailed(f"{sums}: not there (kvm-unit-tests tarball)")
    digest, name = sums.read_text().split()[:2]
    path = folder / name
    if not path.is_file():
        raise CheckFailed(f"{path}: not there (named in {sums})")
    if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        raise CheckFailed(f"{path}: sha256 differs from {sums}")
    return path


def suite_tree(archive: Path) -> Path:
    """The suite unpacked and built (arm64, cross gcc) once into the
    cache; built in a temporary directory renamed into place."""
    dest = paths.cache_dir() / archive.name.removesuffix(".tar.xz")
    tree = dest / "kvm-unit-tests"
    if (tree / "arm" / "psci.flat").is_file():
        return tree
    if not shutil.which(CROSS_GCC):
        raise CheckFailed(f"{CROSS_GCC} is needed to build kvm-unit-tests "
                          "(.ci/setup installs it)")
    dest.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(work, filter="data")
        built = work / "kvm-unit-tests"
        for cmd in (["./configure", "--arch=arm64",
                     f"--cross-prefix={CROSS_GCC.removesuffix('gcc')}"],
                    ["make", "-j2"]):
            proc = subprocess.run(cmd, cwd=built, capture_output=True,
                                  text=True)
            if proc.returncode:
                raise CheckFailed(f"kvm-unit-tests: {' '.join(cmd)} failed:"
                                  f"\n{(proc.stdout + proc.stderr)[-1500:]}")
        # configure wrote the build path into config.mak: build in place
        shutil.rmtree(tree, ignore_errors=True)
        built.rename(tree)
        subprocess.run(["./configure", "--arch=arm64",
                        f"--cross-prefix={CROSS_GCC.removesuffix('gcc')}"],
                       cwd=tree, check=True, capture_output=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tree


def list_tests(tree: Path) -> list[str]:
    """The tests run_tests.sh runs for arm64 by default, in its order."""
    proc = subprocess.run(["./run_tests.sh", "-l"], cwd=tree,
                          capture_output=True, text=True, check=True)
    return proc.stdout.split()


def wrapper(folder: Path, qemu: Path) -> Path:
    """An executable that runs `qemu` with a disabled vCPU (WRAPPER); the
    command lines it ran go to `qemu-disabledcpus.log` beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "qemu-disabledcpus"
    log = folder / "qemu-disabledcpus.log"
    log.write_text("")
    script.write_text(WRAPPER.format(qemu=qemu, log=log))
    script.chmod(0o755)
    return script


def run_suite(tree: Path, qemu: Path, tests: list[str], logs: Path,
              label: str) -> dict[str, Outcome]:
    """Run `tests` one by one with run_tests.sh (its logs in `logs`)."""
    outcomes = {}
    for test in tests:
        env = dict(os.environ, QEMU=str(qemu), **ENV,
                   unittest_log_dir=str(logs / test))
        logs.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        proc = subprocess.run(["./run_tests.sh", test], cwd=tree, env=env,
                              capture_output=True, text=True)
        seconds = round(time.monotonic() - start, 1)
        out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)
        found = {m[2]: Outcome(m[1], m[3] or "", seconds)
                 for m in RESULT_LINE.finditer(out)}
        outcomes[test] = found.get(test) or Outcome(
            "FAIL", "run_tests.sh reported nothing: "
            + (proc.stdout + proc.stderr)[-300:], seconds)
        logger.info(f"kut ({label}): {test}: {outcomes[test].verdict} "
                    f"{outcomes[test].detail} ({seconds} s)")
    return outcomes


def _cache_key(base: BaseTree, archive: Path, test: str) -> str:
    text = f"{base.commit} {archive.name} {test} {sorted(ENV.items())}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def base_outcomes(base: BaseTree, build_root: Path, tree: Path,
                  archive: Path, tests: list[str]) -> dict[str, Outcome]:
    """The unpatched base's outcomes, from its own build; cached per
    release and test (the base never changes)."""
    root = build_root.parent / f"unpatched-{base.version}"
    cache = root / "kut-results.json"
    data = json.loads(cache.read_text()) if cache.is_file() else {}
    keys = {t: _cache_key(base, archive, t) for t in tests}
    missing = [t for t in tests if data.get(t, {}).get("key") != keys[t]]
    if missing:
        binary = qbuild.build(base, None, root)
        found = run_suite(tree, binary, missing, root / "kut-logs",
                          "unpatched")
        for t in missing:
            o = found[t]
            data[t] = {"key": keys[t], "verdict": o.verdict,
                       "detail": o.detail, "seconds": o.seconds}
        cache.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    if len(missing) < len(tests):
        logger.info(f"kut (unpatched): cached results from {cache}")
    return {t: Outcome(data[t]["verdict"], data[t]["detail"],
                       data[t]["seconds"]) for t in tests}


def compare(test: str, runs: dict[str, Outcome]) -> tuple[bool, str]:
    """(ok, message) for one test's outcomes in RUNS order: not ok when
    it passes unpatched and not on a patched run."""
    base = runs[RUNS[0]]
    regressed = [label for label in RUNS[1:]
                 if base.verdict == "PASS" and runs[label].verdict != "PASS"]
    text = ", ".join(f"{label} {o.verdict} {o.detail}".rstrip()
                     for label, o in runs.items())
    if regressed:
        return False, f"passes unpatched, not {' nor '.join(regressed)}: " \
            + text
    same = len({o.verdict for o in runs.values()}) == 1
    return True, (f"{base.verdict} on every build" if same else text)


def step_kut(run: CheckRun) -> StepResult:
    """kvm-unit-tests on the base, the tip, and the tip with a disabled
    vCPU.  `run.kut_tests`: only these tests (default: the whole suite)."""
    result = StepResult("kut")
    try:
        archive = tarball()
        tree = suite_tree(archive)
    except CheckFailed as e:
        result.skipped = True
        result.summary = f"not run: {e.msg}"
        return result
    tests = list(run.kut_tests) or list_tests(tree)
    unknown = sorted(set(tests) - set(list_tests(tree)))
    if unknown:
        raise CheckFailed(f"--kut-test: no such kvm-unit-test: "
                          f"{', '.join(unknown)}")
    tip = run.builds[0].dir / qbuild.BINARY
    logs = run.build_root / "kut-logs"
    shutil.rmtree(logs, ignore_errors=True)
    base = base_outcomes(run.base, run.build_root, tree, archive, tests)
    outcomes = {RUNS[0]: base}
    for label, qemu in ((RUNS[1], tip),
                        (RUNS[2], wrapper(run.build_root / "kut", tip))):
        start = time.monotonic()
        outcomes[label] = run_suite(tree, qemu, tests,
                                    logs / label.replace(", ", "-"), label)
        result.figures[label] = round(time.monotonic() - start, 1)
    result.figures[f"{RUNS[0]} (sum of its tests)"] = round(
        sum(o.seconds for o in base.values()), 1)
    regressions = differ = 0
    for test in tests:
        ok, message = compare(test, {label: outcomes[label][test]
                                     for label in RUNS})
        regressions += not ok
        differ += ok and "every build" not in message
        (result.passed if ok else result.fail)(test, message)
    passing = sum(o.verdict == "PASS" for o in outcomes[RUNS[1]].values())
    result.summary = (f"{passing}/{len(tests)} pass on the tip; "
                      f"{regressions} regressions, {differ} other "
                      f"differences")
    return result
