"""Benchmark: latency of enabling a vCPU, from the QMP device-set command
to its answer, by which time the vCPU is realized and its thread created
and running (waiting for the guest's PSCI CPU_ON).  TCG, 100 first-time
enables of vCPUs on a running machine; prints p50 and p99, asserts
nothing.

    python3 tests/bench_enable.py [path/to/qemu-system-aarch64] [count]
"""

import statistics
import sys
import time
from pathlib import Path

from qemu_session import Qemu

DEFAULT = Path.home() / ".cache/gen-series/builds/10.2.2/qemu/build/" \
    "qemu-system-aarch64"


def main() -> None:
    binary = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    args = ["-M", "virt,gic-version=3", "-cpu", "max", "-m", "256M",
            "-smp", f"cpus=1,disabledcpus={count}"]
    times = []
    with Qemu(binary, args) as vm:
        for n in range(1, count + 1):
            start = time.perf_counter()
            vm.cmd("device-set", id=f"/machine/vcpu[{n}]",
                   **{"admin-power-state": "enabled"})
            times.append(time.perf_counter() - start)
        running = sum(1 for c in vm.powerstate() if c.get("thread-id"))
    times.sort()
    p99 = times[min(len(times) - 1, round(0.99 * len(times)) - 1)]
    print(f"{binary}: {count} enables (TCG), {running} vCPU threads after")
    print(f"  enable latency p50 {statistics.median(times) * 1000:.2f} ms,"
          f" p99 {p99 * 1000:.2f} ms, max {times[-1] * 1000:.2f} ms")


if __name__ == "__main__":
    main()
