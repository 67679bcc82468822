"""Hostile input and faults: `--out` is replaced whole or not at all and a
user's files there are never lost; the cache survives races, killed runs
and damage.  Faults are injected into the real CLI by a wrapper that
patches the process before it runs (SIGKILL at the Nth file-system step,
ENOSPC after N bytes), or made for real with a tmpfs when we are root."""

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from conftest import PROJECT, make_git_tree, run_gen_series
from test_generate import (
    MINI_SPEC,
    MINI_TEMPLATES,
    read_series,
    renamed_spec,
)

from generator.output.outdir import JOURNAL, MANIFEST, STAGING_PREFIX

# Runs `python -m generator ARGS` with faults from the environment:
# FAULT_KILL_AT=N   SIGKILL at the Nth rename/replace/unlink/rmdir/rmtree
#                   of a path under FAULT_DIR, or fsync
# FAULT_KILL_IN=module.function   SIGKILL when it is called
# FAULT_TERM_IN=module.function   SIGTERM (then the call) when it is called
# FAULT_ENOSPC_AFTER=N   os.write fails with ENOSPC once N bytes are written
WRAPPER = r"""
import errno, importlib, os, shutil, signal, sys
env = os.environ
def die():
    os.kill(os.getpid(), signal.SIGKILL)
if "FAULT_KILL_AT" in env:
    left = [int(env["FAULT_KILL_AT"])]
    under = env["FAULT_DIR"]
    def step():
        left[0] -= 1
        if left[0] == 0:
            die()
    def counted(mod, name, by_path=True):
        real = getattr(mod, name)
        def wrapper(*args, **kw):
            if not by_path or str(args[0]).startswith(under):
                step()
            return real(*args, **kw)
        setattr(mod, name, wrapper)
    for name in ("rename", "replace", "unlink", "rmdir"):
        counted(os, name)
    counted(shutil, "rmtree")
    counted(os, "fsync", by_path=False)
if "FAULT_KILL_IN" in env:
    module, _, name = env["FAULT_KILL_IN"].rpartition(".")
    setattr(importlib.import_module(module), name, lambda *a, **k: die())
if "FAULT_TERM_IN" in env:
    module, _, name = env["FAULT_TERM_IN"].rpartition(".")
    mod = importlib.import_module(module)
    real_fn = getattr(mod, name)
    def terminated(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        return real_fn(*a, **k)
    setattr(mod, name, terminated)
if "FAULT_ENOSPC_AFTER" in env:
    budget = [int(env["FAULT_ENOSPC_AFTER"])]
    real_write = os.write
    def write(fd, data):
        if budget[0] < len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        budget[0] -= len(data)
        return real_write(fd, data)
    os.write = write
from generator.cli import main
sys.exit(main(sys.argv[1:]))
"""


