"""Command line: the only place that prints errors and chooses exit codes.

Exit status: 0 ok; 1 the checked thing failed (a patch did not apply, a
build broke); 2 the job could not be done (bad arguments or spec, missing
anchor, missing tool); 130 interrupted (SIGINT, as shells report it).
Exit status 2 always comes with exactly one `gen-series: error:` line:
main() turns anything unexpected into that line too (--debug adds the
traceback).
"""

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence
from importlib import import_module
from typing import NoReturn

from generator.errors import GenError, Terminated, terminate_as_interrupt

# one module per command in generator/commands/, each with add_parser()
# (its arguments and help) and run(args); listed, not discovered
COMMANDS = ("generate", "build", "tables", "check", "drift", "diff",
            "explain")


class _Format(logging.Formatter):
    """Progress as `gen-series: MSG`, a warning as `gen-series: warning:
    MSG` (shown even with -q)."""

    def format(self, record: logging.LogRecord) -> str:
        kind = "" if record.levelno < logging.WARNING else \
            f"{record.levelname.lower()}: "
        return f"gen-series: {kind}{record.getMessage()}"


def setup_logging(quiet: bool) -> None:
    """Progress and warnings of every module (logger `generator.*`) go to
    the current stderr; -q leaves the warnings."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format())
    log = logging.getLogger("generator")
    log.handlers = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


class Parser(argparse.ArgumentParser):
    """argparse with our one-line error (exit 2), the usage left to -h."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"gen-series: error: {self.prog}: {message} "
                  f"(see {self.prog} --help)\n")


def make_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="gen-series",
        description="Render the declarative spec in specs/ into a QEMU patch "
        "series (vCPU administrative power state on the Arm virt machine), "
        "then apply and build it.",
        epilog="Exit status: 0 ok; 1 a build or check failed; 2 the job "
        "could not be done (bad arguments or spec, missing anchor, missing "
        "tool); 130 interrupted (SIGINT).")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print no progress, only results and errors")
    parser.add_argument("--debug", action="store_true",
                        help="on an unexpected error, also print Python's "
                        "traceback")
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="COMMAND")
    for name in COMMANDS:
        import_module(f"generator.commands.{name}").add_parser(sub)
    return parser


def one_line(msg: str) -> str:
    """`msg` on one line: a spec value (a regex, a subject) may hold a
    newline, which would make the error look like two."""
    return "".join(repr(ch)[1:-1] if ch in "\n\r\v\f\x1c\x1d\x1e\x85"
                   "\u2028\u2029" else ch for ch in msg)


def describe_unexpected(e: BaseException) -> str:
    """One line for an exception no stage turned into a GenError."""
    if isinstance(e, OSError) and e.strerror:
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror}"
    return (f"unexpected {type(e).__name__}: {e} (a bug in gen-series; "
            "--debug shows where)")


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    setup_logging(args.quiet)
    restore = terminate_as_interrupt()  # SIGTERM as SIGINT, exit 143
    try:
        from generator.qemutree import blame_damaged_cache
        # a command module's run()
        status: int = blame_damaged_cache(lambda: args.func(args))
        return status
    except GenError as e:
        msg = str(e) if e.exit_code != 2 else one_line(str(e))
        print(f"gen-series: error: {msg}", file=sys.stderr)
        return e.exit_code
    except Terminated as e:
        print("gen-series: terminated", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("gen-series: interrupted", file=sys.stderr)
        return 130
    except Exception as e:      # the last resort: the contract holds for bugs
        return last_resort(e, args)
    finally:
        restore()


def last_resort(e: Exception, args: argparse.Namespace) -> int:
    """Anything no stage turned into a GenError: one line and exit 2."""
    if args.debug:
        traceback.print_exc()
    print(f"gen-series: error: {one_line(describe_unexpected(e))}",
          file=sys.stderr)
    return 2
