"""An Arm KVM host emulated by QEMU (TCG, EL2), running the patched QEMU
under real KVM inside it.

    x86 host                     emulated Arm host (Linux, /dev/kvm)
    outer qemu-system-aarch64 -> inner qemu-system-aarch64 -accel kvm
      serial0 (stdout)    <-     console: the init script, inner QEMU output
      serial1 (unix sock) <->    /dev/ttyAMA1 = inner QEMU 0's QMP monitor
      virtio-serial-pci, only for more than one inner QEMU:
        virtconsole 1 (unix sock) <-> /dev/hvc0 = inner QEMU 1's monitor
        virtconsole 2 (unix sock) <-> /dev/hvc1 = inner QEMU 2's monitor

The emulated host boots the Linux kernel of ../shared/guest straight from
an initramfs: busybox, the KVM-only aarch64 build of the patched QEMU with
the shared libraries it needs (from Debian's :arm64 packages), the guest
payload (payload.S), and a per-run script naming the inner command lines.
A boot takes about two seconds and usually runs one inner QEMU; the
migration stage (migration.py) runs a source and two destinations side by
side, which migrate to each other inside the emulated host over unix
sockets.  Their monitors need more lines than the virt machine's two
PL011s: the kernel has virtio_console and virtio_pci built in (no modules
needed), and a virtconsole is a tty the inner QEMU opens as it opens
/dev/ttyAMA1, so each further monitor is one more virtconsole.  Which
hvcN a virtconsole becomes does not matter: the destinations are started
alike and told apart only over their monitors.
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
# the monitor line of inner QEMU i in the emulated host (see above)
MONITORS = ["/dev/ttyAMA1", "/dev/hvc0", "/dev/hvc1"]

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
    exit_codes: list[int | None] = field(default_factory=list)  # run_many
    # the console so far, for a script (the inner QEMUs' stderr is there)
    console_now: Callable[[], str] = field(
        default_factory=lambda: lambda: "")
    results: dict[str, object] = field(default_factory=dict)


# called with the inner QEMU's monitor once it answers
Script = Callable[[Qmp, InnerRun], None]
# called with the monitors of all inner QEMUs (run_many), in order
ManyScript = Callable[[list[Qmp], InnerRun], None]


def run_script(commands: list[list[str]]) -> str:
    """The emulated host's /run.sh: the inner QEMUs side by side, each
    followed by "NESTED-INNER-EXIT-i rc" on the console; its own exit
    code is the last failing one's."""
    lines = [f"( {shlex.join(cmd)}; echo \"{EXIT}-{i} $?\" ) &\n"
             f"p{i}=$!\n" for i, cmd in enumerate(commands)]
    waits = "".join(f"wait $p{i} || rc=$?\n" for i in range(len(commands)))
    return "".join(lines) + "rc=0\n" + waits + "exit $rc\n"


class NestedHost:
    """Boots the emulated Arm host, one inner QEMU run per boot."""

    def __init__(self, outer: Path, inner: Path, kernel: Path,
                 busybox: Path, workdir: Path):
        self.outer, self.kernel = outer, kernel
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        payload = build_payload(workdir)
        self.base = host_initramfs(inner, busybox, payload, workdir)

    def inner_command(self, args: list[str], monitor: str = MONITORS[0],
                      serial: str = "stdio") -> list[str]:
        return ["/bin/qemu-system-aarch64", *args,
                "-nodefaults", "-display", "none", "-no-user-config",
                "-serial", serial,
                "-chardev", f"serial,id=qmp,path={monitor}",
                "-mon", "chardev=qmp,mode=control"]

    def run(self, args: list[str], script: Script | None = None,
            timeout: float = 120) -> InnerRun:
        """Boot, start the inner QEMU with `args` (plus console, monitor),
        call `script(qmp, run)` once its monitor answers, then quit it.
        Returns what was seen; never raises for what the inner QEMU did."""
        run_script = shlex.join(self.inner_command(args)) + "\n"
        return self._boot(run_script, 1, timeout,
                          lambda qmps, run: script(qmps[0], run)
                          if script else None)

    def run_many(self, args: list[list[str]], script: ManyScript,
                 timeout: float = 240) -> InnerRun:
        """run() for up to len(MONITORS) inner QEMUs side by side, the
        first with the console as its serial port, the others without
        one: `script` gets their monitors in the order of `args`, once
        all answered."""
        if not 1 <= len(args) <= len(MONITORS):
            raise ValueError(f"1 to {len(MONITORS)} inner QEMUs")
        commands = [self.inner_command(a, MONITORS[i],
                                       "stdio" if i == 0 else "none")
                    for i, a in enumerate(args)]
        return self._boot(run_script(commands), len(args), timeout, script)

    def _boot(self, run_script: str, inners: int, timeout: float,
              script: ManyScript) -> InnerRun:
        per_run = initramfs.cpio([("run.sh", FILE | 0o755,
                                   run_script.encode())], compress=False)
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            initrd = Path(tmp) / "initrd"
            initrd.write_bytes(self.base + per_run)
            tunnels = [Path(tmp) / f"tunnel{i}.sock" for i in range(inners)]
            return _Boot(self, initrd, tunnels, timeout).run(script)

    def outer_command(self, initrd: Path, tunnels: list[Path]) -> list[str]:
        cmd = [str(self.outer), "-M", "virt,virtualization=on,gic-version=3",
               "-cpu", "max", "-smp", "2", "-m", "2G", "-nodefaults",
               "-display", "none", "-no-user-config", "-no-reboot",
               "-kernel", str(self.kernel), "-initrd", str(initrd),
               "-append", "console=ttyAMA0 panic=-1",
               "-serial", "stdio"]
        for i, tunnel in enumerate(tunnels):
            cmd += ["-chardev", f"socket,id=tunnel{i},path={tunnel},"
                    "server=on,wait=off"]
        cmd += ["-serial", "chardev:tunnel0"]
        if len(tunnels) > 1:
            cmd += ["-device", "virtio-serial-pci,id=vser"]
            cmd += [arg for i in range(1, len(tunnels)) for arg in
                    ("-device", f"virtconsole,chardev=tunnel{i}")]
        return cmd


