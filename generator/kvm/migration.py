"""The migration stage under real KVM: a source and two destinations, all
inner QEMUs under KVM in one boot of the emulated Arm host (nested.py,
run_many), migrating to each other over unix sockets inside it.

The source runs the payload with vCPU 2 enabled by device-set, and
vCPU 3 enabled and disabled again (realized, so its state is in the
stream: the destination realizes it while it loads, under KVM).  The
destinations are started as libvirt starts one (same -smp, -S,
-incoming defer, migrate-incoming with exit-on-error false so that a
failed load is answered over QMP); one has vCPU 2 plugged with
device_add before the stream, as libvirt does, the other not: the
migration to that one must
fail at the stream's first section, naming vCPU 2, before any RAM, and
the source must run on.  Then the migration to the plugged one must
complete, and the destination, once continued, must run guest code on
vCPU 2 under KVM, keep refusing CPU_ON of the disabled vCPU 3, let
vCPU 2 be disabled, and vCPU 3 (realized by the load) and vCPU 2 be
enabled again, guest code running on both.

Each sub-check is a stage of scenario.Outcome, "migrate-..." by name,
its message ending with the seconds since the stage's boot began.
"""

import logging
import time

from generator.kvm.nested import InnerRun, NestedHost, read_mailbox
from generator.kvm.qmp import JsonObject, Qmp, QmpError
from generator.kvm.scenario import (
    DENIED,
    SMP,
    VCPU2,
    Mailbox,
    Outcome,
    describe,
    disable_vcpu2,
    disable_when_off,
    inner_args,
    states,
    tail,
    wait_for,
    wait_until_off,
)

logger = logging.getLogger(__name__)

PLUGGED = "/machine/peripheral/vcpu2"   # vCPU 2 once device_add'ed as vcpu2
REFUSED_URI, URI = "unix:/tmp/mig-refused.sock", "unix:/tmp/mig.sock"
REFUSAL = "vCPU 2 is enabled on the source and disabled here"
VCPU3 = "/machine/vcpu[3]"


# The refused stream must not fit in the unix socket's buffer (about
# 210 KiB in the emulated host): the source has to notice the destination
# left before it sent all RAM.  A zero page is 9 bytes of stream, so
# 256 MiB of RAM, nearly all zero, is about 600 KiB.
MEMORY = "256M"


def source_args() -> list[str]:
    return inner_args(SMP, MEMORY)


def destination_args() -> list[str]:
    """A destination as libvirt starts it: the source's command line,
    paused, waiting for migrate-incoming."""
    return [*source_args(), "-S", "-incoming", "defer"]


def plug(qmp: Qmp, index: int) -> JsonObject:
    """device_add vCPU `index` with its topology, as libvirt does; the
    query-hotpluggable-cpus entry used."""
    slot: JsonObject = next(
        c for c in qmp.cmd("query-hotpluggable-cpus")
        if c["props"].get("core-id") == index and "qom-path" not in c)
    qmp.execute("device_add", {"driver": slot["type"], "id": f"vcpu{index}",
                               **slot["props"]})
    return slot


def migration_status(qmp: Qmp, timeout: float = 120) -> JsonObject:
    """query-migrate once its status is completed or failed (or at the
    timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        info: JsonObject = qmp.cmd("query-migrate")
        if info.get("status") in ("completed", "failed") or \
                time.monotonic() > deadline:
            return info
        time.sleep(0.1)


def error(info: JsonObject) -> str:
    """query-migrate's error, if any, for a message."""
    return f" ({info['error-desc']})" if info.get("error-desc") else ""


def power(cpu: JsonObject) -> str:
    return (f"{cpu['admin-power-state']}/"
            f"{'realized' if cpu['realized'] else 'unrealized'}/"
            f"power {cpu['power-state']}")


class _Stage:
    def __init__(self, out: Outcome, start: float):
        self.out, self.start = out, start

    def check(self, name: str, ok: bool, message: str) -> bool:
        seconds = time.monotonic() - self.start
        return self.out.check(name, ok, f"{message} (t+{seconds:.1f} s)")


def enable(qmp: Qmp, vcpu: str) -> None:
    qmp.execute("device-set", {"id": vcpu, "admin-power-state": "enabled"})


