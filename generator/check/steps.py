"""The check steps.  Each takes the run's CheckRun and returns a
StepResult; none prints or exits."""

import logging
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import NotRequired, TypedDict

from generator import gitops
from generator.build import build as qbuild
from generator.errors import CheckFailed
from generator.output import written
from generator.qemutree import BaseTree
from generator.spec.model import Series

logger = logging.getLogger(__name__)


@dataclass
class CheckRun:
    """What the steps of one `check` share.  The builds are configured when
    a step first needs them; `ensure_tip()` applies and builds the whole
    series once for the steps that look at the tip."""
    base: BaseTree
    series: Series
    src: Path                   # the clone the series is applied in
    patches: list[Path]         # the series' patch files, in order
    build_root: Path
    guest: Path                 # kernel, busybox, UEFI image
    qtests: tuple[str, ...] = ()    # limit the qtest step to these tests
    asan: bool = False          # the qtest step's AddressSanitizer runs
    kut_tests: tuple[str, ...] = ()  # limit the kut step to these tests
    cross: bool = False         # configure the aarch64 cross build too
    tip_built: bool = False
    _builds: list[qbuild.Build] | None = None

    @property
    def builds(self) -> list[qbuild.Build]:
        """The native build, and the aarch64 cross build when a step
        compiles there and its toolchain is installed (the Arm KVM code
        compiles only there)."""
        if self._builds is None:
            self._builds = [qbuild.configure_native(self.src, self.build_root)]
            if self.cross and qbuild.cross_available():
                self._builds.append(qbuild.configure_cross(
                    self.src, self.build_root))
            elif self.cross:
                logger.info("no aarch64 cross toolchain: the Arm KVM code "
                            "is not compiled (run .ci/setup)")
        return self._builds

    def ensure_tip(self) -> None:
        """The series applied and built (the invariants preprocess real
        files, which needs the build's generated headers)."""
        if self.tip_built:
            return
        for _, error in qbuild.apply_one_by_one(self.src, self.base.commit,
                                                self.patches):
            if error:
                raise CheckFailed(error)
        series_c = written.touched_c_files(self.patches)
        native, *others = self.builds
        qbuild.ninja(native.dir, self.build_root, [qbuild.BINARY],
                     native.env)
        for b in others:
            objs = [o for objs in qbuild.object_targets(b.dir, series_c)
                    .values() for o in objs]
            qbuild.ninja(b.dir, self.build_root, objs, b.env)
        self.tip_built = True


class Item(TypedDict):
    """What a step found for one patch (or invariant, or stage)."""
    patch: str
    ok: bool
    message: str
    base: NotRequired[bool | None]  # the qtest step: passed on the base
    tip: NotRequired[bool | None]   # and on the tip (None: not run)


@dataclass
class StepResult:
    name: str
    ok: bool = True
    summary: str = ""
    items: list[Item] = field(default_factory=list)
    seconds: float = 0.0
    skipped: bool = False
    figures: dict[str, float] = field(default_factory=dict)  # name -> seconds

    def fail(self, patch: str, message: str) -> None:
        self.ok = False
        self.items.append({"patch": patch, "ok": False, "message": message})

    def passed(self, patch: str, message: str = "") -> None:
        self.items.append({"patch": patch, "ok": True, "message": message})


def step_apply(run: CheckRun) -> StepResult:
    result = StepResult("apply")
    patches = run.patches
    for patch, error in qbuild.apply_one_by_one(run.src, run.base.commit,
                                                patches):
        logger.info(f"apply: {patch.name}: {'FAILED' if error else 'ok'}")
        if error:
            result.fail(patch.name, error)
        else:
            result.passed(patch.name)
    applied = sum(1 for i in result.items if i["ok"])
    result.summary = f"{applied}/{len(patches)} patches apply"
    return result


