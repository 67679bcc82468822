"""A VM that scaled keeps working across live migration and snapshots
(issue 23, part A): the Linux 6.12 guest under UEFI (TCG, both releases),
destinations started as libvirt starts them (same -smp, the enabled vCPUs
plugged with device_add before the stream, -incoming defer and
migrate-incoming), streams over a unix socket; and a stream of the
unpatched release's previous machine version loads into the patched one,
byte for byte the same as the patched one writes."""

import re
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import unpatched
from guest import guest_args
from qemu_session import Qemu, QmpError
from test_acpi import BAD, cpus, until

pytestmark = pytest.mark.slow

SMP = "cpus=2,disabledcpus=2"
CPU = "/sys/devices/system/cpu"


def plug(q, index: int) -> None:
    """device_add vCPU `index` with its topology, as libvirt does."""
    slot = next(c for c in q.cmd("query-hotpluggable-cpus")
                if c["props"].get("core-id") == index and
                "qom-path" not in c)
    q.cmd("device_add", driver=slot["type"], id=f"vcpu{index}",
          **slot["props"])


def hot_adds(q, index: int) -> int:
    """How often the guest's log says it hot-added CPU `index` (the log
    migrates with the guest: a destination sees the source's too)."""
    out = q.shell(f"echo ADDS $(dmesg | grep -c 'CPU{index} has been "
                  "hot-added')")
    return int(re.findall(r"^ADDS (\d+)", out, re.M)[-1])


def online(q, index: int, seen: int = 0) -> None:
    """Wait for hot-add number `seen` + 1 of CPU `index`, bring it up."""
    until(lambda: hot_adds(q, index) > seen,
          f"the guest to hot-add CPU{index}")
    assert "rc=0" in q.shell(f"echo 1 > {CPU}/cpu{index}/online; echo rc=$?")


def source(binary: Path, extra: tuple = ()) -> Qemu:
    return Qemu(binary, [*guest_args(SMP, shell=True), *extra], console=True)


def destination(binary: Path, extra: tuple = ()) -> Qemu:
    return Qemu(binary, [*guest_args(SMP, shell=True), *extra,
                         "-incoming", "defer"], console=True)


def migration_status(q) -> dict:
    return q.cmd("query-migrate")


def wait_migration(q, statuses=("completed", "failed")) -> dict:
    info: dict = {}

    def done() -> bool:
        nonlocal info
        info = migration_status(q)
        return info.get("status") in statuses
    until(done, f"migration status in {statuses}", timeout=300)
    return info


def migrate(src, dst, sock: str, incoming_args: dict | None = None) -> dict:
    dst.cmd("migrate-incoming", uri=f"unix:{sock}", **(incoming_args or {}))
    src.cmd("migrate", uri=f"unix:{sock}")
    return wait_migration(src)


def pinned_process(q) -> int:
    """Start a busy loop pinned to CPU 2; return its pid."""
    # busybox sh gives a background job /dev/null as its stdin
    q.shell("[ -e /dev/null ] || mount -t devtmpfs none /dev")
    out = q.shell("taskset -c 2 sh -c 'while :; do :; done' & echo PID $!")
    return int(re.search(r"^PID (\d+)", out, re.M).group(1))


def stat(q, pid: int) -> tuple:
    """(the CPU the process last ran on, its user time in ticks)."""
    fields = q.shell(f"cat /proc/{pid}/stat").strip().splitlines()[-1]
    fields = fields.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): field N is fields[N - 3]
    return int(fields[39 - 3]), int(fields[14 - 3])


def clean_dmesg(q) -> None:
    dmesg = q.shell("dmesg")
    assert not [b for b in BAD if b in dmesg], dmesg[-2000:]


@pytest.fixture
def sockdir():
    with tempfile.TemporaryDirectory(prefix="gs-mig-") as tmp:
        yield tmp


def test_live_migration_keeps_vcpu_2_and_its_pinned_process(built, sockdir):
    _, binary = built
    with source(binary) as src:
        src.read_until(b"GUEST-SHELL-READY")
        plug(src, 2)
        online(src, 2)
        pid = pinned_process(src)
        assert stat(src, pid)[0] == 2
        with destination(binary) as dst:
            plug(dst, 2)                # as libvirt does, before the stream
            info = migrate(src, dst, f"{sockdir}/mig.sock")
            assert info["status"] == "completed", info
            until(lambda: dst.cmd("query-status")["status"] == "running",
                  "the destination to run")
            state = dst.powerstate()[2]
            assert (state["admin-power-state"], state["power-state"]) == \
                ("enabled", "on")
            assert cpus(dst) == {"possible": "0-3", "present": "0-3",
                                 "enabled": "0-2", "online": "0-2"}
            # the process runs on there, on CPU 2
            cpu, ticks = stat(dst, pid)
            time.sleep(2)
            assert cpu == 2
            assert stat(dst, pid)[1] > ticks

            # disabled on the destination, the guest ejects it
            dst.cmd("device_del", id="vcpu2")
            until(lambda: dst.powerstate()[2]["admin-power-state"] ==
                  "disabled", "the guest to eject CPU2")
            assert cpus(dst) == {"possible": "0-3", "present": "0-3",
                                 "enabled": "0-1", "online": "0-1"}
            assert any(e["event"] == "DEVICE_DELETED" and
                       e["data"].get("device") == "vcpu2"
                       for e in dst.events)
            clean_dmesg(dst)


