"""`--qemu PATH` -> a base: a git repo, the commit to start from, a version.

PATH may be a QEMU git work tree (used read-only: we clone it), a release
tarball or a Debian source package (.dsc).  Tarballs and .dsc files are
unpacked once into a git repo under the cache directory
(GEN_SERIES_CACHE, default ~/.cache/gen-series) and reused; a cached tree
found damaged is unpacked again.
"""

import fcntl
import hashlib
import logging
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from generator import gitops
from generator.errors import ToolError
from generator.paths import cache_dir

logger = logging.getLogger(__name__)

TARBALL_SUFFIXES = (".tar.xz", ".tar.gz", ".tar.bz2", ".tgz", ".tar")


@dataclass(frozen=True)
class BaseTree:
    repo: Path          # a git repository holding `commit`
    commit: str
    version: str        # the tree's VERSION file, e.g. "10.2.2"
    origin: str         # what the user named, for messages
    cached: bool = False    # `repo` is our import under cache_dir()

    @property
    def release(self) -> str:
        return self.version

    def unreadable(self, why: str) -> ToolError:
        """git cannot read the base: a damaged cache is ours to name (never
        the spec's fault), a user's tree is theirs."""
        if self.cached:
            return ToolError(f"cache damaged: remove {self.repo} ({why})")
        return ToolError(f"--qemu {self.origin}: {why}")


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


# The cache: trees/<key> appears by one rename once the import is complete,
# so a tree that is there is whole.  The first import of a key holds
# trees/.lock-<key>; it works in a fresh trees/.unpack-<key>-<random>
# directory (tempfile.mkdtemp), which a killed run leaves behind and the
# next import sweeps (any whose lock nobody holds).
UNPACK_PREFIX = ".unpack-"
BASE_TAG = "gen-series-base"


@contextmanager
def _lock(trees: Path, key: str, wait: bool = True) -> Iterator[bool]:
    """Yield True with the lock of `key` held (False: held elsewhere and
    not `wait`).  Lock files stay: removing one races with its next user."""
    with open(trees / f".lock-{key}", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True


def _sweep(trees: Path, key: str) -> None:
    """Remove what killed imports left; called with the lock of `key`."""
    for stale in trees.glob(UNPACK_PREFIX + "*"):
        other = stale.name[len(UNPACK_PREFIX):].rsplit("-", 1)[0]
        if other == key:
            shutil.rmtree(stale, ignore_errors=True)
            continue
        with _lock(trees, other, wait=False) as free:
            if free:
                shutil.rmtree(stale, ignore_errors=True)


def _cached_base(done: Path, origin: Path) -> tuple[BaseTree | None, str]:
    """(BaseTree, "") for a usable cached tree, else (None, what is wrong
    with it)."""
    if not done.exists():
        return None, "missing"
    if not (done / ".git").is_dir():
        return None, "no .git"
    commit = gitops.resolve_commit(done, BASE_TAG)
    if commit is None:
        return None, f"no {BASE_TAG} tag"
    version = gitops.read_blob(done, commit, "VERSION")
    if version is None:
        return None, "VERSION unreadable"
    return BaseTree(done, commit, version.strip(), str(origin),
                    cached=True), ""


def _import(path: Path) -> BaseTree:
    """Unpack a tarball or .dsc into a cached git repo (once)."""
    key = f"{path.name}-{_digest(path)}"
    trees = cache_dir() / "trees"
    done = trees / key
    base, why = _cached_base(done, path)
    if base:
        return base
    try:
        trees.mkdir(parents=True, exist_ok=True)
        with _lock(trees, key):
            # another run may have imported it while we waited
            base, why = _cached_base(done, path)
            if base:
                return base
            _sweep(trees, key)
            if why != "missing":
                logger.info(f"{done} is damaged ({why}): unpacking again")
                _discard(done, trees, key, why)
            _unpack_into(path, done, trees, key)
    except OSError as e:
        raise ToolError(f"cannot unpack {path} into {trees}: {e.strerror}")
    base, why = _cached_base(done, path)
    if base is None:
        raise ToolError(f"cache damaged: remove {done} ({why})")
    return base


def _discard(done: Path, trees: Path, key: str, why: str) -> None:
    """Move a damaged tree out of the way (a rename: a run killed while
    deleting it leaves only a stale unpack directory)."""
    aside = Path(tempfile.mkdtemp(prefix=f"{UNPACK_PREFIX}{key}-",
                                  dir=trees))
    try:
        done.rename(aside / "damaged")
        shutil.rmtree(aside)
    except OSError:
        shutil.rmtree(aside, ignore_errors=True)
        raise ToolError(f"cache damaged: remove {done} ({why})")


def _unpack_into(path: Path, done: Path, trees: Path, key: str) -> None:
    logger.info(f"unpacking {path.name} into {done} (once)")
    tmp = Path(tempfile.mkdtemp(prefix=f"{UNPACK_PREFIX}{key}-", dir=trees))
    try:
        src = tmp / "src"
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
        gitops.tag(repo, BASE_TAG)
        src.rename(done)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_base(qemu: str) -> BaseTree:
    """Turn --qemu PATH into a BaseTree; PATH itself is never modified."""
    path = Path(qemu)
    if not path.exists():
        raise ToolError(f"--qemu {qemu}: no such file or directory")
    if path.is_dir():
        top = gitops.work_tree_top(path)
        commit = gitops.resolve_commit(top, "HEAD") if top else None
        if top is None or commit is None:
            raise ToolError(f"--qemu {qemu}: a directory must be a QEMU git "
                            "work tree (or give a release tarball or .dsc)")
        version = gitops.read_blob(top, commit, "VERSION")
        if version is None:
            raise ToolError(f"{qemu}: not a QEMU tree (no VERSION file)")
        return BaseTree(top, commit, version.strip(), qemu)
    if path.name.endswith(".dsc") or path.name.endswith(TARBALL_SUFFIXES):
        return _import(path)
    raise ToolError(f"--qemu {qemu}: expected a QEMU git work tree, a release "
                    "tarball (.tar.xz, .tar.gz, .tar.bz2) or a Debian .dsc")
