"""Hostile input and faults, round two (issue 25): one test per class of
what broke, each case a parameter.  The commands and inputs added after
the first round (explain, diff, -v/--previous/--keep-version,
--to-maintainers, tarballs and .dsc files) tried as a hostile or unlucky
user would:

  data loss     a file gen-series did not write (or no longer has as it
                wrote it) is never replaced or removed, and no version of
                the series is discarded
  escape        no input makes gen-series read or write outside the paths
                the README names, or inject a mail header
  wrong answer  a broken input is reported, never taken as a good one
  messages      every bad input: its own line naming it, exit 2; SIGTERM
                as SIGINT (one line, temporary files removed, exit 143)
  tarballs as root   a release tarball packed by anyone unpacks for root
"""

import hashlib
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import PROJECT, QEMU_SRC, make_git_tree, run_gen_series
from test_faults import faulty
from test_fuzz_contract import run_cli
from test_generate import read_series, renamed_spec

from generator.output.outdir import JOURNAL

MINI_SPEC = PROJECT / "tests" / "fixtures" / "mini-spec.yaml"
MINI_TEMPLATES = PROJECT / "tests" / "spec-errors" / "templates"
MINITREE = PROJECT / "tests" / "fixtures" / "minitree"
SECRET = "a secret outside every input\n"


def generate(qemu, out, *extra, spec=MINI_SPEC) -> tuple:
    return run_cli(["-q", "generate", "--spec", spec, "--templates",
                    MINI_TEMPLATES, "--qemu", qemu, "--out", out, *extra])


def one_line(status, stderr, *words) -> None:
    """Exit 2 with exactly one error line, naming each of `words`; never
    blamed on gen-series itself."""
    assert status == 2, (status, stderr)
    assert stderr.startswith("gen-series: error: "), stderr
    assert stderr.count("\n") == 1, stderr
    assert "a bug in gen-series" not in stderr, stderr
    for word in words:
        assert word in stderr, (word, stderr)


def tree_of(tmp_path: Path, name: str = "qemu") -> Path:
    return make_git_tree(MINITREE, tmp_path / name)


@pytest.fixture
def secret(tmp_path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    return path


def cache_holds(cache: Path, text: str) -> bool:
    """Does any file (or git object, uncompressed) under `cache` hold
    `text`?"""
    for p in cache.rglob("*"):
        if p.is_file() and not p.is_symlink() and \
                text.encode() in p.read_bytes():
            return True
    for git_dir in cache.rglob(".git"):
        proc = subprocess.run(
            ["git", "-C", git_dir.parent, "grep", "-q", "-F", text.strip(),
             "gen-series-base"], capture_output=True)
        if proc.returncode == 0:
            return True
    return False


# ---- tarballs -----------------------------------------------------------

def add_bytes(tar: tarfile.TarFile, name: str, data: bytes, **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    for k, v in attrs.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data))