def faulty(*args, timeout=120, **faults):
    env = {**os.environ, **{k: str(v) for k, v in faults.items()}}
    return subprocess.run([sys.executable, "-c", WRAPPER, *map(str, args)],
                          cwd=PROJECT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def mini_args(qemu, out, spec=MINI_SPEC):
    return ["-q", "generate", "--spec", spec, "--templates", MINI_TEMPLATES,
            "--qemu", qemu, "--out", out]


def snapshot(out: Path) -> dict:
    """Every file in `out`, byte for byte (the manifest included)."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())
            if p.is_file()}


def written(out: Path) -> dict:
    """What generate writes: the series and the map beside it."""
    got = read_series(out)
    if (out / "series-map.json").is_file():
        got["series-map.json"] = (out / "series-map.json").read_bytes()
    return got


def assert_whole(out: Path, series: list) -> None:
    """`out` holds exactly one of `series` (its map included), with a
    manifest that vouches for each file, and nothing half-done beside it."""
    got = written(out)
    assert any(got == s for s in series), sorted(got)
    manifest = (out / MANIFEST).read_text()
    for name, data in got.items():
        assert f"{hashlib.sha256(data).hexdigest()}  {name}\n" in manifest
    assert not list(out.glob(STAGING_PREFIX + "*"))
    assert not (out / JOURNAL).exists()


@pytest.fixture
def two_series(minitree, tmp_path):
    """(old, new): the series of two specs that differ in a patch's name,
    as {name: bytes}, and the renamed spec that makes the old one."""
    old_spec = renamed_spec(tmp_path)
    for spec, name in ((old_spec, "old"), (MINI_SPEC, "new")):
        run_gen_series(*mini_args(minitree, tmp_path / name, spec), check=0)
    return snapshot(tmp_path / "old"), written(tmp_path / "new")


def put(out: Path, files: dict) -> None:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    for name, data in files.items():
        (out / name).write_bytes(data)


def recover(out: Path, tmp_path: Path) -> None:
    """The next run: it recovers `out`, then fails on a missing --qemu."""
    proc = run_gen_series(*mini_args(tmp_path / "no-qemu", out))
    assert proc.returncode == 2 and "no such file" in proc.stderr


# ---- --out ------------------------------------------------------------------

def test_sigkill_at_every_step_leaves_the_old_or_the_new_series(
        minitree, tmp_path, two_series):
    old, new = two_series
    old_series = {k: v for k, v in old.items() if k != MANIFEST}
    out = tmp_path / "out"
    killed, seen = 0, set()
    for step in range(1, 100):
        put(out, old)
        proc = faulty(*mini_args(minitree, out), FAULT_KILL_AT=step,
                      FAULT_DIR=out)
        if proc.returncode != -signal.SIGKILL:
            assert proc.returncode == 0, proc.stderr
            assert_whole(out, [new])
            break
        killed += 1
        recover(out, tmp_path)
        assert_whole(out, [old_series, new])
        seen.add("new" if written(out) == new else "old")
    # every step was hit: before the commit point the old series stays,
    # after it the next run finishes moving the new one in
    assert killed >= 10 and seen == {"old", "new"}
    # and a run after a kill in the middle writes the new series
    put(out, old)
    faulty(*mini_args(minitree, out), FAULT_KILL_AT=killed // 2,
           FAULT_DIR=out)
    run_gen_series(*mini_args(minitree, out), check=0)
    assert_whole(out, [new])


def test_sigkill_after_random_delays(minitree, tmp_path, two_series):
    old, new = two_series
    old_series = {k: v for k, v in old.items() if k != MANIFEST}
    out = tmp_path / "out"
    rng = random.Random(12)
    for _ in range(4):
        put(out, old)
        proc = subprocess.Popen(
            [sys.executable, "-m", "generator",
             *map(str, mini_args(minitree, out))], cwd=PROJECT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        recover(out, tmp_path)
        assert_whole(out, [old_series, new])


def test_a_full_disk_leaves_the_old_series(minitree, tmp_path, two_series):
    old, _ = two_series
    out = tmp_path / "out"
    put(out, old)
    proc = faulty(*mini_args(minitree, out), FAULT_ENOSPC_AFTER=700)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "the disk is full" in proc.stderr
    assert snapshot(out) == old
    assert not list(out.glob(".gen-series*/"))


def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
            capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a tmpfs")


@pytest.fixture
def tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    yield mnt
    subprocess.run(["umount", mnt], capture_output=True)


def test_a_really_full_disk_leaves_the_old_series(minitree, tmp_path, tmpfs,
                                                  two_series):
    old, new = two_series
    mount_tmpfs(tmpfs, "64k")
    out = tmpfs / "out"
    put(out, old)
    filler = tmpfs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 512)
    except OSError:
        pass
    os.close(fd)
    proc = run_gen_series(*mini_args(minitree, out))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "--out" in proc.stderr
    assert snapshot(out) == old
    filler.unlink()
    run_gen_series(*mini_args(minitree, out), check=0)
    assert_whole(out, [new])


def test_a_read_only_out_is_refused_before_rendering(minitree, tmp_path,
                                                     tmpfs, two_series):
    old, _ = two_series
    if os.geteuid() == 0:       # root writes through permissions
        mount_tmpfs(tmpfs, "1m")
        out = tmpfs / "out"
        put(out, old)
        subprocess.run(["mount", "-o", "remount,ro", tmpfs], check=True)
    else:
        out = tmp_path / "out"
        put(out, old)
        out.chmod(0o555)
    proc = run_gen_series(*mini_args(minitree, out))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"gen-series: error: --out {out}: cannot "
                                  f"write into {out}: ")
    assert snapshot(out) == old


@pytest.mark.parametrize("what", ["empty", "file", "under-a-file"])
def test_an_unusable_out_is_refused_in_one_line(minitree, tmp_path, what):
    (tmp_path / "f").write_text("keep\n")
    out = {"empty": "", "file": tmp_path / "f",
           "under-a-file": tmp_path / "f" / "out"}[what]
    proc = run_gen_series(*mini_args(minitree, out))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--out" in proc.stderr
    assert (tmp_path / "f").read_text() == "keep\n"


def test_a_users_file_is_never_replaced_or_removed(minitree, tmp_path,
                                                   two_series):
    old, new = two_series
    out = tmp_path / "out"
    put(out, old)
    (out / "0009-mine.patch").write_text("my own patch\n")
    before = snapshot(out)
    proc = run_gen_series(*mini_args(minitree, out))
    assert proc.returncode == 2
    assert proc.stderr == (
        f"gen-series: error: --out {out}: 0009-mine.patch was not written by "
        "gen-series: move it away (or remove it) and run again; nothing was "
        "written\n")
    assert snapshot(out) == before

    (out / "0009-mine.patch").unlink()
    cover = out / "0000-cover-letter.patch"
    cover.write_bytes(cover.read_bytes() + b"my edit\n")
    before = snapshot(out)
    proc = run_gen_series(*mini_args(minitree, out))
    assert proc.returncode == 2
    assert "0000-cover-letter.patch was changed since gen-series wrote it" \
        in proc.stderr
    assert snapshot(out) == before


def test_a_series_git_holds_may_be_replaced(minitree, tmp_path, two_series):
    """A committed series without a manifest (patches/ before it had one):
    git can bring every file back, so it is replaced."""
    old, new = two_series
    work = tmp_path / "work"
    put(work, {k: v for k, v in old.items() if k != MANIFEST})
    make_git_tree(work, tmp_path / "repo")
    out = tmp_path / "repo"
    run_gen_series(*mini_args(minitree, out), check=0)
    assert written(out) == new
    # an uncommitted edit is not git's to give back
    patch = out / "0001-qdev-first-change.patch"
    (out / MANIFEST).unlink()
    patch.write_text("edited\n")
    proc = run_gen_series(*mini_args(minitree, out))
    assert proc.returncode == 2 and "0001-qdev-first-change.patch" in \
        proc.stderr
    assert patch.read_text() == "edited\n"


# ---- the cache --------------------------------------------------------------

@pytest.fixture
def tarball(tmp_path):
    path = tmp_path / "qemu-9.2.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(PROJECT / "tests" / "fixtures" / "minitree", "qemu-9.2.0")
    return path


def cache_env(cache: Path) -> dict:
    return {"GEN_SERIES_CACHE": str(cache)}


def trees(cache: Path) -> list:
    return sorted(p.name for p in (cache / "trees").iterdir()
                  if not p.name.startswith(".lock-"))


def test_concurrent_first_runs_on_a_cold_cache(tarball, tmp_path):
    for attempt in range(3):
        cache = tmp_path / f"cache{attempt}"
        env = {**os.environ, **cache_env(cache)}
        procs = [subprocess.Popen(
            [sys.executable, "-m", "generator",
             *map(str, mini_args(tarball, tmp_path / f"out{attempt}-{i}"))],
            cwd=PROJECT, env=env, stderr=subprocess.PIPE, text=True)
            for i in range(2)]
        for p in procs:
            assert p.wait(timeout=120) == 0, p.stderr.read()
        assert read_series(tmp_path / f"out{attempt}-0") == \
            read_series(tmp_path / f"out{attempt}-1")
        assert len(trees(cache)) == 1, trees(cache)


def test_a_run_killed_while_unpacking_leaves_nothing_behind(tarball,
                                                            tmp_path):
    cache = tmp_path / "cache"
    proc = faulty(*mini_args(tarball, tmp_path / "out"),
                  FAULT_KILL_IN="generator.gitops.commit_all",
                  **cache_env(cache))
    assert proc.returncode == -signal.SIGKILL
    assert [t for t in trees(cache) if t.startswith(".unpack-")]
    assert not (tmp_path / "out").exists()
    proc = faulty(*mini_args(tarball, tmp_path / "out"), **cache_env(cache))
    assert proc.returncode == 0, proc.stderr
    assert len(trees(cache)) == 1 and \
        not trees(cache)[0].startswith(".unpack-")


@pytest.mark.parametrize("damage", ["no-git", "no-tag"])
def test_a_damaged_cached_tree_is_unpacked_again(tarball, tmp_path, damage):
    cache = tmp_path / "cache"
    env = cache_env(cache)
    assert faulty(*mini_args(tarball, tmp_path / "a"), **env).returncode == 0
    tree = cache / "trees" / trees(cache)[0]
    if damage == "no-git":
        shutil.rmtree(tree / ".git")
    else:
        subprocess.run(["git", "-C", tree, "tag", "-d", "gen-series-base"],
                       check=True, capture_output=True)
    proc = faulty(*mini_args(tarball, tmp_path / "b"), **env)
    assert proc.returncode == 0, proc.stderr
    assert read_series(tmp_path / "a") == read_series(tmp_path / "b")
    assert trees(cache) == [tree.name]


def test_a_cache_missing_objects_is_named_not_blamed_on_the_spec(tarball,
                                                                 tmp_path):
    cache = tmp_path / "cache"
    env = cache_env(cache)
    assert faulty(*mini_args(tarball, tmp_path / "a"), **env).returncode == 0
    tree = cache / "trees" / trees(cache)[0]
    blob = subprocess.run(["git", "-C", tree, "rev-parse",
                           "gen-series-base:hw/core/qdev.c"], check=True,
                          capture_output=True, text=True).stdout.strip()
    (tree / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    proc = faulty(*mini_args(tarball, tmp_path / "b"), **env)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(
        f"gen-series: error: cache damaged: remove {tree} (")
    assert not (tmp_path / "b").exists()
