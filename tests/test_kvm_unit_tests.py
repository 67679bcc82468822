"""kvm-unit-tests' arm64 suite (../shared/kvm-unit-tests) as a peer suite,
through `gen-series check --only kut` (generator/check/kut.py): every test
run_tests.sh lists, under TCG, on the unpatched release, on the patched
one as it is, and on the patched one with every -smp N of a GICv3 machine
turned into -smp cpus=N,disabledcpus=1 (a disabled vCPU present, which
the guest must not notice).  No test may pass on the unpatched build and
fail on a patched one.

The whole suite costs about 3 minutes of test time per release for the
three builds (measured on 10.2.2, 2 busy cores: 58 s base, 70 s tip, 64 s
with the disabled vCPU), which CI's budget does not spare, so CI runs TESTS,
what the series touches: vCPU bring-up through PSCI and SMP, the GICv3
and its ITS (redistributors for every possible vCPU), CPU state across
migration (every vCPU's vmstate, the disabled one's too) and the timer.
GEN_SERIES_KUT_TESTS="a b c" runs others, "all" the whole suite (as
`gen-series check` does by default)."""

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import BUILD_ROOT, PROJECT, release_dsc, run_gen_series

from generator.check import kut

TESTS = ["selftest-setup", "selftest-smp", "psci", "gicv3-ipi",
         "gicv3-active", "its-introspection", "its-trigger",
         "its-migration", "debug-bp-migration", "timer"]
# run with several vCPUs (-smp $MAX_SMP) on a GICv3
SMP_GICV3 = {"selftest-smp", "psci", "gicv3-ipi", "gicv3-active",
             "its-introspection", "its-trigger", "its-migration",
             "its-pending-migration", "its-migrate-unmapped-collection"}


def selected() -> list[str]:
    chosen = os.environ.get("GEN_SERIES_KUT_TESTS", " ".join(TESTS)).split()
    return [] if chosen == ["all"] else chosen


@pytest.mark.slow
def test_no_kvm_unit_test_regresses(built, tmp_path):
    release, _ = built
    try:
        kut.suite_tree(kut.tarball())
    except kut.CheckFailed as e:
        pytest.skip(e.msg)
    tests = selected()
    report = tmp_path / "report.json"
    proc = run_gen_series(
        "-q", "check", "--qemu", release_dsc(release),
        "--series", PROJECT / "patches" / release,
        "--build-dir", BUILD_ROOT / release, "--only", "kut",
        *[a for t in tests for a in ("--kut-test", t)], "--json", report)
    step = {s["name"]: s for s in
            json.loads(report.read_text())["steps"]}["kut"]
    lines = "\n".join(f"{'ok' if i['ok'] else 'FAIL'} {i['patch']}: "
                      f"{i['message']}" for i in step["items"])
    print(f"{release}: {step['summary']}\n{lines}\n{step['figures']}")
    assert not step["skipped"], step["summary"]
    assert proc.returncode == 0, lines + proc.stderr[-2000:]
    items = {i["patch"]: i for i in step["items"]}
    assert set(tests) <= set(items)
    assert "0 regressions" in step["summary"]
    # the series' own ground passes on both patched runs: no skip hides
    # it (psci may fail unpatched: the upstream arm_set_cpu_on() race the
    # series fixes first)
    for test in set(items) & {"selftest-smp", "psci", "gicv3-ipi",
                              "its-trigger"}:
        message = items[test]["message"]
        assert message == "PASS on every build" or (
            ", patched PASS " in message and
            "disabledcpus=1 PASS " in message), f"{test}: {message}"
    # and the disabled vCPU was there for every SMP GICv3 test
    log = (BUILD_ROOT / release / "kut" / "qemu-disabledcpus.log") \
        .read_text().splitlines()
    assert len([line for line in log if "disabledcpus=1" in line]) >= \
        len(set(items) & SMP_GICV3), log


def test_the_wrapper_adds_a_disabled_vcpu_to_gicv3_machines(tmp_path):
    script = kut.wrapper(tmp_path, Path("/bin/echo"))

    def run(*args: str) -> str:
        return subprocess.run([script, *args], capture_output=True,
                              text=True, check=True).stdout.strip()

    assert run("-machine", "virt", "-smp", "4", "-kernel", "psci.flat") == \
        ("-machine gic-version=3 -machine virt -smp cpus=4,disabledcpus=1 "
         "-kernel psci.flat")
    assert run("-machine", "virt", "-smp", "2", "-machine",
               "gic-version=2") == "-machine virt -smp 2 -machine gic-version=2"
    log = (tmp_path / "qemu-disabledcpus.log").read_text().splitlines()
    assert log == ["-machine gic-version=3 -machine virt -smp "
                   "cpus=4,disabledcpus=1 -kernel psci.flat",
                   "-machine virt -smp 2 -machine gic-version=2"]


def test_a_test_that_passes_unpatched_must_pass_patched():
    def runs(*verdicts: str) -> dict:
        return {label: kut.Outcome(v, "", 1.0)
                for label, v in zip(kut.RUNS, verdicts, strict=True)}

    assert kut.compare("psci", runs("PASS", "PASS", "PASS")) == \
        (True, "PASS on every build")
    ok, message = kut.compare("psci", runs("PASS", "PASS", "FAIL"))
    assert not ok
    assert message.startswith("passes unpatched, not patched, "
                              "disabledcpus=1: ")
    ok, message = kut.compare("timer", runs("FAIL", "PASS", "SKIP"))
    assert ok and message == ("unpatched FAIL, patched PASS, "
                              "patched, disabledcpus=1 SKIP")
