"""Reliability check of the QMP sessions the tests run (qemu_session.Qemu
over qemu.qmp): N QEMU runs of start, query-status, device-set (enable
vCPU 2, then a refused request), query-cpus-power-state, quit.  Prints
how many runs failed and how; asserts no time.

    python3 tests/soak_qmp.py [path/to/qemu-system-aarch64] [runs]
"""

import sys
import time
import traceback
from pathlib import Path

from qemu_session import Qemu, QmpError

DEFAULT = Path.home() / ".cache/gen-series/builds/10.2.2/qemu/build/" \
    "qemu-system-aarch64"
ARGS = ["-M", "virt,gic-version=3", "-cpu", "max", "-S", "-accel", "tcg",
        "-smp", "cpus=2,disabledcpus=2"]
VCPU2 = "/machine/vcpu[2]"


def session(binary: Path) -> None:
    with Qemu(binary, ARGS) as vm:
        assert vm.cmd("query-status")["status"] == "prelaunch"
        vm.cmd("device-set", id=VCPU2, **{"admin-power-state": "enabled"})
        try:
            vm.cmd("device-set", id=VCPU2, **{"admin-power-state": "enabled"})
            raise AssertionError("a second enable was not refused")
        except QmpError as e:
            assert e.desc == "vCPU 2 is already enabled", e.desc
        states = [c["admin-power-state"] for c in vm.powerstate()]
        assert states == ["enabled"] * 3 + ["disabled"], states
    assert vm.proc.returncode == 0, f"QEMU exited with {vm.proc.returncode}"


def main() -> None:
    binary = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    failed = 0
    start = time.monotonic()
    for n in range(runs):
        try:
            session(binary)
        except Exception:
            failed += 1
            print(f"run {n}: {traceback.format_exc()}")
    print(f"{binary}: {runs - failed} of {runs} sessions ok, {failed} failed,"
          f" {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    main()
