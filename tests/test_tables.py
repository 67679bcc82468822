"""`gen-series tables` makes the expected ACPI tables the series commits.

The patched QEMU of each release, run in bios-tables-test's rebuild mode,
must give back the committed tables byte for byte (and their ASL diff):
the series' data is current and reproducible.  The qtest step of
`gen-series check` (tests/test_check.py) then runs the case against them.
"""

import shutil

import pytest
from conftest import BUILD_ROOT, PROJECT, RELEASES, release_dsc, run_gen_series

TABLES = PROJECT / "templates" / "tests" / "acpi-tables"


@pytest.mark.slow
@pytest.mark.parametrize("release", list(RELEASES))
def test_tables_are_reproduced(release, tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(PROJECT / "templates", templates)
    made = templates / "tests" / "acpi-tables" / release
    for f in made.iterdir():        # what the command writes, it makes anew
        f.write_bytes(f.read_bytes()[:-1] + b"X")
    proc = run_gen_series("tables", "--qemu", release_dsc(release),
                          "--templates", templates,
                          "--build-dir", BUILD_ROOT / release)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = sorted(p.rsplit("/", 1)[1] for p in proc.stdout.split())
    assert written == ["APIC.cpuhp", "DSDT.cpuhp", "PPTT.cpuhp", "asl.diff"]
    for name in written:
        assert (made / name).read_bytes() == \
            (TABLES / release / name).read_bytes(), name
    diff = (made / "asl.diff").read_text()
    # the MADT lists all four vCPUs; the DSDT gains the CPU hotplug AML
    assert "ARM MPIDR : 0000000000000003" in diff
    assert "\\_SB.GED.CSCN ()" in diff
    assert 'Name (_HID, "ACPI0007"' in diff
