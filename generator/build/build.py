"""Apply a series onto a clean base with `git am`, configure and build QEMU.

Layout under --build-dir (reused between runs, so rebuilds are incremental):

    <build-dir>/qemu/         a clone of the base, series applied with git am
    <build-dir>/qemu/build/   the meson build directory
    <build-dir>/*.log         configure and ninja output

ccache is used when installed, keyed on paths relative to the source, so a
build dir anywhere reuses objects compiled in another.
"""

import fcntl
import hashlib
import logging
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from generator import gitops
from generator.errors import CheckFailed, ToolError
from generator.output.written import WrittenSeries, touched_c_files
from generator.qemutree import BaseTree

logger = logging.getLogger(__name__)

CONFIGURE_ARGS = [
    "--target-list=aarch64-softmmu", "--disable-docs", "--disable-tools",
    "--disable-user", "--disable-werror", "--disable-rust",
    "--enable-fdt=system", "--disable-install-blobs",
    # the interpreter running gen-series has meson (its venv), not
    # necessarily the first python3 on PATH
    f"--python={sys.executable}",
]
BINARY = "qemu-system-aarch64"
MARKER = "gen-series-build"
STAMP = "gen-series-applied"


@dataclass
class Build:
    """One configured build directory inside the source clone."""
    name: str
    dir: Path
    env: dict[str, str]


# where the native build, the aarch64 cross build (compile checks), the
# KVM-only aarch64 build (run under nested KVM) and the AddressSanitizer
# build (qtest --asan) live, below the clone
BUILD_DIRS = (Path("build"), Path("build-aarch64"), Path("build-aarch64-kvm"),
              Path("build-asan"))


def prepare_source(base: BaseTree, patches: list[Path],
                   build_root: Path) -> Path:
    """A clean clone of the base at <build-dir>/qemu with `patches` applied."""
    src = build_root / "qemu"
    marker = src / ".git" / MARKER
    if not src.exists():
        logger.info(f"cloning QEMU {base.version} into {src}")
        build_root.mkdir(parents=True, exist_ok=True)
        gitops.scratch_clone(base.repo, base.commit, src)
        marker.write_text("created by gen-series build\n")
    elif not marker.is_file():
        raise ToolError(f"--build-dir {build_root}: {src} exists and was not "
                        "made by gen-series; choose another --build-dir")
    repo = gitops.open_repo(src)
    # Same base, same patches, untouched tree: keep it, so that ninja only
    # rebuilds what changed since (re-applying would touch every file).
    stamp = src / ".git" / STAMP
    if stamp.is_file() and stamp.read_text() == series_stamp(base, patches) \
            and gitops.is_clean(repo):
        logger.info(f"series already applied in {src}")
        return src
    for n, (patch, error) in enumerate(apply_one_by_one(src, base.commit,
                                                        patches), 1):
        logger.info(f"applying [{n}/{len(patches)}] {patch.name}")
        if error:
            raise CheckFailed(error)
    mark_applied(src, base, patches)
    return src


def apply_one_by_one(src: Path, base: str,
                     patches: list[Path]) -> Iterator[tuple[Path, str | None]]:
    """Reset the clone at `src` to `base` (build dirs kept), then `git am`
    the patches one at a time, yielding (patch, error or None) after each
    and stopping at the first that does not apply."""
    repo = gitops.open_repo(src)
    (src / ".git" / STAMP).unlink(missing_ok=True)
    gitops.reset_hard(repo, base, keep=tuple(d.name for d in BUILD_DIRS))
    for patch in patches:
        try:
            gitops.am(repo, patch)
        except CheckFailed as e:
            yield patch, e.msg
            return
        # git's exit status is not enough: a mail cut short in a binary
        # part applies without that file, and git am says 0
        wrong = gitops.applied_differently(repo, patch)
        if wrong is not None:
            yield patch, (f"{patch.name} does not apply as written: {wrong} "
                          "(a damaged patch: a binary part cut short?)")
            return
        yield patch, None


def series_stamp(base: BaseTree, patches: list[Path]) -> str:
    h = hashlib.sha256(base.commit.encode())
    for patch in patches:
        h.update(patch.read_bytes())
    return h.hexdigest()


def mark_applied(src: Path, base: BaseTree, patches: list[Path]) -> None:
    """Record that the tree at `src` is `base` with `patches` applied."""
    (src / ".git" / STAMP).write_text(series_stamp(base, patches))


