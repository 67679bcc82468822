"""What the commands share: the spec and --qemu arguments, the author.
Only the commands and cli import it."""

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from generator.errors import ToolError
from generator.paths import PROJECT, SHARED

if TYPE_CHECKING:   # imported where used: `--help` stays quick
    from generator.qemutree import BaseTree
    from generator.spec.model import Series

# argparse's type for add_subparsers()' result
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

DEFAULT_SPEC = PROJECT / "specs" / "series.yaml"
# the release the committed series is pinned to (README)
PINNED_QEMU = SHARED / "qemu-src" / "qemu_10.2.2+ds-1.dsc"
PINNED_SERIES = PROJECT / "patches" / "10.2.2"
QEMU_HELP = ("the QEMU to target: a git work tree (only read), a release "
             "tarball, or a Debian .dsc (unpacked once into "
             "~/.cache/gen-series)")

# progress is logged (logger `generator.*`, INFO); cli.main prints it
logger = logging.getLogger(__name__)


def resolve_qemu(args: argparse.Namespace) -> "BaseTree":
    """--qemu as a base tree; a git work tree with uncommitted changes is
    used at HEAD, which the user may not expect."""
    from generator.gitops import is_dirty
    from generator.qemutree import resolve_base

    base = resolve_base(args.qemu)
    if Path(args.qemu).is_dir() and is_dirty(base.repo):
        logger.warning(f"--qemu {args.qemu} has uncommitted changes; the "
                       f"series is built from its HEAD ({base.commit[:12]}), "
                       "without them")
    return base


def load_signed_series(args: argparse.Namespace) -> "Series":
    """The spec, authored and signed off by the user: --author, else git's
    user.name and user.email; never a made-up identity."""
    from generator.gitops import user_identity
    from generator.spec.model import check_identity, load_series, with_identity

    series = load_series(args.spec, args.templates)
    identity: str | None
    if args.author is not None:
        identity = check_identity(args.author, "--author")
    else:
        identity = user_identity()
        if identity is None:
            raise ToolError("no identity to author and sign off the patches "
                            "with: set git config user.name and user.email, "
                            "or pass --author 'Name <email>'")
        identity = check_identity(identity, "git config user.name/email")
    return with_identity(series, identity)


def existing(path: str, option: str) -> str:
    if not Path(path).exists():
        raise ToolError(f"{option} {path}: no such file or directory")
    return path


def qemu_arg(text: str) -> str:
    path_arg(text)
    return text


def path_arg(text: str) -> Path:
    """A path argument; "" would be read as the current directory."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path")
    return Path(text)


def add_spec_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--spec", type=path_arg, default=DEFAULT_SPEC,
                        help=f"{what} (default: %(default)s)")
    parser.add_argument("--templates", type=path_arg, default=None,
                        metavar="DIR", help="template directory (default: "
                        "templates/ beside the spec's directory)")
    parser.add_argument("--author", metavar="'NAME <EMAIL>'",
                        help="author and Signed-off-by of every patch "
                        "(default: git config user.name and user.email; "
                        "with neither, the command stops with exit 2)")


def add_build_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--build-dir", type=path_arg, metavar="DIR",
                        help="work directory, reused between runs (default: "
                        "~/.cache/gen-series/builds/<release>, shared with "
                        "`build`)")


def add_guest_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--guest", type=path_arg, metavar="DIR",
                        help=f"where {what} are (default: $GEN_SERIES_GUEST "
                        "or ../shared/guest beside the project)")
