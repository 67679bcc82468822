"""Versions of the series (-v, --previous, --keep-version, the change-id,
"Changes in vN"), recipients from MAINTAINERS (--to-maintainers), and the
output as a mailbox: `git am --3way` and b4 read it."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    PROJECT,
    make_git_tree,
    patch_file,
    release_dsc,
    run_gen_series,
)

from generator import gitops

MINI_SPEC = PROJECT / "tests" / "fixtures" / "mini-spec.yaml"
MINI_TEMPLATES = PROJECT / "tests" / "spec-errors" / "templates"

# two more patches than the mini spec has, so that "unchanged" has members
MORE_PATCHES = """
  - id: third
    subject: "docs: third change"
    message: |
      The third patch.
    changes:
      - id: third-file
        file: docs/third.rst
        action: create-file
        template: line.c.j2

  - id: fourth
    subject: "docs: fourth change"
    message: |
      The fourth patch.
    changes:
      - id: fourth-file
        file: docs/fourth.rst
        action: create-file
        template: line.c.j2
"""


def write_spec(tmp_path: Path, name: str, text: str) -> Path:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(text)
    return spec


def v1_spec_and_templates(tmp_path: Path) -> tuple:
    templates = tmp_path / "templates-v1"
    templates.mkdir()
    for t in MINI_TEMPLATES.iterdir():
        (templates / t.name).write_bytes(t.read_bytes())
    return (write_spec(tmp_path, "v1", MINI_SPEC.read_text() + MORE_PATCHES),
            templates)


def v2_of(tmp_path: Path, spec: Path, templates: Path) -> tuple:
    """v1 with a template edit that only patch 2 uses (since.json.j2, the
    QAPI comment) and patch 3's commit message reworded."""
    new = tmp_path / "templates-v2"
    new.mkdir()
    for t in templates.iterdir():
        (new / t.name).write_bytes(t.read_bytes())
    (new / "since.json.j2").write_text(
        "# {{ comment }} (since {{ tree.since }}, reworked)\n")
    text = spec.read_text().replace("The third patch.",
                                    "The third patch, reworded.")
    return write_spec(tmp_path, "v2", text), new


def gen(spec, templates, qemu, out, *options, check=0):
    return run_gen_series("-q", "generate", "--spec", spec, "--templates",
                          templates, "--qemu", qemu, "--out", out, *options,
                          check=check)