def _setup(src: Qmp, dst: Qmp, other: Qmp, st: _Stage) -> None:
    enable(src, VCPU2)
    enable(src, VCPU3)
    box = wait_for(src, lambda b: b.up and b.runs(2) > 0 and b.runs(3) > 0)
    disable_when_off(src, VCPU3)
    wait_until_off(src, 3)
    box = wait_for(src, lambda b: b.last_cpu_on(3) == DENIED)
    cpu3 = states(src)[3]
    slot = plug(dst, 2)
    plugged, unplugged = states(dst)[2], states(other)[2]
    dst3 = states(dst)[3]
    st.check("migrate-setup", box.runs(2) > 0 and box.mpidr(2) == 2 and
             box.runs(3) > 0 and box.last_cpu_on(3) == DENIED and
             cpu3["realized"] and
             plugged["admin-power-state"] == "enabled" and
             plugged["realized"] and not dst3["realized"] and
             unplugged["admin-power-state"] == "disabled",
             f"source {SMP} under KVM, vCPU 2 enabled by device-set: "
             f"{describe(box, 2)}; vCPU 3 enabled and disabled: "
             f"{describe(box, 3)}, {power(cpu3)}; destinations -S "
             f"-incoming defer: device_add {slot['type']} core-id 2 -> "
             f"vCPU 2 {power(plugged)}, vCPU 3 {power(dst3)}; the other "
             f"one's vCPU 2 {power(unplugged)}")


def stderr_line(console: str, text: str) -> str:
    """The console line with `text`, as an inner QEMU wrote it to its
    stderr (10.0.13 reports a failed load there only)."""
    return next((ln.strip() for ln in console.splitlines() if text in ln),
                "")


def _refused(src: Qmp, other: Qmp, st: _Stage, run: InnerRun) -> None:
    other.execute("migrate-incoming", {"uri": REFUSED_URI,
                                       "exit-on-error": False})
    src.cmd("migrate", uri=REFUSED_URI)
    sent = migration_status(src)
    got = migration_status(other)
    why = got.get("error-desc", "")
    line = stderr_line(run.console_now(), REFUSAL)
    if REFUSAL not in why and line:
        why = f"{why}; on its stderr: {line}"
    # the mailbox page is written by the payload on the source from its
    # first instruction on: zero here if no RAM was loaded
    ram = Mailbox(read_mailbox(other))
    st.check("migrate-refused", sent.get("status") == "failed" and
             got.get("status") == "failed" and REFUSAL in why and
             not ram.up and not any(ram.slots),
             f"to the destination without vCPU 2 plugged: source "
             f"{sent.get('status')}, destination {got.get('status')}: "
             f"{why!r}; the destination's mailbox page "
             f"{'all zero (no RAM loaded)' if not any(ram.slots) else 'loaded'}")

    before = Mailbox(read_mailbox(src))
    later = wait_for(src, lambda b: b.runs(2) > before.runs(2) and
                     b.sweeps > before.sweeps + 3)
    status = src.cmd("query-status")["status"]
    st.check("migrate-source-runs", status == "running" and
             later.runs(2) > before.runs(2) and
             later.sweeps > before.sweeps,
             f"the source is {status}: vCPU 2 ran {before.runs(2)} -> "
             f"{later.runs(2)} times, sweeps {before.sweeps} -> "
             f"{later.sweeps}")


def _migrate(src: Qmp, dst: Qmp, st: _Stage,
             out: Outcome) -> Mailbox | None:
    # a failed load leaves it to answer with the error over QMP
    dst.execute("migrate-incoming", {"uri": URI, "exit-on-error": False})
    start = time.monotonic()
    src.cmd("migrate", uri=URI)
    sent = migration_status(src)
    out.figures["migration (migrate to completed)"] = \
        time.monotonic() - start
    got = migration_status(dst)
    # the source stopped for good: its last mailbox is the destination's
    last = Mailbox(read_mailbox(src))
    loaded = Mailbox(read_mailbox(dst))
    paused = dst.cmd("query-status")["status"]
    dst.cmd("cont")
    running = dst.cmd("query-status")["status"]
    cpu2 = states(dst)[2]
    ok = st.check("migrate", sent.get("status") == "completed" and
             got.get("status") == "completed" and paused == "paused" and
             running == "running" and loaded.slots == last.slots and
             loaded.up and cpu2["admin-power-state"] == "enabled" and
             cpu2["realized"],
             f"to the destination with vCPU 2 plugged: source "
             f"{sent.get('status')}{error(sent)} in "
             f"{out.figures['migration (migrate to completed)']:.1f} s "
             f"(total-time {sent.get('total-time')} ms, downtime "
             f"{sent.get('downtime')} ms), destination {got.get('status')}"
             f"{error(got)}, {paused} at -S, {running} after cont; mailbox "
             f"{'as' if loaded.slots == last.slots else 'NOT as'} the "
             f"source left it; vCPU 2 {power(cpu2)}")
    return loaded if ok else None


