"""The virt machine with administratively disabled vCPUs, on the real
patched QEMU under TCG (both releases)."""

import subprocess

import pytest
from conftest import qmp
from guest import boot

VIRT = ["-M", "virt,gic-version=3", "-cpu", "max"]


def qom_children(binary, args, path="/machine"):
    (reply,) = qmp(binary, args, [{"execute": "qom-list",
                                   "arguments": {"path": path}}])
    return {p["name"] for p in reply["return"]
            if p["type"].startswith("child<")}


@pytest.mark.slow
def test_disabled_vcpus_exist_but_are_not_realized(built):
    _, binary = built
    args = VIRT + ["-smp", "cpus=2,disabledcpus=2"]
    cpus, smp, *states = qmp(binary, args, [
        {"execute": "query-cpus-fast"},
        {"execute": "qom-get", "arguments": {"path": "/machine",
                                             "property": "smp"}},
    ] + [{"execute": "qom-get", "arguments": {"path": f"/machine/vcpu[{n}]",
                                              "property": prop}}
         for n in (2, 3) for prop in ("admin-power-state", "realized",
                                      "start-powered-off", "mp-affinity")])
    realized = cpus["return"]
    assert [c["cpu-index"] for c in realized] == [0, 1]
    threads = {c["thread-id"] for c in realized}
    assert len(threads) == 2 and all(t > 0 for t in threads)
    assert smp["return"]["cpus"] == 2
    assert smp["return"]["disabledcpus"] == 2
    assert smp["return"]["maxcpus"] == 4
    values = [s["return"] for s in states]
    # vcpu[2] and vcpu[3]: disabled, unrealized, powered off, and with the
    # MPIDR the machine gives slot N (Aff0 = N for GICv3 layouts)
    assert values == ["disabled", False, True, 2,
                      "disabled", False, True, 3]
    assert {"vcpu[2]", "vcpu[3]"} <= qom_children(binary, args)


@pytest.mark.slow
def test_without_disabledcpus_nothing_changes(built):
    _, binary = built
    args = VIRT + ["-smp", "2"]
    cpus, smp = qmp(binary, args, [
        {"execute": "query-cpus-fast"},
        {"execute": "qom-get", "arguments": {"path": "/machine",
                                             "property": "smp"}}])
    assert [c["qom-path"] for c in cpus["return"]] == [
        "/machine/unattached/device[0]", "/machine/unattached/device[1]"]
    assert smp["return"]["maxcpus"] == 2
    assert smp["return"]["disabledcpus"] == 0
    assert not any(name.startswith("vcpu[")
                   for name in qom_children(binary, args))


@pytest.mark.slow
def test_guest_boots_with_two_online_cpus(built):
    _, binary = built
    result = boot(binary, "cpus=2,disabledcpus=2")
    assert "GUEST-INIT-DONE" in result["console"], result["console"][-3000:]
    assert result["returncode"] == 0, result["stderr"]
    # ACPI (UEFI boot): every vCPU present, the disabled ones not enabled
    assert result["cpus"] == {"possible": "0-3", "present": "0-3",
                              "online": "0-1", "enabled": "0-1"}
    # PSCI DENIED for the disabled ones: Linux defers them silently
    assert "failed to boot" not in result["console"]


@pytest.mark.slow
@pytest.mark.parametrize("machine, smp, error", [
    ("virt,gic-version=2", "cpus=2,disabledcpus=2",
     "mach-virt: -smp disabledcpus requires gic-version=3 or 4"),
    ("virt,gic-version=3", "cpus=2,disabledcpus=2,maxcpus=6",
     "mach-virt: -smp disabledcpus requires maxcpus to be cpus + "
     "disabledcpus (4), not 6"),
    ("virt,gic-version=3", "cpus=2,disabledcpus=3,maxcpus=4",
     "Invalid CPU topology: cpus (2) + disabledcpus (3) exceed maxcpus (4)"),
    ("virt,gic-version=3", "maxcpus=4,disabledcpus=4",
     "Invalid CPU topology: disabledcpus (4) must be less than maxcpus (4)"),
    ("virt,gic-version=3", "cpus=2,disabledcpus=4294967298",
     "Invalid CPU topology: disabledcpus (4294967298) exceeds the machine's "
     "maximum of 512 CPUs"),
    # machines that do not opt in
    ("sbsa-ref", "cpus=2,disabledcpus=2",
     "disabledcpus not supported by this machine"),
    ("sbsa-ref", "cpus=1,disabledcpus=1",
     "disabledcpus not supported by this machine"),
    ("none", "cpus=1,disabledcpus=1",
     "disabledcpus not supported by this machine"),
])
def test_unsupported_configurations_fail_with_one_line(built, machine, smp,
                                                        error):
    _, binary = built
    proc = subprocess.run([binary, "-M", machine, "-smp", smp, "-nodefaults",
                           "-display", "none", "-S"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr == f"qemu-system-aarch64: {error}\n"


@pytest.mark.slow
def test_el3_firmware_without_qemu_psci_is_refused(built, tmp_path):
    """secure=on with firmware: the firmware, not QEMU, implements PSCI,
    and disabled vCPUs could never be powered on."""
    _, binary = built
    firmware = tmp_path / "el3.bin"
    firmware.write_bytes(bytes(4096))
    proc = subprocess.run([binary, "-M", "virt,gic-version=3,secure=on",
                           "-smp", "cpus=2,disabledcpus=2", "-bios", firmware,
                           "-nodefaults", "-display", "none", "-S"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr == (
        "qemu-system-aarch64: mach-virt: -smp disabledcpus requires QEMU's "
        "PSCI, which secure=on with EL3 firmware disables\n")


@pytest.mark.slow
def test_gicv4_under_tcg_is_accepted(built):
    _, binary = built
    [cpus] = qmp(binary, ["-M", "virt,gic-version=max,virtualization=on",
                          "-cpu", "max", "-smp", "cpus=2,disabledcpus=2"],
                 [{"execute": "query-cpus-power-state"}])
    assert [c["admin-power-state"] for c in cpus["return"]] == \
        ["enabled", "enabled", "disabled", "disabled"]