class _Boot:
    def __init__(self, host: NestedHost, initrd: Path, tunnels: list[Path],
                 timeout: float):
        self.host, self.initrd, self.tunnels = host, initrd, tunnels
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

    def exit_code(self, inner: int | None = None) -> int | None:
        """The run script's exit code, or inner QEMU `inner`'s (run_many)."""
        marker = EXIT if inner is None else f"{EXIT}-{inner}"
        m = re.search(rf"{marker} (\d+)", self.text())
        return int(m.group(1)) if m else None

    def run(self, script: ManyScript) -> InnerRun:
        result = InnerRun(console_now=self.text)
        self.proc = subprocess.Popen(
            self.host.outer_command(self.initrd, self.tunnels),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        reader = threading.Thread(target=self._read_console, daemon=True)
        reader.start()
        qmps: list[Qmp] = []
        try:
            qmps = [self._connect(t) for t in self.tunnels]
            greeted = [self._greeting(q, i) for i, q in enumerate(qmps)]
            if all(s is not None for s in greeted):
                result.started = True
                result.seconds_to_qmp = cast(float, greeted[0])
                try:
                    script(qmps, result)
                except (QmpClosed, QmpError, TimeoutError) as e:
                    result.error = f"{type(e).__name__}: {e}"
            for i, (qmp, hello) in enumerate(zip(qmps, greeted,
                                                 strict=True)):
                # one that exited (run_many) leaves its line silent
                gone = len(qmps) > 1 and self.exit_code(i) is not None
                try:
                    if hello is not None and not gone:
                        qmp.cmd("quit", timeout=30)
                except (QmpClosed, QmpError, TimeoutError):
                    pass
            self._wait_exit()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            reader.join(timeout=5)
            for qmp in qmps:
                qmp.sock.close()
        result.console = self.text()
        result.exit_code = self.exit_code()
        if len(self.tunnels) > 1:
            result.exit_codes = [self.exit_code(i)
                                 for i in range(len(self.tunnels))]
        return result

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the nested run did not finish in time:\n"
                               + self.text()[-3000:])
        return left

    def _connect(self, tunnel: Path) -> Qmp:
        while True:
            sock = socket.socket(socket.AF_UNIX)
            try:
                sock.connect(str(tunnel))
                return Qmp(sock)
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if self.proc.poll() is not None:
                    raise ToolError("the emulated Arm host did not start:\n"
                                    + self.text()[-3000:])
                self._left()
                time.sleep(0.02)

    def _greeting(self, qmp: Qmp, inner: int) -> float | None:
        """Seconds from the inner QEMUs' start to inner QEMU `inner`'s QMP
        greeting, or None if it exited first."""
        many = len(self.tunnels) > 1
        while True:
            self._left()
            if self.exit_code() is not None or self.proc.poll() is not None \
                    or (many and self.exit_code(inner) is not None):
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
