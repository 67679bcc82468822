"""A patched QEMU under TCG, driven over QMP, and optionally the Linux
guest's serial console.

QMP is spoken by generator/qmp.py (JSON lines on a Unix socket).  qemu.qmp 0.0.6,
both its asyncio QMPClient and its legacy synchronous wrapper, lost the
connection here within a few QEMU runs (EOFError, then QEMU exits with
status 0), even for plain query-status on an unpatched configuration, so
it is not this series; the same command sequences over a plain socket
never failed in 45 runs, with or without OOB.
"""

import socket
import subprocess
import tempfile
import time
from pathlib import Path

from generator.qmp import Qmp, QmpClosed, QmpError

__all__ = ["Qemu", "QmpError"]


class Qemu:
    """`with Qemu(binary, args) as vm:` starts QEMU with a QMP socket."""

    def __init__(self, binary: Path, args: list, console: bool = False):
        self.binary, self.args, self.console = binary, args, console

    def __enter__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="gen-series-qemu-")
        sock = str(Path(self.tmp.name) / "qmp.sock")
        serial = ["-serial", "stdio"] if self.console else []
        self.proc = subprocess.Popen(
            [str(self.binary), *self.args, "-nodefaults", "-display", "none",
             *serial, "-qmp", f"unix:{sock},server=on,wait=off"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        # the socket file appears before QEMU listens on it: retry
        deadline = time.monotonic() + 30
        while True:
            self.sock = socket.socket(socket.AF_UNIX)
            try:
                self.sock.connect(sock)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                if self.proc.poll() is not None or \
                        time.monotonic() > deadline:
                    raise RuntimeError("QEMU did not start: " +
                                       self.proc.stderr.read().decode())
                time.sleep(0.01)
        self.qmp = Qmp(self.sock)
        self.qmp.greeting(timeout=30)
        self.events = self.qmp.events
        self.output = b""
        return self

    def __exit__(self, *exc):
        try:
            self.cmd("quit")
        except (OSError, QmpError, QmpClosed, TimeoutError):
            pass
        self.sock.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.tmp.cleanup()

    def cmd(self, name: str, **arguments):
        """The command's return value; raise QmpError with its message."""
        return self.qmp.cmd(name, timeout=120, **arguments)

    def powerstate(self) -> list:
        return sorted(self.cmd("query-cpus-power-state"),
                      key=lambda c: c["cpu-index"])

    # ---- the guest's serial console ---------------------------------------

    def read_until(self, marker: bytes, timeout: float = 120) -> str:
        import os
        import select
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while marker not in self.output:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise TimeoutError(f"no {marker!r} on the console:\n"
                                   + self.output[-2000:].decode(errors="replace"))
            if select.select([fd], [], [], left)[0]:
                self.output += os.read(fd, 65536)
        text, _, self.output = self.output.partition(marker)
        return text.decode(errors="replace")

    def shell(self, command: str, timeout: float = 60) -> str:
        """Run `command` in the guest's shell; return what it printed."""
        self.sequence = getattr(self, "sequence", 0) + 1
        # the tty echoes the command; quotes keep the echo from matching
        mark = f"__DONE_{self.sequence}__"
        split = f'"{mark[:4]}""{mark[4:]}"'
        self.proc.stdin.write(f"{command}; echo {split}\n".encode())
        self.proc.stdin.flush()
        # the tty turns the newline into "\r\n"
        return self.read_until(mark.encode() + b"\r\n", timeout)
