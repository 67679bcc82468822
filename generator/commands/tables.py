"""`gen-series tables`: the expected ACPI tables the series commits."""

import argparse
import logging

from generator.commands.common import (
    QEMU_HELP,
    Subparsers,
    add_build_dir_argument,
    add_guest_argument,
    add_spec_arguments,
    load_signed_series,
    qemu_arg,
    resolve_qemu,
)

logger = logging.getLogger(__name__)


def add_parser(sub: Subparsers) -> None:
    tbl = sub.add_parser(
        "tables", help="make the expected ACPI tables the series commits",
        description="Render the series (without the expected tables it "
        "lacks), build it with bios-tables-test, and run the series' "
        "bios-tables-test cases in rebuild mode, as QEMU's "
        "tests/data/acpi/rebuild-expected-aml.sh does: the tables the "
        "spec's copy-file changes name are written to their source paths "
        "under the templates directory, with asl.diff (iasl's disassembly "
        "against the default tables) for the commit message.  Run it for "
        "each release after a change to the ACPI tables, then `generate`.")
    tbl.add_argument("--qemu", required=True, type=qemu_arg, metavar="PATH",
                     help=QEMU_HELP)
    add_build_dir_argument(tbl)
    add_guest_argument(tbl, "the QEMU_EFI-*.fd.xz UEFI image for "
                       "bios-tables-test")
    add_spec_arguments(tbl, "the spec")
    tbl.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from generator.build.tables import rebuild
    from generator.guest import default_dir as default_guest_dir
    from generator.paths import cache_dir

    series = load_signed_series(args)
    base = resolve_qemu(args)
    build_root = args.build_dir or cache_dir() / "builds" / base.version
    written = rebuild(series, base, build_root,
                      args.guest or default_guest_dir())
    logger.info(f"wrote {len(written)} files for QEMU {base.version}; "
                "run `generate` to put them into the series")
    for path in written:
        print(path)
    return 0
