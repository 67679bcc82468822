"""The arm64 Linux guest from ../shared/guest, booted under TCG.

The kernel and firmware are decompressed once into
~/.cache/gen-series/guest; the initramfs (busybox and an /init that prints
the guest's view of its CPUs, then powers off) is written in Python, in
the kernel's "newc" cpio format, so no cpio tool is needed.
"""

import gzip
import lzma
import os
import re
import subprocess
import time
from pathlib import Path

from conftest import SHARED

GUEST = SHARED / "guest"
CACHE = Path(os.environ.get("GEN_SERIES_CACHE",
                            Path.home() / ".cache" / "gen-series")) / "guest"

INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
echo GUEST-INIT-STARTED
for f in possible present online enabled; do
    echo "GUEST-CPU $f=$(/bin/busybox cat /sys/devices/system/cpu/$f)"
done
echo GUEST-INIT-DONE
if /bin/busybox grep -q gen_series_shell /proc/cmdline; then
    /bin/busybox --install -s /bin
    export PATH=/bin
    echo GUEST-SHELL-READY
    exec /bin/busybox sh
fi
/bin/busybox poweroff -f
"""


def _cpio_entry(name: str, mode: int, data: bytes = b"", rdev=(0, 0),
                ino: int = 1) -> bytes:
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
              len(name) + 1, 0]
    head = b"070701" + b"".join(b"%08X" % f for f in fields)
    blob = head + name.encode() + b"\0"
    blob += b"\0" * (-len(blob) % 4) + data
    return blob + b"\0" * (-len(blob) % 4)


def make_initramfs(busybox: Path) -> bytes:
    entries = [("bin", 0o040755, b"", (0, 0)),
               ("dev", 0o040755, b"", (0, 0)),
               ("dev/console", 0o020600, b"", (5, 1)),
               ("bin/busybox", 0o100755, busybox.read_bytes(), (0, 0)),
               ("init", 0o100755, INIT.encode(), (0, 0))]
    out = b"".join(_cpio_entry(n, m, d, r, i)
                   for i, (n, m, d, r) in enumerate(entries, 1))
    out += _cpio_entry("TRAILER!!!", 0, ino=0)
    return gzip.compress(out, mtime=0)


def prepare() -> dict:
    """Paths of the kernel, firmware and initramfs (made once)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    files = {}
    for key, pattern in (("kernel", "Image-*.xz"), ("bios", "QEMU_EFI-*.xz")):
        src = next(GUEST.glob(pattern))
        dest = CACHE / src.name[:-3]
        if not dest.exists():
            tmp = dest.with_suffix(".tmp")
            tmp.write_bytes(lzma.decompress(src.read_bytes()))
            tmp.rename(dest)
        files[key] = dest
    initrd = CACHE / "initrd.cpio.gz"
    data = make_initramfs(next(GUEST.glob("busybox-*")))
    if not initrd.exists() or initrd.read_bytes() != data:
        initrd.write_bytes(data)
    files["initrd"] = initrd
    return files


def guest_args(smp: str, shell: bool = False) -> list:
    """QEMU arguments that boot the guest (UEFI, Linux, busybox)."""
    files = prepare()
    append = "console=ttyAMA0 panic=-1" + (" gen_series_shell"
                                            if shell else "")
    return ["-M", "virt,gic-version=3", "-cpu", "max", "-smp", smp,
            "-m", "1G", "-no-reboot", "-bios", str(files["bios"]),
            "-kernel", str(files["kernel"]), "-initrd", str(files["initrd"]),
            "-append", append]


def boot(binary: Path, smp: str, timeout: float = 180) -> dict:
    """Boot the guest; return its console output and CPU view."""
    files = prepare()
    cmd = [str(binary), "-M", "virt,gic-version=3", "-cpu", "max",
           "-smp", smp, "-m", "1G", "-nodefaults", "-display", "none",
           "-serial", "stdio", "-no-reboot",
           "-bios", str(files["bios"]), "-kernel", str(files["kernel"]),
           "-initrd", str(files["initrd"]),
           "-append", "console=ttyAMA0 panic=-1"]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
    console = proc.stdout.decode(errors="replace")
    cpus = dict(re.findall(r"GUEST-CPU (\w+)=(\S*)", console))
    return {"returncode": proc.returncode, "console": console,
            "stderr": proc.stderr.decode(errors="replace"), "cpus": cpus,
            "seconds": time.monotonic() - start}
