"""The `qtest` step: QEMU's own tests on the patched tip and on the base.

A maintainer's first question is whether QEMU's own tests still pass.
The tests that touch what the series changes run on the tip and on the
unpatched base (built once per release beside the other builds, its
results cached); a case that passes on the base and fails on the tip
fails the step, by name.  A case the series adds must pass.  Cases that
fail on both are reported, not failed: here they fail for firmware the
Debian sources strip (bios-tables-test's HEST and SSDT.memhp tables are
patched by the firmware, and differ with Debian's edk2 build).
"""

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from generator.build import build as qbuild
from generator.build import qtests
from generator.check.steps import CheckRun, StepResult
from generator.output import written
from generator.qemutree import BaseTree

logger = logging.getLogger(__name__)

# the qtests of the aarch64 target that exercise what the series changes
# (machines, QMP and HMP commands, QOM properties, ACPI tables)
QTESTS = ("bios-tables-test", "qom-test", "test-hmp", "qmp-cmd-test",
          "device-introspect-test")
UNIT_TESTS = ("test-smp-parse",)
# glib aborts a binary at the first failed assertion, so these run a case
# at a time (the others whole, which is much faster)
PER_CASE = ("bios-tables-test",)
TAP_LINE = re.compile(r"^(not )?ok \d+ (/\S+)")
WORKERS = 2

# (test case -> passed, test -> seconds, test case -> output of a failure)
TestRun = tuple[dict[str, bool], dict[str, float], dict[str, str]]


def series_qtests(patches: list[Path]) -> tuple[str, ...]:
    """qtests the series itself adds (new tests/qtest/*-test.c files)."""
    names = []
    for patch in patches:
        for path in written.changed_files(patch):
            m = re.fullmatch(r"tests/qtest/([\w-]+-test)\.c", path)
            if m and m[1] not in QTESTS and m[1] not in names:
                names.append(m[1])
    return tuple(names)


def targets(tests: tuple[str, ...]) -> list[str]:
    return [f"tests/unit/{t}" if t in UNIT_TESTS else f"tests/qtest/{t}"
            for t in tests]


def _units(build_dir: Path, tests: tuple[str, ...],
           env: dict[str, str]) -> list[tuple[str, str | None]]:
    """(test, case or None) work units."""
    units: list[tuple[str, str | None]] = []
    for test in tests:
        if test in PER_CASE:
            units += [(test, c) for c in qtests.list_cases(build_dir, test,
                                                           env)]
        else:
            units.append((test, None))
    return units


def _outcomes(result: qtests.CaseResult) -> dict[str, bool]:
    """case -> passed, from one run's TAP output (the cases it reached)."""
    cases: dict[str, bool] = {}
    for line in result.output.splitlines():
        m = TAP_LINE.match(line)
        if m:
            cases[m[2]] = m[1] is None
    if result.case != "(all)":
        cases = {result.case: result.ok and cases.get(result.case, False)}
    return {f"{result.test} {c}": ok for c, ok in cases.items()}


def run_tests(build_dir: Path, tests: tuple[str, ...], guest: Path, label: str,
              **env_extra: str) -> TestRun:
    """Run `tests` in a built tree: ({test case: passed}, {test: seconds},
    {test case: output tail of a failure})."""
    qtests.provide_firmware(build_dir, guest)
    env = qtests.qtest_env(**env_extra)
    units = _units(build_dir, tests, env)
    outcomes: dict[str, bool] = {}
    seconds: dict[str, float] = {}
    failures: dict[str, str] = {}

    def one(unit: tuple[str, str | None]) -> qtests.CaseResult:
        test, case = unit
        result = qtests.run_case(build_dir, targets((test,))[0], case, env)
        logger.info(f"qtest ({label}): {test} {case or ''}: "
                    f"{'ok' if result.ok else 'FAILED'} ({result.seconds} s)")
        return result

    def collect(results: Iterable[qtests.CaseResult]) -> list[str]:
        died = []
        for result in results:
            found = _outcomes(result)
            outcomes.update(found)
            seconds[result.test] = round(seconds.get(result.test, 0)
                                         + result.seconds, 1)
            for name, ok in found.items():
                if not ok:
                    failures[name] = result.output[-1500:]
            if result.case == "(all)" and not result.ok:
                died.append(result.test)
        return died

    with ThreadPoolExecutor(WORKERS) as pool:
        died = collect(pool.map(one, units))
        # a binary that died (a crash, an assertion) hides the case that
        # killed it and every later one: run those one at a time
        rerun = [(test, case) for test in died
                 for case in qtests.list_cases(build_dir,
                                               targets((test,))[0], env)
                 if f"{test} {case}" not in outcomes]
        collect(pool.map(one, rerun))
    return outcomes, seconds, failures


def _cache_key(base: BaseTree, test: str, guest: Path) -> str:
    h = hashlib.sha256(f"{base.commit} {test}".encode())
    for image in sorted(guest.glob("QEMU_EFI-*.fd.xz")):
        h.update(image.name.encode())
    return h.hexdigest()[:16]


