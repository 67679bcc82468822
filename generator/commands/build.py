"""`gen-series build`: apply a series with git am and build it."""

import argparse

from generator.commands.common import (
    QEMU_HELP,
    Subparsers,
    path_arg,
    qemu_arg,
    resolve_qemu,
)


def add_parser(sub: Subparsers) -> None:
    bld = sub.add_parser(
        "build", help="apply a series with git am and build "
        "qemu-system-aarch64",
        description="Apply the series onto a clean clone of the base with "
        "git am, configure and build qemu-system-aarch64 in --build-dir "
        "(reused: rebuilds are incremental, ccache when installed).  The "
        "last line printed is the binary's path.")
    bld.add_argument("--qemu", required=True, type=qemu_arg, metavar="PATH",
                     help=QEMU_HELP)
    bld.add_argument("--series", required=True, type=path_arg,
                     metavar="DIR",
                     help="a directory of NNNN-*.patch files")
    bld.add_argument("--build-dir", required=True, type=path_arg,
                     metavar="DIR",
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
    bld.add_argument("--kvm-host", action="store_true",
                     help="instead, build qemu-system-aarch64 for an Arm "
                     "KVM host (aarch64 cross build, KVM only, no TCG); "
                     "the last line printed is its path")
    bld.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from generator.build.build import build

    base = resolve_qemu(args)
    if args.cross:
        from generator.build.build import cross_build
        objects = cross_build(base, args.series, args.build_dir)
        for c_file, objs in objects.items():
            print(f"{c_file}: " + (" ".join(objs) if objs else
                                   "not built for an aarch64 KVM host"))
        return 0
    if args.kvm_host:
        from generator.build.build import kvm_host_build
        print(kvm_host_build(base, args.series, args.build_dir))
        return 0
    binary = build(base, args.series, args.build_dir,
                   targets=args.target)
    print(binary)
    return 0
