"""Stock libvirt drives the series' vCPU hotplug unchanged (both releases).

Debian's libvirt 9.0 (installed by .ci/setup) runs as a session-mode
libvirtd under uid nobody, with its own XDG directories in a temporary
directory (there is no systemd here: ../shared/LIBVIRT-NOTES.md, section
8).  The domain is the XML a user writes for a guest that boots with two
of four vCPUs (`<vcpu current='2'>4</vcpu>`, no <qemu:commandline>), the
patched QEMU as its emulator and the Linux 6.12 guest of ../shared/guest
under UEFI (pflash, as libvirt wants for ACPI on aarch64).  libvirt writes
`-smp 2,maxcpus=4,...` and plugs and unplugs vCPUs with device_add and
device_del, which the series' virt-11.0 machine takes.

After each step, what libvirt reports (vcpucount, vcpuinfo) is what the
guest has in /sys/devices/system/cpu/enabled.
"""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from guest import prepare

pytestmark = pytest.mark.slow

LIBVIRTD = shutil.which("libvirtd", path="/usr/sbin:/usr/bin")
VIRSH = shutil.which("virsh")
NOBODY = 65534
DOMAIN = "hpvirt"
MIB = 1024 * 1024


def cpu_list(text: str) -> set:
    """'0-2,4' -> {0, 1, 2, 4}"""
    cpus = set()
    for part in filter(None, text.strip().split(",")):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


class Libvirtd:
    """A session-mode libvirtd as uid nobody, in its own directory."""

    def __init__(self, root: Path):
        self.root = root
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOME": str(root),
                    "XDG_RUNTIME_DIR": str(root / "run"),
                    "XDG_CONFIG_HOME": str(root / "config"),
                    "XDG_CACHE_HOME": str(root / "cache"),
                    "LC_ALL": "C"}
        self.sock = root / "run" / "libvirt" / "libvirt-sock"
        self.uri = f"qemu+unix:///session?socket={self.sock}"
        self.log = root / "libvirtd.log"
        conf = root / "config" / "libvirt"
        conf.mkdir(parents=True)
        (conf / "libvirtd.conf").write_text(
            'log_filters="1:qemu.qemu_monitor 1:qemu.qemu_monitor_json '
            '1:qemu.qemu_hotplug 1:qemu.qemu_driver 3:*"\n'
            f'log_outputs="1:file:{self.log}"\n')
        (conf / "qemu.conf").write_text('stdio_handler = "file"\n')
        for sub in ("run", "cache"):
            (root / sub).mkdir()
        chown_tree(root)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [LIBVIRTD], env=self.env, user=NOBODY, group=NOBODY,
            extra_groups=[], cwd=self.root, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=open(self.root / "stderr", "ab"))
        deadline = time.monotonic() + 60
        while not self.virsh("list", "--all", check=False).returncode == 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("libvirtd did not answer\n" +
                                     self.tail())
            time.sleep(0.3)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        self.start()

    def virsh(self, *args, check=True, timeout=120):
        proc = subprocess.run([VIRSH, "-c", self.uri, *map(str, args)],
                              env=self.env, user=NOBODY, group=NOBODY,
                              extra_groups=[], capture_output=True, text=True,
                              timeout=timeout)
        if check:
            assert proc.returncode == 0, (
                f"virsh {' '.join(map(str, args))}: {proc.stderr}\n"
                + self.tail())
        return proc

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def qmp_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def chown_tree(path: Path):
    os.chown(path, NOBODY, NOBODY)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), NOBODY, NOBODY,
                     follow_symlinks=False)