def _after(dst: Qmp, loaded: Mailbox, st: _Stage) -> None:
    box = wait_for(dst, lambda b: b.runs(2) > loaded.runs(2) + 3 and
                   b.sweeps > loaded.sweeps + 3)
    st.check("migrate-runs", box.runs(2) > loaded.runs(2) + 3 and
             box.mpidr(2) == 2 and box.boots == loaded.boots,
             f"the destination runs vCPU 2 under KVM: it ran "
             f"{loaded.runs(2)} -> {box.runs(2)} times, MPIDR Aff0 "
             f"{box.mpidr(2)}; sweeps {loaded.sweeps} -> {box.sweeps}, "
             f"boot {box.boots} (no reboot)")

    later = wait_for(dst, lambda b: b.sweeps > box.sweeps + 3)
    cpu3 = states(dst)[3]
    st.check("migrate-denied", later.sweeps > box.sweeps and
             later.last_cpu_on(3) == DENIED and
             later.runs(3) == loaded.runs(3) and
             cpu3["admin-power-state"] == "disabled" and cpu3["realized"],
             f"CPU_ON of vCPU 3 ({power(cpu3)}: realized by the load) on "
             f"the destination, over {later.sweeps - loaded.sweeps} "
             f"sweeps: {describe(later, 3)}, as many as on the source")

    d = disable_vcpu2(dst, PLUGGED)
    st.check("migrate-disable", d.holds,
             f"device-set {PLUGGED} disabled on the destination (refused "
             f"{d.refused} times while powered on): vCPU 2 {power(d.state)}; "
             f"then over {d.after.sweeps - d.before.sweeps} sweeps: "
             f"{describe(d.after, 2)}")

    # enabled again: vCPU 3 with device-set, vCPU 2 plugged again with
    # the ID it was first plugged with
    before = d.after
    enable(dst, VCPU3)
    plug(dst, 2)
    box = wait_for(dst, lambda b: b.runs(3) > before.runs(3) and
                   b.runs(2) > before.runs(2))
    cpus = states(dst)
    st.check("migrate-enable", box.runs(3) > before.runs(3) and
             box.mpidr(3) == 3 and box.runs(2) > before.runs(2) and
             cpus[2]["admin-power-state"] == "enabled" and
             cpus[3]["admin-power-state"] == "enabled",
             f"on the destination, device-set {VCPU3} enabled and "
             f"device_add of vCPU 2 again: vCPU 3 ran {before.runs(3)} -> "
             f"{box.runs(3)} times, MPIDR Aff0 {box.mpidr(3)}; vCPU 2 ran "
             f"{before.runs(2)} -> {box.runs(2)} times")


def run(host: NestedHost, out: Outcome) -> None:
    """The migration stage, its sub-checks added to `out`; one boot."""
    if not all(ok for name, ok, _ in out.stages if name == "start"):
        out.check("migrate", False, "not run: QEMU does not start under KVM")
        return
    start = time.monotonic()
    st = _Stage(out, start)

    def script(qmps: list[Qmp], run: InnerRun) -> None:
        src, dst, other = qmps
        try:
            _setup(src, dst, other, st)
            _refused(src, other, st, run)
            loaded = _migrate(src, dst, st, out)
            if loaded:
                _after(dst, loaded, st)
        except QmpError as e:
            st.check("migrate", False, f"a QMP command failed: {e.desc}")

    logger.info("kvm: migration of the vCPU set under KVM, source and two "
                "destinations on the emulated Arm host")
    inner = host.run_many([source_args(), destination_args(),
                                destination_args()], script)
    if not inner.started:
        out.check("migrate", False, "the source and destinations did not "
                  f"all start under KVM (exit codes {inner.exit_codes}):\n"
                  f"{tail(inner.console)}")
    elif inner.error:
        st.check("migrate", False, f"{inner.error}\n{tail(inner.console)}")
    out.figures["migration run"] = time.monotonic() - start
