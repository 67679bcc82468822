"""The arm64 Linux guest from ../shared/guest, booted under TCG.

The kernel and firmware are decompressed once into
~/.cache/gen-series/guest; the initramfs is busybox and an /init that
prints the guest's view of its CPUs, then powers off
(generator/kvm/initramfs.py writes it).
"""

import re
import subprocess
import time
from pathlib import Path

from conftest import SHARED

from generator import guest as guest_files
from generator.kvm import initramfs
from generator.paths import cache_dir

GUEST = SHARED / "guest"
CACHE = cache_dir() / "guest"

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


def make_initramfs(busybox: Path) -> bytes:
    return initramfs.cpio(initramfs.busybox_entries(busybox, INIT))


def prepare() -> dict:
    """Paths of the kernel, firmware and initramfs (made once)."""
    files = {key: guest_files.unpacked(next(GUEST.glob(pattern)))
             for key, pattern in (("kernel", "Image-*.xz"),
                                  ("bios", "QEMU_EFI-*.xz"))}
    initrd = CACHE / "initrd.cpio.gz"
    data = make_initramfs(next(GUEST.glob("busybox-*")))
    if not initrd.exists() or initrd.read_bytes() != data:
        initrd.write_bytes(data)
    files["initrd"] = initrd
    return files


def guest_args(smp: str, shell: bool = False, uefi: bool = True) -> list:
    """QEMU arguments that boot the guest (Linux, busybox): with UEFI it
    uses ACPI; without, QEMU loads the kernel itself with a device tree,
    and there is no ACPI."""
    files = prepare()
    append = "console=ttyAMA0 panic=-1" + (" gen_series_shell"
                                            if shell else "")
    bios = ["-bios", str(files["bios"])] if uefi else []
    return ["-M", "virt,gic-version=3", "-cpu", "max", "-smp", smp,
            "-m", "1G", "-no-reboot", *bios,
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