def test_eject_request_pending_at_migration_completes_on_destination(
        built, sockdir):
    _, binary = built
    with source(binary) as src:
        src.read_until(b"GUEST-SHELL-READY")
        plug(src, 2)
        online(src, 2)
        # the guest cannot answer before the stream is sent
        src.cmd("stop")
        src.cmd("device_del", id="vcpu2")
        assert src.powerstate()[2]["eject-pending"] is True
        with destination(binary) as dst:
            plug(dst, 2)
            info = migrate(src, dst, f"{sockdir}/mig.sock")
            assert info["status"] == "completed", info
            until(lambda: dst.cmd("query-migrate").get("status") ==
                  "completed", "the destination to load")
            state = dst.powerstate()[2]
            assert (state["admin-power-state"], state["eject-pending"]) == \
                ("enabled", True)
            dst.cmd("cont")
            until(lambda: dst.powerstate()[2]["admin-power-state"] ==
                  "disabled", "the guest to eject CPU2 on the destination")
            assert cpus(dst)["enabled"] == "0-1"
            assert dst.powerstate()[2]["eject-pending"] is False
            clean_dmesg(dst)


def test_eject_completed_during_migration_is_deleted_on_both_sides(
        built, sockdir):
    """The guest ejects a vCPU while the stream is sent (the source
    resumed after the migration started; the migration waits before the
    switchover): the destination, which had the vCPU plugged, ends with
    it disabled, and both management layers hear DEVICE_DELETED for the
    vCPU they plugged."""
    _, binary = built
    with source(binary) as src:
        src.read_until(b"GUEST-SHELL-READY")
        plug(src, 2)
        online(src, 2)
        src.cmd("stop")             # the guest answers once the stream runs
        src.cmd("device_del", id="vcpu2")
        with destination(binary) as dst:
            plug(dst, 2)
            src.cmd("migrate-set-capabilities", capabilities=[
                {"capability": "pause-before-switchover", "state": True}])
            # slow, so that RAM is still being sent when the guest answers
            # (at pre-switchover the source is stopped)
            src.cmd("migrate-set-parameters", **{"max-bandwidth": 100000})
            dst.cmd("migrate-incoming", uri=f"unix:{sockdir}/mig.sock")
            src.cmd("migrate", uri=f"unix:{sockdir}/mig.sock")
            until(lambda: migration_status(src).get("status") == "active",
                  "the migration to run")
            src.cmd("cont")

            def deleted(q) -> list:
                q.cmd("query-status")           # collects the events
                return [e["data"] for e in q.events
                        if e["event"] == "DEVICE_DELETED"]
            until(lambda: deleted(src), "the guest to eject CPU2")
            assert deleted(src) == [{"device": "vcpu2",
                                     "path": "/machine/peripheral/vcpu2"}]
            assert migration_status(src)["status"] == "active"
            src.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
            assert wait_migration(src, ("pre-switchover", "failed"))[
                "status"] == "pre-switchover"
            src.cmd("migrate-continue", state="pre-switchover")
            assert wait_migration(src)["status"] == "completed"
            until(lambda: dst.cmd("query-status")["status"] == "running",
                  "the destination to run")
            state = dst.powerstate()[2]
            assert (state["admin-power-state"], state["eject-pending"]) == \
                ("disabled", False)
            assert deleted(dst) == [{"device": "vcpu2",
                                     "path": "/machine/peripheral/vcpu2"}]
            assert cpus(dst)["enabled"] == "0-1"
            # and it plugs again there, and the guest takes it
            seen = hot_adds(dst, 2)
            plug(dst, 2)
            online(dst, 2, seen)
            clean_dmesg(dst)


@pytest.mark.parametrize("plugged,smp", [(False, SMP),
                                         (True, "cpus=2,disabledcpus=3")])
