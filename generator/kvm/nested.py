"""An Arm KVM host emulated by QEMU (TCG, EL2), running the patched QEMU
under real KVM inside it.

    x86 host                     emulated Arm host (Linux, /dev/kvm)
    outer qemu-system-aarch64 -> inner qemu-system-aarch64 -accel kvm
      serial0 (stdout)    <-     console: the init script, inner QEMU output
      serial1 (unix sock) <->    /dev/ttyAMA1 = the inner QEMU's QMP monitor

The emulated host boots the Linux kernel of ../shared/guest straight from
an initramfs: busybox, the KVM-only aarch64 build of the patched QEMU with
the shared libraries it needs (from Debian's :arm64 packages), the guest
payload (payload.S), and a per-run script naming the inner command line.
One boot runs one inner QEMU; a boot takes about two seconds.
"""

import io
import re
import shlex
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, cast

from generator.errors import ToolError
from generator.kvm import initramfs
from generator.kvm.initramfs import DIR, FILE
from generator.kvm.qmp import Qmp, QmpClosed, QmpError

HERE = Path(__file__).resolve().parent
CROSS = "aarch64-linux-gnu-"
PAYLOAD_MAILBOX = 0x40100000
START, EXIT = "NESTED-INNER-START", "NESTED-INNER-EXIT"

INIT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
[ -c /dev/kvm ] || echo "NESTED-NO-KVM: the emulated host has no /dev/kvm"
echo {START}
LD_LIBRARY_PATH=/lib sh /run.sh
echo "{EXIT} $?"
poweroff -f
"""


def library_dirs() -> list[Path]:
    from generator.build.build import cross_sysroot
    return [Path("/lib/aarch64-linux-gnu"), Path("/usr/lib/aarch64-linux-gnu"),
            Path("/usr/aarch64-linux-gnu/lib"),
            cross_sysroot() / "usr/lib/aarch64-linux-gnu"]


def _readelf(args: list[str], path: Path) -> str:
    try:
        return subprocess.run([CROSS + "readelf", *args, str(path)],
                              capture_output=True, text=True,
                              check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise ToolError(f"{CROSS}readelf {path}: {e}")


def runtime_libraries(binary: Path) -> dict[str, Path]:
    """{path in the initramfs: host file} for the dynamic loader and every
    shared library `binary` needs, transitively."""
    interp = re.search(r"program interpreter: ([^\]]+)\]",
                       _readelf(["-l"], binary))
    if not interp:
        raise ToolError(f"{binary}: not a dynamically linked aarch64 binary")
    found: dict[str, Path] = {}
    todo = [binary]
    while todo:
        for name in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                               _readelf(["-d"], todo.pop())):
            if f"lib/{name}" in found:
                continue
            lib = next((d / name for d in library_dirs()
                        if (d / name).exists()), None)
            if lib is None:
                raise ToolError(f"{binary} needs {name}, which is in none "
                                f"of {', '.join(map(str, library_dirs()))}"
                                f": install its :arm64 package (.ci/setup)")
            found[f"lib/{name}"] = lib.resolve()
            todo.append(lib.resolve())
    loader = interp.group(1).lstrip("/")
    found[loader] = next(d / Path(loader).name for d in library_dirs()
                         if (d / Path(loader).name).exists()).resolve()
    return found


def build_payload(workdir: Path) -> Path:
    """payload.S assembled and linked (binutils-aarch64-linux-gnu)."""
    obj, elf = workdir / "payload.o", workdir / "payload.elf"
    for cmd in ([CROSS + "as", "-o", str(obj), str(HERE / "payload.S")],
                [CROSS + "ld", "-T", str(HERE / "payload.ld"), "-o",
                 str(elf), str(obj)]):
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True)
        except OSError:
            raise ToolError(f"{cmd[0]} is needed for the KVM payload "
                            "(apt-get install binutils-aarch64-linux-gnu)")
        except subprocess.CalledProcessError as e:
            raise ToolError(f"{shlex.join(cmd)} failed:\n{e.stderr}")
    return elf


def stripped(binary: Path, workdir: Path) -> bytes:
    """`binary` without its debug information (a tenth of the size)."""
    out = workdir / (binary.name + ".stripped")
    try:
        subprocess.run([CROSS + "strip", "-o", str(out), str(binary)],
                       check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise ToolError(f"{CROSS}strip {binary}: {e}")
    return out.read_bytes()


def host_initramfs(inner: Path, busybox: Path, payload: Path,
                   workdir: Path) -> bytes:
    """The emulated host's files, minus the per-run script."""
    entries = initramfs.busybox_entries(busybox, INIT)
    entries += [("lib", DIR | 0o755, b""),
                ("bin/qemu-system-aarch64", FILE | 0o755,
                 stripped(inner, workdir)),
                ("payload.elf", FILE | 0o644, payload.read_bytes())]
    for name, path in sorted(runtime_libraries(inner).items()):
        entries.append((name, FILE | 0o755, path.read_bytes()))
    return initramfs.cpio(entries)


@dataclass
class InnerRun:
    """What one boot of the emulated host showed."""
    console: str = ""
    exit_code: int | None = None     # the inner QEMU's, once it exited
    started: bool = False            # its QMP monitor answered
    seconds_to_qmp: float = 0.0      # inner QEMU start -> QMP greeting
    error: str = ""                  # what stopped the script, if anything
    results: dict[str, object] = field(default_factory=dict)


# called with the inner QEMU's monitor once it answers
Script = Callable[[Qmp, InnerRun], None]


