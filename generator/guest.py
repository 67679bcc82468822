"""The files of ../shared/guest (or --guest DIR): the Linux kernel and
busybox of the emulated Arm host, the UEFI image of bios-tables-test;
compressed ones decompressed once into the cache."""

import lzma
import os
from pathlib import Path

from generator.errors import ToolError
from generator.paths import SHARED, cache_dir


def default_dir() -> Path:
    """$GEN_SERIES_GUEST, else ../shared/guest beside the project."""
    return Path(os.environ.get("GEN_SERIES_GUEST", SHARED / "guest"))


def unpacked(src: Path) -> Path:
    """`src` (.xz) decompressed once into the cache; the path of the copy."""
    if not src.is_file():
        raise ToolError(f"{src}: no such file")
    dest = cache_dir() / "guest" / src.name.removesuffix(".xz")
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
        tmp.write_bytes(lzma.decompress(src.read_bytes()))
        tmp.rename(dest)
    return dest


def host_files(guest_dir: Path) -> tuple[Path, Path]:
    """(kernel Image, static busybox) of the emulated host, from a folder
    laid out as ../shared/guest (the kernel .xz is decompressed once)."""
    kernels = sorted(guest_dir.glob("Image-*.xz"))
    busyboxes = sorted(guest_dir.glob("busybox-*"))
    if not kernels or not busyboxes:
        raise ToolError(f"{guest_dir}: no Image-*.xz kernel or busybox-* "
                        "for the emulated Arm host (--guest DIR)")
    return unpacked(kernels[-1]), busyboxes[-1]


def uefi_image(guest_dir: Path) -> tuple[Path, bytes]:
    """The UEFI code image (path, bytes) bios-tables-test boots."""
    images = sorted(guest_dir.glob("QEMU_EFI-*.fd.xz"))
    if not images:
        raise ToolError(f"{guest_dir}: no QEMU_EFI-*.fd.xz UEFI image for "
                        "bios-tables-test (--guest DIR)")
    return images[-1], unpacked(images[-1]).read_bytes()
