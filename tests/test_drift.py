"""`gen-series drift` and `gen-series diff`: synthetic drift made from
tests/fixtures/minitree inside each test (a function renamed, a block
moved, a match made ambiguous, a signature changed, a probe flipped), and
the real releases 10.2.2 and 10.0.13 both ways."""

import json
import re
import shutil
import tarfile

import pytest
from conftest import PROJECT, RELEASES, make_git_tree, release_dsc, run_gen_series

from generator.generate import anchors
from generator.qemutree import resolve_base
from generator.review import drift
from generator.spec.model import load_series

DRIFT_SPEC = PROJECT / "tests" / "fixtures" / "drift-mini-spec.yaml"
MINI_TEMPLATES = PROJECT / "tests" / "spec-errors" / "templates"
MINITREE = PROJECT / "tests" / "fixtures" / "minitree"
QDEV = "hw/core/qdev.c"
REALIZED_STMT = ('    object_class_property_add_bool(class, "realized",\n'
                 '                                   device_get_realized, NULL);\n')


def mutated(tmp_path, edit, name="new"):
    """A copy of the mini tree with `edit` (text -> text) applied to
    hw/core/qdev.c, as a git work tree."""
    src = tmp_path / f"{name}-src"
    shutil.copytree(MINITREE, src)
    path = src / QDEV
    path.write_text(edit(path.read_text()))
    return make_git_tree(src, tmp_path / name)


def run_drift(new, old, tmp_path, spec=DRIFT_SPEC):
    out = tmp_path / "drift.json"
    proc = run_gen_series("-q", "drift", "--spec", spec, "--templates",
                          MINI_TEMPLATES, "--qemu", new, "--from", old,
                          "--json", out)
    report = json.loads(out.read_text()) if out.is_file() else None
    return proc, report


def change(report, ident):
    return next(c for c in report["changes"] if c["id"] == ident)


def test_renamed_function_is_missing_with_the_new_name_nearest(
        minitree, tmp_path):
    new = mutated(tmp_path, lambda t: t.replace("device_reset(",
                                                "device_reset_hold("))
    proc, report = run_drift(new, minitree, tmp_path)
    assert proc.returncode == 1, proc.stderr
    row = change(report, "by-function")
    assert row["status"] == "missing"
    assert row["candidates"][0]["what"] == "function 'device_reset_hold'"
    assert row["candidates"][0]["where"] == f"{QDEV}:23"
    assert "nearest: function 'device_reset_hold' at hw/core/qdev.c:23" \
        in proc.stdout
    assert not report["renders"] and len(report["problems"]) == 1
    assert report["problems"][0].startswith(
        "tests/fixtures/drift-mini-spec.yaml:")
    # the other anchors are where they were
    assert {c["id"]: c["status"] for c in report["changes"]} == {
        "by-function": "missing", "by-statement": "resolved",
        "by-signature": "resolved", "without-frobnicator": "resolved"}


def test_block_moved_to_another_function_is_found_there(minitree, tmp_path):
    def move(text):
        return text.replace(REALIZED_STMT, "").replace(
            "static void device_reset(DeviceState *dev)\n{\n",
            "static void device_reset(DeviceState *dev)\n{\n"
            + REALIZED_STMT)
    new = mutated(tmp_path, move)
    line = (tmp_path / "new" / QDEV).read_text().splitlines().index(
        REALIZED_STMT.splitlines()[0]) + 1
    proc, report = run_drift(new, minitree, tmp_path)
    assert proc.returncode == 1
    row = change(report, "by-statement")
    assert row["status"] == "missing"
    assert row["candidates"][0]["what"] == \
        "/\"realized\",/ in function 'device_reset'"
    assert row["candidates"][0]["where"] == f"{QDEV}:{line}"


def test_duplicated_match_is_ambiguous_and_the_original_is_nearest(
        minitree, tmp_path):
    new = mutated(tmp_path, lambda t: t.replace(
        "                                   device_get_hotpluggable, NULL);\n",
        "                                   device_get_hotpluggable, NULL);\n"
        + REALIZED_STMT))
    proc, report = run_drift(new, minitree, tmp_path)
    assert proc.returncode == 1
    row = change(report, "by-statement")
    assert row["status"] == "ambiguous"
    assert row["new"]["hits"] == [17, 21]
    assert "matches 2 times in function 'device_class_init'" in \
        row["new"]["reason"]
    assert [c["where"] for c in row["candidates"]] == [f"{QDEV}:17",
                                                       f"{QDEV}:21"]
    assert row["candidates"][0]["score"] > row["candidates"][1]["score"]


