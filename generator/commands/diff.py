"""`gen-series diff`: two series compared with git range-diff."""

import argparse

from generator.commands.common import (
    QEMU_HELP,
    Subparsers,
    existing,
    path_arg,
    qemu_arg,
)


def add_parser(sub: Subparsers) -> None:
    dif = sub.add_parser(
        "diff", help="compare two generated series (git range-diff), "
        "upstream context drift apart from changes to the series",
        description="Commit each series onto its base and pair the patches "
        "with git range-diff.  Each pair is: same (only line numbers "
        "differ), context (the same lines added and removed and the same "
        "message: only the upstream context changed), changed (a change to "
        "the series itself, shown as range-diff shows it), added or "
        "dropped.  Two versions of the series on one release (--qemu), or "
        "the same spec on two releases (--qemu and --new-qemu).")
    dif.add_argument("old", type=path_arg, metavar="OLD_SERIES",
                     help="a directory of NNNN-*.patch files")
    dif.add_argument("new", type=path_arg, metavar="NEW_SERIES",
                     help="a directory of NNNN-*.patch files")
    dif.add_argument("--qemu", required=True, type=qemu_arg, metavar="PATH",
                     help="the base of OLD_SERIES (and of NEW_SERIES without "
                     "--new-qemu): " + QEMU_HELP)
    dif.add_argument("--new-qemu", type=qemu_arg, metavar="PATH",
                     help="the base of NEW_SERIES, when it is another release")
    dif.add_argument("--json", type=path_arg, metavar="FILE",
                     help="also write the pairs as JSON")
    dif.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from generator.output.rangediff import compare, format_pairs, to_json
    from generator.qemutree import resolve_base

    old = resolve_base(existing(args.qemu, "--qemu"))
    new = resolve_base(existing(args.new_qemu, "--new-qemu")) \
        if args.new_qemu else old
    for d in (args.old, args.new):
        existing(d, "series")
    pairs = compare(old, args.old, new, args.new)
    if args.json:
        args.json.write_text(to_json(pairs))
    print(format_pairs(pairs, f"{args.old} (QEMU {old.version})",
                       f"{args.new} (QEMU {new.version})"), end="")
    return 0
