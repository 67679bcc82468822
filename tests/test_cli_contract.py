"""The command's error contract on inputs no spec-errors case can hold:
arguments, symbolic links, bytes in the QEMU tree, repositories, signals,
and bugs (the last-resort handler)."""

import shutil
import subprocess

import pytest
import yaml
from conftest import PROJECT, make_git_tree, run_gen_series
from test_fuzz_contract import MINI_SPEC, MINI_TEMPLATES, run_cli

from generator import cli, gitops


def generate(spec, qemu, out, *extra, templates=MINI_TEMPLATES):
    return run_cli(["-q", "generate", "--spec", spec, "--templates",
                    templates, "--qemu", qemu, "--out", out, *extra])


def one_error(stderr: str, text: str) -> None:
    assert stderr.startswith("gen-series: error: ") and text in stderr, \
        stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr


def mini_spec_with(tmp_path, edit) -> tuple:
    """The small spec after `edit(data)`, with a copy of its templates."""
    data = yaml.safe_load(MINI_SPEC.read_text())
    edit(data)
    spec = tmp_path / "spec" / "series.yaml"
    spec.parent.mkdir()
    spec.write_text(yaml.safe_dump(data))
    templates = tmp_path / "templates"
    shutil.copytree(MINI_TEMPLATES, templates)
    return spec, templates


def first_change(data) -> dict:
    return data["patches"][0]["changes"][0]


@pytest.mark.parametrize("option", ["--out", "--qemu", "--spec"])
def test_an_empty_path_is_refused(minitree, tmp_path, option):
    args = {"--spec": MINI_SPEC, "--qemu": minitree, "--out": tmp_path / "o"}
    args[option] = ""
    status, stderr = run_cli(["-q", "generate", "--templates", MINI_TEMPLATES,
                              *[x for kv in args.items() for x in kv]])
    assert status == 2
    one_error(stderr, f"argument {option}: an empty path")
    assert not (tmp_path / "o").exists()


def test_bad_arguments_are_one_line(tmp_path):
    proc = run_gen_series("generate", "--qemu", tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (
        "gen-series: error: gen-series generate: the following arguments "
        "are required: --out (see gen-series generate --help)\n")


def test_an_out_that_is_a_file_is_refused_before_rendering(minitree,
                                                           tmp_path):
    (tmp_path / "file").write_text("mine\n")
    status, stderr = generate(MINI_SPEC, minitree, tmp_path / "file" / "o")
    assert status == 2
    one_error(stderr, "is not a directory")
    assert (tmp_path / "file").read_text() == "mine\n"


def test_a_dirty_qemu_tree_is_warned_about(tmp_path):
    tree = make_git_tree(PROJECT / "tests" / "fixtures" / "minitree",
                         tmp_path / "qemu")
    with open(tree / "hw" / "core" / "qdev.c", "a") as f:
        f.write("/* uncommitted */\n")
    status, stderr = generate(MINI_SPEC, tree, tmp_path / "out")
    assert status == 0
    head = gitops.open_repo(tree).head.commit.hexsha[:12]
    assert stderr == (f"gen-series: warning: --qemu {tree} has uncommitted "
                      f"changes; the series is built from its HEAD ({head}), "
                      "without them\n")
    assert "uncommitted" not in "".join(
        p.read_text() for p in (tmp_path / "out").iterdir())


def test_a_clean_qemu_tree_gets_no_warning(minitree, tmp_path):
    assert generate(MINI_SPEC, minitree, tmp_path / "out") == (0, "")


def test_a_bare_repository_is_refused(minitree, tmp_path):
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", minitree, bare],
                   check=True)
    status, stderr = generate(MINI_SPEC, bare, tmp_path / "out")
    assert status == 2
    one_error(stderr, "a directory must be a QEMU git work tree")


def tree_with(tmp_path, setup) -> str:
    """A copy of the mini tree, changed by `setup(root)`, committed."""
    root = tmp_path / "qemu"
    shutil.copytree(PROJECT / "tests" / "fixtures" / "minitree", root)
    setup(root)
    gitops.commit_all(gitops.init_repo(root), "import",
                      "Test <test@example.org>", "2026-01-01T00:00:00+00:00")
    return root


@pytest.mark.parametrize("target", ["/etc", "hw/core"])
def test_a_symlinked_tree_path_is_refused(tmp_path, target):
    """A symbolic link committed in the QEMU tree may lead out of it (or,
    inside it, make git commit the link instead of the edit)."""
    qemu = tree_with(tmp_path, lambda root: (root / "link").symlink_to(
        target if target.startswith("/") else root / target))
    spec, templates = mini_spec_with(tmp_path, lambda d: first_change(d)
                                     .update(file="link/qdev.c"))
    status, stderr = generate(spec, qemu, tmp_path / "out",
                              templates=templates)
    assert status == 2
    one_error(stderr, "link/qdev.c (QEMU 9.2.0): reached through a "
              "symbolic link")


def test_a_tree_file_that_is_a_symlink_is_refused(tmp_path):
    def link_qdev(root):
        (root / "qdev-real.c").write_bytes(
            (root / "hw/core/qdev.c").read_bytes())
        (root / "hw/core/qdev.c").unlink()
        (root / "hw/core/qdev.c").symlink_to("../../qdev-real.c")
    qemu = tree_with(tmp_path, link_qdev)
    status, stderr = generate(MINI_SPEC, qemu, tmp_path / "out")
    assert status == 2
    one_error(stderr, "hw/core/qdev.c (QEMU 9.2.0): reached through a "
              "symbolic link")