def test_changed_signature_points_at_the_new_one(minitree, tmp_path):
    new = mutated(tmp_path, lambda t: t.replace(
        "device_get_realized(Object *obj", "device_get_realized(const Object *obj"))
    proc, report = run_drift(new, minitree, tmp_path)
    assert proc.returncode == 1
    row = change(report, "by-signature")
    assert row["status"] == "missing"
    best = row["candidates"][0]
    assert best["where"] == f"{QDEV}:7"
    assert "const Object *obj" in best["what"] and best["score"] > 0.9


def test_moved_code_still_renders(minitree, tmp_path):
    new = mutated(tmp_path, lambda t: t.replace(
        '#include "qemu/osdep.h"\n',
        '#include "qemu/osdep.h"\n#include "a.h"\n#include "b.h"\n\n'))
    proc, report = run_drift(new, minitree, tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert report["renders"] and report["problems"] == []
    for row in report["changes"]:
        assert row["status"] == "moved"
        assert row["new"]["line"] - row["old"]["line"] == 3
    assert report["files"][QDEV]["added"] == 3
    assert report["flipped"] == []
    assert "the series renders" in proc.stdout


def test_flipped_probe_switches_the_alternatives(minitree, tmp_path):
    new = mutated(tmp_path, lambda t: t + "\nvoid frobnicate(void)\n{\n}\n")
    proc, report = run_drift(new, minitree, tmp_path)
    assert proc.returncode == 0
    assert report["flipped"] == ["has-frobnicator"]
    assert change(report, "with-frobnicator")["status"] == "added"
    assert change(report, "without-frobnicator")["status"] == "dropped"
    assert "has-frobnicator                  false -> true" in proc.stdout
    # and back: the old tree is now the new one
    back, report = run_drift(minitree, new, tmp_path)
    assert back.returncode == 0
    assert change(report, "with-frobnicator")["status"] == "dropped"


def test_release_tarball(minitree, tmp_path, monkeypatch):
    monkeypatch.setenv("GEN_SERIES_CACHE", str(tmp_path / "cache"))
    src = mutated(tmp_path, lambda t: t.replace("device_reset(",
                                                "device_reset_hold("))
    tarball = tmp_path / "qemu-9.2.0.tar.xz"
    with tarfile.open(tarball, "w:xz") as tar:
        tar.add(src, arcname="qemu-9.2.0",
                filter=lambda m: None if "/.git" in m.name else m)
    proc, report = run_drift(tarball, minitree, tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert change(report, "by-function")["candidates"][0]["what"] == \
        "function 'device_reset_hold'"


def test_bad_input_is_one_line(minitree, tmp_path):
    proc, _ = run_drift(tmp_path / "nowhere.dsc", minitree, tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (f"gen-series: error: --qemu {tmp_path}/"
                           "nowhere.dsc: no such file or directory\n")
    proc = run_gen_series("-q", "diff", tmp_path, tmp_path, "--qemu",
                          minitree)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "no NNNN-*.patch files" in proc.stderr


# ---- the real releases ----------------------------------------------------

# Found by running: the probes 10.1 flipped, as 10.2.2 -> 10.0.13 sees them.
FLIPPED_DOWN = {
    "class-init-const-data": (True, False),
    "kvm-create-vcpu-static": (True, False),
    "kvm-arm-stub-file": (True, False),
    "gicv3-icc-reset-reads-kvm": (False, True),
    "sysbus-mmio-map-name": (True, False),
    "virt-post-cpus-gic-realized": (True, False),
    "tcg-region-late-thread": (False, True),
    "vmstate-post-load-errp": (True, False),
    "rcu-drain-forces-only-when-seen": (False, True),
}


@pytest.fixture(scope="module")
def real():
    """The real spec walked once on each release (a walk serves both
    directions)."""
    series = load_series(PROJECT / "specs" / "series.yaml")
    bases = {r: resolve_base(release_dsc(r)) for r in RELEASES}
    walks = {r: drift.walk_release(series, b) for r, b in bases.items()}
    return series, bases, walks


def report_of(real, old, new):
    series, bases, walks = real
    return drift.compare_walks(series, bases[old], walks[old], bases[new],
                               walks[new])


@pytest.mark.tree
def test_real_releases_both_ways(real):
    down = report_of(real, "10.2.2", "10.0.13")
    up = report_of(real, "10.0.13", "10.2.2")
    assert down.renders and up.renders
    assert {p.name: (p.old, p.new) for p in down.flipped} == FLIPPED_DOWN
    assert {p.name: (p.new, p.old) for p in up.flipped} == FLIPPED_DOWN
    moved = {r.id: r.new.line - r.old.line for r in down.changes
             if r.status == "moved"}
    for r in down.changes:
        both = r.old.status == r.new.status == "resolved"
        assert (r.status == "moved") == (both and r.old.line != r.new.line)
    assert {r.id: r.new.line - r.old.line for r in up.changes
            if r.status == "moved"} == {k: -v for k, v in moved.items()}
    # alternatives chosen by `when:` are added or dropped, never moved
    assert {r.id for r in down.changes if r.status == "dropped"} == \
        {r.id for r in up.changes if r.status == "added"}
    assert "virt-post-init-all-vcpus-old" in \
        {r.id for r in down.changes if r.status == "added"}
    # an upstream move, seen on the unpatched releases too
    series, bases, _ = real
    lines = []
    for release in ("10.2.2", "10.0.13"):
        text = (bases[release].repo / "hw/arm/virt.c").read_text()
        lines.append(anchors.resolve(text, "hw/arm/virt.c", next(
            c.anchor for p in series.patches for c in p.changes
            if c.id == "virt-check-config")).start)
    assert moved["virt-check-config"] == lines[1] - lines[0] != 0
    assert down.files["hw/arm/virt.c"]["added"] > 0


@pytest.mark.tree
def test_real_rename_has_the_old_name_nearest(tmp_path):
    """drift-spec.yaml anchors on virt_post_cpus_gic_realized(), which
    QEMU 10.1 renamed from virt_cpu_post_init()."""
    proc, report = run_drift(release_dsc("10.0.13"), release_dsc("10.2.2"),
                             tmp_path,
                             spec=PROJECT / "tests" / "fixtures" /
                             "drift-spec.yaml")
    assert proc.returncode == 1
    row = change(report, "note")
    assert row["status"] == "missing"
    assert row["candidates"][0]["what"] == "function 'virt_cpu_post_init'"
    assert re.fullmatch(r"hw/arm/virt\.c:\d+", row["candidates"][0]["where"])


@pytest.mark.tree
def test_diff_of_the_committed_series(real, tmp_path):
    """patches/10.2.2 against patches/10.0.13: the only changes to the
    series are what the release decides (`when:`, templates reading
    probes, per-release data) and code a replace anchors on that upstream
    changed; everything else is upstream context."""
    out = tmp_path / "diff.json"
    proc = run_gen_series("-q", "diff", "patches/10.2.2", "patches/10.0.13",
                          "--qemu", release_dsc("10.2.2"), "--new-qemu",
                          release_dsc("10.0.13"), "--json", out)
    assert proc.returncode == 0, proc.stderr
    pairs = json.loads(out.read_text())
    series = real[0]
    by_subject = {p.subject: p for p in series.patches}
    changed = {by_subject[p["subject"]].id for p in pairs
               if p["verdict"] in ("changed", "added", "dropped")}

    def release_dependent(patch):
        return patch.when or patch.message_template or any(
            c.when or c.source or (c.template and any(
                name in (series.templates / c.template).read_text()
                for name in ("probes.", "tree.version")))
            for c in patch.changes)
    expected = {p.id for p in series.patches if release_dependent(p)}
    # its two `when:` alternatives insert the same lines, into the
    # function 10.1 renamed: only the context differs
    expected.discard("virt-lazy-disabled-vcpus")
    # a replace-match keeps the arguments of the call it replaces, which
    # upstream changed: the drift report says so
    report = report_of(real, "10.2.2", "10.0.13")
    replaced = {r.patch for r in report.changes if r.code_changed and
                next(c.action for p in series.patches for c in p.changes
                     if c.id == r.id) in ("replace", "replace-match")}
    # the new machine version replaces the latest one, and the hotplug
    # patch that one's options: virt-10.2 on 10.2.2, virt-10.0 on 10.0.13
    assert replaced == {"gicv3-unrealized-vcpus", "virt-machine-version",
                        "virt-cpu-hotplug"}
    # the hotplug patch replaces the previous machine version's options
    # (another function in each release) but adds the same lines to it
    assert changed == (expected | replaced) - {"virt-cpu-hotplug"}
    context = [p for p in pairs if p["verdict"] == "context"]
    assert context and all(p["old"] and p["new"] for p in context)
    assert "changes to the series (git range-diff):" in proc.stdout