def test_another_vcpu_set_fails_before_ram_and_source_runs(
        built, sockdir, plugged, smp):
    """vCPU 2 enabled on the source: a destination that did not plug it,
    or has another -smp, refuses the stream at its first section."""
    _, binary = built
    with source(binary) as src:
        src.read_until(b"GUEST-SHELL-READY")
        plug(src, 2)
        online(src, 2)
        dst = Qemu(binary, [*guest_args(smp, shell=True), "-incoming",
                            "defer"], console=True)
        with dst:
            if plugged:
                plug(dst, 2)
            info = migrate(src, dst, f"{sockdir}/mig.sock",
                           {"exit-on-error": False})
            assert info["status"] == "failed", info
            incoming = wait_migration(dst)
            assert incoming["status"] == "failed"
        stderr = dst.proc.stderr.read().decode()
        why = incoming.get("error-desc", "") + stderr
        expected = "vCPU 2 is enabled on the source and disabled here" \
            if not plugged else "start it with the same -smp"
        assert expected in why, why
        # the source runs on, with vCPU 2
        assert src.cmd("query-status")["status"] == "running"
        assert cpus(src)["online"] == "0-2"
        src.cmd("device-set", id="/machine/vcpu[3]",
                **{"admin-power-state": "enabled"})
        clean_dmesg(src)


def make_qcow2(binary: Path, path: Path) -> None:
    """A 64 MiB qcow2 image, made over QMP (the build has no qemu-img)."""
    with Qemu(binary, ["-M", "none"]) as q:
        for job, options in (
                ("file", {"driver": "file", "filename": str(path),
                          "size": 0}),
                ("qcow2", {"driver": "qcow2", "file": "f",
                           "size": 64 << 20})):
            q.cmd("blockdev-create", **{"job-id": job, "options": options})
            until(lambda job=job: any(
                j["id"] == job and j["status"] == "concluded"
                for j in q.cmd("query-jobs")), "blockdev-create")
            q.cmd("job-dismiss", id=job)
            if job == "file":
                q.cmd("blockdev-add", driver="file", filename=str(path),
                      **{"node-name": "f"})


def hmp(q, line: str) -> str:
    return q.cmd("human-monitor-command", **{"command-line": line})


def test_savevm_after_scaling_and_loadvm(built, tmp_path):
    _, binary = built
    disk = tmp_path / "disk.qcow2"
    make_qcow2(binary, disk)
    drive = ("-drive", f"if=none,id=d0,format=qcow2,file={disk}")
    with source(binary, drive) as q:
        q.read_until(b"GUEST-SHELL-READY")
        plug(q, 2)
        online(q, 2)
        pid = pinned_process(q)
        assert hmp(q, "savevm scaled") == ""

        # vCPU 2 given back: the snapshot's set is not this one
        q.cmd("device_del", id="vcpu2")
        until(lambda: q.powerstate()[2]["admin-power-state"] == "disabled",
              "the guest to eject CPU2")
        out = hmp(q, "loadvm scaled")
        assert "vCPU 2 is enabled on the source and disabled here" in out, out

        # with vCPU 2 plugged again, the snapshot loads: the guest is as
        # it was, vCPU 2 online and running the pinned process
        plug(q, 2)
        assert hmp(q, "loadvm scaled") == ""
        q.cmd("cont")
        state = q.powerstate()[2]
        assert (state["admin-power-state"], state["power-state"]) == \
            ("enabled", "on")
        assert cpus(q) == {"possible": "0-3", "present": "0-3",
                           "enabled": "0-2", "online": "0-2"}
        assert stat(q, pid)[0] == 2
        clean_dmesg(q)


def saved_stream(binary: Path, machine: str, path: Path) -> bytes:
    """The migration stream of a plain virt VM that never ran, without what
    differs from run to run: the random seeds of its device tree, and the
    PL031 RTC's offset from the host clock (a fixed base on the VM clock,
    which stands still while the VM never runs)."""
    with Qemu(binary, ["-M", f"{machine},gic-version=3,dtb-randomness=off",
                       "-rtc", "base=2020-01-01T00:00:00,clock=vm",
                       "-cpu", "max",
                       "-smp", "2", "-m", "256M", "-S"]) as q:
        q.cmd("migrate", uri=f"file:{path}")
        info = wait_migration(q)
        assert info["status"] == "completed", info
    return path.read_bytes()


def analyzed(binary: Path, stream: Path, dump: str) -> str:
    """QEMU's own scripts/analyze-migration.py (of the binary's tree) on
    `stream`: every section's fields and values ("state"), or the
    description the stream carries of them ("desc")."""
    script = binary.parent.parent / "scripts" / "analyze-migration.py"
    return subprocess.run(["python3", str(script), "-f", str(stream),
                           "-d", dump], capture_output=True, text=True,
                          check=True).stdout


