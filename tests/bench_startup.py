"""Benchmark (issue 24): what possible vCPUs cost at start-up, in time and
peak memory, on the patched QEMU under TCG, for three shapes of N
possible vCPUs:

* realized: `-smp N` on `virt` (every vCPU created, realized, a thread);
* maxcpus: `-smp 1,maxcpus=N` on the newest machine type before the
  series' own (`virt-10.2` on 10.2.2): upstream's behaviour, where the
  N-1 vCPUs are only possible, never created (on the series' `virt`
  machine, maxcpus > cpus means disabled vCPUs);
* disabled: `-smp cpus=1,disabledcpus=N-1` on `virt`.

Builds nothing: it takes a built binary (default: the `gen-series build`
output in the cache, builds/<release>/qemu/build).  Prints figures, draws
the same as a PNG (matplotlib: `pip install -e '.[bench]'`; without it,
the table only); asserts nothing.

    python tests/bench_startup.py [--binary QEMU] [--runs 5] [--out DIR]

Start-up is exec to the answer of a first QMP command (query-status)
with -S (machine created, nothing run); peak RSS is the process's
ru_maxrss (wait4) after quit; CPU ms is the run's user + system time
(wait4; quit included), which a busy machine inflates less than the
elapsed time.  Each figure is the median of --runs runs,
taken round robin so that a busy moment of the machine spreads over all
shapes.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from generator.paths import cache_dir  # noqa: E402

NS = (1, 8, 64, 256, 512)
SHAPES = ("realized", "maxcpus", "disabled")
GOAL = 1.5          # issue 24: disabled within 1.5x of -smp 1


def default_binary(release: str = "10.2.2") -> Path:
    return cache_dir() / "builds" / release / "qemu" / "build" / \
        "qemu-system-aarch64"


def old_machine(binary: Path) -> str:
    """The newest versioned virt machine type before the newest one (the
    series adds the newest, whose maxcpus means disabled vCPUs)."""
    out = subprocess.run([str(binary), "-M", "help"], capture_output=True,
                         text=True, check=True).stdout
    versions = sorted({tuple(map(int, m)) for m in
                       re.findall(r"^virt-(\d+)\.(\d+)\s", out, re.M)})
    if len(versions) < 2:
        raise SystemExit(f"{binary}: no older virt machine type in -M help")
    return "virt-%d.%d" % versions[-2]


def command_line(shape: str, n: int, old: str) -> tuple[str, str]:
    """The machine and -smp of a shape with n possible vCPUs."""
    if shape == "realized":
        return "virt", str(n)
    if shape == "maxcpus":
        return old, f"1,maxcpus={n}"
    return "virt", f"cpus=1,disabledcpus={n - 1}"


def answer(proc: subprocess.Popen) -> dict:
    """The next QMP answer (events skipped)."""
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("QEMU closed QMP")
        reply = json.loads(line)
        if "return" in reply or "error" in reply:
            return reply


def start_once(binary: Path, machine: str,
               smp: str) -> tuple[float, int, float]:
    """(seconds from exec to the query-status answer, peak RSS in KiB,
    CPU seconds of the whole run, quit included)."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [str(binary), "-M", f"{machine},gic-version=3", "-accel", "tcg",
             "-cpu", "max", "-smp", smp, "-m", "1G", "-nodefaults",
             "-display", "none", "-S", "-qmp", "stdio"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
            text=True)
        try:
            proc.stdout.readline()                  # greeting
            proc.stdin.write('{"execute": "qmp_capabilities"}\n'
                             '{"execute": "query-status"}\n')
            proc.stdin.flush()
            answer(proc)
            status = answer(proc)
            elapsed = time.perf_counter() - start
            proc.stdin.write('{"execute": "quit"}\n')
            proc.stdin.flush()
            proc.stdout.read()
        except (RuntimeError, ValueError, OSError):
            status = {}
        _, wstatus, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(wstatus)
        proc.stdin.close()
        proc.stdout.close()
        if proc.returncode != 0 or "return" not in status:
            err.seek(0)
            raise SystemExit(f"-M {machine} -smp {smp}: QEMU failed "
                             f"({proc.returncode}): {err.read().decode()}")
    return elapsed, usage.ru_maxrss, usage.ru_utime + usage.ru_stime