def series(out: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.patch"))}


def changes_section(cover: str) -> list:
    """The lines of "Changes in vN:" up to the first blank line."""
    start = cover.index("\nChanges in v")
    return cover[start + 1:].split("\n\n", 1)[0].splitlines()


def test_changes_in_v2_name_exactly_the_changed_patches(minitree, tmp_path):
    spec, templates = v1_spec_and_templates(tmp_path)
    out = tmp_path / "series"
    gen(spec, templates, minitree, out, "-v", "1")
    v1 = series(out)
    assert "Subject: [RFC PATCH 0/4] a mini series" in \
        v1["0000-cover-letter.patch"].decode()
    spec2, templates2 = v2_of(tmp_path, spec, templates)
    gen(spec2, templates2, minitree, out, "-v", "2", "--keep-version")

    # v1 kept, byte for byte, beside the new version
    kept = tmp_path / "series.v1"
    assert series(kept) == v1
    cover = (out / "0000-cover-letter.patch").read_text()
    assert "Subject: [RFC PATCH v2 0/4] a mini series" in cover
    assert "Subject: [RFC PATCH v2 3/4] docs: third change" in \
        (out / "0003-docs-third-change.patch").read_text()
    assert changes_section(cover) == [
        "Changes in v2:",
        "- 0002 qapi: second change: code changed in qapi/qdev.json (+1 -1)",
        "- 0003 docs: third change: commit message changed",
        "- unchanged: 0001, 0004",
    ]
    # after the blurb, before the shortlog; range-diff's text below
    assert cover.index("The cover letter's text.") < \
        cover.index("Changes in v2:") < cover.index("maintainers (4):")
    assert "+    The third patch, reworded." in cover
    # the change-id: b4's form, in the basement, the same in both versions
    ids = [re.findall(r"^change-id: (.*)$", text, re.M)
           for text in (v1["0000-cover-letter.patch"].decode(), cover)]
    assert ids[0] == ids[1] and len(ids[0]) == 1
    assert re.fullmatch(r"20260101-mini-[0-9a-f]{12}", ids[0][0])
    assert re.search(r"^base-commit: [0-9a-f]{40}\nchange-id: ", cover, re.M)

    # a rerun gives the same bytes and keeps v1 as it is
    before = series(out)
    gen(spec2, templates2, minitree, out, "-v", "2", "--keep-version")
    assert series(out) == before and series(kept) == v1


def test_new_dropped_and_reworded_patches(minitree, tmp_path):
    spec, templates = v1_spec_and_templates(tmp_path)
    gen(spec, templates, minitree, tmp_path / "v1", "-v", "1")
    # patch 3 gone, a new patch at the end, patch 1 under another subject
    text = spec.read_text()
    third = text.index("  - id: third")
    text = text[:third] + text[text.index("  - id: fourth"):] + \
        MORE_PATCHES[MORE_PATCHES.index("  - id: fourth"):].replace(
            "fourth", "fifth")
    text = text.replace("qdev: first change", "qdev: the first change")
    spec2 = write_spec(tmp_path, "v2", text)
    gen(spec2, templates, minitree, tmp_path / "v2", "-v", "2",
        "--previous", tmp_path / "v1")
    cover = (tmp_path / "v2" / "0000-cover-letter.patch").read_text()
    assert changes_section(cover) == [
        "Changes in v2:",
        '- 0001 qdev: the first change: subject changed (was "qdev: first '
        'change")',
        "- 0004 docs: fifth change: new in v2",
        "- dropped: v1 0003 docs: third change",
        "- unchanged: 0002, 0003 (v1 0004)",
    ]


def test_previous_must_be_an_older_version(minitree, tmp_path):
    gen(MINI_SPEC, MINI_TEMPLATES, minitree, tmp_path / "v2")
    proc = gen(MINI_SPEC, MINI_TEMPLATES, minitree, tmp_path / "again",
               "--previous", tmp_path / "v2", check=2)
    assert proc.stderr == (f"gen-series: error: --previous {tmp_path / 'v2'}"
                           ": it is v2 and the new series v2: give the new "
                           "version with -v\n")
    assert not (tmp_path / "again").exists()


def test_keep_version_never_replaces_another_kept_series(minitree, tmp_path):
    spec, templates = v1_spec_and_templates(tmp_path)
    out = tmp_path / "series"
    gen(spec, templates, minitree, out, "-v", "1")
    # the user's own v1 already there
    kept = tmp_path / "series.v1"
    kept.mkdir()
    (kept / "0000-cover-letter.patch").write_text("my v1\n")
    before = series(out)
    spec2, templates2 = v2_of(tmp_path, spec, templates)
    proc = gen(spec2, templates2, minitree, out, "-v", "2", "--keep-version",
               check=2)
    assert proc.stderr.count("\n") == 1
    assert f"--keep-version: {kept} already holds another v1" in proc.stderr
    assert series(out) == before
    assert (kept / "0000-cover-letter.patch").read_text() == "my v1\n"


def test_without_the_options_there_is_no_change_id(minitree, tmp_path):
    """The default output is format-patch's (the committed patches/)."""
    gen(MINI_SPEC, MINI_TEMPLATES, minitree, tmp_path / "plain")
    gen(MINI_SPEC, MINI_TEMPLATES, minitree, tmp_path / "b4", "-v", "2")
    plain = series(tmp_path / "plain")
    b4 = series(tmp_path / "b4")
    assert b"change-id:" not in plain["0000-cover-letter.patch"]
    assert b"\nchange-id: 20260101-mini-" in b4["0000-cover-letter.patch"]
    assert {k: v for k, v in plain.items() if not k.startswith("0000")} == \
        {k: v for k, v in b4.items() if not k.startswith("0000")}


# ---- the series as mail ------------------------------------------------

def as_mbox(out: Path, path: Path, skip: str = "") -> Path:
    """The series as it arrives on a list: one mbox, threaded under the
    cover letter as git send-email threads it (Message-ID, In-Reply-To)."""
    mails = []
    for n, patch in enumerate(sorted(out.glob("*.patch"))):
        if patch.name.startswith(skip or "-"):
            continue
        head, sep, body = patch.read_text().partition("\n\n")
        head += f"\nMessage-ID: <series-{n}@example.org>"
        if n:
            head += ("\nIn-Reply-To: <series-0@example.org>"
                     "\nReferences: <series-0@example.org>")
        mails.append(head + sep + body)
    path.write_text("".join(mails))
    return path


def test_mbox_applies_with_git_am(minitree, tmp_path):
    spec, templates = v1_spec_and_templates(tmp_path)
    gen(spec, templates, minitree, tmp_path / "out", "-v", "3")
    mbox = tmp_path / "series.mbox"
    # the patches: the cover letter is no commit (b4 am leaves it out too)
    mbox.write_bytes(b"".join(data for name, data in
                              series(tmp_path / "out").items()
                              if not name.startswith("0000-")))
    tree = make_git_tree(PROJECT / "tests" / "fixtures" / "minitree",
                         tmp_path / "qemu")
    git = ["git", "-C", str(tree)]
    subprocess.run(git + ["am", "--3way", str(mbox)], check=True,
                   capture_output=True)
    subjects = subprocess.run(git + ["log", "--format=%s", "-4", "--reverse"],
                              capture_output=True, text=True).stdout
    assert subjects.splitlines() == ["qdev: first change",
                                     "qapi: second change",
                                     "docs: third change",
                                     "docs: fourth change"]
    assert (tree / "docs" / "fourth.rst").is_file()


def run_b4(mbox: Path, cwd: Path, tmp_path: Path):
    pytest.importorskip("b4")
    b4 = Path(sys.executable).parent / "b4"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "XDG_DATA_HOME": str(tmp_path / "data")}
    return subprocess.run([str(b4), "--no-stdin", "--offline-mode", "am",
                           "-C", "-m", str(mbox), "-o", str(tmp_path / "b4")],
                          cwd=cwd, env=env, capture_output=True, text=True)


