"""Run the check steps in order and collect their results.

REGISTRY says what each step needs before it runs; the steps themselves
(steps.py, qtest.py) take the run's CheckRun.
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from generator import gitops
from generator.build import build as qbuild
from generator.check import STEPS, cparse
from generator.check.kut import step_kut
from generator.check.qtest import step_qtest
from generator.check.steps import (
    CheckRun,
    StepResult,
    step_apply,
    step_bisect,
    step_checkpatch,
    step_invariants,
    step_kvm,
)
from generator.errors import GenError
from generator.guest import default_dir as default_guest_dir
from generator.output.written import WrittenSeries
from generator.qemutree import BaseTree
from generator.spec.model import Series


@dataclass(frozen=True)
class Step:
    run: Callable[[CheckRun], StepResult]
    needs_apply: bool = True    # not run when the series does not apply
    needs_tip: bool = False     # the series applied and built first
    cross: bool = False         # compiles in the aarch64 cross build too


REGISTRY = {
    "apply": Step(step_apply, needs_apply=False),
    "checkpatch": Step(step_checkpatch, needs_apply=False),
    "bisect": Step(step_bisect, cross=True),
    "invariants": Step(step_invariants, needs_tip=True, cross=True),
    "qtest": Step(step_qtest, needs_tip=True),
    "kvm": Step(step_kvm, needs_tip=True),
    "kut": Step(step_kut, needs_tip=True),
}
assert tuple(REGISTRY) == STEPS, "check/__init__.py's STEPS and REGISTRY"


def run(base: BaseTree, series_dir: Path, build_root: Path, series: Series,
        steps: list[str],
        guest: Path | None = None, qtests: tuple[str, ...] = (),
        asan: bool = False,
        kut_tests: tuple[str, ...] = ()) -> list[StepResult]:
    """Run `steps` (a subset of STEPS, in STEPS order); return results.
    `guest` holds the emulated Arm host's kernel and busybox (kvm step)
    and the UEFI image (qtest step); `qtests` limits the qtest step,
    `asan` adds its AddressSanitizer runs; `kut_tests` limits the kut
    step."""
    build_root = build_root.resolve()
    if "invariants" in steps:
        cparse.gnu_parser_class()    # a broken parser install: exit 2 now
    patches = list(WrittenSeries.read(series_dir).patches)
    with qbuild.exclusive(build_root):
        return _run_steps(base, series, patches, build_root, steps,
                          guest, qtests, asan, kut_tests)


def _run_steps(base: BaseTree, series: Series, patches: list[Path],
               build_root: Path, steps: list[str], guest: Path | None,
               qtests: tuple[str, ...], asan: bool,
               kut_tests: tuple[str, ...]) -> list[StepResult]:
    ctx = CheckRun(base, series,
                   qbuild.prepare_source(base, [], build_root),
                   patches, build_root, guest or default_guest_dir(),
                   qtests, asan, kut_tests,
                   cross=any(REGISTRY[s].cross for s in steps))
    results: list[StepResult] = []
    for name, step in REGISTRY.items():
        if name not in steps:
            results.append(StepResult(name, skipped=True, summary="skipped"))
            continue
        start = time.monotonic()
        if step.needs_apply and any(not r.ok for r in results
                                    if r.name == "apply"):
            result = StepResult(name, ok=False,
                                summary="not run: the series does not apply")
        else:
            if step.needs_tip:
                ctx.ensure_tip()
            result = step.run(ctx)
        result.seconds = round(time.monotonic() - start, 1)
        results.append(result)
    # leave the build dir as `gen-series build` would, applied and stamped
    if len(gitops.commits_since(gitops.open_repo(ctx.src), base.commit)) \
            == len(patches):
        qbuild.mark_applied(ctx.src, base, patches)
    return results


def to_json(results: list[StepResult], base: BaseTree, series_dir: Path) -> str:
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