def make_tarball(path: Path, extra=None, owner: int = 0,
                 version: bytes | None = None) -> Path:
    """The mini tree as a release tarball (qemu-9.2.0/...), each member
    owned by `owner` (the packer's uid); `extra(tar)` adds members."""
    def chown(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = owner
        info.uname = info.gname = "packer" if owner else "root"
        return info
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for p in sorted(MINITREE.rglob("*")):
            name = "qemu-9.2.0/" + str(p.relative_to(MINITREE))
            if p.name == "VERSION" and version is not None:
                add_bytes(tar, name, version, uid=owner, gid=owner)
                continue
            tar.add(p, name, recursive=False, filter=chown)
        if extra:
            extra(tar)
    return path


def link_member(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def special_member(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    return info


# ---- series -------------------------------------------------------------

@pytest.fixture
def qemu(tmp_path) -> Path:
    return tree_of(tmp_path)


@pytest.fixture
def series(qemu, tmp_path) -> Path:
    out = tmp_path / "series"
    assert generate(qemu, out) == (0, "")
    return out


def binary_patch(tmp_path: Path) -> Path:
    """A series of one patch adding a binary file to the mini tree, made
    by git format-patch (GIT binary patch, full index)."""
    work = tree_of(tmp_path, "work")
    (work / "tables.bin").write_bytes(bytes(range(256)) * 40)
    with open(work / "hw" / "core" / "qdev.c", "a") as f:
        f.write("/* the tables */\n")
    subprocess.run(["git", "-C", work, "add", "-A"], check=True)
    subprocess.run(["git", "-C", work, "-c", "user.name=T", "-c",
                    "user.email=t@example.org", "commit", "-qm",
                    "add the tables"], check=True)
    out = tmp_path / "binary-series"
    subprocess.run(["git", "-C", work, "format-patch", "-q", "--binary",
                    "-o", out, "HEAD~1"], check=True)
    return out


# ===========================================================================

@pytest.mark.parametrize("case", ["recovery-keeps-an-edited-patch",
                                  "keep-version-keeps-a-newer-version",
                                  "keep-version-keeps-an-older-version"])
def test_data_loss(case, qemu, tmp_path):
    out = tmp_path / "out"
    if case == "recovery-keeps-an-edited-patch":
        spec = renamed_spec(tmp_path)
        assert generate(qemu, out, spec=spec) == (0, "")
        # killed right after its commit point: the next run moves it in
        proc = faulty("-q", "generate", "--spec", MINI_SPEC, "--templates",
                      MINI_TEMPLATES, "--qemu", qemu, "--out", out,
                      FAULT_KILL_IN="generator.output.outdir._complete")
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        assert (out / JOURNAL).is_dir()
        cover = out / "0000-cover-letter.patch"
        edited = cover.read_bytes() + b"my notes, written by hand\n"
        cover.write_bytes(edited)
        status, stderr = generate(qemu, out)
        one_line(status, stderr, "0000-cover-letter.patch")
        assert cover.read_bytes() == edited
        # moved away, the next run finishes what the killed one began
        cover.rename(tmp_path / "mine.patch")
        assert generate(qemu, out) == (0, "")
        assert not (out / JOURNAL).exists()
        assert b"my notes" not in cover.read_bytes()
    else:
        first, second = (("-v", "4"), ("-v", "3")) \
            if case.endswith("newer-version") else (("-v", "3"), ("-v", "4"))
        assert generate(qemu, out, *first, "--keep-version")[0] == 0
        before = read_series(out)
        status, stderr = generate(qemu, out, *second, "--keep-version")
        assert status == 0, stderr
        kept = tmp_path / f"out.v{first[1]}"
        assert read_series(kept) == before, "a version was discarded"
        assert f"v{second[1]} " in read_series(out)[
            "0000-cover-letter.patch"].decode()


# ===========================================================================

AUTHORS = {
    "author-cr": "Eve\rCc: victim@example.org <eve@example.org>",
    "author-nel": "Eve\x85Cc: victim@example.org <eve@example.org>",
    "author-line-separator": "Eve\u2028Cc: v@example.org <eve@example.org>",
    "author-escape": "Eve\x1b[2J <eve@example.org>",
    "author-bidi": "Eve \u202egro.elpmaxe <eve@example.org>",
    "author-cr-in-email": "Eve <eve@exa\rmple.org>",
}


@pytest.mark.parametrize("case", [
    *AUTHORS, "git-config-name-cr",
    "tarball-hardlink-absolute", "tarball-hardlink-relative",
    "tarball-symlink-out", "tarball-fifo", "tarball-device",
    "version-dotdot", "version-symlink-in-tarball",
    "version-symlink-in-git-tree", "map-names-a-file-outside"])
def test_escape(case, qemu, tmp_path, secret, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("GEN_SERIES_CACHE", str(cache))
    out = tmp_path / "out"
    if case in AUTHORS:
        status, stderr = generate(qemu, out, "--author", AUTHORS[case])
        one_line(status, stderr, "--author")
        assert not out.exists()
    elif case == "git-config-name-cr":
        monkeypatch.setenv("GIT_CONFIG_VALUE_0", "Eve\rCc: v@example.org")
        status, stderr = generate(qemu, out)
        one_line(status, stderr, "user.name")
        assert not out.exists()
    elif case.startswith("tarball-"):
        member = {
            "tarball-hardlink-absolute": lambda: link_member(
                "qemu-9.2.0/hw/stolen.txt", str(secret), tarfile.LNKTYPE),
            "tarball-hardlink-relative": lambda: link_member(
                "qemu-9.2.0/hw/stolen.txt", "../../secret.txt",
                tarfile.LNKTYPE),
            "tarball-symlink-out": lambda: link_member(
                "qemu-9.2.0/hw/stolen.txt", str(secret), tarfile.SYMTYPE),
            "tarball-fifo": lambda: special_member(
                "qemu-9.2.0/hw/fifo", tarfile.FIFOTYPE),
            "tarball-device": lambda: special_member(
                "qemu-9.2.0/hw/null", tarfile.CHRTYPE),
        }[case]
        tarball = make_tarball(tmp_path / "unpack" / "qemu-9.2.0.tar.gz",
                               lambda tar: tar.addfile(member()))
        status, stderr = generate(tarball, out)
        one_line(status, stderr, str(tarball), "hw/")
        assert not cache_holds(cache, SECRET)
        assert not out.exists()
    elif case == "version-dotdot":
        escaped = tmp_path / "escaped"
        evil = tree_of(tmp_path, "evil")
        (evil / "VERSION").write_text(f"../../{escaped.name}\n")
        subprocess.run(["git", "-C", evil, "commit", "-qam", "v", "--author",
                        "T <t@example.org>"], check=True,
                       env={**os.environ, "GIT_COMMITTER_NAME": "T",
                            "GIT_COMMITTER_EMAIL": "t@example.org"})
        for argv in (["generate", "--spec", MINI_SPEC, "--templates",
                      MINI_TEMPLATES, "--out", out],
                     ["check", "--only", "apply", "--series",
                      generate_series(qemu, tmp_path)]):
            status, stderr = run_cli(["-q", *argv, "--qemu", evil])
            one_line(status, stderr, "VERSION")
        assert not escaped.exists() and not out.exists()
    elif case == "version-symlink-in-tarball":
        tarball = make_tarball(
            tmp_path / "qemu-9.2.0.tar.gz", version=b"",
            extra=lambda tar: None)
        # VERSION a link to a file outside the tree
        with tarfile.open(tarball, "w:gz") as tar:
            for p in sorted(MINITREE.rglob("*")):
                if p.name != "VERSION":
                    tar.add(p, "qemu-9.2.0/" + str(p.relative_to(MINITREE)),
                            recursive=False)
            tar.addfile(link_member("qemu-9.2.0/VERSION", str(secret),
                                    tarfile.SYMTYPE))
        status, stderr = generate(tarball, out)
        one_line(status, stderr, "VERSION")
        assert SECRET.strip() not in stderr
        assert not cache_holds(cache, SECRET)
    elif case == "version-symlink-in-git-tree":
        evil = tree_of(tmp_path, "evil")
        (evil / "VERSION").unlink()
        (evil / "VERSION").symlink_to(secret)
        subprocess.run(["git", "-C", evil, "add", "-A"], check=True)
        subprocess.run(["git", "-C", evil, "-c", "user.name=T", "-c",
                        "user.email=t@example.org", "commit", "-qm", "v"],
                       check=True)
        status, stderr = generate(evil, out)
        one_line(status, stderr, "VERSION")
        assert str(secret) not in stderr
    elif case == "map-names-a-file-outside":
        series_dir = generate_series(qemu, tmp_path)
        outside = tmp_path / "outside.patch"
        outside.write_text(SECRET)
        smap = json.loads((series_dir / "series-map.json").read_text())
        name, entry = sorted(smap["files"].items())[0]
        change = entry["added"][0][1]
        smap["files"]["../outside.patch"] = {
            **entry, "sha256": hashlib.sha256(SECRET.encode()).hexdigest(),
            "added": [[1, change, 1]]}
        (series_dir / "series-map.json").write_text(json.dumps(smap))
        status, stderr = run_cli(["explain", "--series", series_dir,
                                  "--spec-item", change])
        one_line(status, stderr, "series-map.json")
        assert SECRET.strip() not in stderr


def generate_series(qemu: Path, tmp_path: Path) -> Path:
    out = tmp_path / "made"
    if not out.exists():
        assert generate(qemu, out) == (0, "")
    return out


# ===========================================================================

def fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("case", [
    "apply-truncated-binary-patch", "dsc-tarball-fails-its-checksum",
    "dsc-names-a-file-outside",
    "empty-explain-series", "empty-diff-series", "empty-previous",
    "empty-previous-qemu", "empty-drift-from", "previous-qemu-alone",
    "fifo-qemu", "fifo-spec", "fifo-map", "fifo-previous-cover"])
def test_wrong_answer(case, qemu, series, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    env = {"GEN_SERIES_CACHE": str(cache)}
    monkeypatch.setenv("GEN_SERIES_CACHE", str(cache))
    out = tmp_path / "out"
    if case == "apply-truncated-binary-patch":
        patches = binary_patch(tmp_path)
        patch = next(patches.glob("0001-*.patch"))
        lines = patch.read_text().split("\n")
        at = lines.index("GIT binary patch")
        # a mail cut short in the binary part: git am applies the text
        # part, says nothing of the rest and exits 0
        patch.write_text("\n".join(lines[:at + 6]) + "\n")
        proc = run_gen_series("-q", "check", "--only", "apply", "--qemu",
                              qemu, "--series", patches, "--build-dir",
                              tmp_path / "build")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "tables.bin" in proc.stdout
    elif case.startswith("dsc-"):
        dsc = make_dsc(tmp_path / "dsc")
        tarball = next(dsc.parent.glob("*.tar.xz"))
        if case == "dsc-tarball-fails-its-checksum":
            # another tarball under the name the .dsc vouches for
            other = tmp_path / "other" / "mini-9.2.0"
            shutil.copytree(dsc.parent / "source", other)
            (other / "hw" / "core" / "qdev.c").write_text("/* evil */\n")
            subprocess.run(["tar", "-cJf", tarball, other.name],
                           cwd=other.parent, check=True)
            words = [tarball.name, "checksum"]
        else:
            text = dsc.read_text().replace(tarball.name,
                                           "../../" + tarball.name)
            dsc.write_text(text)
            words = [dsc.name, "../../"]
        status, stderr = generate(dsc, out)
        one_line(status, stderr, *words)
        assert not (cache / "trees").exists() or not [
            t for t in (cache / "trees").iterdir()
            if not t.name.startswith(".lock-")]
    elif case.startswith("empty-"):
        # the current directory holds what "" would wrongly name
        monkeypatch.chdir(series)
        argv = {
            "empty-explain-series": ["explain", "0001:1", "--series", ""],
            "empty-diff-series": ["diff", "", str(series), "--qemu", qemu],
            "empty-previous": ["generate", "--spec", MINI_SPEC,
                               "--templates", MINI_TEMPLATES, "--qemu", qemu,
                               "--out", out, "-v", "3", "--previous", ""],
            "empty-previous-qemu": [
                "generate", "--spec", MINI_SPEC, "--templates",
                MINI_TEMPLATES, "--qemu", qemu, "--out", out, "-v", "3",
                "--previous", series, "--previous-qemu", ""],
            "empty-drift-from": ["drift", "--qemu", qemu, "--from", "",
                                 "--spec", MINI_SPEC, "--templates",
                                 MINI_TEMPLATES],
        }[case]
        status, stderr = run_cli(["-q", *argv])
        one_line(status, stderr, "empty")
        assert not out.exists()
    elif case == "previous-qemu-alone":
        status, stderr = generate(qemu, out, "--previous-qemu", qemu)
        one_line(status, stderr, "--previous-qemu", "--previous")
        assert not out.exists()
    else:
        argv = {
            "fifo-qemu": ["generate", "--spec", MINI_SPEC, "--templates",
                          MINI_TEMPLATES, "--out", out, "--qemu",
                          fifo(tmp_path / "fifo" / "qemu-9.2.0.tar.xz")],
            "fifo-spec": ["generate", "--spec",
                          fifo(tmp_path / "fifo" / "series.yaml"),
                          "--templates", MINI_TEMPLATES, "--out", out,
                          "--qemu", qemu],
            "fifo-map": ["explain", "0001:1", "--series",
                         fifo_map(series)],
            "fifo-previous-cover": [
                "generate", "--spec", MINI_SPEC, "--templates",
                MINI_TEMPLATES, "--qemu", qemu, "--out", out, "-v", "3",
                "--previous", fifo_cover(series)],
        }[case]
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "generator", "-q",
                 *map(str, argv)], cwd=PROJECT, capture_output=True,
                text=True, timeout=30, env={**os.environ, **env})
        except subprocess.TimeoutExpired:
            pytest.fail("gen-series hangs on a FIFO")
        one_line(proc.returncode, proc.stderr, "not a regular file")


def fifo_map(series: Path) -> Path:
    (series / "series-map.json").unlink()
    fifo(series / "series-map.json")
    return series


def fifo_cover(series: Path) -> Path:
    (series / "0000-cover-letter.patch").unlink()
    fifo(series / "0000-cover-letter.patch")
    return series


def make_dsc(where: Path) -> Path:
    """A Debian source package of the mini tree (3.0 native), made by
    dpkg-source -b: mini_9.2.0.dsc and mini_9.2.0.tar.xz."""
    if shutil.which("dpkg-source") is None:
        pytest.skip("needs dpkg-source")
    src = where / "mini-9.2.0"
    shutil.copytree(MINITREE, src)
    (src / "debian" / "source").mkdir(parents=True)
    (src / "debian" / "source" / "format").write_text("3.0 (native)\n")
    (src / "debian" / "control").write_text(
        "Source: mini\nMaintainer: T <t@example.org>\n\n"
        "Package: mini\nArchitecture: all\nDescription: mini\n mini\n")
    (src / "debian" / "changelog").write_text(
        "mini (9.2.0) unstable; urgency=medium\n\n  * mini\n\n"
        " -- T <t@example.org>  Thu, 01 Jan 2026 00:00:00 +0000\n")
    subprocess.run(["dpkg-source", "-b", src.name], cwd=where, check=True,
                   capture_output=True)
    src.rename(where / "source")
    return where / "mini_9.2.0.dsc"


# ===========================================================================

def bad_map(series: Path, data) -> list:
    (series / "series-map.json").write_text(json.dumps(data))
    return ["explain", "0001:1", "--series", series]


@pytest.mark.parametrize("case", [
    "map-without-keys", "map-of-wrong-types", "previous-not-utf8",
    "tarball-not-a-tarball", "tarball-empty", "tarball-two-tops",
    "previous-patch-does-not-apply", "series-patch-not-utf8",
    "cache-damaged-diff", "cache-damaged-check", "sigterm"])
def test_messages(case, qemu, series, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("GEN_SERIES_CACHE", str(cache))
    out = tmp_path / "out"
    version = ["-v", "3", "--previous", series]
    if case == "map-without-keys":
        argv, words = bad_map(series, {"format": 1}), ["series-map.json"]
    elif case == "map-of-wrong-types":
        argv, words = bad_map(series, {
            "format": 1, "patches": [], "changes": 2,
            "files": {"0001-qdev-first-change.patch": 1}}), \
            ["series-map.json"]
    elif case == "previous-not-utf8":
        cover = series / "0000-cover-letter.patch"
        cover.write_bytes(cover.read_bytes() + b"\xff\xfe\n")
        argv = ["generate", "--spec", MINI_SPEC, "--templates",
                MINI_TEMPLATES, "--qemu", qemu, "--out", out, *version]
        words = ["--previous", "UTF-8"]
    elif case.startswith("tarball-"):
        tarball = tmp_path / "qemu-9.2.0.tar.xz"
        if case == "tarball-not-a-tarball":
            tarball.write_bytes(b"\xfd7zXZ\0 not really")
        elif case == "tarball-empty":
            tarfile.open(tarball, "w:xz").close()
        else:
            with tarfile.open(tarball, "w:xz") as tar:
                add_bytes(tar, "a/VERSION", b"9.2.0\n")
                add_bytes(tar, "b/VERSION", b"9.2.0\n")
        argv = ["generate", "--spec", MINI_SPEC, "--templates",
                MINI_TEMPLATES, "--qemu", tarball, "--out", out]
        words = [str(tarball)]
    elif case == "previous-patch-does-not-apply":
        patch = next(series.glob("0001-*.patch"))
        lines = patch.read_text().split("\n")
        at = next(i for i, ln in enumerate(lines) if ln.startswith("@@"))
        lines[at + 1] = " this context line is not upstream"
        patch.write_text("\n".join(lines))
        argv = ["generate", "--spec", MINI_SPEC, "--templates",
                MINI_TEMPLATES, "--qemu", qemu, "--out", out, *version]
        words = ["--previous", patch.name]
    elif case == "series-patch-not-utf8":
        patch = next(series.glob("0001-*.patch"))
        patch.write_bytes(patch.read_bytes().replace(b"qdev", b"qd\xffev",
                                                     1))
        other = tmp_path / "other"
        shutil.copytree(series, other)
        argv, words = ["diff", series, other, "--qemu", qemu], \
            [patch.name, "UTF-8"]
    elif case.startswith("cache-damaged-"):
        tarball = make_tarball(tmp_path / "qemu-9.2.0.tar.gz")
        made = tmp_path / "on-tarball"
        assert generate(tarball, made) == (0, "")
        tree = next(t for t in (cache / "trees").iterdir()
                    if not t.name.startswith("."))
        blob = subprocess.run(["git", "-C", tree, "rev-parse",
                               "gen-series-base:hw/core/qdev.c"], check=True,
                              capture_output=True, text=True).stdout.strip()
        obj = tree / ".git" / "objects" / blob[:2] / blob[2:]
        obj.chmod(0o644)
        obj.write_bytes(b"x\x9c garbage, not zlib")
        argv = ["diff", made, made, "--qemu", tarball] \
            if case == "cache-damaged-diff" else \
            ["check", "--only", "apply", "--series", made, "--qemu", tarball,
             "--build-dir", tmp_path / "build"]
        words = [f"cache damaged: remove {tree} ("]
    else:
        assert case == "sigterm"
        tmp = tmp_path / "tmp"
        tmp.mkdir()
        proc = faulty("-q", "check", "--only", "apply", "--spec", MINI_SPEC,
                      "--templates", MINI_TEMPLATES, "--qemu", qemu,
                      "--build-dir", tmp_path / "build",
                      FAULT_TERM_IN="generator.build.build.apply_one_by_one",
                      TMPDIR=tmp, GEN_SERIES_CACHE=cache)
        assert (proc.returncode, proc.stderr) == \
            (143, "gen-series: terminated\n")
        assert list(tmp.iterdir()) == []
        return
    status, stderr = run_cli(["-q", *argv])
    one_line(status, stderr, *words)
    if "--out" in argv:
        assert not out.exists()


# ===========================================================================

@pytest.mark.parametrize("owner", [0, 1000, 54321])
def test_tarballs_as_root(owner, tmp_path, monkeypatch):
    """Whoever packed it (its members carry the packer's uid), a release
    tarball unpacks into a tree git lets us use, root included."""
    monkeypatch.setenv("GEN_SERIES_CACHE", str(tmp_path / "cache"))
    tarball = make_tarball(tmp_path / "qemu-9.2.0.tar.xz", owner=owner)
    status, stderr = generate(tarball, tmp_path / "out")
    assert (status, stderr) == (0, ""), stderr
    tree = next(t for t in (tmp_path / "cache" / "trees").iterdir()
                if not t.name.startswith("."))
    assert all(p.lstat().st_uid == os.geteuid() for p in tree.rglob("*"))
    assert not any(p.lstat().st_mode & (stat.S_ISUID | stat.S_ISGID)
                   for p in tree.rglob("*"))


@pytest.mark.tree
def test_a_debian_orig_tarball_renders_and_applies(tmp_path):
    """Debian's orig tarball has the shape of a QEMU release tarball (one
    qemu-X.Y.Z/ top, files owned by the packer); as root too."""
    tarball = QEMU_SRC / "qemu_10.2.2+ds.orig.tar.xz"
    if not tarball.is_file():
        pytest.skip(f"{tarball} is not there")
    out = tmp_path / "out"
    run_gen_series("-q", "generate", "--qemu", tarball, "--out", out,
                   check=0)
    assert len(read_series(out)) == len(read_series(PROJECT / "patches" /
                                                    "10.2.2"))
    proc = run_gen_series("-q", "check", "--only", "apply", "--qemu",
                          tarball, "--series", out, "--build-dir",
                          tmp_path / "build")
    assert proc.returncode == 0, proc.stdout + proc.stderr