class Console:
    """The guest's serial console (a unix socket QEMU listens on) and the
    busybox shell on it."""

    def __init__(self, path: Path, timeout: float = 300):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                assert time.monotonic() < deadline, f"no console at {path}"
                time.sleep(0.3)
        self.output = b""
        self.sequence = 0
        # connected as QEMU starts the guest: nothing is typed before the
        # shell is there (a line cut by the boot would leave it waiting)
        try:
            self.read_until(b"GUEST-SHELL-READY", timeout)
        except TimeoutError:
            raise AssertionError("no guest shell:\n" + self.output[-3000:]
                                 .decode(errors="replace")) from None
        self.shell("echo")

    def read_until(self, marker: bytes, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while marker not in self.output:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(marker)
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            assert data, "the console closed"
            self.output += data
        text, _, self.output = self.output.partition(marker)
        return text.decode(errors="replace")

    def shell(self, command: str, timeout: float = 60) -> str:
        self.sequence += 1
        mark = f"__DONE_{self.sequence}__"
        split = f'"{mark[:4]}""{mark[4:]}"'
        self.sock.sendall(f"{command}; echo {split}\n".encode())
        return self.read_until(mark.encode() + b"\r\n", timeout)

    def cpus(self) -> dict:
        out = self.shell("for f in present enabled online; do "
                         "echo CPUS $f=$(cat /sys/devices/system/cpu/$f); "
                         "done")
        return {k: cpu_list(v) for k, v in
                re.findall(r"^CPUS (\w+)=(\S*)", out, re.M)}

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def workdir():
    """A directory uid nobody can use (the tests run as root, whose home
    nobody cannot enter): the daemon's state, the emulators, the guest."""
    if os.geteuid() != 0:
        pytest.skip("the session libvirtd runs as uid nobody: needs root")
    if not LIBVIRTD or not VIRSH:
        pytest.skip("libvirt is not installed (.ci/setup installs it)")
    root = Path(tempfile.mkdtemp(prefix="gen-series-libvirt-"))
    os.chmod(root, 0o755)
    guest = root / "guest"
    guest.mkdir()
    files = prepare()
    shutil.copy(files["kernel"], guest / "Image")
    shutil.copy(files["initrd"], guest / "initrd.gz")
    code = Path(files["bios"]).read_bytes()
    # pflash: libvirt counts only pflash as UEFI, for ACPI on aarch64
    (guest / "code.fd").write_bytes(code.ljust(64 * MIB, b"\0"))
    (guest / "vars.fd").write_bytes(bytes(64 * MIB))
    os.chmod(guest, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def libvirtd(workdir):
    daemon = Libvirtd(workdir / "libvirt")
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()


def emulator(workdir: Path, release: str, binary: Path) -> Path:
    """A copy of the patched QEMU that uid nobody can run."""
    dest = workdir / "emulators" / release / "qemu-system-aarch64"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(binary, dest)
        os.chmod(dest.parent, 0o755)
        os.chmod(workdir / "emulators", 0o755)
    return dest


def domain_xml(workdir: Path, qemu: Path, vcpus: str = "") -> str:
    guest = workdir / "guest"
    run = workdir / "libvirt" / "run"
    return f"""<domain type='qemu'>
  <name>{DOMAIN}</name>
  <memory unit='MiB'>512</memory>
  <vcpu placement='static' current='2'>4</vcpu>
  {vcpus}
  <os>
    <type arch='aarch64' machine='virt'>hvm</type>
    <loader readonly='yes' type='pflash'>{guest}/code.fd</loader>
    <nvram template='{guest}/vars.fd'/>
    <kernel>{guest}/Image</kernel>
    <initrd>{guest}/initrd.gz</initrd>
    <cmdline>console=ttyAMA0 panic=-1 acpi=force gen_series_shell</cmdline>
  </os>
  <features><acpi/><gic version='3'/></features>
  <cpu mode='custom' match='exact'><model fallback='forbid'>max</model></cpu>
  <devices>
    <emulator>{qemu}</emulator>
    <controller type='usb' model='none'/>
    <serial type='unix'>
      <source mode='bind' path='{run}/ser-{DOMAIN}.sock'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
"""


class Domain:
    def __init__(self, daemon: Libvirtd, workdir: Path, qemu: Path):
        self.daemon = daemon
        self.workdir = workdir
        self.xml = workdir / "libvirt" / f"{DOMAIN}.xml"
        self.xml.write_text(domain_xml(workdir, qemu))
        os.chown(self.xml, NOBODY, NOBODY)
        self.console = None

    def virsh(self, *args, **kwargs):
        return self.daemon.virsh(*args, **kwargs)

    def start(self):
        self.virsh("start", DOMAIN)
        self.console = Console(self.workdir / "libvirt" / "run" /
                               f"ser-{DOMAIN}.sock")

    def destroy(self):
        if self.console:
            self.console.close()
            self.console = None
        self.virsh("destroy", DOMAIN, check=False)

    def setvcpus(self, count: int, *flags, check=True):
        return self.virsh("setvcpus", DOMAIN, count, "--live", *flags,
                          check=check)

    def setvcpu(self, vcpu: int, action: str, *flags, check=True):
        return self.virsh("setvcpu", DOMAIN, vcpu, f"--{action}", "--live",
                          *flags, check=check)

    def libvirt_view(self) -> tuple:
        """(current live vCPU count, the vCPUs vcpuinfo lists)"""
        count = self.virsh("vcpucount", DOMAIN, "--live", "--active").stdout
        info = self.virsh("vcpuinfo", DOMAIN).stdout
        return (int(count.strip()),
                {int(n) for n in re.findall(r"^VCPU:\s+(\d+)", info, re.M)})

    def assert_agree(self, enabled: set, online: bool = True):
        """libvirt and the guest both have exactly the vCPUs `enabled`;
        with `online`, the guest brings new ones online (Linux leaves a
        hot-added CPU offline) and runs on them."""
        deadline = time.monotonic() + 30
        while True:
            cpus = self.console.cpus()
            if cpus["enabled"] == enabled or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert cpus["present"] == {0, 1, 2, 3}
        assert cpus["enabled"] == enabled, cpus
        assert self.libvirt_view() == (len(enabled), enabled)
        if online:
            for cpu in sorted(enabled - cpus["online"]):
                self.console.shell(
                    f"echo 1 > /sys/devices/system/cpu/cpu{cpu}/online")
            assert self.console.cpus()["online"] == enabled


@pytest.fixture
def domain(built, libvirtd, workdir):
    release, binary = built
    dom = Domain(libvirtd, workdir, emulator(workdir, release, binary))
    dom.virsh("define", dom.xml)
    yield dom
    dom.destroy()
    dom.virsh("undefine", DOMAIN, "--nvram", check=False)


def test_setvcpus_live_grows_and_shrinks(domain):
    domain.start()
    domain.assert_agree({0, 1})

    # setvcpus --live up and down: device_add and device_del
    domain.setvcpus(3)
    domain.assert_agree({0, 1, 2})
    domain.setvcpus(4)
    domain.assert_agree({0, 1, 2, 3})
    domain.setvcpus(3)
    domain.assert_agree({0, 1, 2})
    domain.setvcpus(2)
    domain.assert_agree({0, 1})
    log = domain.daemon.qmp_log()
    assert '"execute":"device_add"' in log and '"driver":"max-arm-cpu"' in log
    assert '"execute":"device_del"' in log and "DEVICE_DELETED" in log

    # one vCPU at a time, out of order
    domain.setvcpu(3, "enable")
    domain.assert_agree({0, 1, 3})
    domain.setvcpus(4)
    domain.assert_agree({0, 1, 2, 3})
    domain.setvcpu(2, "disable")
    domain.assert_agree({0, 1, 3})
    domain.setvcpu(3, "disable")
    domain.assert_agree({0, 1})
    # a vCPU plugged again
    domain.setvcpu(2, "enable")
    domain.assert_agree({0, 1, 2})
    # the boot vCPUs are not hotpluggable for libvirt
    proc = domain.setvcpus(1, check=False)
    assert proc.returncode != 0
    domain.assert_agree({0, 1, 2}, online=False)


def test_daemon_restart_keeps_the_vcpus(domain):
    domain.start()
    domain.setvcpus(4)
    domain.assert_agree({0, 1, 2, 3})
    domain.daemon.restart()
    # libvirt reconnects and reads the vCPUs again
    domain.assert_agree({0, 1, 2, 3}, online=False)
    domain.setvcpus(2)
    domain.assert_agree({0, 1})
    domain.setvcpus(3)
    domain.assert_agree({0, 1, 2})


def test_guest_refusal_is_reported(domain):
    domain.start()
    domain.setvcpus(3)
    domain.assert_agree({0, 1, 2})
    domain.console.shell(
        "echo 0 > /sys/firmware/acpi/hotplug/processor/enabled")
    start = time.monotonic()
    proc = domain.setvcpus(2, check=False)
    took = time.monotonic() - start
    assert proc.returncode != 0
    # DEVICE_UNPLUG_GUEST_ERROR: not libvirt's 5 s timeout
    assert "unplug of device was rejected by the guest" in proc.stderr
    assert took < 5, took
    domain.assert_agree({0, 1, 2}, online=False)
    # allowed again, the guest gives it up
    domain.console.shell(
        "echo 1 > /sys/firmware/acpi/hotplug/processor/enabled")
    domain.setvcpus(2)
    domain.assert_agree({0, 1})


def test_persisted_hotpluggable_vcpu_cold_boots(domain):
    domain.start()
    domain.setvcpus(3, "--config", "--hotpluggable")
    domain.assert_agree({0, 1, 2})
    xml = domain.virsh("dumpxml", DOMAIN, "--inactive").stdout
    assert re.search(r"<vcpu id='2' enabled='yes' hotpluggable='yes'", xml)
    domain.destroy()
    # libvirt starts -smp 2,maxcpus=4 and device_adds vCPU 2 at -S
    domain.start()
    domain.assert_agree({0, 1, 2})
    domain.setvcpus(2)
    domain.assert_agree({0, 1})


def test_old_machine_version_is_the_unpatched_release(built):
    """What libvirt writes for an existing domain, on the previous machine
    version (virt-10.2 on 10.2.2, virt-10.0 on 10.0.13): -smp 2,maxcpus=4
    means two vCPUs, as before the series, and the machine describes
    itself to libvirt and to the guest exactly as the unpatched release
    does (QMP answers, and every ACPI table byte for byte)."""
    from conftest import unpatched
    from guest import guest_args
    from qemu_session import Qemu, QmpError
    from test_acpi import all_tables

    release, binary = built
    old = "virt-" + ".".join(release.split(".")[:2])
    args = guest_args("2,maxcpus=4,sockets=4,cores=1,threads=1", shell=True)
    args[args.index("-M") + 1] = f"{old},gic-version=3"
    seen = []
    for qemu in (binary, unpatched(release)):
        with Qemu(qemu, args, console=True) as q:
            machines = {m["name"]: m for m in q.cmd("query-machines")}
            answers = [machines[old]["hotpluggable-cpus"],
                       [(c["cpu-index"], c["qom-path"], c["props"])
                        for c in q.cmd("query-cpus-fast")]]
            try:
                answers.append(q.cmd("query-hotpluggable-cpus"))
            except QmpError as e:
                answers.append(e.desc)
            q.read_until(b"GUEST-SHELL-READY")
            out = q.shell("cat /sys/devices/system/cpu/present "
                          "/sys/devices/system/cpu/online")
            seen.append((answers, out.split()[-2:], all_tables(q)))
    assert seen[0][0] == seen[1][0]
    assert seen[0][0][0] is False
    assert seen[0][1] == seen[1][1] == ["0-1", "0-1"]
    assert seen[0][2] == seen[1][2], [n for n in seen[0][2]
                                      if seen[0][2][n] != seen[1][2].get(n)]
