"""`gen-series generate`: write the patch series for one QEMU release."""

import argparse
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from generator.commands.common import (
    QEMU_HELP,
    Subparsers,
    add_spec_arguments,
    existing,
    load_signed_series,
    path_arg,
    qemu_arg,
    resolve_qemu,
)

logger = logging.getLogger(__name__)

if TYPE_CHECKING:   # imported where used: `--help` stays quick
    from generator.qemutree import BaseTree
    from generator.spec.model import Series

# what --to-maintainers and the versions add to a rendered series
Finish = Callable[[dict[str, bytes]], dict[str, bytes]]


def add_parser(sub: Subparsers) -> None:
    gen = sub.add_parser(
        "generate", help="write the patch series for one QEMU release",
        description="Render the spec against a QEMU tree and write "
        "0000-cover-letter.patch and NNNN-<subject>.patch, as git "
        "format-patch --cover-letter does.  Byte-identical on re-runs.")
    gen.add_argument("--qemu", required=True, type=qemu_arg, metavar="PATH",
                     help=QEMU_HELP)
    gen.add_argument("--out", required=True, type=path_arg, metavar="DIR",
                     help="where to write the series (created if missing); "
                     "replaced whole or not at all, and only files an "
                     "earlier generate wrote there (.gen-series-manifest) "
                     "are replaced or removed")
    add_spec_arguments(gen, "the spec")
    ver = gen.add_argument_group(
        "versions and recipients (b4-style; none of them by default)",
        "Any of -v, --previous, --keep-version writes the series' "
        "change-id under base-commit in the cover letter (b4's form, the "
        "same for every version).")
    ver.add_argument("-v", "--reroll-count", dest="version", type=positive,
                     metavar="N", help="the version: [PATCH vN ...] in the "
                     "subjects (default: the spec's series: version)")
    ver.add_argument("--previous", type=path_arg, metavar="DIR",
                     help="the previous version's series directory: the "
                     "cover letter gets 'Changes in vN', per patch (new, "
                     "dropped, message or code changed and where), from a "
                     "range-diff against it")
    ver.add_argument("--previous-qemu", type=qemu_arg, metavar="PATH",
                     help="the base --previous was made on, when it is not "
                     "--qemu (a series carried to a new release)")
    ver.add_argument("--keep-version", action="store_true",
                     help="if --out holds an older version K of the series, "
                     "copy it to DIR.vK/ first (never replacing another "
                     "series there); DIR.v<N-1> is then --previous unless "
                     "given")
    ver.add_argument("--to-maintainers", action="store_true",
                     help="To: and Cc: on each patch from the target tree's "
                     "MAINTAINERS by its scripts/get_maintainer.pl (To: "
                     "maintainers, Cc: reviewers and lists); the cover "
                     "letter to all of them")
    gen.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from generator.generate.series import generate
    from generator.output import outdir

    out = outdir.check_usable(args.out)
    outdir.recover(out)
    series = load_signed_series(args)
    if args.version is not None:
        series = dataclasses.replace(series, version=args.version)
    base = resolve_qemu(args)
    files = generate(series, base, out,
                     finish=finish_series(args, series, base, out))
    logger.info(f"wrote {len(files)} files for QEMU {base.version} "
                f"into {out}")
    for f in files:
        print(f)
    return 0


def finish_series(args: argparse.Namespace, series: "Series",
                  base: "BaseTree", out: Path) -> Finish | None:
    """What -v, --previous, --keep-version and --to-maintainers add to the
    rendered series; None without them: the series as format-patch wrote
    it."""
    from generator.output import recipients, versions
    from generator.qemutree import resolve_base

    versions.check_options(args.previous, args.previous_qemu)
    versioned = bool(args.version or args.previous or args.keep_version)
    if not versioned and not args.to_maintainers:
        return None
    if args.previous is not None:
        versions.check_previous(args.previous, series.version)
    previous_base = resolve_base(existing(args.previous_qemu,
                                          "--previous-qemu")) \
        if args.previous_qemu else base

    def finish(files: dict[str, bytes]) -> dict[str, bytes]:
        if versioned:
            previous = args.previous
            if args.keep_version:
                kept = versions.keep_previous(out, series.version)
                previous = previous or kept
            files = versions.add_change_id(files, versions.series_change_id(
                series, previous))
            if previous is not None:
                logger.info(f"comparing with v{series.version - 1} in "
                            f"{previous}")
                files = versions.add_changes_section(
                    files, previous, previous_base, base, series.version)
        if args.to_maintainers:
            logger.info(f"asking QEMU {base.version}'s get_maintainer.pl")
            files = recipients.add_recipients(files, base)
        return files
    return finish


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a version (1, 2, "
                                         "...)")
    return int(text)
