"""`gen-series check`: is the series ready to send?  (The steps are
described once, in check/__init__.py STEP_HELP.)"""

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from generator.commands.common import (
    QEMU_HELP,
    Subparsers,
    add_build_dir_argument,
    add_guest_argument,
    add_spec_arguments,
    load_signed_series,
    path_arg,
    qemu_arg,
    resolve_qemu,
)

logger = logging.getLogger(__name__)

if TYPE_CHECKING:   # imported where used: `--help` stays quick
    from generator.check.steps import StepResult
    from generator.qemutree import BaseTree


def add_parser(sub: Subparsers) -> None:
    from generator.check import STEP_HELP, STEPS
    chk = sub.add_parser(
        "check", help="is the series ready to send? apply, checkpatch, "
        "bisectable builds, structure invariants, QEMU's qtests, KVM",
        description="Check a series on one QEMU release, in order: "
        + ", ".join(STEPS) + ".  " + "  ".join(
            f"{name}: {text}" for name, text in STEP_HELP.items())
        + "  Exit status 0 only if every step passes.")
    chk.add_argument("--qemu", required=True, type=qemu_arg, metavar="PATH",
                     help=QEMU_HELP)
    chk.add_argument("--series", type=path_arg, metavar="DIR",
                     help="the series to check (default: generate it from "
                     "the spec first); a series from an older spec works too")
    add_build_dir_argument(chk)
    add_spec_arguments(chk, "the spec whose invariants are checked, and "
                       "that renders the series without --series")
    chk.add_argument("--only", action="append", choices=STEPS,
                     metavar="STEP", help="run only this step (repeatable): "
                     + ", ".join(STEPS))
    chk.add_argument("--skip", action="append", choices=STEPS, default=[],
                     metavar="STEP", help="skip this step (repeatable)")
    chk.add_argument("--json", type=path_arg, metavar="FILE",
                     help="also write every step's result as JSON")
    add_guest_argument(chk, "the emulated Arm host's Image-*.xz kernel and "
                       "static busybox-* (kvm step), the QEMU_EFI-*.fd.xz "
                       "UEFI image (qtest step)")
    chk.add_argument("--qtest", action="append", default=[], metavar="NAME",
                     help="in the qtest step, run only this test "
                     "(repeatable), e.g. test-hmp")
    chk.add_argument("--kut-test", action="append", default=[],
                     metavar="NAME",
                     help="in the kut step, run only this kvm-unit-test "
                     "(repeatable), e.g. psci")
    chk.add_argument("--asan", action="store_true",
                     help="in the qtest step, also build the tip with "
                     "--enable-asan (<build-dir>/qemu/build-asan) and run "
                     "the series' own qtests and test-hmp there")
    chk.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import tempfile

    from generator.check import STEPS, pipeline
    from generator.generate.series import generate
    from generator.paths import cache_dir
    from generator.spec.model import load_series

    # an existing series is checked as it is; only rendering needs an author
    series = load_series(args.spec, args.templates) if args.series \
        else load_signed_series(args)
    base = resolve_qemu(args)
    steps = [s for s in (args.only or STEPS) if s not in args.skip]
    build_root = args.build_dir or cache_dir() / "builds" / base.version
    with tempfile.TemporaryDirectory(prefix="gen-series-check-") as tmp:
        series_dir = args.series
        if series_dir is None:
            logger.info(f"no --series: generating it from {args.spec}")
            series_dir = Path(tmp) / "series"
            generate(series, base, series_dir)
        results = pipeline.run(base, series_dir, build_root, series, steps,
                               args.guest, tuple(args.qtest), args.asan,
                               tuple(args.kut_test))
        if args.json:
            args.json.write_text(pipeline.to_json(results, base, series_dir))
    print_summary(results, base)
    return 0 if all(r.ok for r in results) else 1


def print_summary(results: list["StepResult"], base: "BaseTree") -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"gen-series check: QEMU {base.version}",
                  title_justify="left")
    for column in ("step", "result", "seconds", "summary"):
        table.add_column(column)
    for r in results:
        verdict = "skipped" if r.skipped else ("PASS" if r.ok else "FAIL")
        style = "dim" if r.skipped else ("green" if r.ok else "bold red")
        table.add_row(r.name, f"[{style}]{verdict}[/]", str(r.seconds),
                      r.summary)
    for r in results:
        for name, seconds in r.figures.items():
            table.add_row("", "", f"{seconds:.2f}", f"{r.name}: {name}")
    console = Console(highlight=False, width=100)
    console.print(table)
    for r in results:
        for item in r.items:
            if not item["ok"]:
                console.print(f"[bold red]{r.name}[/] {item['patch']}:",
                              markup=True)
                console.print(item["message"], markup=False)
