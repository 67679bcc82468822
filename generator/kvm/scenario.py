"""What the series must do under real KVM, run on the emulated Arm host
(nested.py) with the bare-metal payload (payload.S) as the guest.

Each stage is a named check with a message saying what was seen; the
`kvm` step of `gen-series check` and the tests report them as they are.
"""

import logging
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

from generator.kvm.nested import InnerRun, NestedHost, read_mailbox
from generator.kvm.qmp import JsonObject, Qmp, QmpError

logger = logging.getLogger(__name__)

MAGIC = 0x314c504d564b5347          # payload.S slot 0: "GSKVMPL1"
DENIED = -3                         # PSCI_RET_DENIED
SMP = "cpus=2,disabledcpus=2"
VCPU2 = "/machine/vcpu[2]"


def inner_args(smp: str, memory: str = "128M") -> list[str]:
    return ["-M", "virt,gic-version=3", "-accel", "kvm", "-cpu", "host",
            "-smp", smp, "-m", memory, "-kernel", "/payload.elf"]


@dataclass
class Mailbox:
    """The payload's view (payload.S), for CPU n: how often CPU_ON for it
    returned what, how often guest code ran on it."""
    slots: list[int]

    @property
    def up(self) -> bool:
        return self.slots[0] == MAGIC

    @property
    def sweeps(self) -> int:
        return self.slots[2]

    @property
    def boots(self) -> int:
        return self.slots[63]

    def last_cpu_on(self, n: int) -> int:
        return self.slots[8 + n]

    def cpu_on_returned(self, n: int, code: int) -> bool:
        return bool(self.slots[16 + n] & (1 << -code))

    def runs(self, n: int) -> int:
        return self.slots[24 + n]

    def mpidr(self, n: int) -> int:
        return self.slots[32 + n]


@dataclass
class Outcome:
    # (name, ok, message)
    stages: list[tuple[str, bool, str]] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)  # name -> seconds

    def check(self, name: str, ok: bool, message: str) -> bool:
        self.stages.append((name, bool(ok), message))
        return ok

    @property
    def ok(self) -> bool:
        return bool(self.stages) and all(ok for _, ok, _ in self.stages)


def wait_for(qmp: Qmp, predicate: Callable[[Mailbox], bool],
             timeout: float = 20) -> Mailbox:
    """Poll the mailbox until `predicate(mailbox)`; the last one read."""
    deadline = time.monotonic() + timeout
    while True:
        box = Mailbox(read_mailbox(qmp))
        if predicate(box) or time.monotonic() > deadline:
            return box
        time.sleep(0.1)


def reset(qmp: Qmp, box: Mailbox, vcpu: int) -> tuple[Mailbox, int]:
    """system_reset; then the mailbox once the payload has booted again
    and vCPU `vcpu` ran, and the boot count before."""
    boots = box.boots
    qmp.cmd("system_reset")
    return wait_for(qmp, lambda b: b.up and b.boots > boots and
                    b.runs(vcpu) > 0), boots


def states(qmp: Qmp) -> dict[int, JsonObject]:
    return {c["cpu-index"]: c for c in qmp.cmd("query-cpus-power-state")}


