"""The reference model of vCPU administrative power states (specs/model.yaml
interpreted by generator/spec/refmodel.py): exhaustive exploration of small
machines, and proof that it catches seeded semantic bugs."""

import copy

import pytest
from conftest import PROJECT

from generator.errors import SpecError
from generator.spec.load import load_yaml
from generator.spec.refmodel import Model, load_model

SPEC = PROJECT / "specs" / "series.yaml"


@pytest.fixture(scope="module")
def model():
    return load_model(SPEC)


def model_node():
    return load_yaml(PROJECT / "specs" / "model.yaml")["model"]


# Every machine of up to 4 vCPUs with at least one disabled vCPU.
CONFIGS = [(c, d) for c in range(1, 4) for d in range(1, 4) if c + d <= 4]


@pytest.mark.parametrize("acpi", [False, True])
@pytest.mark.parametrize("kvm", [False, True])
@pytest.mark.parametrize("cpus, disabled", CONFIGS)
def test_invariants_hold_for_every_sequence_up_to_depth_8(model, cpus,
                                                          disabled, kvm,
                                                          acpi):
    # Breadth-first over states: every (state, action) pair reachable in
    # at most 8 steps is tried, which covers every sequence of 8 actions
    # for invariants over states and single steps.
    states, violation = model.explore(cpus, disabled, kvm, depth=8,
                                      acpi=acpi)
    assert violation is None, str(violation)
    assert states >= 2 ** disabled      # enabling alone reaches that many


def test_initial_state(model):
    state = model.initial(2, 2, kvm=True)
    assert [c.admin for c in state] == ["enabled", "enabled", "disabled",
                                        "disabled"]
    assert [c.realized for c in state] == [True, True, False, False]
    assert [c.power for c in state] == ["on", "off", "off", "off"]
    assert all(c.kvm_created for c in state)


def test_transitions(model):
    state = model.initial(1, 2, kvm=False)
    assert model.step(state, "cpu-on", 1)[1] == "denied"
    state, err = model.step(state, "enable", 1)
    assert err is None and state[1].realized and state[1].thread
    assert model.step(state, "enable", 1)[1] == "vCPU 1 is already enabled"
    state, err = model.step(state, "cpu-on", 1)
    assert err is None and state[1].power == "on"
    # without ACPI the guest cannot be asked: a running vCPU stays
    assert model.step(state, "disable", 1)[1].startswith(
        "vCPU 1 is powered on and the guest cannot be asked")
    state, err = model.step(state, "cpu-off", 1)
    state, err = model.step(state, "disable", 1)
    assert err is None
    assert (state[1].admin, state[1].power, state[1].parked,
            state[1].realized) == ("disabled", "off", True, True)
    assert model.step(state, "disable", 0)[1] == \
        "vCPU 0 is a boot vCPU and cannot be disabled"
    state, err = model.step(state, "enable", 1)
    assert err is None and not state[1].parked and state[1].power == "off"


def test_acpi_disable_asks_the_guest_first(model):
    state = model.initial(1, 2, kvm=False, acpi=True)
    state, _ = model.step(state, "enable", 1)
    state, _ = model.step(state, "cpu-on", 1)
    # disabling a running vCPU only asks (Eject Request)
    state, err = model.step(state, "disable", 1)
    assert err is None
    assert (state[1].admin, state[1].power, state[1].eject_pending) == \
        ("enabled", "on", True)
    assert model.step(state, "eject", 1)[1] == \
        "the guest offlines a vCPU before it ejects it"
    # a guest that refuses keeps it
    refused, err = model.step(state, "eject-refused", 1)
    assert err is None and refused[1].admin == "enabled" and \
        not refused[1].eject_pending
    # a guest that agrees offlines it, then ejects it: disabled only then
    state, _ = model.step(state, "cpu-off", 1)
    assert state[1].admin == "enabled"
    state, err = model.step(state, "eject", 1)
    assert err is None
    assert (state[1].admin, state[1].power, state[1].eject_pending,
            state[1].parked) == ("disabled", "off", False, True)
    # a vCPU that is off is disabled at once
    state, _ = model.step(state, "enable", 1)
    state, _ = model.step(state, "disable", 1)
    assert state[1].admin == "disabled"


def test_an_acpi_disable_that_powers_off_a_running_vcpu_is_caught():
    def abrupt(node):
        node["actions"]["disable"]["set"]["admin"] = "'disabled'"
        node["actions"]["disable"]["set"]["power"] = "'off'"
        node["actions"]["disable"]["set"]["eject-pending"] = "False"
    _, violation = mutated(abrupt).explore(1, 1, False, depth=8, acpi=True)
    assert violation.invariants == ["acpi-never-takes-a-running-vcpu"]
    assert violation.trace == [("enable", 1), ("cpu-on", 1),
                               ("disable", 1)]


def mutated(edit) -> Model:
    node = model_node()
    edit(node)
    return Model(node)


def test_a_disable_that_unrealizes_is_caught():
    def unrealize(node):
        node["actions"]["disable"]["set"]["realized"] = "False"
    _, violation = mutated(unrealize).explore(1, 1, False, depth=8)
    assert violation is not None
    assert "realized-never-goes-back" in violation.invariants
    # the shortest sequence that shows it
    assert violation.trace == [("enable", 1), ("disable", 1)]


def test_cpu_on_of_a_disabled_vcpu_is_caught():
    def allow(node):
        node["actions"]["cpu-on"]["refuse"] = \
            node["actions"]["cpu-on"]["refuse"][1:]
    _, violation = mutated(allow).explore(1, 1, False, depth=8)
    assert violation.invariants == ["disabled-vcpus-never-run"]
    assert violation.trace == [("cpu-on", 1)]


def test_a_bad_expression_names_file_and_line():
    node = model_node()
    node["init"] = copy.copy(node["init"])
    node["init"]["power"] = "'on' if index = 0"
    with pytest.raises(SpecError, match=r"specs/model.yaml:\d+: .*invalid "
                       "expression"):
        Model(node)
