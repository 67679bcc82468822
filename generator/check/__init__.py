"""`gen-series check`: is this series ready to send?

Entry point: `pipeline.run(...)` runs the steps of STEPS in order (the
registry in pipeline.py says what each needs); steps.py and qtest.py
hold them, invariants.py and cparse.py the structure invariants.  What
each step does is said once, in STEP_HELP (the command's --help is made
from it).
"""

STEP_HELP = {
    "apply": "git am of each patch onto a clean base.",
    "checkpatch": "the tree's scripts/checkpatch.pl on each patch (errors "
    "and warnings fail).",
    "bisect": "after each patch, compile the C files it changes and the "
    "series' C files that include a header it changes (native, and in the "
    "aarch64 KVM cross build for what only that compiles), then build "
    "qemu-system-aarch64 at the tip.",
    "invariants": "the spec's structure invariants, checked with pycparser "
    "on the real preprocessed files.",
    "qtest": "QEMU's own aarch64 qtests (bios-tables-test, qom-test, "
    "test-hmp, qmp-cmd-test, device-introspect-test, test-smp-parse and any "
    "the series adds) on the tip and on the unpatched base (built once, "
    "results cached): a case that passes on the base must pass on the tip, "
    "a new case must pass.",
    "kvm": "a KVM-only aarch64 build of the tip, run under real KVM on an "
    "Arm host that the native build emulates (TCG with EL2, the --guest "
    "kernel): start with disabled vCPUs, system_reset, enable, guest code "
    "on the enabled vCPU, disable, PSCI CPU_ON denied; about a minute once "
    "built.",
    "kut": "kvm-unit-tests' arm64 suite (../shared/kvm-unit-tests, every "
    "test its run_tests.sh lists) under TCG on the unpatched base (built "
    "once, results cached), on the tip, and on the tip with a disabled vCPU "
    "in every GICv3 machine: a test that passes on the base must pass on "
    "both; other differences are reported.  About a minute of tests per "
    "build here; the first run builds the unpatched base (see README).",
}
STEPS = tuple(STEP_HELP)