def measure(binary: Path, ns: list, runs: int, old: str) -> dict:
    """{(shape, n): (median seconds, median peak KiB, median CPU s)}"""
    samples: dict = {(s, n): [] for s in SHAPES for n in ns}
    for run in range(runs):
        for key in samples:
            samples[key].append(start_once(binary,
                                           *command_line(*key, old)))
        print(f"  run {run + 1}/{runs} done", file=sys.stderr)
    return {key: tuple(statistics.median(s[i] for s in got)
                       for i in range(3))
            for key, got in samples.items()}


def table(results: dict, ns: list, old: str) -> str:
    heads = {"realized": "-smp N (virt)",
             "maxcpus": f"-smp 1,maxcpus=N ({old})",
             "disabled": "cpus=1,disabledcpus=N-1"}
    lines = ["start-up (exec to query-status answer, -S) / peak RSS, "
             "medians",
             f"{'N':>5} | " + " | ".join(f"{heads[s]:>32}" for s in SHAPES),
             f"{'':>5} | " + " | ".join(f"{'ms':>10} {'CPU ms':>10} {'MiB':>10}"
                                        for _ in SHAPES)]
    for n in ns:
        lines.append(f"{n:>5} | " + " | ".join(
            f"{results[s, n][0] * 1000:10.0f} {results[s, n][2] * 1000:10.0f}"
            f" {results[s, n][1] / 1024:10.1f}" for s in SHAPES))
    base = results.get(("realized", 1))
    if base:
        for n in ns[1:]:
            t, r, c = results["disabled", n]
            lines.append(f"disabledcpus={n - 1} vs -smp 1: time "
                         f"{t / base[0]:.2f}x (CPU {c / base[2]:.2f}x), "
                         f"peak RSS {r / base[1]:.2f}x (goal {GOAL}x)")
    return "\n".join(lines)


def plot(results: dict, ns: list, old: str, title: str, png: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter
    labels = {"realized": "all realized: -smp N",
              "maxcpus": f"upstream: -smp 1,maxcpus=N ({old})",
              "disabled": "disabled: -smp cpus=1,disabledcpus=N-1"}
    styles = {"realized": "s-", "maxcpus": "o--", "disabled": "D-"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, index, scale, unit in ((axes[0], 0, 1000, "start-up, ms"),
                                   (axes[1], 1, 1 / 1024, "peak RSS, MiB")):
        for shape in SHAPES:
            ax.plot(ns, [results[shape, n][index] * scale for n in ns],
                    styles[shape], label=labels[shape])
        if ("realized", 1) in results:
            ax.axhline(results["realized", 1][index] * scale * GOAL,
                       color="grey", linestyle=":", linewidth=1,
                       label=f"goal: {GOAL}x of -smp 1")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        # and 2, 4, 6 of each decade: RSS spans a decade only
        ax.yaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: f"{v:g}" if f"{v:g}"[0] in "246" else ""))
        last = ns[-1]
        if ("realized", 1) in results and last > 1:
            ratio = results["disabled", last][index] / \
                results["realized", 1][index]
            ax.annotate(f"{ratio:.1f}x -smp 1",
                        (last, results["disabled", last][index] * scale),
                        textcoords="offset points", xytext=(-70, -14),
                        fontsize=8, color="tab:green")
        ax.set_xlabel("possible vCPUs N")
        ax.set_ylabel(unit)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_title("start-up time (exec to QMP answer, -S, TCG)")
    axes[1].set_title("peak RSS")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", type=Path, default=default_binary())
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--n", type=int, nargs="+", default=list(NS),
                        help="possible vCPU counts (default: %(default)s)")
    parser.add_argument("--old-machine", help="the upstream machine type "
                        "for maxcpus (default: the newest but one)")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="where bench_startup.txt and .png go")
    args = parser.parse_args()
    ns = sorted(set(args.n))
    old = args.old_machine or old_machine(args.binary)
    title = f"{args.binary} (TCG), median of {args.runs} runs"
    print(title)
    results = measure(args.binary, ns, args.runs, old)
    text = table(results, ns, old)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_startup.txt").write_text(title + "\n" + text + "\n")
    png = args.out / "bench_startup.png"
    if plot(results, ns, old, title, png):
        print(f"plot: {png}")
    else:
        print("no plot: matplotlib is not installed "
              "(pip install -e '.[bench]')")


if __name__ == "__main__":
    main()