class NestedHost:
    """Boots the emulated Arm host, one inner QEMU run per boot."""

    def __init__(self, outer: Path, inner: Path, kernel: Path,
                 busybox: Path, workdir: Path):
        self.outer, self.kernel = outer, kernel
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        payload = build_payload(workdir)
        self.base = host_initramfs(inner, busybox, payload, workdir)

    def inner_command(self, args: list[str]) -> list[str]:
        return ["/bin/qemu-system-aarch64", *args,
                "-nodefaults", "-display", "none", "-no-user-config",
                "-serial", "stdio",
                "-chardev", "serial,id=qmp,path=/dev/ttyAMA1",
                "-mon", "chardev=qmp,mode=control"]

    def run(self, args: list[str], script: Script | None = None,
            timeout: float = 120) -> InnerRun:
        """Boot, start the inner QEMU with `args` (plus console, monitor),
        call `script(qmp, run)` once its monitor answers, then quit it.
        Returns what was seen; never raises for what the inner QEMU did."""
        run_script = shlex.join(self.inner_command(args)) + "\n"
        per_run = initramfs.cpio([("run.sh", FILE | 0o755,
                                   run_script.encode())], compress=False)
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            initrd = Path(tmp) / "initrd"
            initrd.write_bytes(self.base + per_run)
            tunnel = Path(tmp) / "tunnel.sock"
            return _Boot(self, initrd, tunnel, timeout).run(script)

    def outer_command(self, initrd: Path, tunnel: Path) -> list[str]:
        return [str(self.outer), "-M", "virt,virtualization=on,gic-version=3",
                "-cpu", "max", "-smp", "2", "-m", "2G", "-nodefaults",
                "-display", "none", "-no-user-config", "-no-reboot",
                "-kernel", str(self.kernel), "-initrd", str(initrd),
                "-append", "console=ttyAMA0 panic=-1",
                "-serial", "stdio",
                "-chardev", f"socket,id=tunnel,path={tunnel},server=on,"
                "wait=off", "-serial", "chardev:tunnel"]


class _Boot:
    def __init__(self, host: NestedHost, initrd: Path, tunnel: Path,
                 timeout: float):
        self.host, self.initrd, self.tunnel = host, initrd, tunnel
        self.deadline = time.monotonic() + timeout
        self.console = bytearray()
        self.started: float | None = None

    def _read_console(self) -> None:
        # Popen's pipes are buffered readers (bufsize -1): read1 returns
        # what has come without waiting for a full buffer
        stdout = cast(io.BufferedReader, self.proc.stdout)
        for chunk in iter(lambda: stdout.read1(65536), b""):
            self.console += chunk
            # when the inner QEMU starts, as exactly as the console tells
            if self.started is None and START.encode() in self.console:
                self.started = time.monotonic()

    def text(self) -> str:
        return self.console.decode(errors="replace").replace("\r\n", "\n")

    def exit_code(self) -> int | None:
        m = re.search(rf"{EXIT} (\d+)", self.text())
        return int(m.group(1)) if m else None

    def run(self, script: Script | None) -> InnerRun:
        result = InnerRun()
        self.proc = subprocess.Popen(
            self.host.outer_command(self.initrd, self.tunnel),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        reader = threading.Thread(target=self._read_console, daemon=True)
        reader.start()
        try:
            qmp = self._connect()
            started = self._greeting(qmp)
            if started is not None:
                result.started = True
                result.seconds_to_qmp = started
                if script:
                    try:
                        script(qmp, result)
                    except (QmpClosed, QmpError, TimeoutError) as e:
                        result.error = f"{type(e).__name__}: {e}"
                try:
                    qmp.cmd("quit", timeout=30)
                except (QmpClosed, TimeoutError):
                    pass
            self._wait_exit()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            reader.join(timeout=5)
        result.console = self.text()
        result.exit_code = self.exit_code()
        return result

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the nested run did not finish in time:\n"
                               + self.text()[-3000:])
        return left

    def _connect(self) -> Qmp:
        while True:
            sock = socket.socket(socket.AF_UNIX)
            try:
                sock.connect(str(self.tunnel))
                return Qmp(sock)
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if self.proc.poll() is not None:
                    raise ToolError("the emulated Arm host did not start:\n"
                                    + self.text()[-3000:])
                self._left()
                time.sleep(0.02)

    def _greeting(self, qmp: Qmp) -> float | None:
        """Seconds from the inner QEMU's start to its QMP greeting, or None
        if it exited first."""
        while True:
            self._left()
            if self.exit_code() is not None or self.proc.poll() is not None:
                return None
            try:
                hello = qmp.message(timeout=0.2)
            except TimeoutError:
                continue
            except QmpClosed:
                return None
            seconds = time.monotonic() - (self.started or time.monotonic())
            try:
                qmp.negotiate(hello)
            except QmpClosed:       # it died right after its greeting
                return None
            return seconds

    def _wait_exit(self) -> None:
        while self.proc.poll() is None:
            self._left()
            time.sleep(0.05)


def read_mailbox(qmp: Qmp, slots: int = 64) -> list[int]:
    """The payload's mailbox (see payload.S), as signed 64-bit integers."""
    text = qmp.hmp(f"xp /{slots}gx {PAYLOAD_MAILBOX:#x}")
    values = [int(v, 16) for v in re.findall(r"0x([0-9a-f]{16})", text)]
    return [v - (1 << 64) if v >= 1 << 63 else v for v in values]
