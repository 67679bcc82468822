"""`gen-series tables`: the expected ACPI tables a series commits.

A series that changes ACPI tables adds its bios-tables-test case the way
QEMU asks (tests/qtest/bios-tables-test.c): empty expected files listed
in bios-tables-test-allowed-diff.h, the code and the test, then the real
tables in a patch of their own with their disassembled diff in the
message.  Those tables are data the spec copies (`copy-file` changes on
`tests/data/acpi/ARCH/MACHINE/TABLE.VARIANT`); this module makes them with
the patched QEMU itself, as tests/data/acpi/rebuild-expected-aml.sh does,
for the release being targeted, and writes the ASL diff beside them.
"""

import difflib
import logging
import re
import shutil
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path

from generator import gitops
from generator.build import qtests
from generator.build.build import build
from generator.errors import CheckFailed, ToolError
from generator.generate.series import generate
from generator.generate.walk import copy_source, template_context
from generator.output.outdir import write_if_changed
from generator.qemutree import BaseTree
from generator.spec.model import Series
from generator.spec.templates import make_env

logger = logging.getLogger(__name__)

TABLE_FILE = re.compile(r"^tests/data/acpi/(?P<arch>[^/]+)/(?P<machine>[^/]+)"
                        r"/(?P<table>[A-Z0-9]{4})\.(?P<variant>[\w-]+)$")
ASL_DIFF = "asl.diff"

# (arch, machine, variant) -> [(file in the tree, its source under templates)]
TableGroups = dict[tuple[str, str, str], list[tuple[str, Path]]]


def expected_tables(series: Series, base: BaseTree) -> TableGroups:
    """The tables the spec copies, grouped by the qtest case making them."""
    env = make_env(series.templates)
    context = template_context(series, base, defaultdict(bool))
    groups: TableGroups = defaultdict(list)
    for patch in series.patches:
        for change in patch.changes:
            m = TABLE_FILE.match(change.file)
            if change.action == "copy-file" and m:
                groups[m["arch"], m["machine"], m["variant"]].append(
                    (change.file, copy_source(series, env, change, context)))
    return groups


def disassemble(table: bytes, tmp: Path, name: str) -> list[str]:
    """iasl's ASL for one table, without its dated banner."""
    path = tmp / f"{name}.dat"
    path.write_bytes(table)
    proc = subprocess.run(["iasl", "-d", path.name], cwd=tmp,
                          capture_output=True, text=True)
    dsl = path.with_suffix(".dsl")
    if proc.returncode != 0 or not dsl.is_file():
        raise ToolError(f"iasl -d {name}: {proc.stdout[-300:]}")
    text = dsl.read_text(encoding="utf-8", errors="replace")
    # the banner names the tool version, the file and the date
    body = text.split(" */\n", 1)[1] if text.startswith("/*") else text
    return body.splitlines(keepends=True)


def asl_diff(src: Path, files: list[str]) -> str:
    """Each new table's ASL against the default table it replaces."""
    if not shutil.which("iasl"):
        raise ToolError("iasl not found: install acpica-tools "
                        "(.ci/setup does)")
    chunks = []
    with tempfile.TemporaryDirectory(prefix="gen-series-asl-") as tmp:
        for file in files:
            default = src / file.rsplit(".", 1)[0]
            new = (src / file).read_bytes()
            before = disassemble(default.read_bytes(), Path(tmp), "default") \
                if default.is_file() else []
            after = disassemble(new, Path(tmp), "new")
            chunks.append("".join(difflib.unified_diff(
                before, after, f"a/{default.relative_to(src)}", f"b/{file}",
                n=3)))
    return "".join(chunks)


def rebuild(series: Series, base: BaseTree, build_root: Path,
            guest_dir: Path) -> list[Path]:
    """Make the expected tables for `base`; return the paths written."""
    groups = expected_tables(series, base)
    if not groups:
        raise ToolError("the spec copies no tests/data/acpi tables")
    with tempfile.TemporaryDirectory(prefix="gen-series-tables-") as tmp:
        series_dir = Path(tmp) / "series"
        generate(series, base, series_dir, missing_data_ok=True)
        binary = build(base, series_dir, build_root,
                       targets=["tests/qtest/bios-tables-test"])
    build_dir, src = binary.parent, binary.parent.parent
    qtests.provide_firmware(build_dir, guest_dir)
    written = []
    try:
        for (arch, machine, variant), tables in sorted(groups.items()):
            case = f"/{arch}/acpi/{machine}/{variant}"
            logger.info(f"tables: running {case} in rebuild mode")
            result = qtests.run_case(build_dir, "bios-tables-test", case,
                                     qtests.qtest_env(
                                         TEST_ACPI_REBUILD_AML="y"))
            if not result.ok or f"ok 1 {case}" not in result.output:
                raise CheckFailed(f"bios-tables-test {case} did not run:\n"
                                  + result.output[-2000:])
            made = {str(p.relative_to(src)) for p in
                    (src / "tests/data/acpi" / arch / machine).glob(
                        f"*.{variant}")}
            named = {file for file, _ in tables}
            if made - named:
                raise CheckFailed(
                    f"{case} also changes " + ", ".join(sorted(made - named))
                    + ": add a copy-file change for each (and an empty "
                    "file in the allowed-diff patch)")
            for file, source in tables:
                data = (src / file).read_bytes()
                source.parent.mkdir(parents=True, exist_ok=True)
                write_if_changed(source, data)
                written.append(source)
            diff = tables[0][1].parent / ASL_DIFF
            write_if_changed(
                diff, asl_diff(src, [f for f, _ in tables]).encode())
            written.append(diff)
    finally:
        # rebuild mode wrote into the clone; leave it as `build` made it
        gitops.restore(gitops.open_repo(src), "tests/data/acpi")
    return written
