"""`gen-series drift`: what a new QEMU release does to the series."""

import argparse

from generator.commands.common import (
    PINNED_QEMU,
    QEMU_HELP,
    Subparsers,
    add_spec_arguments,
    existing,
    path_arg,
    qemu_arg,
)


def add_parser(sub: Subparsers) -> None:
    drf = sub.add_parser(
        "drift", help="what a new QEMU release does to the series: "
        "anchors, probes, files",
        description="Walk the spec on the --from release and on the "
        "--qemu one, as generate applies it, without stopping at a "
        "failure.  Lists the probes that flip; each change whose anchor "
        "moved, is ambiguous or missing (with its nearest candidates in the "
        "new tree: a renamed function, the match in another function, the "
        "most similar lines), or that only one release takes (`when:`); "
        "how many lines changed upstream in each file the series reads; "
        "then what to fix, or what to review.  Exit status 0 when the "
        "series renders on --qemu, 1 when it does not.")
    drf.add_argument("--qemu", required=True, type=qemu_arg, metavar="PATH",
                     help="the new release: " + QEMU_HELP)
    drf.add_argument("--from", dest="from_qemu", type=qemu_arg, metavar="PATH",
                     default=str(PINNED_QEMU),
                     help="the release the series renders on today "
                     "(default: the pinned one, %(default)s)")
    drf.add_argument("--json", type=path_arg, metavar="FILE",
                     help="also write the report as JSON")
    add_spec_arguments(drf, "the spec")
    drf.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from generator.qemutree import resolve_base
    from generator.review.drift import compare, format_report, to_json
    from generator.spec.model import load_series

    series = load_series(args.spec, args.templates)
    old = resolve_base(existing(args.from_qemu, "--from"))
    new = resolve_base(existing(args.qemu, "--qemu"))
    report = compare(series, old, new)
    if args.json:
        args.json.write_text(to_json(report))
    print(format_report(report), end="")
    return 0 if report.renders else 1
