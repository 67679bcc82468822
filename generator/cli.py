"""Command line: the only place that prints errors and chooses exit codes.

Exit status: 0 ok; 1 the checked thing failed (a patch did not apply, a
build broke); 2 the job could not be done (bad arguments or spec, missing
anchor, missing tool); 130 interrupted (SIGINT, as shells report it).
Exit status 2 always comes with exactly one `gen-series: error:` line:
main() turns anything unexpected into that line too (--debug adds the
traceback).
"""

import argparse
import dataclasses
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from generator.errors import GenError, Terminated, ToolError, terminate_as_interrupt

if TYPE_CHECKING:   # imported where used: `--help` stays quick
    from generator.check.steps import StepResult
    from generator.model import Series
    from generator.qemutree import BaseTree

# what --to-maintainers and the versions add to a rendered series
Finish = Callable[[dict[str, bytes]], dict[str, bytes]]

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = PROJECT / "specs" / "series.yaml"
# the release the committed series is pinned to (README)
PINNED_QEMU = PROJECT.parent / "shared" / "qemu-src" / "qemu_10.2.2+ds-1.dsc"
PINNED_SERIES = PROJECT / "patches" / "10.2.2"


QUIET = False


def progress(msg: str) -> None:
    if not QUIET:
        print(f"gen-series: {msg}", file=sys.stderr, flush=True)


def warn(msg: str) -> None:
    """Something the user must know even with -q."""
    print(f"gen-series: warning: {msg}", file=sys.stderr, flush=True)


def resolve_qemu(args: argparse.Namespace) -> "BaseTree":
    """--qemu as a base tree; a git work tree with uncommitted changes is
    used at HEAD, which the user may not expect."""
    from generator.gitops import is_dirty
    from generator.qemutree import resolve_base

    base = resolve_base(args.qemu, progress)
    if Path(args.qemu).is_dir() and is_dirty(base.repo):
        warn(f"--qemu {args.qemu} has uncommitted changes; the series is "
             f"built from its HEAD ({base.commit[:12]}), without them")
    return base


def load_signed_series(args: argparse.Namespace) -> "Series":
    """The spec, authored and signed off by the user: --author, else git's
    user.name and user.email; never a made-up identity."""
    from generator.gitops import user_identity
    from generator.model import check_identity, load_series, with_identity

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


def cmd_generate(args: argparse.Namespace) -> int:
    from generator import outdir
    from generator.series import generate

    out = outdir.check_usable(args.out)
    outdir.recover(out)
    series = load_signed_series(args)
    if args.version is not None:
        series = dataclasses.replace(series, version=args.version)
    base = resolve_qemu(args)
    files = generate(series, base, out, progress,
                     finish=finish_series(args, series, base, out))
    progress(f"wrote {len(files)} files for QEMU {base.version} "
             f"into {out}")
    for f in files:
        print(f)
    return 0


def finish_series(args: argparse.Namespace, series: "Series",
                  base: "BaseTree", out: Path) -> Finish | None:
    """What -v, --previous, --keep-version and --to-maintainers add to the
    rendered series; None without them: the series as format-patch wrote
    it."""
    from generator import recipients, versions
    from generator.qemutree import resolve_base

    versions.check_options(args.previous, args.previous_qemu)
    versioned = bool(args.version or args.previous or args.keep_version)
    if not versioned and not args.to_maintainers:
        return None
    if args.previous is not None:
        versions.check_previous(args.previous, series.version)
    previous_base = resolve_base(existing(args.previous_qemu,
                                          "--previous-qemu"), progress) \
        if args.previous_qemu else base

    def finish(files: dict[str, bytes]) -> dict[str, bytes]:
        if versioned:
            previous = args.previous
            if args.keep_version:
                kept = versions.keep_previous(out, series.version, progress)
                previous = previous or kept
            files = versions.add_change_id(files, versions.series_change_id(
                series, previous))
            if previous is not None:
                progress(f"comparing with v{series.version - 1} in "
                         f"{previous}")
                files = versions.add_changes_section(
                    files, previous, previous_base, base, series.version,
                    progress)
        if args.to_maintainers:
            progress(f"asking QEMU {base.version}'s get_maintainer.pl")
            files = recipients.add_recipients(files, base)
        return files
    return finish