def wait_until_off(qmp: Qmp, n: int, timeout: float = 10) -> JsonObject:
    """vCPU `n`'s query entry once it is powered off (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        cpu = states(qmp)[n]
        if cpu["power-state"] == "off" or time.monotonic() > deadline:
            return cpu
        time.sleep(0.05)


def disable_when_off(qmp: Qmp, vcpu: str, timeout: float = 30) -> int:
    """device-set disabled, again while the guest has the vCPU powered on
    (refused without ACPI); returns how many times it was refused."""
    deadline = time.monotonic() + timeout
    refused = 0
    while True:
        try:
            qmp.execute("device-set", {"id": vcpu,
                                       "admin-power-state": "disabled"})
            return refused
        except QmpError as e:
            if "is powered on" not in e.desc or \
                    time.monotonic() > deadline:
                raise
            refused += 1
            time.sleep(0.01)


@dataclass
class Disabled:
    """vCPU 2 disabled once the payload had it off, and watched for a few
    CPU_ON sweeps after."""
    refused: int            # device-set refusals while it was on
    state: JsonObject       # its query-cpus-power-state entry, once off
    before: Mailbox         # the first sweep whose CPU_ON was DENIED
    after: Mailbox          # a few sweeps later

    @property
    def holds(self) -> bool:
        """Disabled and off, CPU_ON DENIED, and no guest code ran."""
        return (self.state["admin-power-state"] == "disabled" and
                self.state["power-state"] == "off" and
                self.after.last_cpu_on(2) == DENIED and
                self.after.runs(2) == self.before.runs(2))


def disable_vcpu2(qmp: Qmp, path: str) -> Disabled:
    refused = disable_when_off(qmp, path)
    state = wait_until_off(qmp, 2)
    before = wait_for(qmp, lambda b: b.last_cpu_on(2) == DENIED)
    after = wait_for(qmp, lambda b: b.sweeps > before.sweeps + 3)
    return Disabled(refused, state, before, after)


def describe(box: Mailbox, n: int) -> str:
    return (f"vCPU {n}: ran {box.runs(n)} times, last CPU_ON returned "
            f"{box.last_cpu_on(n)}")


def _drive(qmp: Qmp, out: Outcome) -> None:
    sve = qmp.cmd("qom-get", path="/machine/unattached/device[0]",
                  property="sve")
    out.check("start", True, f"{SMP} started under KVM with -cpu host "
              f"(SVE {'on' if sve else 'off'})")
    cpus = states(qmp)
    out.check("query", len(cpus) == 4 and
              [cpus[i]["admin-power-state"] for i in range(4)] ==
              ["enabled", "enabled", "disabled", "disabled"] and
              not cpus[2]["realized"],
              "query-cpus-power-state: " + ", ".join(
                  f"{i} {c['admin-power-state']}/"
                  f"{'realized' if c['realized'] else 'unrealized'}"
                  for i, c in sorted(cpus.items())))

    box = wait_for(qmp, lambda b: b.up and b.runs(1) > 0 and
                   b.cpu_on_returned(2, DENIED) and
                   b.cpu_on_returned(3, DENIED))
    out.check("boot-denied", box.up and box.runs(1) > 0 and
              box.cpu_on_returned(2, DENIED) and box.runs(2) == 0 and
              box.cpu_on_returned(3, DENIED) and box.runs(3) == 0,
              f"payload up: {box.up}; {describe(box, 1)}; "
              f"{describe(box, 2)}; {describe(box, 3)}")

    box, boots = reset(qmp, box, 1)
    out.check("reset", box.up and box.boots == boots + 1 and
              box.runs(1) > 0,
              f"after system_reset the payload started again (boot "
              f"{box.boots}, was {boots}); {describe(box, 1)}")

    start = time.monotonic()
    qmp.execute("device-set", {"id": VCPU2, "admin-power-state": "enabled"})
    out.figures["first enable (QMP)"] = time.monotonic() - start
    box = wait_for(qmp, lambda b: b.runs(2) > 0)
    out.figures["first enable to guest code"] = time.monotonic() - start
    cpu2 = states(qmp)[2]
    out.check("enable", cpu2["admin-power-state"] == "enabled" and
              cpu2["realized"] and box.runs(2) > 0 and box.mpidr(2) == 2,
              f"device-set enable: vCPU 2 {cpu2['admin-power-state']}, "
              f"realized {cpu2['realized']}; {describe(box, 2)}, "
              f"its MPIDR Aff0 {box.mpidr(2)}")

    box, boots = reset(qmp, box, 2)
    out.check("reset-enabled", box.boots == boots + 1 and box.runs(2) > 0,
              f"after system_reset (boot {box.boots}): {describe(box, 2)}")

    # without ACPI a vCPU the guest runs on is not taken away: the
    # payload powers vCPU 2 off after each run, so the disable is accepted
    # at one of the moments it is off
    d = disable_vcpu2(qmp, VCPU2)
    out.check("disable-denied", d.holds,
              f"device-set disable: vCPU 2 {d.state['admin-power-state']}, "
              f"power {d.state['power-state']}; then over "
              f"{d.after.sweeps - d.before.sweeps} sweeps: "
              f"{describe(d.after, 2)}")


def run(host: NestedHost) -> Outcome:
    """The whole scenario, then the start-up figures."""
    out = Outcome()
    start = time.monotonic()

    def script(qmp: Qmp, _run: InnerRun) -> None:
        try:
            _drive(qmp, out)
        except QmpError as e:
            out.check("qmp", False, f"a QMP command failed: {e.desc}")

    logger.info(f"kvm: {SMP} under KVM on the emulated Arm host")
    inner = host.run(inner_args(SMP), script)
    if not inner.started:
        out.check("start", False, "QEMU did not start under KVM (exit "
                  f"{inner.exit_code}):\n{tail(inner.console)}")
    elif inner.error:
        out.check("qmp", False, f"{inner.error}\n{tail(inner.console)}")
    out.figures["nested run"] = time.monotonic() - start
    return out


def startup_figures(host: NestedHost, disabled: int,
                    runs: int = 3) -> dict[str, float]:
    """Seconds from the inner QEMU's start to its QMP greeting under KVM,
    with `disabled` pre-created disabled vCPUs against as many running:
    the median of `runs` boots each (the emulated host is noisy)."""
    times: dict[str, list[float]] = {}
    for _ in range(runs):
        for smp in (f"cpus=1,disabledcpus={disabled}", str(disabled + 1)):
            logger.info(f"kvm: start-up time, -smp {smp}")
            inner = host.run(inner_args(smp))
            if inner.started:
                times.setdefault(f"start-up -smp {smp}", []).append(
                    inner.seconds_to_qmp)
    return {name: statistics.median(t) for name, t in times.items()}


def tail(console: str, lines: int = 12) -> str:
    """The end of the emulated host's console, without kernel log lines."""
    kept = [ln for ln in console.splitlines() if not ln.startswith("[")]
    return "\n".join(kept[-lines:])
