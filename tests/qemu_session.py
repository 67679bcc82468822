"""A patched QEMU under TCG, driven over QMP, and optionally the Linux
guest's serial console.

QMP is spoken by qemu.qmp's synchronous wrapper (QEMUMonitorProtocol).
The EOFErrors once seen with it (the reason this module spoke QMP by
hand for a while) were not lost connections: every command succeeded,
and the EOFError came from close() after `quit`.  `quit` makes QEMU
close its end and exit with status 0; qemu.qmp's reader task reads that
EOF and disconnect() re-raises it, but only when the reader got there
before disconnect() cancelled it.  Measured with qemu.qmp 0.0.6, 30 runs
of query-status, device-set, query-cpus-power-state, quit: close() raised
EOFError in 14 to 22 of them, with wait=on or off, stdin a pipe or
/dev/null, with or without -serial stdio; QMPClient.disconnect() after
execute("quit") in 10 of 30; close() with QEMU still running, in 0 of
30.  QEMU's own python/qemu/machine ignores that EOFError after quit, and
so does __exit__ here.
"""

import os
import select
import subprocess
import tempfile
import time
from pathlib import Path

from qemu.qmp import ConnectError, ExecuteError, QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

__all__ = ["Qemu", "QmpError"]


class QmpError(Exception):
    """QEMU answered a command with an error; desc is its message."""

    def __init__(self, desc: str):
        super().__init__(desc)
        self.desc = desc


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
             *serial, "-qmp", f"unix:{sock},server=on,wait=on"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        self.qmp = self._connect(sock)
        self.qmp.settimeout(120)
        self.events = []
        self.output = b""
        return self

    def _connect(self, sock: str) -> QEMUMonitorProtocol:
        # the socket file appears before QEMU listens on it: retry
        deadline = time.monotonic() + 30
        while True:
            qmp = QEMUMonitorProtocol(sock)
            try:
                qmp.connect()
                return qmp
            except ConnectError:
                if self.proc.poll() is not None or \
                        time.monotonic() > deadline:
                    self.proc.kill()
                    raise RuntimeError("QEMU did not start: " +
                                       self.proc.communicate()[1].decode())
                time.sleep(0.01)

    def __exit__(self, *exc):
        try:
            self.qmp.cmd("quit")
        except (QMPError, EOFError, OSError, TimeoutError):
            pass                        # QEMU is gone already
        try:
            self.qmp.close()
        except EOFError:
            pass                        # QEMU closed its end first: quit
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.tmp.cleanup()

    def cmd(self, name: str, **arguments):
        """The command's return value; raise QmpError with its message.
        Events that came meanwhile are appended to self.events."""
        try:
            return self.qmp.cmd(name, **arguments)
        except ExecuteError as e:
            raise QmpError(e.error.error.desc)
        finally:
            self.events += self.qmp.get_events()

    def cmd_obj(self, command: dict) -> dict:
        """QEMU's reply to `command` ({"execute": ...}) as it is, error or
        return."""
        return self.qmp.cmd_obj(command)

    def powerstate(self) -> list:
        return sorted(self.cmd("query-cpus-power-state"),
                      key=lambda c: c["cpu-index"])

    # ---- the guest's serial console ---------------------------------------

    def read_until(self, marker: bytes, timeout: float = 120) -> str:
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
