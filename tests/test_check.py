"""`gen-series check` on the real series, and proof that each step can
fail: a violation is seeded into a copy of the spec's templates, the series
is generated from it, and the right step must fail naming the patch, the
file and the function."""

import json
import re
import shutil

import pytest
from conftest import (
    BUILD_ROOT,
    PROJECT,
    RELEASES,
    patch_file,
    patch_files,
    release_dsc,
    run_gen_series,
)


def check(release, series, *extra, build_root=None, tmp_path=None):
    report = tmp_path / "report.json"
    proc = run_gen_series(
        "-q", "check", "--qemu", release_dsc(release), "--series", series,
        "--build-dir", build_root or BUILD_ROOT / release,
        "--json", report, *extra)
    steps = {s["name"]: s for s in json.loads(report.read_text())["steps"]}
    return proc, steps


def failures(step) -> str:
    return "\n".join(f"{i['patch']}: {i['message']}" for i in step["items"]
                     if not i["ok"])


@pytest.mark.slow
@pytest.mark.parametrize("release", list(RELEASES))
def test_the_series_is_ready_to_send(release, tmp_path):
    # the kut step (kvm-unit-tests) runs in test_kvm_unit_tests.py, on a
    # subset that fits CI's time budget
    proc, steps = check(release, PROJECT / "patches" / release,
                        "--skip", "kut", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert [s for s in steps] == ["apply", "checkpatch", "bisect",
                                  "invariants", "qtest", "kvm", "kut"]
    assert all(s["ok"] for s in steps.values())
    assert not any(s["skipped"] for name, s in steps.items()
                   if name not in ("kvm", "kut"))
    patches = patch_files(PROJECT / "patches" / release)
    assert [i["patch"] for i in steps["apply"]["items"]] == patches
    assert [i["patch"] for i in steps["bisect"]["items"]] == \
        patches + ["(tip)"]
    # QEMU's own tests: nothing that passes on the base fails on the tip;
    # the series' bios-tables-test case passes against its expected tables
    qtest = {i["patch"]: i for i in steps["qtest"]["items"]}
    assert qtest["bios-tables-test /aarch64/acpi/virt/cpuhp"]["tip"] is True
    assert qtest["bios-tables-test /aarch64/acpi/virt/cpuhp"]["base"] is None
    assert qtest["bios-tables-test /aarch64/acpi/virt/topology"]["tip"]
    assert not [n for n, i in qtest.items() if i["base"] and not i["tip"]]
    for test in ("qom-test", "test-hmp", "qmp-cmd-test",
                 "device-introspect-test", "test-smp-parse"):
        assert any(n.startswith(test + " ") and i["tip"]
                   for n, i in qtest.items()), test
    assert "0 regressions" in steps["qtest"]["summary"]
    if steps["kvm"]["skipped"]:
        pytest.skip(f"kvm step: {steps['kvm']['summary']}")
    # under real KVM (nested): every stage of the scenario passed
    assert [i["patch"] for i in steps["kvm"]["items"]] == KVM_STAGES
    assert all(i["ok"] for i in steps["kvm"]["items"])
    figures = steps["kvm"]["figures"]
    assert figures["first enable to guest code"] > 0
    assert figures["migration run"] > 0
    assert {"start-up -smp cpus=1,disabledcpus=7", "start-up -smp 8"} \
        <= set(figures)


KVM_STAGES = ["start", "query", "boot-denied", "reset", "enable",
              "reset-enabled", "disable-denied",
              # generator/kvm/migration.py: one more boot, three inner QEMUs
              "migrate-setup", "migrate-refused", "migrate-source-runs",
              "migrate", "migrate-runs", "migrate-denied", "migrate-disable",
              "migrate-enable"]


def seeded_series(tmp_path, template: str, old: str, new: str):
    """The series generated from a copy of the spec whose `template` has
    `old` replaced by `new`."""
    shutil.copytree(PROJECT / "specs", tmp_path / "specs")
    shutil.copytree(PROJECT / "templates", tmp_path / "templates")
    path = tmp_path / "templates" / template
    text = path.read_text()
    assert old in text, f"seed does not apply to {template}"
    path.write_text(text.replace(old, new, 1))
    run_gen_series("-q", "generate", "--spec", tmp_path / "specs" /
                   "series.yaml", "--qemu", release_dsc("10.2.2"),
                   "--out", tmp_path / "series", check=0)
    return tmp_path / "series"


FINALIZE = """    arm_cpu_finalize_features(cpu, errp);
    if (*errp) {
        return false;
    }
"""
# the patches the seeded violations land in, by spec id
KVM_PATCH = patch_file(PROJECT / "patches" / "10.2.2", "arm-kvm-create-host-vcpu")
MACHINE_PATCH = patch_file(PROJECT / "patches" / "10.2.2",
                           "machine-get-possible-cpu")
SEEDED = BUILD_ROOT / "seeded-10.2.2"


@pytest.mark.slow
def test_finalize_after_kvm_init_is_caught(tmp_path):
    text = (PROJECT / "templates/kvm/create-host-vcpu.c.j2").read_text()
    swapped = text.replace(FINALIZE, "").replace(
        "    cpu->{{ kvm_created_field }} = true;",
        FINALIZE + "    cpu->{{ kvm_created_field }} = true;")
    series = seeded_series(tmp_path, "kvm/create-host-vcpu.c.j2", text,
                           swapped)
    proc, steps = check("10.2.2", series, "--only", "invariants",
                        "--only", "kvm", build_root=SEEDED,
                        tmp_path=tmp_path)
    assert proc.returncode == 1
    assert not steps["invariants"]["ok"]
    assert f"{KVM_PATCH}: target/arm/kvm.c: kvm_arm_create_host_vcpu(): " \
        "kvm_arch_init_vcpu() is called before arm_cpu_finalize_features()" \
        in failures(steps["invariants"])
    # and under real KVM it fails the way the crash report says
    if steps["kvm"]["skipped"]:
        pytest.skip(f"kvm step: {steps['kvm']['summary']}")
    assert not steps["kvm"]["ok"]
    assert "start: QEMU did not start under KVM" in failures(steps["kvm"])
    assert "Failed to initialize KVM vCPU 2: Invalid argument" in \
        failures(steps["kvm"])


@pytest.mark.slow
@pytest.mark.parametrize("release", list(RELEASES))
def test_the_vcpu_set_migrates_under_kvm(release, tmp_path):
    """The kvm step's migration stage (issue 23): the vCPU set migrates
    between two QEMUs under real KVM in the emulated Arm host; a
    destination without vCPU 2 refuses the stream before RAM."""
    proc, steps = check(release, PROJECT / "patches" / release,
                        "--only", "kvm", tmp_path=tmp_path)
    kvm = steps["kvm"]
    if kvm["skipped"]:
        pytest.skip(f"kvm step: {kvm['summary']}")
    assert proc.returncode == 0, failures(kvm) + proc.stderr[-3000:]
    items = {i["patch"]: i["message"] for i in kvm["items"]}
    assert list(items) == KVM_STAGES
    assert "vCPU 2 is enabled on the source and disabled here" in \
        items["migrate-refused"]
    assert "all zero (no RAM loaded)" in items["migrate-refused"]
    assert "mailbox as the source left it" in items["migrate"]
    assert "realized by the load" in items["migrate-denied"]
    # every stage message says when it was seen, and the run is timed
    assert all(re.search(r"\(t\+\d+\.\d s\)$", items[s])
               for s in KVM_STAGES if s.startswith("migrate"))
    assert kvm["figures"]["migration run"] > 0
    assert "migration" in kvm["summary"]


@pytest.mark.slow
def test_a_migration_check_that_lets_a_vcpu_through_is_caught(tmp_path):
    """The destination's vCPU-set check skipped: the stream loads past
    the first section into RAM, the mismatch shows up only after it, and
    only the migration stage under KVM fails."""
    series = seeded_series(
        tmp_path, "migration/virt-vmstate.c.j2",
        "        if (enabled != {{ api_is_enabled }}(dev)) {\n"
        "            error_setg(errp, \"vCPU %d is %s on the source",
        "        if (false && enabled != {{ api_is_enabled }}(dev)) {\n"
        "            error_setg(errp, \"vCPU %d is %s on the source")
    proc, steps = check("10.2.2", series, "--only", "kvm",
                        build_root=SEEDED, tmp_path=tmp_path)
    kvm = steps["kvm"]
    if kvm["skipped"]:
        pytest.skip(f"kvm step: {kvm['summary']}")
    assert proc.returncode == 1
    failed = [i["patch"] for i in kvm["items"] if not i["ok"]]
    assert "migrate-refused" in failed, failures(kvm)
    assert not [s for s in failed if not s.startswith("migrate")]
    assert "the destination's mailbox page loaded" in failures(kvm)


@pytest.mark.slow
def test_unchecked_return_value_is_caught(tmp_path):
    series = seeded_series(
        tmp_path, "kvm/create-host-vcpu.c.j2",
        "    ret = kvm_create_vcpu(cs);\n    if (ret < 0) {",
        "    ret = kvm_create_vcpu(cs);\n    if (false) {")
    proc, steps = check("10.2.2", series, "--only", "invariants",
                        build_root=SEEDED, tmp_path=tmp_path)
    assert proc.returncode == 1
    found = failures(steps["invariants"])
    assert f"{KVM_PATCH}: target/arm/kvm.c: kvm_arm_create_host_vcpu(): " \
        "the result of kvm_create_vcpu()" in found
    assert "is not checked" in found
    # only that invariant fails
    assert [i["patch"] for i in steps["invariants"]["items"]
            if not i["ok"]] == ["kvm-vcpu-creation-checks-every-call"]


@pytest.mark.slow
def test_a_patch_that_breaks_the_build_is_named(tmp_path):
    series = seeded_series(tmp_path, "machine/possible-cpu.c.j2",
                           "        return cpu;\n", "        return cpu\n")
    proc, steps = check("10.2.2", series, "--only", "bisect",
                        build_root=SEEDED, tmp_path=tmp_path)
    assert proc.returncode == 1
    broken = [i for i in steps["bisect"]["items"] if not i["ok"]]
    assert [i["patch"] for i in broken] == [MACHINE_PATCH]
    assert "hw/core/machine.c" in broken[0]["message"]
    assert "machine_get_possible_cpu" in broken[0]["message"]
    assert "error:" in broken[0]["message"]
    # the patches before it compiled
    assert all(i["ok"] for i in steps["bisect"]["items"][:3])


@pytest.mark.slow
def test_a_checkpatch_error_is_caught(tmp_path):
    series = seeded_series(tmp_path, "machine/possible-cpu.c.j2",
                           "        return cpu;\n", "        return cpu;  \n")
    proc, steps = check("10.2.2", series, "--only", "checkpatch",
                        tmp_path=tmp_path)
    assert proc.returncode == 1
    bad = [i for i in steps["checkpatch"]["items"] if not i["ok"]]
    assert [i["patch"] for i in bad] == [MACHINE_PATCH]
    assert "ERROR: trailing whitespace" in bad[0]["message"]
    assert "FILE: hw/core/machine.c" in bad[0]["message"]


@pytest.mark.slow
def test_an_unused_function_is_caught(tmp_path):
    series = seeded_series(
        tmp_path, "machine/possible-cpu.c.j2", "\nCPUState *",
        "\nint machine_count_possible_cpus(void)\n{\n"
        "    return MACHINE(qdev_get_machine())->possible_cpus->len;\n}\n"
        "\nCPUState *")
    proc, steps = check("10.2.2", series, "--only", "invariants",
                        build_root=SEEDED, tmp_path=tmp_path)
    assert proc.returncode == 1
    assert f"{MACHINE_PATCH}: hw/core/machine.c: "\
        "machine_count_possible_cpus() is added but never used" in \
        failures(steps["invariants"])


@pytest.mark.slow
def test_qtest_step_names_a_regression(tmp_path):
    """A new `info` command that crashes on machines without vCPUs (here
    by reading the first element of an empty list): test-hmp, which runs
    every `info` command on every machine, passes on the base and fails
    on the tip, and the step says which case."""
    loop = "    for (e = list; e; e = e->next) {\n"
    series = seeded_series(
        tmp_path, "runtime/hmp-info.c.j2", loop,
        '    monitor_printf(mon, "first: %s\\n", list->value->qom_path);\n'
        + loop)
    proc, steps = check("10.2.2", series, "--only", "qtest", "--qtest",
                        "test-hmp", build_root=SEEDED, tmp_path=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    failed = {i["patch"]: i for i in steps["qtest"]["items"] if not i["ok"]}
    assert failed and all(n.startswith("test-hmp ") for n in failed), failed
    assert all(i["base"] and not i["tip"] for i in failed.values())
    assert "passes on the base, fails on the tip" in \
        next(iter(failed.values()))["message"]
    assert "test-hmp" in proc.stdout
