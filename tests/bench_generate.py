"""Benchmark: `gen-series generate` warm (the release already unpacked in
the cache), as a user runs it: the whole CLI in a fresh interpreter, and
where the time goes inside one run.  Prints figures, asserts nothing.

    python tests/bench_generate.py [release .dsc, tarball or git tree] [runs]
"""

import contextlib
import cProfile
import io
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT = PROJECT.parent / "shared" / "qemu-src" / "qemu_10.2.2+ds-1.dsc"
AUTHOR = "Bench Mark <bench@example.org>"
STAGES = ("load_series", "resolve_base", "parse", "apply_change", "render",
          "write_commits", "format_patch", "replace_series")


def cli_seconds(qemu: Path, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "generator", "-q", "generate",
                    "--author", AUTHOR, "--qemu", str(qemu),
                    "--out", str(out)], cwd=PROJECT, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def stages(qemu: Path, out: Path) -> dict:
    """Cumulative seconds of the pipeline's stages in one in-process run."""
    sys.path.insert(0, str(PROJECT))
    from generator.cli import main
    profile = cProfile.Profile()
    with contextlib.redirect_stdout(io.StringIO()):
        profile.runcall(main, ["-q", "generate", "--author", AUTHOR,
                               "--qemu", str(qemu), "--out", str(out)])
    stats = pstats.Stats(profile).stats
    found = {}
    for (file, _, name), (_, calls, _, cumulative, _) in stats.items():
        if name in STAGES and "/generator/" in file:
            found[name] = (found.get(name, (0, 0.0))[0] + calls,
                           found.get(name, (0, 0.0))[1] + cumulative)
    return found


def main() -> None:
    qemu = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with tempfile.TemporaryDirectory() as tmp:
        cli_seconds(qemu, Path(tmp) / "warm")   # unpacks on a cold cache
        times = [cli_seconds(qemu, Path(tmp) / f"run{n}")
                 for n in range(runs)]
        print(f"generate {qemu.name}, warm, {runs} runs of the CLI: "
              f"median {statistics.median(times):.2f} s, "
              f"min {min(times):.2f} s, max {max(times):.2f} s")
        print("one run under cProfile (inflates Python time), cumulative:")
        for name, (calls, seconds) in sorted(
                stages(qemu, Path(tmp) / "profiled").items(),
                key=lambda kv: -kv[1][1]):
            print(f"  {name:15} {calls:4d} calls {seconds:6.2f} s")


if __name__ == "__main__":
    main()
