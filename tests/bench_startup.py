"""Benchmark: start-up time of `-smp cpus=1,disabledcpus=255` against
`-smp 1` and `-smp 256` on the patched QEMU under TCG.

Disabled vCPUs are not realized, so they should cost about as little as
not having them.  Prints figures only; nothing here asserts a time.

    python3 tests/bench_startup.py [path/to/qemu-system-aarch64] [runs]

Start-up is measured from exec to the answer of a first QMP command
(query-status) with -S, i.e. machine creation, then quit.
"""

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT = Path.home() / ".cache/gen-series/builds/10.2.2/qemu/build/" \
    "qemu-system-aarch64"
CONFIGS = {
    "-smp 1": "1",
    "-smp cpus=1,disabledcpus=255": "cpus=1,disabledcpus=255",
    "-smp 256": "256",
    "-smp 1,maxcpus=256 (no disabled vCPUs)": "1,maxcpus=256",
}


def start_once(binary: Path, smp: str) -> float:
    cmds = "\n".join(json.dumps({"execute": c}) for c in
                     ("qmp_capabilities", "query-status", "quit")) + "\n"
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(binary), "-M", "virt,gic-version=3", "-cpu", "max", "-smp", smp,
         "-m", "1G", "-nodefaults", "-display", "none", "-S",
         "-qmp", "stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    proc.stdout.readline()                  # greeting
    proc.stdin.write(cmds)
    proc.stdin.flush()
    proc.stdout.readline()                  # qmp_capabilities
    proc.stdout.readline()                  # query-status: machine is up
    elapsed = time.perf_counter() - start
    _, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        raise SystemExit(f"{smp}: QEMU failed: {err}")
    return elapsed


def main() -> None:
    binary = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    print(f"{binary}, {runs} runs each, TCG, start to first QMP answer")
    for name, smp in CONFIGS.items():
        times = [start_once(binary, smp) for _ in range(runs)]
        print(f"  {name:40s} median {statistics.median(times) * 1000:7.1f} ms"
              f"   min {min(times) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
