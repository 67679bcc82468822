"""`gen-series build`: git am onto a clean base, configure, ninja, and the
built QEMU behaves as the series says.

The real builds (the `built` fixture in conftest.py) are slow and marked so.
"""

import shutil
import subprocess

import pytest
from conftest import PROJECT, make_git_tree, qmp, release_dsc, run_gen_series


def test_a_patch_that_does_not_apply_fails_with_its_name(tmp_path):
    user = make_git_tree(PROJECT / "tests" / "fixtures" / "minitree",
                         tmp_path / "qemu")
    series = tmp_path / "series"
    series.mkdir()
    (series / "0001-bogus.patch").write_text(
        "From: A <a@example.org>\nSubject: [PATCH] bogus\n\n---\n"
        "diff --git a/hw/core/qdev.c b/hw/core/qdev.c\n"
        "--- a/hw/core/qdev.c\n+++ b/hw/core/qdev.c\n"
        "@@ -1,3 +1,3 @@\n-not in the file\n+x\n context\n context\n")
    proc = run_gen_series("build", "--qemu", user, "--series", series,
                          "--build-dir", tmp_path / "build")
    assert proc.returncode == 1
    assert "gen-series: error: 0001-bogus.patch does not apply" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_build_dir_not_ours_is_refused(tmp_path):
    user = make_git_tree(PROJECT / "tests" / "fixtures" / "minitree",
                         tmp_path / "qemu")
    (tmp_path / "build" / "qemu").mkdir(parents=True)
    series = tmp_path / "series"
    series.mkdir()
    (series / "0001-x.patch").write_text("x\n")
    proc = run_gen_series("build", "--qemu", user, "--series", series,
                          "--build-dir", tmp_path / "build")
    assert proc.returncode == 2
    assert "was not made by gen-series" in proc.stderr


@pytest.mark.slow
def test_smp_parse_unit_test_passes_with_new_cases(built):
    _, binary = built
    proc = subprocess.run([binary.parent / "tests/unit/test-smp-parse",
                           "--tap"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok 9 /test-smp-parse/with_disabledcpus" in proc.stdout
    assert "/test-smp-parse/disabledcpus_unsupported" in proc.stdout
    assert "not ok" not in proc.stdout


@pytest.mark.slow
def test_smp_help_lists_disabledcpus(built):
    _, binary = built
    proc = subprocess.run([binary, "-smp", "help"], capture_output=True,
                          text=True)
    assert "disabledcpus=<num>" in proc.stdout


@pytest.mark.slow
def test_default_machine_reports_zero_disabled_and_admin_state(built):
    _, binary = built
    cpu = "/machine/unattached/device[0]"
    smp, cpus, state, refused = qmp(binary, ["-M", "virt", "-cpu", "max",
                                             "-smp", "2,disabledcpus=0"], [
        {"execute": "qom-get", "arguments": {"path": "/machine",
                                             "property": "smp"}},
        {"execute": "query-cpus-fast"},
        {"execute": "qom-get", "arguments": {
            "path": cpu, "property": "admin-power-state"}},
        {"execute": "qom-set", "arguments": {
            "path": cpu, "property": "admin-power-state",
            "value": "disabled"}},
    ])
    assert smp["return"]["cpus"] == 2
    assert smp["return"]["maxcpus"] == 2
    assert smp["return"]["disabledcpus"] == 0
    assert len(cpus["return"]) == 2
    assert state["return"] == "enabled"
    # only the machine and device-set change it, never qom-set
    assert refused["error"]["desc"] == ("Device 'max-arm-cpu': the "
                                        "administrative power state changes "
                                        "only with device-set")


@pytest.mark.tree
@pytest.mark.parametrize("damage, error", [
    ("remove 0005", "the series is not whole: 0005 missing"),
    ("remove 0032", "0000-cover-letter.patch says 00/32, but it is number "
     "0 of 31"),
])
def test_a_series_that_is_not_whole_is_named(tmp_path, damage, error):
    series = tmp_path / "series"
    shutil.copytree(PROJECT / "patches" / "10.2.2", series)
    number = damage.split()[1]
    next(series.glob(f"{number}-*.patch")).unlink()
    proc = run_gen_series("-q", "check", "--qemu", release_dsc("10.2.2"),
                          "--series", series, "--only", "apply",
                          "--build-dir", tmp_path / "build")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and error in proc.stderr, proc.stderr
    assert not (tmp_path / "build").exists()