def test_a_symlinked_created_file_is_refused(tmp_path):
    qemu = tree_with(tmp_path, lambda root: (root / "docs").symlink_to(
        tmp_path / "outside"))
    (tmp_path / "outside").mkdir()
    status, stderr = generate(MINI_SPEC, qemu, tmp_path / "out")
    assert status == 2
    one_error(stderr, "docs/mini.rst (QEMU 9.2.0): reached through")
    assert not list((tmp_path / "outside").iterdir())


def test_a_tree_file_that_is_not_utf8_is_located(tmp_path):
    qemu = tree_with(tmp_path, lambda root: (root / "hw/core/qdev.c")
                     .write_bytes(b"/* caf\xe9 */\n" * 3))
    status, stderr = generate(MINI_SPEC, qemu, tmp_path / "out")
    assert status == 2
    one_error(stderr, "hw/core/qdev.c (QEMU 9.2.0):1: not UTF-8 text "
              "(byte 0xe9)")


def test_a_template_symlinked_out_of_its_directory_is_refused(minitree,
                                                              tmp_path):
    spec, templates = mini_spec_with(
        tmp_path, lambda d: first_change(d).update(template="evil.c.j2"))
    (tmp_path / "secret.c.j2").write_text("secret\n")
    (templates / "evil.c.j2").symlink_to(tmp_path / "secret.c.j2")
    status, stderr = generate(spec, minitree, tmp_path / "out",
                              templates=templates)
    assert status == 2
    one_error(stderr, "template 'evil.c.j2' is outside")


def test_an_include_symlinked_out_of_the_templates_is_refused(minitree,
                                                              tmp_path):
    spec, templates = mini_spec_with(tmp_path, lambda d: None)
    (tmp_path / "secret.j2").write_text("secret\n")
    (templates / "evil.j2").symlink_to(tmp_path / "secret.j2")
    (templates / "line.c.j2").write_text("{% include 'evil.j2' %}\n")
    status, stderr = generate(spec, minitree, tmp_path / "out",
                              templates=templates)
    assert status == 2
    one_error(stderr, "template 'evil.j2 (outside")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("date, git_date", [
    ("1970-01-02T00:00:00+00:00", "Fri, 2 Jan 1970 00:00:00 +0000"),
    ("2099-12-31T23:59:59+00:00", "Thu, 31 Dec 2099 23:59:59 +0000"),
])
def test_the_first_and_last_years_git_keeps_are_written_exactly(
        minitree, tmp_path, date, git_date):
    spec, templates = mini_spec_with(
        tmp_path, lambda d: d["series"].update(date=date))
    out = tmp_path / "out"
    assert generate(spec, minitree, out, templates=templates) == (0, "")
    for patch in out.glob("*.patch"):
        assert f"\nDate: {git_date}\n" in patch.read_text()


def test_sigint_ends_with_one_line_and_130(minitree, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr("generator.generate.series.generate", interrupted)
    status, stderr = generate(MINI_SPEC, minitree, tmp_path / "out")
    assert (status, stderr) == (130, "gen-series: interrupted\n")


def test_the_last_resort_turns_a_bug_into_one_line(minitree, tmp_path,
                                                   monkeypatch):
    def buggy(*args, **kwargs):
        return {}["no such key"]
    monkeypatch.setattr("generator.generate.series.generate", buggy)
    status, stderr = generate(MINI_SPEC, minitree, tmp_path / "out")
    assert status == 2
    assert stderr == ("gen-series: error: unexpected KeyError: 'no such key' "
                      "(a bug in gen-series; --debug shows where)\n")
    status, stderr = run_cli(["--debug", "-q", "generate", "--spec",
                              MINI_SPEC, "--templates", MINI_TEMPLATES,
                              "--qemu", minitree, "--out", tmp_path / "out"])
    assert status == 2
    assert stderr.startswith("Traceback (most recent call last):\n")
    assert stderr.endswith("gen-series: error: unexpected KeyError: 'no such "
                           "key' (a bug in gen-series; --debug shows "
                           "where)\n")


def test_an_os_error_is_one_line_naming_the_file(minitree, tmp_path,
                                                 monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "x"))
    monkeypatch.setattr("generator.generate.series.generate", full)
    status, stderr = generate(MINI_SPEC, minitree, tmp_path / "out")
    assert (status, stderr) == (2, f"gen-series: error: {tmp_path / 'x'}: "
                                "No space left on device\n")


def test_a_message_with_a_newline_stays_one_line():
    assert cli.one_line("a\nb\rc") == "a\\nb\\rc"


def test_an_os_error_writing_out_is_one_line(minitree, tmp_path):
    """A directory where a patch file goes: only the write finds it, and
    the last-resort handler makes the OSError one located line."""
    out = tmp_path / "out"
    (out / "0000-cover-letter.patch").mkdir(parents=True)
    status, stderr = generate(MINI_SPEC, minitree, out)
    assert status == 2
    one_error(stderr, "0000-cover-letter.patch")
    assert (out / "0000-cover-letter.patch").is_dir()
