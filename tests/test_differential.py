"""Differential test: random sequences of device-set, device_add,
device_del (as libvirt sends them: the CPU type, the vCPU's topology, id
vcpuN), system_reset, stop and cont on the real patched QEMU (TCG, both
releases) against the reference model (specs/model.yaml).  After every
step everything QMP shows (admin state, realized, thread, power state,
eject-pending, whether the VM runs, error messages) must be what the
model predicts, and the three queries agree:
query-cpus-fast and query-hotpluggable-cpus show a vCPU, with one QOM path
(/machine/peripheral/vcpuN once device_add gave it that id), exactly when
query-cpus-power-state says it is enabled.  Hypothesis shrinks any
divergence to a minimal sequence.

At least 200 steps per release per run; GEN_SERIES_MODEL_STEPS sets more.
Guest actions (PSCI CPU_ON/OFF) need a guest: test_runtime.py drives them
with Linux, and the model-only tests explore them exhaustively.
"""

import os
import time

import pytest
from conftest import PROJECT
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from qemu_session import Qemu, QmpError

from generator.spec.load import load_yaml
from generator.spec.refmodel import Model, load_model

CPUS, DISABLED = 2, 2
STEPS = int(os.environ.get("GEN_SERIES_MODEL_STEPS", "200"))
STEPS_PER_EXAMPLE = 10


def machine_class(binary, model):
    class Differential(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.vm = Qemu(binary, ["-M", "virt,gic-version=3", "-cpu", "max",
                                    "-S", "-smp",
                                    f"cpus={CPUS},disabledcpus={DISABLED}"])
            self.vm.__enter__()
            self.props = [c["props"] for c in
                          self.vm.cmd("query-cpus-power-state")]
            # -S: the VM starts stopped
            self.state = tuple(c._replace(running=False) for c in
                               model.initial(CPUS, DISABLED, kvm=False))

        def teardown(self):
            self.vm.__exit__(None, None, None)

        def apply(self, action, index, command, **arguments):
            expected, refused = model.step(self.state, action, index)
            try:
                self.vm.cmd(command, **arguments)
                got = None
            except QmpError as e:
                got = e.desc
            assert got == refused, f"{action}({index}): QEMU said {got!r}, " \
                f"the model {refused!r}"
            self.state = expected

        def path(self, index):
            """The vCPU's QOM path now (device_add moves it)"""
            return self.vm.powerstate()[index]["qom-path"]

        @rule(index=st.integers(0, CPUS + DISABLED - 1))
        def enable(self, index):
            self.apply("enable", index, "device-set", id=self.path(index),
                       **{"admin-power-state": "enabled"})

        @rule(index=st.integers(0, CPUS + DISABLED - 1))
        def disable(self, index):
            self.apply("disable", index, "device-set", id=self.path(index),
                       **{"admin-power-state": "disabled"})

        @rule(index=st.integers(0, CPUS + DISABLED - 1))
        def device_add(self, index):
            self.apply("device-add", index, "device_add",
                       driver="max-arm-cpu", id=f"vcpu{index}",
                       **self.props[index])

        @rule(index=st.integers(0, CPUS + DISABLED - 1))
        def device_del(self, index):
            self.apply("device-del", index, "device_del", id=f"vcpu{index}")

        @rule()
        def reset(self):
            self.apply("reset", None, "system_reset")
            # the reset is done when its event comes
            deadline = time.monotonic() + 30
            while not any(e["event"] == "RESET" for e in self.vm.events):
                assert time.monotonic() < deadline, "no RESET event"
                self.vm.cmd("query-status")
            self.vm.events.clear()

        @rule()
        def stop(self):
            self.apply("stop", None, "stop")

        @rule()
        def cont(self):
            self.apply("cont", None, "cont")

        @invariant()
        def qemu_shows_what_the_model_predicts(self):
            running = self.vm.cmd("query-status")["running"]
            seen = [(c["admin-power-state"], c["realized"], "thread-id" in c,
                     c["power-state"], c["eject-pending"], running)
                    for c in self.vm.powerstate()]
            predicted = [(c.admin, c.realized, c.thread, c.power,
                          c.eject_pending, c.running) for c in self.state]
            assert seen == predicted

        @invariant()
        def the_queries_agree(self):
            states = self.vm.powerstate()
            fast = {c["cpu-index"]: c["qom-path"]
                    for c in self.vm.cmd("query-cpus-fast")}
            hotpluggable = {c["qom-path"] for c in
                            self.vm.cmd("query-hotpluggable-cpus")
                            if "qom-path" in c}
            plugged = {c["cpu-index"]: c["qom-path"] for c in states
                       if c["admin-power-state"] == "enabled"}
            assert fast == plugged
            assert hotpluggable == set(plugged.values())
            for c, m in zip(states, self.state, strict=True):
                if m.id:
                    assert c["qom-path"] == \
                        f"/machine/peripheral/vcpu{c['cpu-index']}"

    return Differential


def run(binary, model, steps):
    run_state_machine_as_test(
        lambda: machine_class(binary, model)(),
        settings=settings(max_examples=max(1, steps // STEPS_PER_EXAMPLE),
                          stateful_step_count=STEPS_PER_EXAMPLE,
                          deadline=None, database=None,
                          suppress_health_check=list(HealthCheck)))


@pytest.mark.slow
def test_qemu_follows_the_model(built):
    run(built[1], load_model(PROJECT / "specs" / "series.yaml"), STEPS)


@pytest.mark.slow
def test_a_divergence_is_found_and_shrunk(built):
    # a model that wrongly says a disable unrealizes the vCPU
    node = load_yaml(PROJECT / "specs" / "model.yaml")["model"]
    node["actions"]["disable"]["set"]["realized"] = "False"
    node["actions"]["disable"]["set"]["thread"] = "False"
    with pytest.raises(AssertionError) as failure:
        run(built[1], Model(node), 200)
    # hypothesis reports the shrunk sequence, which ends in the step that
    # diverges: disabling a realized vCPU (1, a boot vCPU, shrinks best;
    # refused no-op steps are not always shrunk away)
    steps = [n for n in getattr(failure.value, "__notes__", [])
             if n.startswith(("state.enable", "state.disable",
                              "state.reset"))]
    assert steps, failure.value.__notes__
    assert len(steps) <= 10
    assert steps[-1].startswith("state.disable(index="), steps
    assert steps[-1] != "state.disable(index=0)"
