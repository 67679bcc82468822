"""The Arm KVM code of the series, compiled for real: an aarch64 cross
build with KVM enabled (`gen-series build --cross`), for both releases."""

from pathlib import Path

import pytest
from conftest import BUILD_ROOT, PROJECT, RELEASES, release_dsc, run_gen_series

# C files whose changes only an Arm KVM host compiles
KVM_FILES = ["target/arm/kvm.c", "hw/intc/arm_gicv3_kvm.c", "hw/arm/virt.c"]


@pytest.mark.slow
@pytest.mark.parametrize("release", list(RELEASES))
def test_kvm_code_compiles_in_an_aarch64_build(release):
    build_root = BUILD_ROOT / release
    proc = run_gen_series("build", "--cross", "--qemu", release_dsc(release),
                          "--series", PROJECT / "patches" / release,
                          "--build-dir", build_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    objects = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    build_dir = build_root / "qemu" / "build-aarch64"
    for c_file in KVM_FILES:
        assert objects[c_file].endswith(".o"), objects
        for obj in objects[c_file].split():
            assert (build_dir / obj).stat().st_size > 0
    # the exported helpers and the new function are really in the objects
    kvm_o = build_dir / objects["target/arm/kvm.c"].split()[0]
    assert b"kvm_arm_create_host_vcpu" in Path(kvm_o).read_bytes()
