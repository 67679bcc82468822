"""Running the series under real KVM: an emulated Arm host (nested.py),
its bare-metal guest (payload.S) and the scenario run on it (scenario.py)."""
