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
import lzma
import os
import posixpath
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from generator import gitops
from generator.errors import AnchorError, GenError, SpecError, ToolError
from generator.paths import cache_dir
from generator.source import open_input, plain_name, read_input

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


# what a VERSION file may hold: a release number (10.2.2, 10.1.90,
# 9.2.0-rc1); it names directories (builds/<version>), so never a path
VERSION_RE = re.compile(r"[0-9]+(\.[0-9]+)+([-+~][0-9A-Za-z.]+)?")


def check_version(text: str, origin: str) -> str:
    """The release a VERSION file names, refused unless it is one."""
    version = text.strip()
    if len(version) > 40 or not VERSION_RE.fullmatch(version) or \
            ".." in version:
        raise ToolError(f"{origin}: VERSION holds {version[:40]!r}, not a "
                        "QEMU release number (such as 10.2.2)")
    return version


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open_input(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


# a .dsc's checksum fields, strongest first: (field, hashlib name)
DSC_CHECKSUMS = (("Checksums-Sha256", "sha256"), ("Checksums-Sha1", "sha1"),
                 ("Files", "md5"))


def dsc_field(text: str, field: str) -> list[str] | None:
    """The continuation lines of a deb822 multi-line field, or None."""
    found = re.search(rf"^{re.escape(field)}:[ \t]*\n((?:[ \t].*\n?)*)",
                      text, re.M)
    return None if found is None else \
        [ln.strip() for ln in found.group(1).splitlines() if ln.strip()]


def verify_dsc(dsc: Path) -> None:
    """Every file the .dsc lists is beside it, a plain name, with the size
    and checksum the .dsc gives (its strongest checksum field).  Its
    OpenPGP signature is not checked: there is no keyring to check it
    against."""
    text = read_input(dsc).decode("utf-8", errors="replace")
    found = [(field, algorithm, entries) for field, algorithm in DSC_CHECKSUMS
             if (entries := dsc_field(text, field))]
    if not found:
        raise ToolError(f"--qemu {dsc}: no Checksums-Sha256 (or Files) "
                        "field: not a Debian source package")
    field, algorithm, entries = found[0]
    for entry in entries:
        parts = entry.split()
        if len(parts) != 3 or not parts[1].isdigit():
            raise ToolError(f"--qemu {dsc}: {field}: cannot read {entry!r}")
        want, size, name = parts
        if not plain_name(name):
            raise ToolError(f"--qemu {dsc}: {field} names {name!r}, which "
                            "is not a file beside the .dsc")
        path = dsc.parent / name
        h = hashlib.new(algorithm)
        try:
            with open_input(path) as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
                got_size = f.tell()
        except OSError as e:
            raise ToolError(f"--qemu {dsc}: {name}: {e.strerror}")
        if got_size != int(size) or h.hexdigest() != want.lower():
            raise ToolError(f"--qemu {dsc}: {name} fails its {algorithm} "
                            f"checksum ({field}): it is not the file the "
                            ".dsc was made with")


def _unpack_dsc(dsc: Path, dest: Path) -> None:
    if shutil.which("dpkg-source") is None:
        raise ToolError("dpkg-source is needed to unpack a .dsc "
                        "(apt-get install dpkg-dev)")
    verify_dsc(dsc)
    proc = subprocess.run(["dpkg-source", "--no-check", "-x", str(dsc),
                           str(dest)], capture_output=True, text=True,
                          cwd=dest.parent)
    if proc.returncode != 0:
        raise ToolError(f"dpkg-source -x {dsc} failed:\n{proc.stderr.strip()}")
    # quilt bookkeeping, not source
    shutil.rmtree(dest / ".pc", ignore_errors=True)


def _member_name(tarball: Path, member: tarfile.TarInfo) -> str:
    """A member's path inside the tarball, refused if it is not one."""
    name = posixpath.normpath(member.name)
    if member.name.startswith("/") or name == ".." or \
            name.startswith("../") or "\0" in name:
        raise ToolError(f"--qemu {tarball}: member {member.name!r} lies "
                        "outside the tarball")
    return name


def safe_members(tarball: Path,
                 tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """The members to unpack, in the order to unpack them: directories and
    regular files, hard links to a regular member, then symbolic links
    whose target stays inside the tarball (last, so that nothing is
    written through one).  A device, a FIFO, a link out of the tarball or
    a member below a symbolic link is refused, naming it."""
    members = tar.getmembers()
    names = {_member_name(tarball, m): m for m in members}
    links = {n for n, m in names.items() if m.issym()}
    first: list[tarfile.TarInfo] = []
    last: list[tarfile.TarInfo] = []
    for member in members:
        name = _member_name(tarball, member)
        refuse = None
        if member.isdir() or member.isreg():
            pass
        elif member.islnk():
            target = names.get(posixpath.normpath(member.linkname))
            if target is None or not target.isreg():
                refuse = (f"a hard link to {member.linkname!r}, which is "
                          "no file of the tarball")
        elif member.issym():
            points = posixpath.normpath(posixpath.join(
                posixpath.dirname(name), member.linkname))
            if member.linkname.startswith("/") or points == ".." or \
                    points.startswith("../"):
                refuse = (f"a symbolic link to {member.linkname!r}, "
                          "outside the tarball")
        else:
            refuse = "a device, a FIFO or another special file"
        parent = posixpath.dirname(name)
        while refuse is None and parent:
            if parent in links:
                refuse = f"below the symbolic link {parent}"
            parent = posixpath.dirname(parent)
        if refuse:
            raise ToolError(f"--qemu {tarball}: member {member.name}: "
                            f"{refuse}; not unpacked")
        (last if member.issym() else first).append(member)
    return first + last


def _unpack_tarball(tarball: Path, dest: Path) -> None:
    """Unpack as data, whoever packed it: no owner (the files are ours, so
    git accepts the tree as root too), no special files, no set-id bits,
    nothing outside `dest`."""
    try:
        with open_input(tarball) as f, tarfile.open(fileobj=f) as tar:
            members = safe_members(tarball, tar)
            tops = {_member_name(tarball, m).split("/", 1)[0]
                    for m in members}
            tar.extractall(dest.parent / "x", members=members,
                           filter="data")
    except tarfile.FilterError as e:
        raise ToolError(f"--qemu {tarball}: member {e.tarinfo.name}: {e}; "
                        "not unpacked")
    except (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error) as e:
        raise ToolError(f"--qemu {tarball}: not a readable tarball ({e})")
    tops.discard(".")
    single = dest.parent / "x" / tops.pop() if len(tops) == 1 else None
    inner = single if single is not None and single.is_dir() and \
        not single.is_symlink() else dest.parent / "x"
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
    base = BaseTree(done, commit, check_version(version, str(done)),
                    str(origin), cached=True)
    USED_CACHE.append(done)
    return base, ""


# the cached trees this process uses, for blame_damaged_cache()
USED_CACHE: list[Path] = []


def cache_damage(repo: Path) -> str | None:
    """What is wrong with a cached tree (git fsck, ownership), or None."""
    try:
        owner = repo.stat().st_uid
    except OSError as e:
        return e.strerror
    if owner != os.geteuid():
        return f"owned by uid {owner}, not by you: git refuses it"
    return gitops.fsck(repo)


def blame_damaged_cache(run: Callable[[], int]) -> int:
    """run(); if it fails while a cached tree it used is damaged (an
    object missing or corrupt, another owner), the damage is the error:
    `cache damaged: remove DIR (...)`, whatever git said on the way
    ("Broken pipe", a patch that "does not apply", a safe.directory
    hint).  A spec or anchor error is never the cache's: not checked."""
    USED_CACHE.clear()
    try:
        return run()
    except (SpecError, AnchorError):
        raise
    except Exception as e:
        if isinstance(e, GenError) and str(e).startswith("cache damaged"):
            raise
        for repo in dict.fromkeys(USED_CACHE):
            why = cache_damage(repo)
            if why is not None:
                raise ToolError(f"cache damaged: remove {repo} ({why})") \
                    from e
        raise


def _import(path: Path) -> BaseTree:
    """Unpack a tarball or .dsc into a cached git repo (once)."""
    try:
        key = f"{path.name}-{_digest(path)}"
    except OSError as e:
        raise ToolError(f"--qemu {path}: {e.strerror}")
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
        if not src.is_dir() or not (src / "VERSION").exists():
            raise ToolError(f"--qemu {path}: not a QEMU source (no VERSION "
                            "at its top)")
        if not stat.S_ISREG((src / "VERSION").lstat().st_mode):
            raise ToolError(f"--qemu {path}: its VERSION is not a regular "
                            "file (a link?)")
        version = check_version(
            (src / "VERSION").read_text(errors="replace"), f"--qemu {path}")
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
        mode = gitops.blob_mode(top, commit, "VERSION")
        version = gitops.read_blob(top, commit, "VERSION")
        if version is None:
            raise ToolError(f"{qemu}: not a QEMU tree (no VERSION file)")
        if mode is None or not stat.S_ISREG(mode):
            raise ToolError(f"--qemu {qemu}: its VERSION is not a regular "
                            "file (a symbolic link?)")
        return BaseTree(top, commit, check_version(version, f"--qemu {qemu}"),
                        qemu)
    if not path.is_file():
        raise ToolError(f"--qemu {qemu}: not a regular file (a FIFO, a "
                        "device or a socket)")
    if path.name.endswith(".dsc") or path.name.endswith(TARBALL_SUFFIXES):
        return _import(path)
    raise ToolError(f"--qemu {qemu}: expected a QEMU git work tree, a release "
                    "tarball (.tar.xz, .tar.gz, .tar.bz2) or a Debian .dsc")
