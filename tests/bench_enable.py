"""Benchmark (issue 24): the enable path, under TCG.  Prints p50 and p99,
asserts nothing.

* QMP only (-S, no guest): time for `device-set ... enabled` and for
  `device_add` (on `virt` with `-smp 1,maxcpus=N`, whose extra vCPUs are
  disabled ones) to return, by which time the vCPU is realized and its
  thread created; first enables (the vCPU never realized before) and
  later ones (after device-set disabled / device_del);
* with --guest, Linux 6.12 booted under UEFI (../shared/guest): from
  device-set to the QMP answer and to the guest's "CPU n has been
  hot-added" in its dmesg (polled through its shell), first enables and
  later ones (after the guest ejected the vCPU).

    python tests/bench_enable.py [--binary QEMU] [--count 64] [--guest N]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_startup import default_binary  # noqa: E402
from qemu_session import Qemu, QmpError  # noqa: E402

MACHINE = ["-M", "virt,gic-version=3", "-accel", "tcg", "-cpu", "max"]


def percentiles(times: list) -> str:
    if not times:
        return "no samples"
    times = sorted(times)
    p99 = times[min(len(times) - 1, max(0, round(0.99 * len(times)) - 1))]
    return (f"p50 {statistics.median(times) * 1000:8.2f} ms  "
            f"p99 {p99 * 1000:8.2f} ms  ({len(times)} samples)")


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def device_set(vm: Qemu, path: str, state: str) -> None:
    vm.cmd("device-set", id=path, **{"admin-power-state": state})


def qmp_only(binary: Path, count: int) -> dict:
    found: dict = {}
    args = [*MACHINE, "-S", "-m", "256M",
            "-smp", f"cpus=1,disabledcpus={count}"]
    with Qemu(binary, args) as vm:
        paths = [f"/machine/vcpu[{n}]" for n in range(1, count + 1)]
        found["device-set, first enable"] = [
            timed(lambda p=p: device_set(vm, p, "enabled")) for p in paths]
        try:
            for p in paths:
                device_set(vm, p, "disabled")
            found["device-set, later enable"] = [
                timed(lambda p=p: device_set(vm, p, "enabled"))
                for p in paths]
        except QmpError as e:
            print(f"  device-set disabled refused ({e.desc}): "
                  "no later enables", file=sys.stderr)
    args = [*MACHINE, "-S", "-m", "256M", "-smp", f"1,maxcpus={count + 1}"]
    with Qemu(binary, args) as vm:
        props = [c["props"] for c in vm.powerstate()][1:]

        def add(n, p):
            vm.cmd("device_add", driver="max-arm-cpu", id=f"vcpu{n}", **p)
        found["device_add, first plug"] = [
            timed(lambda n=n, p=p: add(n, p))
            for n, p in enumerate(props, 1)]
        try:
            for n in range(1, count + 1):
                vm.cmd("device_del", id=f"vcpu{n}")
            found["device_add, later plug"] = [
                timed(lambda n=n, p=p: add(n, p))
                for n, p in enumerate(props, 1)]
        except QmpError as e:
            print(f"  device_del refused ({e.desc}): no later plugs",
                  file=sys.stderr)
    return found


def hot_added(vm: Qemu, n: int) -> int:
    """How many times the guest said it hot-added CPU n."""
    out = vm.shell(f"dmesg | grep -c 'CPU{n} has been hot-added'")
    return int(out.split()[-1])


def with_guest(binary: Path, count: int, rounds: int) -> dict:
    from guest import guest_args
    from test_acpi import until
    found: dict = {k: [] for k in ("QMP answer, first enable",
                                   "guest hot-added, first enable",
                                   "QMP answer, later enable",
                                   "guest hot-added, later enable")}
    args = guest_args(f"cpus=1,disabledcpus={count}", shell=True)
    args[args.index("-M") + 1] += ",accel=tcg"
    with Qemu(binary, args, console=True) as vm:
        boot = time.perf_counter()
        vm.read_until(b"GUEST-SHELL-READY", timeout=600)
        print(f"  guest booted in {time.perf_counter() - boot:.0f} s",
              file=sys.stderr)
        for r in range(rounds):
            kind = "first" if r == 0 else "later"
            for n in range(1, count + 1):
                path = f"/machine/vcpu[{n}]"
                start = time.perf_counter()
                device_set(vm, path, "enabled")
                found[f"QMP answer, {kind} enable"].append(
                    time.perf_counter() - start)
                # polled in dmesg, as tests/test_guests.py does (the
                # console does not print it): a shell round trip or so late
                until(lambda n=n, r=r: hot_added(vm, n) > r,
                      f"the guest to hot-add CPU{n}", 60)
                found[f"guest hot-added, {kind} enable"].append(
                    time.perf_counter() - start)
            if r + 1 < rounds:
                for n in range(1, count + 1):
                    device_set(vm, f"/machine/vcpu[{n}]", "disabled")
                until(lambda: all(c["admin-power-state"] == "disabled"
                                  for c in vm.powerstate()[1:]),
                      "the guest to eject its vCPUs", 120)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", type=Path, default=default_binary())
    parser.add_argument("--count", type=int, default=64,
                        help="disabled vCPUs enabled, QMP only")
    parser.add_argument("--guest", type=int, default=0, metavar="N",
                        help="also boot Linux with N disabled vCPUs")
    parser.add_argument("--rounds", type=int, default=3,
                        help="guest: enable rounds (the first is first "
                        "enables, the rest after the guest ejected)")
    args = parser.parse_args()
    print(f"{args.binary} (TCG), enable latency")
    for name, times in qmp_only(args.binary, args.count).items():
        print(f"  {name:32} {percentiles(times)}")
    if args.guest:
        print(f"  Linux 6.12 guest, {args.guest} disabled vCPUs, "
              f"{args.rounds} rounds:")
        for name, times in with_guest(args.binary, args.guest,
                                      args.rounds).items():
            print(f"  {name:32} {percentiles(times)}")


if __name__ == "__main__":
    main()
