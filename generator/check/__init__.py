"""`gen-series check`: is this series ready to send?

Steps, in order (pipeline.py runs them):
    apply        git am of each patch onto a clean base
    checkpatch   the target tree's scripts/checkpatch.pl on each patch
    bisect       each patch's translation units compiled after that patch;
                 then a full build at the tip (native, and the aarch64
                 cross build for what only an Arm KVM host compiles)
    invariants   the spec's structure invariants on the patched tree
    qtest        QEMU's own qtests (aarch64) on the tip and on the base:
                 a case that passes on the base must pass on the tip
    kvm          the series under real KVM: a KVM-only aarch64 build run
                 on an emulated Arm host (nested, TCG with EL2)
"""

STEPS = ("apply", "checkpatch", "bisect", "invariants", "qtest", "kvm")