def step_checkpatch(run: CheckRun) -> StepResult:
    """The target tree's own checkpatch.pl; errors and warnings both fail,
    except warnings the spec accepts with a reason (the spec's (regex,
    reason) pairs), which are reported."""
    result = StepResult("checkpatch")
    src, patches = run.src, run.patches
    accepted = run.series.accepted_warnings
    script = src / "scripts" / "checkpatch.pl"
    errors = warnings = waived = 0
    for patch in patches:
        proc = subprocess.run(["perl", str(script), "--no-summary",
                               str(patch.resolve())], cwd=src,
                              capture_output=True, text=True)
        text = proc.stdout + proc.stderr
        findings = [line for line in text.splitlines()
                    if line.startswith(("ERROR:", "WARNING:"))]
        reasons = {f: next((r for p, r in accepted if p.search(f)), None)
                   for f in findings if f.startswith("WARNING:")}
        ok_findings = [f for f, r in reasons.items() if r]
        e = sum(1 for f in findings if f.startswith("ERROR:"))
        w = len(findings) - e - len(ok_findings)
        errors, warnings = errors + e, warnings + w
        waived += len(ok_findings)
        logger.info(f"checkpatch: {patch.name}: {e} errors, {w} warnings"
                    + (f", {len(ok_findings)} accepted" if ok_findings else ""))
        accepted_note = "".join(f"\n  accepted: {f} ({reasons[f]})"
                                for f in ok_findings)
        if e or w or (proc.returncode != 0 and not ok_findings):
            detail = _checkpatch_details(text)
            result.fail(patch.name, f"{e} errors, {w} warnings:\n{detail}")
        else:
            result.passed(patch.name, "0 errors, 0 warnings" + accepted_note)
    result.summary = f"{errors} errors, {warnings} warnings" + \
        (f" ({waived} accepted by the spec)" if waived else "")
    return result


def _checkpatch_details(text: str) -> str:
    """Each ERROR/WARNING with the file:line line that follows it."""
    out, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(("ERROR:", "WARNING:")):
            where = lines[i + 1].strip() if i + 1 < len(lines) else ""
            out.append(f"  {line} ({where})" if where.startswith("#")
                       else f"  {line}")
    return "\n".join(out)


def _header_users(build_dir: Path, objects: list[str]) -> dict[str, set[str]]:
    """{object: set of headers it includes}, from ninja's deps log."""
    proc = subprocess.run(["ninja", "-t", "deps", *objects], cwd=build_dir,
                          capture_output=True, text=True)
    users: dict[str, set[str]] = {}
    current = None
    for line in proc.stdout.splitlines():
        if line and not line.startswith(" "):
            current = line.split(":")[0]
            users[current] = set()
        elif current and line.strip():
            users[current].add(line.strip().removeprefix("../"))
    return users