def _run_logged(cmd: list[str], cwd: Path, log: Path, env: dict[str, str],
                what: str) -> None:
    logger.info(f"{what}: {shlex.join(cmd)}  (log: {log})")
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None      # stdout=PIPE
        shown = -1
        for line in proc.stdout:
            f.write(line)
            # ninja prints "[n/total] ..."; report every 10%
            if line.startswith("[") and "/" in line.split("]")[0]:
                done, total = line[1:].split("]")[0].split("/")
                if done.isdigit() and total.isdigit() and int(total):
                    pct = 100 * int(done) // int(total) // 10 * 10
                    if pct > shown:
                        shown = pct
                        logger.info(f"{what}: {pct}% ({done}/{total})")
        proc.wait()
    if proc.returncode != 0:
        # what the tools said, without ninja's progress and command lines
        said = [ln for ln in log.read_text(errors="replace").splitlines()
                if not ln.startswith(("[", "FAILED: ")) and ln.strip()]
        errors = [ln for ln in said if "error" in ln.lower()][:20]
        detail = "\n".join(errors or said[-30:])
        raise CheckFailed(f"{what} failed (exit {proc.returncode}); "
                          f"see {log}:\n{detail}")


def build_env(src: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CCACHE_BASEDIR", str(src))
    env.setdefault("CCACHE_NOHASHDIR", "1")
    return env


def configure(src: Path, build: Path, build_root: Path, args: list[str],
              env: dict[str, str]) -> Path:
    """Configure `build` unless it is already configured the same way."""
    stamp = build / ".gen-series-configure"
    if stamp.is_file() and stamp.read_text() == "\n".join(args) and \
            (build / "build.ninja").is_file():
        return build
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    _run_logged(["../configure", *args], build,
                build_root / f"configure-{build.name}.log", env,
                "configure")
    stamp.write_text("\n".join(args))
    return build


def ninja(build: Path, build_root: Path, targets: list[str],
          env: dict[str, str]) -> None:
    if shutil.which("ninja") is None:
        raise ToolError("ninja is needed to build QEMU (apt-get install "
                        "ninja-build)")
    jobs = str(os.cpu_count() or 2)
    _run_logged(["ninja", "-j", jobs, *targets], build,
                build_root / f"ninja-{build.name}.log", env, "build")


def check_warnings(log: Path, c_files: list[str], src: Path) -> None:
    """Fail on compiler warnings in the files the series changes: the
    release builds with --disable-werror, QEMU's own CI does not."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if ": warning: " in line:
            path = line.split(":", 1)[0].removeprefix("../")
            if path in c_files:
                found.append(line)
    if found:
        # the next run must recompile these files to show them again
        (src / ".git" / "gen-series-applied").unlink(missing_ok=True)
        raise CheckFailed("compiler warnings in files the series changes:\n"
                          + "\n".join(found))


def _compiler(cc: str) -> str:
    if shutil.which(cc) is None:
        raise ToolError(f"{cc} is needed for this build")
    return f"--cc=ccache {cc}" if shutil.which("ccache") else f"--cc={cc}"


def configure_asan(src: Path, build_root: Path) -> Build:
    """A native build with AddressSanitizer (and UBSan's checks that QEMU's
    --enable-asan brings), for the qtests that exercise the series."""
    env = build_env(src)
    return Build("asan", configure(src, src / BUILD_DIRS[3], build_root,
                                   CONFIGURE_ARGS + [_compiler("gcc"),
                                                     "--enable-asan"],
                                   env), env)


def configure_native(src: Path, build_root: Path) -> Build:
    env = build_env(src)
    return Build("native", configure(src, src / BUILD_DIRS[0], build_root,
                                     CONFIGURE_ARGS + [_compiler("gcc")],
                                     env), env)


_HELD: set[Path] = set()      # build dirs this process holds the lock of


@contextmanager
def exclusive(build_root: Path) -> Iterator[None]:
    """One gen-series at a time in a build dir: two would `git am` into
    the same clone.  A second run waits, saying so."""
    if build_root in _HELD:
        yield
        return
    build_root.mkdir(parents=True, exist_ok=True)
    with open(build_root / ".gen-series-lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info(f"waiting for another gen-series using {build_root}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        _HELD.add(build_root)
        try:
            yield
        finally:
            _HELD.discard(build_root)


def build(base: BaseTree, series_dir: Path | None, build_root: Path,
          targets: Sequence[str] = ()) -> Path:
    """Apply, configure, build; return the qemu-system-aarch64 path.
    With no series, the unpatched base (to compare against)."""
    build_root = build_root.resolve()
    with exclusive(build_root):
        return _build(base, series_dir, build_root, targets)


def _build(base: BaseTree, series_dir: Path | None, build_root: Path,
           targets: Sequence[str]) -> Path:
    patches = list(WrittenSeries.read(series_dir).patches) if series_dir \
        else []
    src = prepare_source(base, patches, build_root)
    native = configure_native(src, build_root)
    ninja(native.dir, build_root, [BINARY, *targets], native.env)
    check_warnings(build_root / f"ninja-{native.dir.name}.log",
                   touched_c_files(patches), src)
    return native.dir / BINARY


# ---- the aarch64 cross build, for the code only an Arm host compiles ------

CROSS_PREFIX = "aarch64-linux-gnu-"


def cross_sysroot() -> Path:
    """Where .ci/setup unpacks libfdt-dev:arm64 (Debian's is not
    multi-arch: installing it would remove the native one)."""
    from generator.paths import cache_dir
    return cache_dir() / "sysroot-arm64"


def _cross_env(src: Path, build_root: Path) -> dict[str, str]:
    env = build_env(src)
    # QEMU's configure asks ${cross_prefix}pkg-config, which bookworm lacks
    wrapper = build_root / f"{CROSS_PREFIX}pkg-config"
    wrapper.write_text("#!/bin/sh\nPKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-"
                       "gnu/pkgconfig:/usr/share/pkgconfig exec pkg-config "
                       "\"$@\"\n")
    wrapper.chmod(0o755)
    env["PKG_CONFIG"] = str(wrapper)
    return env


def object_targets(build_dir: Path,
                   c_files: list[str]) -> dict[str, list[str]]:
    """ninja object targets compiling each file, in a configured build
    (from its compile_commands.json)."""
    import json
    db = json.loads((build_dir / "compile_commands.json").read_text())
    objects: dict[str, list[str]] = {c: [] for c in c_files}
    for entry in db:
        path = os.path.normpath(os.path.join(entry["directory"],
                                             entry["file"]))
        rel = os.path.relpath(path, build_dir.parent)
        if rel in objects and entry["output"] not in objects[rel]:
            objects[rel].append(entry["output"])
    return objects


def cross_available() -> bool:
    return shutil.which(CROSS_PREFIX + "gcc") is not None and \
        (cross_sysroot() / "usr/include/libfdt.h").is_file()


def require_cross() -> None:
    if not cross_available():
        raise ToolError(f"no aarch64 cross toolchain, or no arm64 libfdt in "
                        f"{cross_sysroot()}: run .ci/setup")


def configure_cross(src: Path, build_root: Path) -> Build:
    env = _cross_env(src, build_root)
    return Build("aarch64-kvm", configure(src, src / BUILD_DIRS[1],
                                          build_root,
                                          cross_configure_args(), env), env)


def cross_configure_args() -> list[str]:
    sysroot = cross_sysroot()
    return CONFIGURE_ARGS + [
        f"--cross-prefix={CROSS_PREFIX}", "--enable-kvm",
        _compiler(f"{CROSS_PREFIX}gcc"),
        f"--extra-cflags=-I{sysroot}/usr/include",
        f"--extra-ldflags=-L{sysroot}/usr/lib/aarch64-linux-gnu"]


def configure_kvm_host(src: Path, build_root: Path) -> Build:
    """qemu-system-aarch64 for an Arm KVM host, without TCG or optional
    features: about 2 minutes to build cold, and it needs only glib,
    pcre2, zlib and libfdt at run time."""
    env = _cross_env(src, build_root)
    args = cross_configure_args() + ["--disable-tcg",
                                     "--without-default-features"]
    return Build("aarch64-kvm-host", configure(src, src / BUILD_DIRS[2],
                                               build_root, args,
                                               env), env)


def kvm_host_build(base: BaseTree, series_dir: Path, build_root: Path) -> Path:
    """Apply and build the KVM-only aarch64 binary; return its path."""
    build_root = build_root.resolve()
    patches = list(WrittenSeries.read(series_dir).patches)
    with exclusive(build_root):
        src = prepare_source(base, patches, build_root)
        return build_kvm_host(src, build_root, patches)


def build_kvm_host(src: Path, build_root: Path, patches: list[Path]) -> Path:
    """The KVM-only aarch64 binary of the tree at `src` (series applied)."""
    require_cross()
    kvm = configure_kvm_host(src, build_root)
    ninja(kvm.dir, build_root, [BINARY], kvm.env)
    check_warnings(build_root / f"ninja-{kvm.dir.name}.log",
                   touched_c_files(patches), src)
    return kvm.dir / BINARY


def cross_build(base: BaseTree, series_dir: Path,
                build_root: Path) -> dict[str, list[str]]:
    """Compile, for an aarch64 host with KVM, every C file the series
    changes that such a build compiles; return {file: [objects]}."""
    build_root = build_root.resolve()
    require_cross()
    patches = list(WrittenSeries.read(series_dir).patches)
    with exclusive(build_root):
        src = prepare_source(base, patches, build_root)
        cross = configure_cross(src, build_root)
        objects = object_targets(cross.dir, touched_c_files(patches))
        wanted = [o for objs in objects.values() for o in objs]
        ninja(cross.dir, build_root, wanted, cross.env)
        check_warnings(build_root / f"ninja-{cross.dir.name}.log",
                       list(objects), src)
    return objects