def cmd_build(args: argparse.Namespace) -> int:
    from generator.build import build

    base = resolve_qemu(args)
    if args.cross:
        from generator.build import cross_build
        objects = cross_build(base, args.series, args.build_dir, progress)
        for c_file, objs in objects.items():
            print(f"{c_file}: " + (" ".join(objs) if objs else
                                   "not built for an aarch64 KVM host"))
        return 0
    if args.kvm_host:
        from generator.build import kvm_host_build
        print(kvm_host_build(base, args.series, args.build_dir, progress))
        return 0
    binary = build(base, args.series, args.build_dir, progress,
                   targets=args.target)
    print(binary)
    return 0


def cmd_tables(args: argparse.Namespace) -> int:
    from generator.kvm.nested import default_guest_dir
    from generator.qemutree import cache_dir
    from generator.tables import rebuild

    series = load_signed_series(args)
    base = resolve_qemu(args)
    build_root = args.build_dir or cache_dir() / "builds" / base.version
    written = rebuild(series, base, build_root,
                      args.guest or default_guest_dir(), progress)
    progress(f"wrote {len(written)} files for QEMU {base.version}; "
             "run `generate` to put them into the series")
    for path in written:
        print(path)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import tempfile

    from generator.check import STEPS, pipeline
    from generator.model import load_series
    from generator.qemutree import cache_dir
    from generator.series import generate

    # an existing series is checked as it is; only rendering needs an author
    series = load_series(args.spec, args.templates) if args.series \
        else load_signed_series(args)
    base = resolve_qemu(args)
    steps = [s for s in (args.only or STEPS) if s not in args.skip]
    build_root = args.build_dir or cache_dir() / "builds" / base.version
    with tempfile.TemporaryDirectory(prefix="gen-series-check-") as tmp:
        series_dir = args.series
        if series_dir is None:
            progress(f"no --series: generating it from {args.spec}")
            series_dir = Path(tmp) / "series"
            generate(series, base, series_dir, progress)
        results = pipeline.run(base, series_dir, build_root, series, steps,
                               progress, args.guest, tuple(args.qtest),
                               args.asan)
        if args.json:
            args.json.write_text(pipeline.to_json(results, base, series_dir))
    print_summary(results, base)
    return 0 if all(r.ok for r in results) else 1


def cmd_drift(args: argparse.Namespace) -> int:
    from generator.drift import compare, format_report, to_json
    from generator.model import load_series
    from generator.qemutree import resolve_base

    series = load_series(args.spec, args.templates)
    old = resolve_base(existing(args.from_qemu, "--from"), progress)
    new = resolve_base(existing(args.qemu, "--qemu"), progress)
    report = compare(series, old, new, progress)
    if args.json:
        args.json.write_text(to_json(report))
    print(format_report(report), end="")
    return 0 if report.renders else 1


def cmd_diff(args: argparse.Namespace) -> int:
    from generator.qemutree import resolve_base
    from generator.rangediff import compare, format_pairs, to_json

    old = resolve_base(existing(args.qemu, "--qemu"), progress)
    new = resolve_base(existing(args.new_qemu, "--new-qemu"), progress) \
        if args.new_qemu else old
    for d in (args.old, args.new):
        existing(d, "series")
    pairs = compare(old, args.old, new, args.new, progress)
    if args.json:
        args.json.write_text(to_json(pairs))
    print(format_pairs(pairs, f"{args.old} (QEMU {old.version})",
                       f"{args.new} (QEMU {new.version})"), end="")
    return 0


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a version (1, 2, "
                                         "...)")
    return int(text)


def cmd_explain(args: argparse.Namespace) -> int:
    from generator.explain import explain

    for line in explain(args.series, args.what, args.spec_item):
        print(line)
    return 0


def existing(path: str, option: str) -> str:
    if not Path(path).exists():
        raise ToolError(f"{option} {path}: no such file or directory")
    return path


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


def qemu_arg(text: str) -> str:
    path_arg(text)
    return text


