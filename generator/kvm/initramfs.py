"""Linux initramfs archives ("newc" cpio, gzip) written in Python, so no
cpio tool is needed.

The kernel unpacks concatenated archives in order, so a large archive that
rarely changes can be made once and a small per-run one appended to it.
"""

import gzip
from pathlib import Path

DIR, FILE, CHARDEV, SYMLINK = 0o040000, 0o100000, 0o020000, 0o120000

# (name, mode, data) or, for a device, (name, mode, data, (major, minor))
Entry = tuple[str, int, bytes] | tuple[str, int, bytes, tuple[int, int]]


def _entry(name: str, mode: int, data: bytes = b"",
           rdev: tuple[int, int] = (0, 0), ino: int = 1) -> bytes:
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
              len(name) + 1, 0]
    head = b"070701" + b"".join(b"%08X" % f for f in fields)
    blob = head + name.encode() + b"\0"
    blob += b"\0" * (-len(blob) % 4) + data
    return blob + b"\0" * (-len(blob) % 4)


def cpio(entries: list[Entry], compress: bool = True) -> bytes:
    """An archive of (name, mode, data[, rdev]) entries, parents first:
    mode carries the type bits (DIR, FILE, CHARDEV, SYMLINK, whose data is
    the link target)."""
    out = b"".join(_entry(e[0], e[1], e[2], e[3] if len(e) > 3 else (0, 0),
                          ino) for ino, e in enumerate(entries, 1))
    out += _entry("TRAILER!!!", 0, ino=0)
    if compress:
        # mtime=0: the same files give the same bytes
        out = gzip.compress(out, compresslevel=1, mtime=0)
    # the kernel finds an appended archive only at a 4-byte boundary
    return out + b"\0" * (-len(out) % 4)


def busybox_entries(busybox: Path, init: str) -> list[Entry]:
    """The skeleton every guest here uses: busybox and an /init script."""
    return [("bin", DIR | 0o755, b""), ("dev", DIR | 0o755, b""),
            ("dev/console", CHARDEV | 0o600, b"", (5, 1)),
            ("bin/busybox", FILE | 0o755, busybox.read_bytes()),
            ("init", FILE | 0o755, init.encode())]
