"""`--qemu PATH` -> a base: a git repo, the commit to start from, a version.

PATH may be a QEMU git work tree (used read-only: we clone it), a release
tarball or a Debian source package (.dsc).  Tarballs and .dsc files are
unpacked once into a git repo under the cache directory
(GEN_SERIES_CACHE, default ~/.cache/gen-series) and reused.
"""

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import git

from generator import gitops
from generator.errors import ToolError

TARBALL_SUFFIXES = (".tar.xz", ".tar.gz", ".tar.bz2", ".tgz", ".tar")


@dataclass(frozen=True)
class BaseTree:
    repo: Path          # a git repository holding `commit`
    commit: str
    version: str        # the tree's VERSION file, e.g. "10.2.2"
    origin: str         # what the user named, for messages

    @property
    def release(self) -> str:
        return self.version


def cache_dir() -> Path:
    root = os.environ.get("GEN_SERIES_CACHE") or \
        Path.home() / ".cache" / "gen-series"
    return Path(root)


def _read_version(repo: Path, commit: str, origin: str) -> str:
    try:
        text = gitops.open_repo(repo).git.show(f"{commit}:VERSION")
    except git.GitCommandError:
        raise ToolError(f"{origin}: not a QEMU tree (no VERSION file)")
    return text.strip()


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _unpack_dsc(dsc: Path, dest: Path) -> None:
    if shutil.which("dpkg-source") is None:
        raise ToolError("dpkg-source is needed to unpack a .dsc "
                        "(apt-get install dpkg-dev)")
    proc = subprocess.run(["dpkg-source", "--no-check", "-x", str(dsc),
                           str(dest)], capture_output=True, text=True,
                          cwd=dest.parent)
    if proc.returncode != 0:
        raise ToolError(f"dpkg-source -x {dsc} failed:\n{proc.stderr.strip()}")
    # quilt bookkeeping, not source
    shutil.rmtree(dest / ".pc", ignore_errors=True)


def _unpack_tarball(tarball: Path, dest: Path) -> None:
    with tarfile.open(tarball) as tar:
        tops = {m.name.split("/", 1)[0] for m in tar.getmembers()}
        tar.extractall(dest.parent / "x", filter="tar")
    inner = dest.parent / "x" / tops.pop() if len(tops) == 1 \
        else dest.parent / "x"
    inner.rename(dest)


def _import(path: Path, progress) -> BaseTree:
    """Unpack a tarball or .dsc into a cached git repo (once)."""
    key = f"{path.name}-{_digest(path)}"
    done = cache_dir() / "trees" / key
    if not (done / ".git").is_dir():
        progress(f"unpacking {path.name} into {done} (once)")
        done.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=done.parent) as tmp:
            src = Path(tmp) / "src"
            if path.name.endswith(".dsc"):
                _unpack_dsc(path.resolve(), src)
            else:
                _unpack_tarball(path, src)
            if not (src / "VERSION").is_file():
                raise ToolError(f"{path}: not a QEMU source (no VERSION)")
            version = (src / "VERSION").read_text().strip()
            repo = gitops.init_repo(src)
            gitops.commit_all(repo, f"QEMU {version} ({path.name})",
                              "%s <%s>" % gitops.BASE_IDENTITY,
                              gitops.BASE_DATE, force=True)
            repo.git.tag("gen-series-base")
            src.rename(done)
    repo = gitops.open_repo(done)
    commit = repo.git.rev_parse("gen-series-base^{commit}")
    return BaseTree(done, commit, _read_version(done, commit, str(path)),
                    str(path))


def resolve_base(qemu: str, progress=lambda msg: None) -> BaseTree:
    """Turn --qemu PATH into a BaseTree; PATH itself is never modified."""
    path = Path(qemu)
    if not path.exists():
        raise ToolError(f"--qemu {qemu}: no such file or directory")
    if path.is_dir():
        try:
            repo = gitops.open_repo(path)
            if repo.bare:
                raise git.InvalidGitRepositoryError(qemu)
            commit = repo.git.rev_parse("HEAD^{commit}")
            top = Path(repo.working_tree_dir)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError,
                git.GitCommandError):
            raise ToolError(f"--qemu {qemu}: a directory must be a QEMU git "
                            "work tree (or give a release tarball or .dsc)")
        return BaseTree(top, commit, _read_version(top, commit, qemu), qemu)
    if path.name.endswith(".dsc") or path.name.endswith(TARBALL_SUFFIXES):
        return _import(path, progress)
    raise ToolError(f"--qemu {qemu}: expected a QEMU git work tree, a release "
                    "tarball (.tar.xz, .tar.gz, .tar.bz2) or a Debian .dsc")
