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
        node["actions"]["cpu-on"]["refuse"] = [
            r for r in node["actions"]["cpu-on"]["refuse"]
            if "admin" not in r["if"]]
    _, violation = mutated(allow).explore(1, 1, False, depth=8)
    assert violation.invariants == ["disabled-vcpus-never-run"]
    assert violation.trace == [("cpu-on", 1)]


def test_the_last_request_wins(model):
    """M2: stop, disable and enable of an enabled vCPU, cont: it stays
    enabled, and the guest's late _EJ0 or refusal of the cancelled
    request does nothing."""
    for power in ("off", "on"):
        state = model.initial(1, 2, kvm=False, acpi=True)
        state, _ = model.step(state, "enable", 1)
        if power == "on":
            state, _ = model.step(state, "cpu-on", 1)
        state, err = model.step(state, "stop")
        assert err is None and not state[1].running
        assert model.step(state, "cpu-on", 2)[1] == "the guest is stopped"
        state, _ = model.step(state, "disable", 1)
        assert (state[1].admin, state[1].eject_pending) == \
            (("disabled", False) if power == "off" else ("enabled", True))
        state, err = model.step(state, "enable", 1)
        assert err is None
        assert (state[1].admin, state[1].eject_pending, state[1].desired) \
            == ("enabled", False, "enabled")
        state, _ = model.step(state, "cont")
        state, _ = model.step(state, "cpu-off", 1)
        assert model.step(state, "eject", 1)[1] == \
            "no Eject Request stands: the _EJ0 is ignored"
        assert model.step(state, "eject-refused", 1)[1] == "no eject request"
    # an enable of an enabled vCPU with no request pending is still refused
    assert model.step(state, "enable", 1)[1] == "vCPU 1 is already enabled"


def test_a_reset_completes_a_pending_disable(model):
    """M3: after a reset no request is pending; the disable the guest was
    asked for is done (every vCPU but the first is off), and a later
    enable of another vCPU takes nothing away."""
    state = model.initial(1, 2, kvm=False, acpi=True)
    state, _ = model.step(state, "device-add", 1)
    state, _ = model.step(state, "cpu-on", 1)
    state, _ = model.step(state, "device-del", 1)
    assert (state[1].admin, state[1].eject_pending) == ("enabled", True)
    state, err = model.step(state, "reset")
    assert err is None
    assert [(c.admin, c.power, c.eject_pending) for c in state] == [
        ("enabled", "on", False), ("disabled", "off", False),
        ("disabled", "off", False)]
    assert state[1].parked and state[1].desired == "disabled"
    state, _ = model.step(state, "enable", 2)
    assert state[1].admin == "disabled" and state[2].admin == "enabled"
    assert not model.broken(state)


def test_migration_keeps_the_state_and_refuses_requests(model):
    state = model.initial(1, 2, kvm=False, acpi=True)
    state, _ = model.step(state, "device-add", 1)
    state, _ = model.step(state, "cpu-on", 1)
    state, _ = model.step(state, "device-del", 1)
    assert state[1].eject_pending
    migrating, err = model.step(state, "migrate")
    assert err is None and all(c.migrating for c in migrating)
    # QEMU's own words (test_migration.py sees them from the real one)
    for action, index in (("enable", 1), ("enable", 2), ("disable", 1),
                          ("device-add", 2)):
        assert model.step(migrating, action, index)[1] == \
            f"vCPU {index} cannot change state while the VM migrates"
    assert model.step(migrating, "device-del", 1)[1] == \
        "device_del not allowed while migrating"
    assert model.step(migrating, "migrate")[1] == \
        "a migration is already running"
    # the guest runs on, and answers the pending request
    answered, err = model.step(migrating, "cpu-off", 1)
    answered, err = model.step(answered, "eject", 1)
    assert err is None and answered[1].admin == "disabled"
    # the destination has the source's state
    done, err = model.step(migrating, "migrated")
    assert err is None
    assert done == tuple(c._replace(migrating=False) for c in migrating)
    assert done == state


def test_a_reset_that_drops_a_pending_disable_is_caught():
    """A request lost: the reset forgets the Eject Request but leaves
    the vCPU enabled."""
    def drop(node):
        node["actions"]["reset"]["set"]["admin"] = "cpu.admin"
        node["actions"]["reset"]["set"]["parked"] = "cpu.parked"
    _, violation = mutated(drop).explore(1, 1, False, depth=8, acpi=True)
    assert violation.invariants == ["requests-never-lost"]
    assert violation.trace == [("enable", 1), ("cpu-on", 1),
                               ("disable", 1), ("reset", None)]


def test_a_stale_eject_applied_after_an_enable_is_caught():
    """A request applied twice: the guest's _EJ0 disables a vCPU whose
    disable was cancelled (M2 as it was)."""
    def stale(node):
        node["actions"]["eject"]["refuse"] = [
            r for r in node["actions"]["eject"]["refuse"]
            if "eject_pending" not in r["if"]]
    _, violation = mutated(stale).explore(1, 1, False, depth=8, acpi=True)
    assert "requests-applied-once" in violation.invariants
    assert violation.trace == [("enable", 1), ("eject", 1)]


def test_an_enable_that_keeps_the_eject_request_is_caught():
    def keep(node):
        del node["actions"]["enable"]["set"]["eject-pending"]
    _, violation = mutated(keep).explore(1, 1, False, depth=8, acpi=True)
    assert violation.invariants == ["no-stale-request"]
    assert violation.trace == [("enable", 1), ("cpu-on", 1),
                               ("disable", 1), ("enable", 1)]


def test_a_bad_expression_names_file_and_line():
    node = model_node()
    node["init"] = copy.copy(node["init"])
    node["init"]["power"] = "'on' if index = 0"
    with pytest.raises(SpecError, match=r"specs/model.yaml:\d+: .*invalid "
                       "expression"):
        Model(node)


def test_device_add_does_not_cancel_a_pending_device_del(model):
    """As for any device, device_add waits for DEVICE_DELETED; device-set
    enabled is what cancels the Eject Request (the last request wins)."""
    state = model.initial(1, 1, kvm=False, acpi=True)
    state, _ = model.step(state, "device-add", 1)
    state, _ = model.step(state, "cpu-on", 1)
    state, _ = model.step(state, "device-del", 1)
    assert model.step(state, "device-add", 1)[1] == \
        "vCPU 1 is being unplugged: wait for DEVICE_DELETED, or cancel " \
        "the unplug with device-set admin-power-state=enabled"
    state, err = model.step(state, "enable", 1)
    assert err is None and not state[1].eject_pending
    assert state[1].admin == state[1].desired == "enabled"
