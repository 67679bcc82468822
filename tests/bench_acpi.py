"""Benchmark: how long the Linux guest (UEFI, ACPI, TCG) takes to act on
device-set, over 20 enable/online/disable cycles of vCPU 2:

- enable to hot-add: from the QMP command to the guest's _OST for the
  Device Check (the QMP event ACPI_DEVICE_OST, source 1), by which time
  the guest has registered the CPU;
- disable to eject: from the QMP command, on a vCPU the guest has online,
  to QEMU reporting it disabled, which happens at the guest's _EJ0 after
  it took the CPU offline.

Prints p50 and p99, asserts nothing.

    python tests/bench_acpi.py [path/to/qemu-system-aarch64] [cycles]
"""

import statistics
import sys
import time
from pathlib import Path

from guest import guest_args
from qemu_session import Qemu

DEFAULT = Path.home() / ".cache/gen-series/builds/10.2.2/qemu/build/" \
    "qemu-system-aarch64"
VCPU2 = "/machine/vcpu[2]"


def wait(check) -> float:
    """Seconds until `check()`, polled every millisecond or so."""
    start = time.perf_counter()
    while not check():
        time.sleep(0.001)
    return time.perf_counter() - start


def device_checks(vm) -> int:
    vm.cmd("query-status")
    return sum(1 for e in vm.events if e["event"] == "ACPI_DEVICE_OST" and
               e["data"]["info"]["source"] == 1)


def percentiles(times: list) -> str:
    times = sorted(times)
    p99 = times[min(len(times) - 1, round(0.99 * len(times)) - 1)]
    return (f"p50 {statistics.median(times) * 1000:.0f} ms, "
            f"p99 {p99 * 1000:.0f} ms")


def main() -> None:
    binary = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    cycles = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    hot_add, eject = [], []
    with Qemu(binary, guest_args("cpus=2,disabledcpus=2", shell=True),
              console=True) as vm:
        vm.read_until(b"GUEST-SHELL-READY")
        for _ in range(cycles):
            seen = device_checks(vm)
            start = time.perf_counter()
            vm.cmd("device-set", id=VCPU2, **{"admin-power-state": "enabled"})
            wait(lambda seen=seen: device_checks(vm) > seen)
            hot_add.append(time.perf_counter() - start)
            vm.shell("echo 1 > /sys/devices/system/cpu/cpu2/online")
            start = time.perf_counter()
            vm.cmd("device-set", id=VCPU2, **{"admin-power-state": "disabled"})
            wait(lambda: vm.powerstate()[2]["admin-power-state"] == "disabled")
            eject.append(time.perf_counter() - start)
    print(f"{binary}: {cycles} cycles (TCG, Linux 6.12 guest)")
    print(f"  enable to guest hot-add:  {percentiles(hot_add)}")
    print(f"  disable to guest eject:   {percentiles(eject)}")


if __name__ == "__main__":
    main()
