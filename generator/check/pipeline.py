"""Run the check steps in order and collect their results."""

import json
import time
from pathlib import Path

from generator import build as qbuild
from generator import gitops
from generator.check import STEPS, cparse
from generator.check import invariants as inv_lib
from generator.check.qtest import step_qtest
from generator.check.steps import (
    StepResult,
    step_apply,
    step_bisect,
    step_checkpatch,
    step_kvm,
)
from generator.errors import CheckFailed, GenError
from generator.kvm.nested import default_guest_dir
from generator.qemutree import BaseTree


def _builds(src: Path, build_root: Path, progress, cross: bool) -> list:
    """The native build, and the aarch64 cross build when a step compiles
    there (bisect, invariants) and its toolchain is installed (the Arm KVM
    code compiles only there)."""
    builds = [qbuild.configure_native(src, build_root, progress)]
    if not cross:
        return builds
    if qbuild.cross_available():
        builds.append(qbuild.configure_cross(src, build_root, progress))
    else:
        progress("no aarch64 cross toolchain: the Arm KVM code is not "
                 "compiled (run .ci/setup)")
    return builds


def _ensure_tip(src, base, patches, builds, build_root, progress) -> None:
    """The series applied and built, for the invariants (they preprocess
    real files, which needs the build's generated headers)."""
    for _, error in qbuild.apply_one_by_one(src, base, patches):
        if error:
            raise CheckFailed(error)
    series_c = qbuild.touched_c_files(patches)
    qbuild.ninja(builds[0].dir, build_root, [qbuild.BINARY], builds[0].env,
                 progress)
    for b in builds[1:]:
        objs = [o for objs in qbuild.object_targets(b.dir, series_c).values()
                for o in objs]
        qbuild.ninja(b.dir, build_root, objs, b.env, progress)


def step_invariants(series, src, base, patches, builds, progress):
    result = StepResult("invariants")
    shas = gitops.commits_since(gitops.open_repo(src), base)
    ctx = inv_lib.Context(src, [b.dir for b in builds],
                          list(zip([p.name for p in patches], shas,
                                   strict=False)), base)
    failed = 0
    for inv in series.invariants:
        problems = inv_lib.evaluate(ctx, inv)
        progress(f"invariants: {inv.id}: "
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


def run(base: BaseTree, series_dir: Path, build_root: Path, series,
        steps: list, progress, guest: Path | None = None,
        qtests: tuple = (), asan: bool = False) -> list:
    """Run `steps` (a subset of STEPS, in STEPS order); return results.
    `guest` holds the emulated Arm host's kernel and busybox (kvm step)
    and the UEFI image (qtest step); `qtests` limits the qtest step,
    `asan` adds its AddressSanitizer runs."""
    build_root = build_root.resolve()
    if "invariants" in steps:
        cparse.gnu_parser_class()    # a broken parser install: exit 2 now
    patches = qbuild.series_files(series_dir)
    src = qbuild.prepare_source(base, [], build_root, progress)
    results, builds, tip_built = [], None, False
    for name in STEPS:
        if name not in steps:
            results.append(StepResult(name, skipped=True, summary="skipped"))
            continue
        start = time.monotonic()
        if name == "apply":
            result = step_apply(src, base.commit, patches, progress)
        elif name == "checkpatch":
            result = step_checkpatch(src, patches, progress,
                                     series.accepted_warnings)
        elif any(not r.ok for r in results if r.name == "apply"):
            result = StepResult(name, ok=False,
                                summary="not run: the series does not apply")
        else:
            builds = builds or _builds(
                src, build_root, progress,
                cross="bisect" in steps or "invariants" in steps)
            if name == "bisect":
                result = step_bisect(src, base.commit, patches, builds,
                                     build_root, progress)
                tip_built = result.ok
            else:
                if not tip_built:
                    _ensure_tip(src, base.commit, patches, builds,
                                build_root, progress)
                    tip_built = True
                if name == "invariants":
                    result = step_invariants(series, src, base.commit,
                                             patches, builds, progress)
                elif name == "qtest":
                    result = step_qtest(base, src, patches, builds,
                                        build_root,
                                        guest or default_guest_dir(),
                                        progress, qtests, asan)
                else:
                    result = step_kvm(src, patches, builds, build_root,
                                      guest or default_guest_dir(), progress)
        result.seconds = round(time.monotonic() - start, 1)
        results.append(result)
    # leave the build dir as `gen-series build` would, applied and stamped
    if len(gitops.commits_since(gitops.open_repo(src), base.commit)) \
            == len(patches):
        qbuild.mark_applied(src, base, patches)
    return results


def to_json(results: list, base: BaseTree, series_dir: Path) -> str:
    return json.dumps({
        "qemu": base.version, "base-commit": base.commit,
        "series": str(series_dir),
        "ok": all(r.ok for r in results),
        "steps": [{"name": r.name, "ok": r.ok, "skipped": r.skipped,
                   "summary": r.summary, "seconds": r.seconds,
                   "figures": r.figures, "items": r.items}
                  for r in results],
    }, indent=2) + "\n"


__all__ = ["run", "to_json", "STEPS", "GenError"]