def test_unpatched_stream_loads_and_is_the_patched_one(built, tmp_path):
    """On the previous machine version (virt-10.2 on 10.2.2, virt-10.0 on
    10.0.13) the patched QEMU writes the unpatched release's stream, and
    loads the unpatched one.  The same: every section, field and value,
    and the description, as QEMU's analyze-migration.py reads them.  (Not
    byte for byte: where RAM's iterations end depends on time, and two
    streams of one unpatched binary differed so, 1 pair in 3, 10.0.13,
    2026-12-08.)"""
    release, binary = built
    old = "virt-" + ".".join(release.split(".")[:2])
    saved_stream(unpatched(release), old, tmp_path / "old")
    saved_stream(binary, old, tmp_path / "new")
    for dump in ("state", "desc"):
        theirs = analyzed(unpatched(release), tmp_path / "old", dump)
        assert theirs.count("\n") > 100, theirs
        assert analyzed(unpatched(release), tmp_path / "new", dump) == theirs
    with Qemu(binary, ["-M", f"{old},gic-version=3", "-cpu", "max",
                       "-smp", "2", "-m", "256M", "-incoming",
                       "defer"]) as q:
        q.cmd("migrate-incoming", uri=f"file:{tmp_path / 'old'}")
        assert wait_migration(q)["status"] == "completed"


def test_vcpu_set_refused_while_migrating(built, sockdir):
    """device-set, device_add and device_del of a vCPU are refused while a
    migration runs, on the source and on the destination that loads."""
    _, binary = built
    with source(binary) as src:
        src.read_until(b"GUEST-SHELL-READY")
        plug(src, 2)
        online(src, 2)
        with destination(binary) as dst:
            plug(dst, 2)
            # slow enough to be caught running
            src.cmd("migrate-set-parameters", **{"max-bandwidth": 100000})
            dst.cmd("migrate-incoming", uri=f"unix:{sockdir}/mig.sock")
            src.cmd("migrate", uri=f"unix:{sockdir}/mig.sock")
            until(lambda: migration_status(src).get("status") == "active",
                  "the migration to run")
            until(lambda: dst.cmd("query-migrate").get("status") == "active",
                  "the destination to load")
            time.sleep(2)       # the vCPU set comes first, then RAM
            for q, why in ((src, "while the VM migrates"),
                           (dst, "while an incoming migration loads")):
                with pytest.raises(QmpError, match=why):
                    q.cmd("device-set", id="/machine/vcpu[3]",
                          **{"admin-power-state": "enabled"})
            with pytest.raises(QmpError, match="while the VM migrates"):
                plug(src, 3)
            with pytest.raises(QmpError, match="while migrating"):
                src.cmd("device_del", id="vcpu2")
            src.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
            assert wait_migration(src)["status"] == "completed"
            until(lambda: dst.cmd("query-status")["status"] == "running",
                  "the destination to run")
            plug(dst, 3)
            assert dst.powerstate()[3]["admin-power-state"] == "enabled"


def test_migration_qtest_vcpu_cases(built):
    """The series' cases in QEMU's migration qtest framework
    (tests/qtest/migration/vcpu-tests.c) pass, and the powerstate qtest's
    migration case now migrates."""
    from conftest import BUILD_ROOT, PROJECT, SHARED, release_dsc, run_gen_series

    from generator.build import qtests

    release, binary = built
    proc = run_gen_series("build", "--qemu", release_dsc(release),
                          "--series", PROJECT / "patches" / release,
                          "--build-dir", BUILD_ROOT / release,
                          "--target", "tests/qtest/migration-test",
                          "--target", "tests/qtest/arm-cpu-powerstate-test")
    assert proc.returncode == 0, proc.stderr[-3000:]
    build_dir = binary.parent
    # the virt machine's default NIC needs its option ROM, even a stand-in
    qtests.provide_firmware(build_dir, SHARED / "guest")
    env = qtests.qtest_env()
    cases = qtests.list_cases(build_dir, "migration-test", env)
    ours = [c for c in cases if c.startswith("/aarch64/migration/vcpu/")]
    assert len(ours) == 4, cases
    for test, case in [*(("migration-test", c) for c in ours),
                       ("arm-cpu-powerstate-test",
                        "/aarch64/cpu-powerstate/migration-allowed")]:
        result = qtests.run_case(build_dir, test, case, env)
        assert result.ok, result.output[-3000:]
        assert re.search(rf"^ok \d+ {re.escape(case)}$", result.output,
                         re.M), result.output[-3000:]
