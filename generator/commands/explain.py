"""`gen-series explain`: where a line of a patch comes from, and back."""

import argparse

from generator.commands.common import (
    PINNED_SERIES,
    Subparsers,
    path_arg,
)


def add_parser(sub: Subparsers) -> None:
    exp = sub.add_parser(
        "explain", help="where a line of a patch comes from (spec item, "
        "template line), and back",
        description="Read the series-map.json that generate writes beside "
        "a series.  PATCH:LINE (a patch file's name or number, a line of "
        "that file): for a `+` line, the spec item (file:line) and the "
        "template line (the data file's line for copy-file; none for "
        "make-non-static) it comes from; for a context or `-` line, the "
        "changes whose hunk holds it.  SPEC_FILE:LINE or --spec-item ID: "
        "every line of the series that spec item wrote.  TEMPLATE:LINE: "
        "every line of the series that template line wrote.  Paths are "
        "relative to the project; their last components are enough "
        "(kvm.yaml:45).",
        epilog="Exit status: 0 answered; 1 a `+` line the map does not "
        "trace; 2 bad input (no such patch, line or item; no map; a patch "
        "changed since the map was written).")
    exp.add_argument("what", nargs="?", metavar="PATCH:LINE|FILE:LINE",
                     help="e.g. 0009:123, 0009-name.patch:123, "
                     "specs/kvm.yaml:45, templates/kvm/x.c.j2:12")
    exp.add_argument("--spec-item", metavar="ID",
                     help="a change's id: the lines it wrote")
    exp.add_argument("--series", type=path_arg, metavar="DIR",
                     default=PINNED_SERIES,
                     help="the series (default: %(default)s)")
    exp.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from generator.review.explain import explain

    for line in explain(args.series, args.what, args.spec_item):
        print(line)
    return 0