def test_b4_reads_the_series(minitree, tmp_path):
    spec, templates = v1_spec_and_templates(tmp_path)
    out = tmp_path / "out"
    gen(spec, templates, minitree, out, "-v", "2")
    proc = run_b4(as_mbox(out, tmp_path / "series.mbox"), minitree, tmp_path)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    assert [line.strip() for line in report.splitlines()
            if line.startswith("  [PATCH")] == [
        "[PATCH RFC v2 1/4] qdev: first change",
        "[PATCH RFC v2 2/4] qapi: second change",
        "[PATCH RFC v2 3/4] docs: third change",
        "[PATCH RFC v2 4/4] docs: fourth change"]
    assert "Total patches: 4" in report
    assert "Cover: " in report and "WARNING" not in report
    # b4's own check, in the base tree: every blob the patches name is there
    assert "Base: applies clean to current tree" in report
    made = sorted(p.name for p in (tmp_path / "b4").iterdir())
    assert [p.rsplit(".", 1)[1] for p in made] == ["cover", "mbx"]
    assert made[0].startswith("v2_")

    # the same with a patch lost on the way: b4 says so
    proc = run_b4(as_mbox(out, tmp_path / "lossy.mbox", skip="0003-"),
                  minitree, tmp_path)
    report = proc.stdout + proc.stderr
    assert "ERROR: missing [3/4]!" in report
    assert "WARNING: Thread incomplete!" in report


# ---- recipients from MAINTAINERS ----------------------------------------

def headers(patch: Path) -> str:
    return patch.read_text().split("\n\n", 1)[0]


