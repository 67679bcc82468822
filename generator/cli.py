"""Command line: the only place that prints errors and chooses exit codes.

Exit status: 0 ok; 1 the checked thing failed (a patch did not apply, a
build broke); 2 the job could not be done (bad arguments or spec, missing
anchor, missing tool).
"""

import argparse
import sys
from pathlib import Path

from generator.errors import GenError

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = PROJECT / "specs" / "series.yaml"


QUIET = False


def progress(msg: str) -> None:
    if not QUIET:
        print(f"gen-series: {msg}", file=sys.stderr, flush=True)


def cmd_generate(args) -> int:
    from generator.model import load_series
    from generator.qemutree import resolve_base
    from generator.series import generate

    series = load_series(args.spec, args.templates)
    base = resolve_base(args.qemu, progress)
    files = generate(series, base, args.out, progress)
    progress(f"wrote {len(files)} files for QEMU {base.version} "
             f"into {args.out}")
    for f in files:
        print(f)
    return 0


def cmd_build(args) -> int:
    from generator.build import build
    from generator.qemutree import resolve_base

    base = resolve_base(args.qemu, progress)
    if args.cross:
        from generator.build import cross_build
        objects = cross_build(base, args.series, args.build_dir, progress)
        for c_file, objs in objects.items():
            print(f"{c_file}: " + (" ".join(objs) if objs else
                                   "not built for an aarch64 KVM host"))
        return 0
    binary = build(base, args.series, args.build_dir, progress,
                   targets=args.target)
    print(binary)
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gen-series",
        description="Render the declarative spec in specs/ into a QEMU patch "
        "series (vCPU administrative power state on the Arm virt machine), "
        "then apply and build it.",
        epilog="Exit status: 0 ok; 1 a build or check failed; 2 the job "
        "could not be done (bad arguments or spec, missing anchor, missing "
        "tool).")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print no progress, only results and errors")
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="COMMAND")
    qemu_help = ("the QEMU to target: a git work tree (only read), a release "
                 "tarball, or a Debian .dsc (unpacked once into "
                 "~/.cache/gen-series)")

    gen = sub.add_parser(
        "generate", help="write the patch series for one QEMU release",
        description="Render the spec against a QEMU tree and write "
        "0000-cover-letter.patch and NNNN-<subject>.patch, as git "
        "format-patch --cover-letter does.  Byte-identical on re-runs.")
    gen.add_argument("--qemu", required=True, metavar="PATH", help=qemu_help)
    gen.add_argument("--out", required=True, type=Path, metavar="DIR",
                     help="where to write the series (created if missing; "
                     "stale NNNN-*.patch files there are removed)")
    gen.add_argument("--spec", type=Path, default=DEFAULT_SPEC,
                     help="the spec (default: %(default)s)")
    gen.add_argument("--templates", type=Path, default=None, metavar="DIR",
                     help="template directory (default: templates/ beside "
                     "the spec's directory)")
    gen.set_defaults(func=cmd_generate)

    bld = sub.add_parser(
        "build", help="apply a series with git am and build "
        "qemu-system-aarch64",
        description="Apply the series onto a clean clone of the base with "
        "git am, configure and build qemu-system-aarch64 in --build-dir "
        "(reused: rebuilds are incremental, ccache when installed).  The "
        "last line printed is the binary's path.")
    bld.add_argument("--qemu", required=True, metavar="PATH", help=qemu_help)
    bld.add_argument("--series", required=True, type=Path, metavar="DIR",
                     help="a directory of NNNN-*.patch files")
    bld.add_argument("--build-dir", required=True, type=Path, metavar="DIR",
                     help="work directory for the source clone and build")
    bld.add_argument("--target", action="append", default=[],
                     metavar="NINJA_TARGET",
                     help="an extra ninja target to build (repeatable), e.g. "
                     "tests/unit/test-smp-parse")
    bld.add_argument("--cross", action="store_true",
                     help="instead, compile every C file the series changes "
                     "in an aarch64 cross build with KVM enabled (the Arm "
                     "KVM code only compiles for an Arm host); prints each "
                     "file and its object files")
    bld.set_defaults(func=cmd_build)
    return parser


def main(argv=None) -> int:
    global QUIET
    args = make_parser().parse_args(argv)
    QUIET = args.quiet
    try:
        return args.func(args)
    except GenError as e:
        print(f"gen-series: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("gen-series: interrupted", file=sys.stderr)
        return 130
