"""QEMU's own qtests, built and run in a gen-series build directory.

The Debian "+ds" sources ship no firmware, and some qtests need it:
bios-tables-test boots UEFI from `pc-bios/edk2-aarch64-code.fd`, a path
relative to the build directory, and registers no aarch64 case without
it; other tests only need a few ROM files to exist.  provide_firmware()
puts the guest directory's UEFI build there (padded to the 64 MiB of the
virt machine's flash) and zero-filled stand-ins for the ROMs into the
build's own data directory (not a -L directory: libqtest takes the target
from the end of QTEST_QEMU_BINARY, so it must end in the binary's name).
"""

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from generator import guest
from generator.errors import ToolError
from generator.output.outdir import write_if_changed

FLASH_SIZE = 64 << 20

# ROMs that qtests of the aarch64 machines open but never run; a stand-in
# of the right kind is enough (bootroms are read, option ROMs sized)
ROM_STAND_INS = ("npcm7xx_bootrom.bin", "npcm8xx_bootrom.bin",
                 "ast27x0_bootrom.bin", "efi-virtio.rom", "efi-e1000e.rom",
                 "efi-e1000.rom", "efi-rtl8139.rom", "efi-pcnet.rom",
                 "efi-ne2k_pci.rom", "efi-eepro100.rom", "efi-vmxnet3.rom",
                 "pxe-virtio.rom", "pxe-e1000.rom", "pxe-rtl8139.rom",
                 "pxe-pcnet.rom", "pxe-ne2k_pci.rom", "pxe-eepro100.rom",
                 "vgabios-bochs-display.bin", "vgabios-stdvga.bin",
                 "vgabios-virtio.bin", "vgabios-ramfb.bin",
                 "vgabios-cirrus.bin", "vgabios-ati.bin", "vgabios-vmware.bin",
                 "vgabios-qxl.bin")


def test_binary(test: str) -> str:
    """A qtest's name in tests/qtest, or already a path in the build dir."""
    return test if "/" in test else f"tests/qtest/{test}"


def provide_firmware(build_dir: Path, guest_dir: Path) -> None:
    """UEFI for bios-tables-test, and stand-ins for the missing ROMs."""
    image, code = guest.uefi_image(guest_dir)
    if len(code) > FLASH_SIZE:
        raise ToolError(f"{image}: larger than the 64 MiB flash")
    pc_bios = build_dir / "pc-bios"
    pc_bios.mkdir(exist_ok=True)
    write_if_changed(pc_bios / "edk2-aarch64-code.fd",
                      code.ljust(FLASH_SIZE, b"\0"))
    write_if_changed(pc_bios / "edk2-arm-vars.fd", bytes(FLASH_SIZE))
    data_dir = build_dir / "qemu-bundle/usr/local/share/qemu"
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in ROM_STAND_INS:
        if not (data_dir / name).exists():
            (data_dir / name).write_bytes(bytes(4096))


def qtest_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, **extra)
    env["QTEST_QEMU_BINARY"] = "./qemu-system-aarch64"
    env.pop("V", None)
    return env


@dataclass
class CaseResult:
    test: str           # e.g. bios-tables-test
    case: str           # a GTest path, e.g. /aarch64/acpi/virt/cpuhp
    ok: bool
    seconds: float
    output: str


def list_cases(build_dir: Path, test: str, env: dict[str, str]) -> list[str]:
    """The GTest paths a qtest (a name in tests/qtest, or a path in the
    build dir) registers (`-l`)."""
    binary = test_binary(test)
    proc = subprocess.run([binary, "-l"], cwd=build_dir,
                          env=env, capture_output=True, text=True,
                          errors="replace", timeout=120)
    if proc.returncode != 0:
        raise ToolError(f"{binary} -l failed (exit "
                        f"{proc.returncode}): {proc.stderr.strip()[-300:]}")
    return [line.strip() for line in proc.stdout.splitlines()
            if line.startswith("/")]


def run_case(build_dir: Path, test: str, case: str | None,
             env: dict[str, str], timeout: float = 600) -> CaseResult:
    """One case of a qtest (or all of it, with `case` None); `test` is a
    name in tests/qtest or a path in the build dir.  Each case
    runs alone: glib's assertions abort the whole binary at the first
    failure, which would hide the later cases."""
    binary = test_binary(test)
    args = [binary, "--tap", "-k"] + \
        (["-p", case] if case else [])
    start = time.monotonic()
    try:
        proc = subprocess.run(args, cwd=build_dir, env=env,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              errors="replace", timeout=timeout)
        ok, output = proc.returncode == 0, proc.stdout
    except subprocess.TimeoutExpired as e:
        ok = False
        output = (e.stdout or b"").decode(errors="replace") + \
            f"\n(timed out after {timeout:.0f} s)"
    return CaseResult(Path(test).name, case or "(all)", ok,
                      round(time.monotonic() - start, 2), output)
