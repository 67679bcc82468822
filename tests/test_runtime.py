"""Enabling and disabling vCPUs at run time on the real patched QEMU
(TCG, both releases): QMP/HMP, the Linux guest's PSCI CPU_ON, migration."""

import time

import pytest
from guest import guest_args
from qemu_session import Qemu, QmpError

VIRT = ["-M", "virt,gic-version=3", "-cpu", "max", "-S"]
BOOT1 = "/machine/unattached/device[1]"
VCPU2 = "/machine/vcpu[2]"


def vm(built, smp="cpus=2,disabledcpus=2"):
    return Qemu(built[1], VIRT + ["-smp", smp])


@pytest.mark.slow
def test_first_enable_realizes_and_gives_a_thread(built):
    with vm(built) as q:
        before = q.powerstate()
        assert [(c["admin-power-state"], c["realized"], "thread-id" in c)
                for c in before] == [("enabled", True, True),
                                     ("enabled", True, True),
                                     ("disabled", False, False),
                                     ("disabled", False, False)]
        assert before[2]["qom-path"] == "/machine/vcpu[2]"
        assert before[2]["props"]["core-id"] == 2
        q.cmd("device-set", id="/machine/vcpu[2]", **{"admin-power-state":
                                                      "enabled"})
        cpu2 = q.powerstate()[2]
        assert cpu2["admin-power-state"] == "enabled" and cpu2["realized"]
        assert cpu2["thread-id"] > 0 and cpu2["power-state"] == "off"
        fast = q.cmd("query-cpus-fast")
        assert sorted(c["cpu-index"] for c in fast) == [0, 1, 2]


@pytest.mark.slow
def test_disable_parks_and_enable_again_keeps_the_thread(built):
    with vm(built) as q:
        q.cmd("device-set", id="/machine/vcpu[3]", **{"admin-power-state":
                                                      "enabled"})
        thread = q.powerstate()[3]["thread-id"]
        q.cmd("device-set", id="/machine/vcpu[3]", **{"admin-power-state":
                                                      "disabled"})
        cpu3 = q.powerstate()[3]
        assert (cpu3["admin-power-state"], cpu3["realized"],
                cpu3["thread-id"]) == ("disabled", True, thread)
        q.cmd("device-set", id="/machine/vcpu[3]",
              **{"admin-power-state": "enabled"})
        assert q.powerstate()[3]["thread-id"] == thread


@pytest.mark.slow
@pytest.mark.parametrize("arguments, error", [
    ({"id": "/machine/vcpu[2]", "admin-power-state": "disabled"},
     "vCPU 2 is already disabled"),
    ({"id": "/machine/unattached/device[0]", "admin-power-state": "disabled"},
     "vCPU 0 is a boot vCPU and cannot be disabled"),
    ({"id": BOOT1, "admin-power-state": "disabled"},
     "vCPU 1 is a boot vCPU and cannot be disabled"),
    ({"id": BOOT1, "admin-power-state": "enabled"},
     "vCPU 1 is already enabled"),
    ({"id": "nosuchdevice", "admin-power-state": "enabled"},
     "Device 'nosuchdevice' not found"),
    ({"id": "/machine", "admin-power-state": "enabled"},
     "/machine is not a device"),
])
def test_bad_requests_get_clear_errors(built, arguments, error):
    with vm(built) as q:
        with pytest.raises(QmpError) as e:
            q.cmd("device-set", **arguments)
        assert e.value.desc == error


@pytest.mark.slow
def test_hmp_commands(built):
    with vm(built) as q:
        out = q.cmd("human-monitor-command",
                    **{"command-line": "device_set /machine/vcpu[2] enabled"})
        assert out == ""
        info = q.cmd("human-monitor-command",
                     **{"command-line": "info cpus-power-state"})
        lines = info.splitlines()
        assert len(lines) == 4
        assert lines[2].startswith("CPU #2: enabled, realized, power off, "
                                   "thread_id=")
        assert lines[3] == ("CPU #3: disabled, not realized, power off "
                            "(/machine/vcpu[3])")


@pytest.mark.slow
def test_query_on_a_machine_without_possible_cpus(built):
    with Qemu(built[1], ["-M", "none", "-S"]) as q:
        assert q.cmd("query-cpus-power-state") == []


@pytest.mark.slow
def test_guest_cannot_power_on_a_disabled_vcpu(built):
    """Booted without firmware (device tree, no ACPI), the guest is not
    told of changes (test_acpi.py has the ACPI guest, test_guests.py the
    device-tree contract): a vCPU it took offline is disabled, and its
    CPU_ON is then refused by PSCI."""
    args = guest_args("cpus=2,disabledcpus=2", shell=True, uefi=False)
    with Qemu(built[1], [*args, "-S"], console=True) as q:
        # enabled before the guest runs: in its device tree
        q.cmd("device-set", id=VCPU2, **{"admin-power-state": "enabled"})
        q.cmd("cont")
        q.read_until(b"GUEST-SHELL-READY")
        assert q.shell("cat /sys/devices/system/cpu/online").split()[-1] == \
            "0-2"
        q.shell("echo 0 > /sys/devices/system/cpu/cpu2/online")
        assert q.shell("cat /sys/devices/system/cpu/online").split()[-1] == \
            "0-1"
        until_off = time.monotonic() + 10
        while q.powerstate()[2]["power-state"] != "off":
            assert time.monotonic() < until_off
            time.sleep(0.1)
        q.cmd("device-set", id=VCPU2, **{"admin-power-state": "disabled"})
        assert q.powerstate()[2]["admin-power-state"] == "disabled"

        # PSCI CPU_ON is refused: Linux cannot bring the CPU online
        out = q.shell("echo 1 > /sys/devices/system/cpu/cpu2/online; "
                      "echo rc=$?")
        assert "rc=0" not in out
        # PSCI DENIED, which Linux turns into EPERM (INVALID_PARAMETERS
        # would be EINVAL)
        assert "Operation not permitted" in out
        assert q.shell("cat /sys/devices/system/cpu/online").split()[-1] == \
            "0-1"
        assert q.powerstate()[2]["power-state"] == "off"

        q.cmd("device-set", id=VCPU2, **{"admin-power-state": "enabled"})
        out = q.shell("echo 1 > /sys/devices/system/cpu/cpu2/online; "
                      "echo rc=$?")
        assert "rc=0" in out
        assert q.shell("cat /sys/devices/system/cpu/online").split()[-1] == \
            "0-2"
        assert q.powerstate()[2]["power-state"] == "on"
