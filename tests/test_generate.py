"""`gen-series generate`: the series it writes, on a small tree and on the
real QEMU releases."""

import subprocess
from pathlib import Path

import pytest
import unidiff
from conftest import (
    PROJECT,
    RELEASES,
    SIGNER,
    make_git_tree,
    release_dsc,
    run_gen_series,
)

MINI_SPEC = PROJECT / "tests" / "fixtures" / "mini-spec.yaml"
MINI_TEMPLATES = PROJECT / "tests" / "spec-errors" / "templates"


def generate_mini(qemu, out):
    return run_gen_series("-q", "generate", "--spec", MINI_SPEC,
                          "--templates", MINI_TEMPLATES,
                          "--qemu", qemu, "--out", out, check=0)


def read_series(out: Path) -> dict:
    """The series files (not what gen-series keeps beside them)."""
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.patch"))}


def test_writes_a_format_patch_series(minitree, tmp_path):
    generate_mini(minitree, tmp_path / "out")
    files = read_series(tmp_path / "out")
    assert list(files) == ["0000-cover-letter.patch",
                           "0001-qdev-first-change.patch",
                           "0002-qapi-second-change.patch"]
    cover = files["0000-cover-letter.patch"].decode()
    assert "Subject: [RFC PATCH v2 0/2] a mini series" in cover
    assert "The cover letter's text." in cover
    assert "*** " not in cover
    base = subprocess.run(["git", "-C", minitree, "rev-parse", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    assert f"base-commit: {base}" in cover
    first = files["0001-qdev-first-change.patch"].decode()
    assert "Subject: [RFC PATCH v2 1/2] qdev: first change" in first
    # headers may be folded ("From: Name\n <email>")
    assert f"From: {SIGNER}\n" in first.replace("\n <", " <")
    assert f"From: {SIGNER}\n" in cover.replace("\n <", " <")
    assert first.count("Signed-off-by: ") == 1
    assert f"\nSigned-off-by: {SIGNER}\n" in first
    assert "Date: Thu, 1 Jan 2026 00:00:00 +0000" in first


def test_probes_select_alternatives_and_templates_see_the_tree(
        minitree, tmp_path):
    generate_mini(minitree, tmp_path / "out")
    first = unidiff.PatchSet.from_filename(
        str(tmp_path / "out" / "0001-qdev-first-change.patch"))
    added = [line.value for pf in first for h in pf for line in h
             if line.is_added]
    assert added == ["    /* from the spec */\n",
                     "    /* no frobnicator in this tree */\n"]
    second = unidiff.PatchSet.from_filename(
        str(tmp_path / "out" / "0002-qapi-second-change.patch"))
    assert sorted(pf.path for pf in second) == ["docs/mini.rst",
                                                "qapi/qdev.json"]
    # the minitree is QEMU 9.2.0: the next feature release is 10.0
    assert "+# a QAPI comment (since 10.0)\n" in str(second)


def test_output_is_byte_identical_on_rerun(minitree, tmp_path):
    generate_mini(minitree, tmp_path / "a")
    generate_mini(minitree, tmp_path / "b")
    assert read_series(tmp_path / "a") == read_series(tmp_path / "b")


def renamed_spec(tmp_path: Path) -> Path:
    """The mini spec with its second patch under another subject."""
    spec = tmp_path / "renamed-spec.yaml"
    spec.write_text(MINI_SPEC.read_text().replace(
        "qapi: second change", "qapi: renamed change"))
    return spec


def test_rerun_keeps_mtimes_and_removes_stale_patches(minitree, tmp_path):
    out = tmp_path / "out"
    run_gen_series("-q", "generate", "--spec", renamed_spec(tmp_path),
                   "--templates", MINI_TEMPLATES, "--qemu", minitree,
                   "--out", out, check=0)
    (out / "notes.txt").write_text("mine\n")
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    generate_mini(minitree, out)
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    # gen-series wrote it, so it may remove it
    assert "0002-qapi-renamed-change.patch" in before
    assert "0002-qapi-renamed-change.patch" not in after
    assert after["notes.txt"] == before["notes.txt"]
    assert after["0001-qdev-first-change.patch"] == \
        before["0001-qdev-first-change.patch"]
    again = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    generate_mini(minitree, out)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == again


def test_the_users_tree_is_not_modified(tmp_path):
    user = make_git_tree(PROJECT / "tests" / "fixtures" / "minitree",
                         tmp_path / "user-qemu")
    (user / "hw" / "core" / "qdev.c").write_text("uncommitted work\n")

    def state():
        git = ["git", "-C", str(user)]
        return [subprocess.run(git + args, capture_output=True,
                               text=True).stdout
                for args in (["status", "--porcelain"],
                             ["for-each-ref"], ["worktree", "list"],
                             ["stash", "list"])]

    before = state()
    generate_mini(user, tmp_path / "out")
    assert state() == before
    assert (user / "hw" / "core" / "qdev.c").read_text() == \
        "uncommitted work\n"


def test_bad_qemu_path_is_a_clear_error(tmp_path):
    proc = run_gen_series("-q", "generate", "--qemu", tmp_path / "nope",
                          "--out", tmp_path / "out")
    assert proc.returncode == 2
    assert proc.stderr == (f"gen-series: error: --qemu {tmp_path / 'nope'}: "
                           "no such file or directory\n")
    plain = tmp_path / "plain"
    plain.mkdir()
    proc = run_gen_series("-q", "generate", "--qemu", plain,
                          "--out", tmp_path / "out")
    assert proc.returncode == 2 and "git work tree" in proc.stderr
    assert not (tmp_path / "out").exists()


# ---- the real QEMU releases ------------------------------------------------

@pytest.mark.tree
@pytest.mark.parametrize("release", list(RELEASES))
def test_committed_patches_are_up_to_date(release, tmp_path):
    """patches/<release>/ is what the spec and templates render today.

    If this fails, regenerate: gen-series generate --qemu <dsc>
    --out patches/<release>
    """
    out = tmp_path / "out"
    run_gen_series("-q", "generate", "--qemu", release_dsc(release),
                   "--out", out, check=0)
    committed = PROJECT / "patches" / release
    assert read_series(out) == read_series(committed), \
        f"patches/{release} is stale: regenerate it (see README)"
    assert (out / "series-map.json").read_bytes() == \
        (committed / "series-map.json").read_bytes(), \
        f"patches/{release}/series-map.json is stale: regenerate it"


@pytest.mark.tree
@pytest.mark.parametrize("release", list(RELEASES))
def test_real_release_is_byte_identical_on_rerun(release, tmp_path):
    for name in ("a", "b"):
        run_gen_series("-q", "generate", "--qemu", release_dsc(release),
                       "--out", tmp_path / name, check=0)
    assert read_series(tmp_path / "a") == read_series(tmp_path / "b")


@pytest.mark.tree
def test_missing_anchor_names_the_release(tmp_path):
    """A function that only one release has: the other fails clearly."""
    spec = PROJECT / "tests" / "fixtures" / "drift-spec.yaml"
    ok = run_gen_series("-q", "generate", "--spec", spec, "--templates",
                        MINI_TEMPLATES, "--qemu", release_dsc("10.2.2"),
                        "--out", tmp_path / "new")
    assert ok.returncode == 0, ok.stderr
    bad = run_gen_series("-q", "generate", "--spec", spec, "--templates",
                         MINI_TEMPLATES, "--qemu", release_dsc("10.0.13"),
                         "--out", tmp_path / "old")
    assert bad.returncode == 2
    assert bad.stderr == (
        "gen-series: error: tests/fixtures/drift-spec.yaml:15: in change "
        "'note' of patch 'virt-note': hw/arm/virt.c (QEMU 10.0.13): "
        "function 'virt_post_cpus_gic_realized' not found\n")
    assert not (tmp_path / "old").exists()


def no_identity_env(home: Path) -> dict:
    """A user with no git identity anywhere."""
    import os
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GIT_CONFIG", "GIT_AUTHOR", "GIT_COMMITTER"))}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1",
               XDG_CONFIG_HOME=str(home), PYTHONPATH=str(PROJECT))
    return env


def test_no_identity_is_refused_in_one_line(minitree, tmp_path):
    import sys
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "generator", "-q", "generate", "--spec",
         MINI_SPEC, "--templates", MINI_TEMPLATES, "--qemu", minitree,
         "--out", out], cwd=tmp_path, env=no_identity_env(tmp_path),
        capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr == (
        "gen-series: error: no identity to author and sign off the patches "
        "with: set git config user.name and user.email, or pass --author "
        "'Name <email>'\n")
    assert not out.exists()


def test_author_option_signs_every_patch(minitree, tmp_path):
    out = tmp_path / "out"
    run_gen_series("-q", "generate", "--spec", MINI_SPEC, "--templates",
                   MINI_TEMPLATES, "--qemu", minitree, "--out", out,
                   "--author", "Ada Lovelace <ada@example.net>", check=0)
    for patch in sorted(out.glob("*.patch")):
        text = patch.read_text().replace("\n <", " <")
        assert "From: Ada Lovelace <ada@example.net>\n" in text
        if not patch.name.startswith("0000-"):
            assert "Signed-off-by: Ada Lovelace <ada@example.net>\n" in text
        assert SIGNER not in text


@pytest.mark.parametrize("author", ["ada@example.net", "Ada <ada>",
                                    "Ada\nEve <ada@example.net>", ""])
def test_bad_author_is_refused(minitree, tmp_path, author):
    proc = run_gen_series("-q", "generate", "--spec", MINI_SPEC,
                          "--templates", MINI_TEMPLATES, "--qemu", minitree,
                          "--out", tmp_path / "out", "--author", author)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--author: " in proc.stderr
    assert not (tmp_path / "out").exists()