def _compile_errors(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines()
    errors = [ln for ln in lines if ": error: " in ln or "Error " in ln
              or ": In function " in ln]
    return "\n".join(errors[:15] or lines[-20:])


def step_bisect(run: CheckRun) -> StepResult:
    """After each patch, compile the translation units it touches, and the
    series' own translation units that include a header it touches; then
    build everything at the tip."""
    result = StepResult("bisect")
    src, base, patches = run.src, run.base.commit, run.patches
    builds, build_root = run.builds, run.build_root
    series_c = written.touched_c_files(patches)
    objects = {b.name: qbuild.object_targets(b.dir, series_c) for b in builds}
    deps = {b.name: _header_users(b.dir, [o for objs in objects[b.name]
                                          .values() for o in objs])
            for b in builds}
    native = builds[0].name
    walk = qbuild.apply_one_by_one(src, base, patches)
    for patch, error in walk:
        if error:
            result.fail(patch.name, error)
            break
        touched = written.changed_files(patch)
        wanted: dict[str, list[str]] = {}
        for b in builds:
            targets: list[str] = []
            for c_file in series_c:
                objs = objects[b.name].get(c_file, [])
                if b.name != native and objects[native].get(c_file):
                    continue    # the native build compiles it
                includes_touched = any(h in deps[b.name].get(o, ())
                                       for o in objs for h in touched
                                       if h.endswith(".h"))
                if c_file in touched or includes_touched:
                    targets += objs
            wanted[b.name] = targets
        count = sum(len(t) for t in wanted.values())
        logger.info(f"bisect: {patch.name}: compiling {count} objects")
        failed = None
        for b in builds:
            if not wanted[b.name]:
                continue
            log = build_root / f"bisect-{b.name}.log"
            proc = subprocess.run(["ninja", *wanted[b.name]], cwd=b.dir,
                                  env=b.env, capture_output=True, text=True)
            log.write_text(proc.stdout + proc.stderr)
            if proc.returncode != 0:
                failed = f"{b.name} build breaks:\n{_compile_errors(log)}"
                break
        if failed:
            result.fail(patch.name, failed)
            for _ in walk:      # leave the tree at the tip for later steps
                pass
            break
        result.passed(patch.name, f"{count} objects compile")
    if result.ok:
        logger.info("bisect: full build at the tip")
        try:
            qbuild.ninja(builds[0].dir, build_root, [qbuild.BINARY],
                         builds[0].env)
            qbuild.check_warnings(
                build_root / f"ninja-{builds[0].dir.name}.log", series_c, src)
            result.passed("(tip)", f"{qbuild.BINARY} builds")
        except CheckFailed as e:
            result.fail("(tip)", e.msg)
    run.tip_built = result.ok
    broken = [i["patch"] for i in result.items if not i["ok"]]
    result.summary = (f"first broken: {broken[0]}" if broken else
                      f"{len(patches)} patches compile one by one, tip builds")
    return result


def step_invariants(run: CheckRun) -> StepResult:
    """The spec's structure invariants on the patched, built tip."""
    from generator.check import invariants
    result = StepResult("invariants")
    series = run.series
    shas = gitops.commits_since(gitops.open_repo(run.src), run.base.commit)
    ctx = invariants.Context(run.src, [b.dir for b in run.builds],
                             list(zip(run.patches, shas, strict=False)),
                             run.base.commit)
    failed = 0
    for inv in series.invariants:
        problems = invariants.evaluate(ctx, inv)
        logger.info(f"invariants: {inv.id}: "
                    f"{'FAILED' if problems else 'ok'}")
        if problems:
            failed += 1
            result.fail(inv.id, "\n".join(problems))
        else:
            result.passed(inv.id)
    result.summary = (f"{failed} of {len(series.invariants)} invariants fail"
                      if failed else
                      f"{len(series.invariants)} invariants hold")
    return result


def step_kvm(run: CheckRun) -> StepResult:
    """The series under real KVM: its KVM-only aarch64 build run on an
    emulated Arm host (TCG with EL2) by the native build of the same tree
    (generator/kvm)."""
    from generator.guest import host_files
    from generator.kvm import migration, nested, scenario
    result = StepResult("kvm")
    src, patches, builds = run.src, run.patches, run.builds
    build_root, guest = run.build_root, run.guest
    if not qbuild.cross_available():
        result.skipped = True
        result.summary = ("not run: no aarch64 cross toolchain or arm64 "
                          "libraries (.ci/setup installs them)")
        return result
    kernel, busybox = host_files(guest)
    try:
        inner = qbuild.build_kvm_host(src, build_root, patches)
    except CheckFailed as e:
        result.fail("(kvm build)", e.msg)
        result.summary = "the KVM-only aarch64 build fails"
        return result
    host = nested.NestedHost(builds[0].dir / qbuild.BINARY, inner, kernel,
                             busybox, build_root / "nested")
    outcome = scenario.run(host)
    migration.run(host, outcome)
    for name, ok, message in outcome.stages:
        logger.info(f"kvm: {name}: {'ok' if ok else 'FAILED'}")
        (result.passed if ok else result.fail)(name, message)
    figures = dict(outcome.figures)
    if outcome.ok:
        figures.update(scenario.startup_figures(host, 7))
    for name, seconds in figures.items():
        logger.info(f"kvm: {name}: {seconds:.2f} s")
    result.figures = {k: round(v, 3) for k, v in figures.items()}
    passed = sum(1 for _, ok, _ in outcome.stages if ok)
    result.summary = (f"{passed}/{len(outcome.stages)} stages pass under "
                      f"nested KVM ({figures['nested run']:.0f} s, "
                      f"migration {figures.get('migration run', 0):.0f} s)")
    return result