def path_arg(text: str) -> Path:
    """A path argument; "" would be read as the current directory."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path")
    return Path(text)


class Parser(argparse.ArgumentParser):
    """argparse with our one-line error (exit 2), the usage left to -h."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"gen-series: error: {self.prog}: {message} "
                  f"(see {self.prog} --help)\n")


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
    qemu_help = ("the QEMU to target: a git work tree (only read), a release "
                 "tarball, or a Debian .dsc (unpacked once into "
                 "~/.cache/gen-series)")

    gen = sub.add_parser(
        "generate", help="write the patch series for one QEMU release",
        description="Render the spec against a QEMU tree and write "
        "0000-cover-letter.patch and NNNN-<subject>.patch, as git "
        "format-patch --cover-letter does.  Byte-identical on re-runs.")
    gen.add_argument("--qemu", required=True, type=qemu_arg, metavar="PATH",
                     help=qemu_help)
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
    gen.set_defaults(func=cmd_generate)

    bld = sub.add_parser(
        "build", help="apply a series with git am and build "
        "qemu-system-aarch64",
        description="Apply the series onto a clean clone of the base with "
        "git am, configure and build qemu-system-aarch64 in --build-dir "
        "(reused: rebuilds are incremental, ccache when installed).  The "
        "last line printed is the binary's path.")
    bld.add_argument("--qemu", required=True, type=qemu_arg, metavar="PATH",
                     help=qemu_help)
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
    bld.set_defaults(func=cmd_build)

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
                     help=qemu_help)
    add_build_dir_argument(tbl)
    add_guest_argument(tbl, "the QEMU_EFI-*.fd.xz UEFI image for "
                       "bios-tables-test")
    add_spec_arguments(tbl, "the spec")
    tbl.set_defaults(func=cmd_tables)

    from generator.check import STEPS
    chk = sub.add_parser(
        "check", help="is the series ready to send? apply, checkpatch, "
        "bisectable builds, structure invariants, QEMU's qtests, KVM",
        description="Check a series on one QEMU release, in order: "
        + ", ".join(STEPS) + ".  apply: git am of each patch onto a clean "
        "base.  checkpatch: the tree's scripts/checkpatch.pl on each patch "
        "(errors and warnings fail).  bisect: after each patch, compile the "
        "C files it changes and the series' C files that include a header "
        "it changes (native, and in the aarch64 KVM cross build for what "
        "only that compiles), then build qemu-system-aarch64 at the tip.  "
        "invariants: the spec's structure invariants, checked with "
        "pycparser on the real preprocessed files.  kvm: a KVM-only aarch64 "
        "build of the tip, run under real KVM on an Arm host that the "
        "native build emulates (TCG with EL2, the --guest kernel): start "
        "with disabled vCPUs, system_reset, enable, guest code on the "
        "enabled vCPU, disable, PSCI CPU_ON denied; about a minute once "
        "built.  qtest: QEMU's own aarch64 qtests (bios-tables-test, "
        "qom-test, test-hmp, qmp-cmd-test, device-introspect-test, "
        "test-smp-parse and any the series adds) on the tip and on the "
        "unpatched base (built once, results cached): a case that passes on "
        "the base must pass on the tip, a new case must pass.  Exit status "
        "0 only if every step passes.")
    chk.add_argument("--qemu", required=True, type=qemu_arg, metavar="PATH",
                     help=qemu_help)
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
    chk.add_argument("--asan", action="store_true",
                     help="in the qtest step, also build the tip with "
                     "--enable-asan (<build-dir>/qemu/build-asan) and run "
                     "the series' own qtests and test-hmp there")
    chk.set_defaults(func=cmd_check)

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
                     help="the new release: " + qemu_help)
    drf.add_argument("--from", dest="from_qemu", type=qemu_arg, metavar="PATH",
                     default=str(PINNED_QEMU),
                     help="the release the series renders on today "
                     "(default: the pinned one, %(default)s)")
    drf.add_argument("--json", type=path_arg, metavar="FILE",
                     help="also write the report as JSON")
    add_spec_arguments(drf, "the spec")
    drf.set_defaults(func=cmd_drift)

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
                     "--new-qemu): " + qemu_help)
    dif.add_argument("--new-qemu", type=qemu_arg, metavar="PATH",
                     help="the base of NEW_SERIES, when it is another release")
    dif.add_argument("--json", type=path_arg, metavar="FILE",
                     help="also write the pairs as JSON")
    dif.set_defaults(func=cmd_diff)

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
    exp.set_defaults(func=cmd_explain)
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
    global QUIET
    args = make_parser().parse_args(argv)
    QUIET = args.quiet
    restore = terminate_as_interrupt()  # SIGTERM as SIGINT, exit 143
    try:
        from generator.qemutree import blame_damaged_cache
        # one of the cmd_* functions
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