def base_results(base: BaseTree, build_root: Path, tests: tuple[str, ...],
                 guest: Path) -> dict[str, bool]:
    """The base's outcomes, from its own build; cached per release and
    test (the base never changes)."""
    root = build_root.parent / f"unpatched-{base.version}"
    cache = root / "qtest-results.json"
    data = json.loads(cache.read_text()) if cache.is_file() else {}
    keys = {t: _cache_key(base, t, guest) for t in tests}
    missing = tuple(t for t in tests if data.get(t, {}).get("key") != keys[t])
    if missing:
        binary = qbuild.build(base, None, root,
                              targets=targets(missing))
        outcomes, _, _ = run_tests(binary.parent, missing, guest,
                                   "base")
        for t in missing:
            data[t] = {"key": keys[t], "outcomes": {
                n: ok for n, ok in outcomes.items() if n.startswith(t + " ")}}
        cache.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    if len(missing) < len(tests):
        logger.info(f"qtest (base): cached results from {cache}")
    return {n: ok for t in tests for n, ok in data[t]["outcomes"].items()}


# under AddressSanitizer: the series' own qtests, and test-hmp, which runs
# every `info` command on every machine (a bad cast shows there)
ASAN_TESTS = ("test-hmp",)


def run_asan(src: Path, build_root: Path, tests: tuple[str, ...],
             guest: Path,
             result: StepResult) -> None:
    """Build the tip with --enable-asan and run `tests` there; any failure
    (an ASan report fails the test) fails the step."""
    asan = qbuild.configure_asan(src, build_root)
    qbuild.ninja(asan.dir, build_root, [qbuild.BINARY, *targets(tests)],
                 asan.env)
    # Leak checking is off: 26 Aspeed machines of the unpatched release
    # leak at machine init (vasprintf), which would fail test-hmp there.
    outcomes, seconds, failures = run_tests(
        asan.dir, tests, guest, "asan",
        ASAN_OPTIONS="detect_leaks=0")
    for name, ok in sorted(outcomes.items()):
        asan_name = f"{name} (asan)"
        if ok:
            result.passed(asan_name, "passes under AddressSanitizer")
        else:
            result.fail(asan_name, "fails under AddressSanitizer\n"
                        + failures.get(name, ""))
        result.items[-1]["base"] = None
        result.items[-1]["tip"] = ok
    result.figures.update({f"{t} (asan)": s for t, s in seconds.items()})


def step_qtest(run: CheckRun) -> StepResult:
    """QEMU's own qtests on tip and base.  `run.qtests`: run just these
    tests (names from QTESTS, UNIT_TESTS or the series' own); `run.asan`:
    also run the series' qtests and test-hmp in an AddressSanitizer build
    of the tip."""
    result = StepResult("qtest")
    base, src, patches, builds = run.base, run.src, run.patches, run.builds
    build_root, guest = run.build_root, run.guest
    only, asan = run.qtests, run.asan
    added = tuple(t for t in series_qtests(patches) if not only or t in only)
    tests = tuple(t for t in QTESTS + UNIT_TESTS if not only or t in only)
    native = builds[0]
    qbuild.ninja(native.dir, build_root, targets(tests + added), native.env)
    tip, seconds, failures = run_tests(native.dir, tests + added, guest, "tip")
    base_outcomes = base_results(base, build_root, tests, guest)
    regressions = broken_both = new = 0
    for name in sorted(set(tip) | set(base_outcomes)):
        on_base, on_tip = base_outcomes.get(name), tip.get(name)
        if on_tip is None:
            result.fail(name, "passes on the base, not run on the tip"
                        if on_base else "not run on the tip")
            regressions += bool(on_base)
        elif on_base is None:
            new += 1
            (result.passed if on_tip else result.fail)(
                name, "new: passes" if on_tip else
                "new: fails\n" + failures.get(name, ""))
        elif on_base and not on_tip:
            regressions += 1
            result.fail(name, "passes on the base, fails on the tip\n"
                        + failures.get(name, ""))
        else:
            broken_both += not on_base
            result.passed(name, "passes on base and tip" if on_tip else
                          "fails on the base too (expected here)")
    for item in result.items:
        item["base"] = base_outcomes.get(item["patch"])
        item["tip"] = tip.get(item["patch"])
    result.figures = {f"{t} (tip)": s for t, s in seconds.items()}
    result.summary = (f"{sum(tip.values())}/{len(tip)} cases pass on the "
                      f"tip; {regressions} regressions, {new} new, "
                      f"{broken_both} fail on the base too")
    if asan:
        asan_tests = tuple(t for t in ASAN_TESTS + series_qtests(patches)
                           if not only or t in only)
        before = len(result.items)
        run_asan(src, build_root, asan_tests, guest, result)
        bad = sum(1 for i in result.items[before:] if not i["ok"])
        result.summary += (f"; AddressSanitizer: {len(result.items) - before}"
                           f" cases, {bad} fail")
    return result