@pytest.mark.tree
def test_maintainers_of_the_real_tree(tmp_path):
    from generator.qemutree import resolve_base

    out = tmp_path / "out"
    run_gen_series("-q", "generate", "--qemu", release_dsc("10.2.2"),
                   "--out", out, "--to-maintainers", check=0)
    virt = [p for p in sorted(out.glob("0*.patch"))
            if not p.name.startswith("0000")
            and "+++ b/hw/arm/virt.c\n" in p.read_text()]
    assert len(virt) >= 3
    for patch in virt:
        head = headers(patch)
        # MAINTAINERS "Virt": M: Peter Maydell, L: qemu-arm
        to = re.search(r"^To: (.*(?:\n .*)*)", head, re.M).group(1)
        cc = re.search(r"^Cc: (.*(?:\n .*)*)", head, re.M).group(1)
        assert "Peter Maydell <peter.maydell@linaro.org>" in to
        assert "qemu-arm@nongnu.org" in cc and "qemu-devel@nongnu.org" in cc
        assert "peter.maydell" not in cc
    # a patch touching only qapi/ and qdev goes to other people
    qdev = headers(out / patch_file(out, "qdev-admin-power-state"))
    assert "Markus Armbruster <armbru@redhat.com>" in qdev
    assert "qemu-arm@nongnu.org" not in qdev
    cover = headers(out / "0000-cover-letter.patch")
    assert "peter.maydell@linaro.org" in cover and "armbru@redhat.com" in cover

    # the map beside the series counts the lines the headers added
    kvm = out / patch_file(out, "arm-kvm-create-host-vcpu")
    n = kvm.read_text().splitlines().index(
        "+    if (!cpu->kvm_host_vcpu_created) {") + 1
    assert n > 40       # line 40 without the To: and Cc: lines
    proc = run_gen_series("explain", "--series", out, f"{kvm.name[:4]}:{n}", check=0)
    assert "template: templates/kvm/finalize-once.c.j2:2\n" in proc.stdout

    # the series with its headers still applies with git am
    base = resolve_base(str(release_dsc("10.2.2")))
    repo = gitops.scratch_clone(base.repo, base.commit, tmp_path / "qemu")
    mbox = tmp_path / "series.mbox"
    mbox.write_bytes(b"".join(p.read_bytes()
                              for p in sorted(out.glob("0*.patch"))[1:]))
    subprocess.run(["git", "-C", repo.working_tree_dir, "am", "--3way",
                    str(mbox)], check=True, capture_output=True)
    count = subprocess.run(["git", "-C", repo.working_tree_dir, "rev-list",
                            "--count", f"{base.commit}..HEAD"],
                           capture_output=True, text=True).stdout
    assert int(count) == len(list(out.glob("0*.patch"))) - 1


def test_previous_on_another_release(minitree, tmp_path):
    """v2 carried to a new release: the same patches on moved code are
    unchanged; --previous-qemu names v1's base, which the cover checks."""
    moved = make_git_tree(PROJECT / "tests" / "fixtures" / "minitree",
                          tmp_path / "next")
    qdev = moved / "hw" / "core" / "qdev.c"
    qdev.write_text("/* a new release */\n\n" + qdev.read_text())
    subprocess.run(["git", "-C", moved, "commit", "-qam", "next"],
                   check=True)
    spec, templates = v1_spec_and_templates(tmp_path)
    gen(spec, templates, minitree, tmp_path / "v1", "-v", "1")
    proc = gen(spec, templates, moved, tmp_path / "v2", "-v", "2",
               "--previous", tmp_path / "v1", check=2)
    assert proc.stderr.count("\n") == 1
    assert "made on base-commit" in proc.stderr
    assert not (tmp_path / "v2").exists()
    gen(spec, templates, moved, tmp_path / "v2", "-v", "2",
        "--previous", tmp_path / "v1", "--previous-qemu", minitree)
    cover = (tmp_path / "v2" / "0000-cover-letter.patch").read_text()
    assert changes_section(cover) == [
        "Changes in v2:", "- no patch changed",
        "- unchanged: 0001, 0002, 0003, 0004"]
