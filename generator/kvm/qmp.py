"""A QMP client over any connected stream socket: JSON lines, commands
answered in order, events kept.

The nested KVM harness reaches the inner QEMU's monitor through a serial
line of the emulated host, which is not a socket QEMU listens on itself,
so the client takes a socket that is already connected.
"""

import json
import select
import socket
import time
from typing import Any

# A QMP message, or a command's return value, as json.loads gives it: the
# QMP schema, which the caller knows, says what is inside
JsonObject = dict[str, Any]


class QmpError(Exception):
    def __init__(self, desc: str):
        super().__init__(desc)
        self.desc = desc


class QmpClosed(EOFError):
    """The other end went away (QEMU exited)."""


class Qmp:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = b""
        self.events: list[JsonObject] = []

    def message(self, timeout: float) -> JsonObject:
        """The next message; TimeoutError leaves a partial one buffered."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no QMP message within {timeout:.0f} s")
            if select.select([self.sock], [], [], left)[0]:
                try:
                    data = self.sock.recv(65536)
                except OSError as e:
                    raise QmpClosed(f"QEMU's monitor went away: {e}")
                if not data:
                    raise QmpClosed("QEMU closed its monitor")
                self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        if not line.strip():
            return self.message(timeout)
        msg = json.loads(line)
        if not isinstance(msg, dict):
            raise QmpError(f"not a QMP message: {line[:200]!r}")
        return msg

    def greeting(self, timeout: float = 60) -> JsonObject:
        """Wait for the greeting, then leave capabilities negotiation."""
        hello = self.message(timeout)
        return self.negotiate(hello)

    def negotiate(self, hello: JsonObject) -> JsonObject:
        info = hello.get("QMP")
        if not isinstance(info, dict):
            raise QmpError(f"not a QMP greeting: {hello}")
        self.cmd("qmp_capabilities")
        return info

    def cmd(self, name: str, timeout: float = 60, **arguments: object) -> Any:
        """The command's return value; raise QmpError with its message."""
        return self.execute(name, arguments, timeout)

    def execute(self, name: str, arguments: dict[str, object],
                timeout: float = 60) -> Any:
        """cmd() for arguments whose names are not Python identifiers."""
        msg: dict[str, object] = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        try:
            self.sock.sendall(json.dumps(msg).encode() + b"\n")
        except OSError as e:
            raise QmpClosed(f"QEMU's monitor went away: {e}")
        while True:
            reply = self.message(timeout)
            if "event" in reply:
                self.events.append(reply)
            else:
                break
        if "error" in reply:
            raise QmpError(reply["error"]["desc"])
        return reply["return"]

    def hmp(self, command: str) -> str:
        text = self.execute("human-monitor-command",
                            {"command-line": command})
        if not isinstance(text, str):
            raise QmpError(f"human-monitor-command returned {text!r}")
        return text
