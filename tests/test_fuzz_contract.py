"""Property-based fuzzing of `generate`'s contract (hypothesis).

Mutations of a real spec and its templates (values of another type,
deleted keys, random bytes, path tricks, template runtime errors) must
each end in exit 0, or exit 2 with exactly one `gen-series: error:` line;
never a traceback, and `--out` untouched unless the run succeeded.

The bulk runs the small spec against tests/fixtures/minitree in-process
through `generator.cli.main`, the same path as the command (argument
parsing, the stages, the last-resort handler); a smaller number mutates
the project's own spec and templates against the pinned QEMU release.
The runs are derandomized: CI explores the same mutations every time.
"""

import contextlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import PINNED, PROJECT, release_dsc
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from generator import cli
from generator.output import outdir

MINI_SPEC = PROJECT / "tests" / "fixtures" / "mini-spec.yaml"
MINI_TEMPLATES = PROJECT / "tests" / "spec-errors" / "templates"

MINI_EXAMPLES = int(os.environ.get("GEN_SERIES_FUZZ_EXAMPLES", "1000"))
REAL_EXAMPLES = int(os.environ.get("GEN_SERIES_FUZZ_REAL_EXAMPLES", "30"))

FUZZ = dict(derandomize=True, deadline=None, database=None,
            suppress_health_check=list(HealthCheck))

# Values a hostile but realistic user writes: paths that leave their root,
# bad dates and versions, text git would rewrite, template and regex traps.
TRICKS = [
    "../../../../etc/passwd", "/etc/passwd", "..", ".", "", " ", "a\nb",
    "hw/../../outside.c", "hw/core/../../../x.c", "hw/core/",
    "escape/qdev.c", "escape.c.j2", "evil.c.j2", "nul\0byte", "caf\u00e9",
    "0001-01-01T00:00:00+00:00", "1969-12-31T23:59:59+00:00",
    "2100-01-01T00:00:00+00:00", "2026-01-01", "tomorrow",
    "(a+)+$", "[", "(?P<x>", "\\", "{{ 1 // 0 }}", "{{ undefined_name }}",
    "{% include '../x' %}", "{{", "not has-frobnicator", "not ",
    "device_class_init", "DeviceState", "device-sync-config",
    "insert-after", "replace-match", "make-non-static", "create-file",
    "copy-file", "line.c.j2", "since.json.j2", "broken.c.j2",
    "undefined.c.j2", "recursive.c.j2", "divide.c.j2",
]
TEMPLATE_TRAPS = [
    b"{{ 1 // 0 }}\n", b"{% include 'nope.j2' %}\n",
    b"{% include '../../mini-spec.yaml' %}\n",
    b"{% include 'recursive.c.j2' %}\n", b"{{ verbatim('../x') }}\n",
    b"{{ verbatim('/etc/passwd') }}\n", b"{{ comment.no_such }}\n",
    b"{{ comment | no_such_filter }}\n", b"{% for %}\n", b"\xff\xfe\n",
    b"\0", b"{{ 'x' * 10 ** 9 | length if false else 1 }}\n",
    b"{{ tree.version[100] }}\n", b"{{ (1).__class__ }}\n",
]
VALUES = st.one_of(
    st.sampled_from(TRICKS),
    st.none(), st.booleans(), st.integers(), st.floats(),
    st.text(max_size=12),
    st.lists(st.sampled_from(TRICKS) | st.integers(), max_size=3),
    st.dictionaries(st.sampled_from(["id", "file", "match", "x"]),
                    st.sampled_from(TRICKS) | st.integers(), max_size=2),
)


def run_cli(argv: list) -> tuple:
    """generator.cli.main in-process: (exit status, stderr).  An exception
    that escapes main() is what the command would die of, traceback and
    all: status None."""
    status, err, _ = run_cli_out(argv)
    return status, err


def snapshot(path: Path) -> dict:
    return {p.relative_to(path): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*")) if p.is_file()}


def assert_contract(status, stderr: str, out: Path, before: dict) -> None:
    assert "Traceback" not in stderr, stderr
    assert status in (0, 2), (status, stderr)
    if status == 2:
        assert stderr.startswith("gen-series: error: "), stderr
        assert stderr.count("\n") == 1 and stderr.endswith("\n"), stderr
        assert snapshot(out) == before, "--out changed by a failed run"
    else:
        assert stderr == "", stderr
        assert not (out / "0001-an-older-series.patch").exists()
        assert (out / "notes.txt").read_text() == "the user's own file\n"


# ---- mutations ------------------------------------------------------------

def _paths(data, prefix=()):
    """Every key path into nested dicts and lists."""
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, prefix + (i,))


def _set(data, path, value, delete=False):
    node = data
    for k in path[:-1]:
        node = node[k]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value


def mutate_data(draw, data):
    """Swap a value's type, delete a key or item, or set a trick."""
    paths = [p for p in _paths(data) if p]
    path = draw(st.sampled_from(paths))
    how = draw(st.sampled_from(["replace", "replace", "delete", "rename"]))
    if how == "delete":
        _set(data, path, None, delete=True)
    elif how == "rename" and isinstance(path[-1], str):
        parent = data
        for k in path[:-1]:
            parent = parent[k]
        parent[draw(st.sampled_from(TRICKS[:12] + ["templat", "id"]))] = \
            parent.pop(path[-1])
    else:
        _set(data, path, draw(VALUES))


def mutate_bytes(draw, data: bytes, traps: list) -> bytes:
    """Random bytes, a trap, or a cut, at a random place."""
    at = draw(st.integers(0, len(data)))
    how = draw(st.sampled_from(["insert", "trap", "cut"]))
    if how == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=6)) + data[at:]
    if how == "trap":
        return data[:at] + draw(st.sampled_from(traps)) + data[at:]
    return data[:at]


def prepare(tmp: Path, spec_files: list, templates: Path) -> tuple:
    """A workspace: the spec files in tmp/specs, the templates in
    tmp/templates (with traps: a symlink out, a self-include, a division
    by zero), tmp/escape -> outside, and an --out holding a series."""
    specs = tmp / "specs"
    specs.mkdir()
    for f in spec_files:
        shutil.copy(f, specs / f.name)
    shutil.copytree(templates, tmp / "templates")
    (tmp / "templates" / "evil.c.j2").symlink_to(tmp / "secret.txt")
    (tmp / "secret.txt").write_text("secret\n")
    (tmp / "templates" / "recursive.c.j2").write_text(
        "{% include 'recursive.c.j2' %}\n")
    (tmp / "templates" / "divide.c.j2").write_text("{{ (1 // 0) }}\n")
    out = tmp / "out"
    outdir.replace_series(out, {"0001-an-older-series.patch": b"old\n"})
    (out / "notes.txt").write_text("the user's own file\n")
    return specs, tmp / "templates", out


def fuzz_case(draw, spec_files: list, templates: Path, qemu) -> None:
    with tempfile.TemporaryDirectory(prefix="gen-series-fuzz-") as tmp:
        tmp = Path(tmp)
        specs, templates, out = prepare(tmp, spec_files, templates)
        for _ in range(draw(st.integers(1, 3))):
            kind = draw(st.sampled_from(["data", "data", "data", "spec-bytes",
                                         "template-bytes"]))
            if kind == "data":
                f = specs / draw(st.sampled_from(
                    sorted(p.name for p in specs.iterdir())))
                try:
                    data = yaml.safe_load(f.read_bytes())
                except yaml.YAMLError:
                    continue        # an earlier byte mutation broke it
                if not isinstance(data, (dict, list)) or not data:
                    continue
                mutate_data(draw, data)
                f.write_text(yaml.safe_dump(data, allow_unicode=True))
            elif kind == "spec-bytes":
                f = specs / draw(st.sampled_from(
                    sorted(p.name for p in specs.iterdir())))
                f.write_bytes(mutate_bytes(draw, f.read_bytes(),
                                           [t.encode() for t in TRICKS
                                            if t] + [b"\0", b"\xff"]))
            else:
                names = sorted(str(p.relative_to(templates))
                               for p in templates.rglob("*.j2")
                               if p.is_file() and not p.is_symlink())
                f = templates / draw(st.sampled_from(names))
                f.write_bytes(mutate_bytes(draw, f.read_bytes(),
                                           TEMPLATE_TRAPS))
        (tmp / "escape").symlink_to("/tmp")
        before = snapshot(out)
        status, stderr = run_cli(
            ["-q", "generate", "--spec", specs / "series.yaml",
             "--templates", templates, "--qemu", qemu, "--out", out])
        assert_contract(status, stderr, out, before)
        assert (tmp / "secret.txt").read_text() == "secret\n"


def mini_spec_files(tmp: Path) -> list:
    """The small spec, named series.yaml as the real one is."""
    f = tmp / "series.yaml"
    shutil.copy(MINI_SPEC, f)
    return [f]


@pytest.fixture(scope="module")
def mini_spec(tmp_path_factory) -> list:
    return mini_spec_files(tmp_path_factory.mktemp("mini-spec"))


def test_unmutated_small_spec_renders(minitree, mini_spec):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        specs, templates, out = prepare(tmp, mini_spec, MINI_TEMPLATES)
        status, stderr = run_cli(
            ["-q", "generate", "--spec", specs / "series.yaml",
             "--templates", templates, "--qemu", minitree, "--out", out])
    assert (status, stderr) == (0, "")


@settings(max_examples=MINI_EXAMPLES, **FUZZ)
@given(st.data())
def test_fuzz_small_spec_keeps_the_contract(minitree, mini_spec, data):
    fuzz_case(data.draw, mini_spec, MINI_TEMPLATES, minitree)


@pytest.fixture(scope="module")
def pinned_base():
    return release_dsc(PINNED)


@pytest.mark.tree
@settings(max_examples=REAL_EXAMPLES, phases=[Phase.explicit, Phase.generate],
          **FUZZ)    # shrinking full renders of the real spec takes too long
@given(st.data())
def test_fuzz_real_spec_keeps_the_contract(pinned_base, data):
    fuzz_case(data.draw, sorted((PROJECT / "specs").glob("*.yaml")),
              PROJECT / "templates", pinned_base)


def test_without_the_last_resort_the_fuzz_finds_a_break(minitree, mini_spec,
                                                         monkeypatch):
    """The seeded regression: a stage with a bug nobody foresaw (here the
    text decoder lets bad bytes through, as it did before) is held to the
    contract by the last-resort handler only; without the handler the
    same fuzz property fails."""
    from generator.spec import load as specload

    def careless_decode(data: bytes, name: str) -> str:
        return data.decode("utf-8")

    def no_last_resort(e, args):
        raise e

    for module in ("spec.load", "spec.templates", "generate.edits"):
        monkeypatch.setattr(f"generator.{module}.decode_text",
                            careless_decode)
    assert specload.decode_text is careless_decode

    @settings(max_examples=300, report_multiple_bugs=False,
              phases=[Phase.generate], **FUZZ)
    @given(st.data())
    def fuzz(data):
        fuzz_case(data.draw, mini_spec, MINI_TEMPLATES, minitree)

    fuzz()      # the handler turns the bug into one line: the contract holds
    monkeypatch.setattr(cli, "last_resort", no_last_resort)
    with pytest.raises(AssertionError, match="Traceback"):
        fuzz()


# ---- the newer commands and inputs: maps, series directories, tarballs ----
#
# explain reads a series-map.json; diff, generate --previous and explain
# read series directories; --qemu unpacks tarballs.  Each is mutated as a
# hostile or unlucky user would hand it over, and the contract is the one
# above, plus: nothing outside the inputs is read (a secret file beside
# them never shows up in the output or the cache), "a bug in gen-series"
# is never the answer, and a FIFO never hangs the run.

NEWER_EXAMPLES = int(os.environ.get("GEN_SERIES_FUZZ_NEWER_EXAMPLES", "60"))
SECRET = "fuzz secret beside the inputs"
PATH_TRICKS = ["../secret.txt", "/etc/passwd", "..", ".", "", "a/b.patch",
               "0001-x.patch", "0000-cover-letter.patch", "nul\0.patch",
               "9999-missing.patch", "0001-../../secret.txt",
               "series-map.json"]
TEXT_TRAPS = [b"\xff\xfe", b"\0", b"\r", b"\xc2\x85", b"diff --git a/x b/x\n",
              b"@@ -1,3 +1,4 @@\n", b"GIT binary patch\nliteral 9\n",
              b"index 0000000..1111111\n", b"Subject: [PATCH 9/1] x\n",
              b"base-commit: 0123456789abcdef\n", b"\n-- \n", b"From: \r\n"]


def assert_newer_contract(status, stderr: str, stdout: str = "") -> None:
    assert "Traceback" not in stderr, stderr
    assert "a bug in gen-series" not in stderr, stderr
    assert SECRET not in stderr and SECRET not in stdout
    assert status in (0, 1, 2), (status, stderr)
    if status == 2:
        assert stderr.startswith("gen-series: error: "), stderr
        assert stderr.count("\n") == 1 and stderr.endswith("\n"), stderr


def run_cli_out(argv: list) -> tuple:
    """run_cli, with stdout too."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            status = cli.main([str(a) for a in argv])
        except SystemExit as e:
            status = e.code
        except Exception as e:  # noqa: BLE001 -- that is the finding
            status = None
            err.write(f"Traceback (most recent call last):\n  {e!r}\n")
    return status, err.getvalue(), out.getvalue()


@pytest.fixture(scope="module")
def mini_series(minitree, mini_spec, tmp_path_factory) -> Path:
    """The small spec's series with its map, generated once."""
    out = tmp_path_factory.mktemp("mini-series") / "series"
    status, stderr = run_cli(["-q", "generate", "--spec", mini_spec[0],
                              "--templates", MINI_TEMPLATES, "--qemu",
                              minitree, "--out", out])
    assert (status, stderr) == (0, "")
    return out


def workspace(tmp: Path, series: Path) -> Path:
    """A copy of the series beside a secret file."""
    (tmp / "secret.txt").write_text(SECRET + "\n")
    copy = tmp / "series"
    shutil.copytree(series, copy)
    return copy


def mutate_series_dir(draw, series: Path) -> None:
    """Bytes of a patch or the cover letter changed, a file swapped for a
    link out, a FIFO or a directory, removed or renamed."""
    names = sorted(p.name for p in series.iterdir()   # not one swapped
                   if p.name.endswith(".patch") and p.is_file() and
                   not p.is_symlink())
    if not names:
        return
    victim = series / draw(st.sampled_from(names))
    how = draw(st.sampled_from(["bytes", "bytes", "bytes", "link-out",
                                "fifo", "dir", "remove", "rename"]))
    if how == "bytes":
        victim.write_bytes(mutate_bytes(draw, victim.read_bytes(),
                                        TEXT_TRAPS))
        return
    victim.unlink()
    if how == "link-out":
        victim.symlink_to(series.parent / "secret.txt")
    elif how == "fifo":
        os.mkfifo(victim)
    elif how == "dir":
        victim.mkdir()
    elif how == "rename":
        (series / draw(st.sampled_from(PATH_TRICKS[6:8] +
                                       ["0003-new.patch"]))).write_text(
            "From: x\nSubject: [PATCH 3/2] x\n\n")


@settings(max_examples=NEWER_EXAMPLES, **FUZZ)
@given(st.data())
def test_fuzz_series_directories_keep_the_contract(minitree, mini_spec,
                                                   mini_series, data):
    """diff, generate --previous and explain on a damaged series
    directory."""
    with tempfile.TemporaryDirectory(prefix="gen-series-fuzz-") as tmp:
        tmp = Path(tmp)
        series = workspace(tmp, mini_series)
        for _ in range(data.draw(st.integers(1, 2))):
            mutate_series_dir(data.draw, series)
        command = data.draw(st.sampled_from(["diff", "previous", "explain"]))
        out = tmp / "out"
        if command == "diff":
            argv = ["diff", series, mini_series, "--qemu", minitree]
        elif command == "previous":
            argv = ["generate", "--spec", mini_spec[0], "--templates",
                    MINI_TEMPLATES, "--qemu", minitree, "--out", out,
                    "-v", "3", "--previous", series]
        else:
            argv = ["explain", data.draw(st.sampled_from(
                ["0001:1", "0001:20", "0002:12", "0000:3",
                 "line.c.j2:1"])), "--series", series]
        status, stderr, stdout = run_cli_out(["-q", *argv])
        assert_newer_contract(status, stderr, stdout)
        if status != 0:
            assert not out.exists()


def mutate_map(draw, smap: dict) -> None:
    how = draw(st.sampled_from(["data", "data", "name", "row"]))
    if how == "name" and isinstance(smap.get("files"), dict) and \
            smap["files"]:
        name = draw(st.sampled_from(sorted(smap["files"])))
        smap["files"][draw(st.sampled_from(PATH_TRICKS))] = \
            smap["files"].pop(name)
    elif how == "row" and isinstance(smap.get("files"), dict) and \
            smap["files"]:
        entry = smap["files"][draw(st.sampled_from(sorted(smap["files"])))]
        if isinstance(entry, dict) and isinstance(entry.get("added"), list):
            entry["added"].append([draw(st.integers(-5, 10 ** 6)),
                                   draw(st.sampled_from(
                                       [None, "no-such-change"] +
                                       sorted(smap.get("changes") or {}))),
                                   draw(st.none() | st.integers())])
    else:
        mutate_data(draw, smap)


@settings(max_examples=NEWER_EXAMPLES * 3, **FUZZ)
@given(st.data())
def test_fuzz_series_maps_keep_the_contract(mini_series, data):
    """explain with a crafted series-map.json."""
    with tempfile.TemporaryDirectory(prefix="gen-series-fuzz-") as tmp:
        tmp = Path(tmp)
        series = workspace(tmp, mini_series)
        (tmp / "secret.patch").write_text(SECRET + "\n")
        path = series / "series-map.json"
        smap = json.loads(path.read_text())
        for _ in range(data.draw(st.integers(1, 3))):
            if isinstance(smap, dict) and smap:
                mutate_map(data.draw, smap)
        path.write_text(json.dumps(smap))
        changes = sorted(smap.get("changes") or {}) \
            if isinstance(smap, dict) and \
            isinstance(smap.get("changes"), dict) else []
        query = data.draw(st.sampled_from(
            [["0001:1"], ["0001:17"], ["2:10"], ["0:2"], ["mini-spec.yaml:30"],
             ["line.c.j2:1"], ["../secret.patch:1"]] +
            [["--spec-item", c] for c in changes[:4]]))
        status, stderr, stdout = run_cli_out(
            ["-q", "explain", *query, "--series", series])
        assert_newer_contract(status, stderr, stdout)


TAR_NAMES = ["qemu-9.2.0/hw/x.c", "qemu-9.2.0/../../escaped.c",
             "/tmp/escaped-by-fuzz.c", "qemu-9.2.0/hw/core/qdev.c",
             "qemu-9.2.0/VERSION", "qemu-9.2.0/hw", "other/VERSION",
             "qemu-9.2.0/link/x.c", "qemu-9.2.0/./hw/y.c", "qemu-9.2.0"]
TAR_LINKS = ["SECRET", "../../secret.txt", "hw/core/qdev.c",
             "qemu-9.2.0/hw/core/qdev.c", "..", "/", "VERSION", "/etc",
             "qemu-9.2.0/VERSION", "../link"]
TAR_TYPES = [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE,
             tarfile.LNKTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE,
             tarfile.BLKTYPE]


def fuzz_tarball(draw, path: Path, secret: Path) -> None:
    """The mini tree as a release tarball, with hostile members."""
    mode = draw(st.sampled_from(["w:gz", "w:xz", "w:bz2", "w"]))
    with tarfile.open(path, mode) as tar:
        for p in sorted((PROJECT / "tests" / "fixtures" / "minitree")
                        .rglob("*")):
            tar.add(p, "qemu-9.2.0/" + str(p.relative_to(
                PROJECT / "tests" / "fixtures" / "minitree")),
                recursive=False)
        for _ in range(draw(st.integers(1, 3))):
            info = tarfile.TarInfo(draw(st.sampled_from(TAR_NAMES)))
            info.type = draw(st.sampled_from(TAR_TYPES))
            info.uid = info.gid = draw(st.sampled_from([0, 1000, 65534]))
            info.mode = draw(st.sampled_from([0o644, 0o4755, 0o777, 0o000]))
            link = draw(st.sampled_from(TAR_LINKS))
            info.linkname = str(secret) if link == "SECRET" else link
            data = draw(st.sampled_from([b"", b"10.2.2\n", b"../../x\n",
                                         b"int x;\n"]))
            if info.type == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    if draw(st.booleans()) and draw(st.booleans()):
        raw = path.read_bytes()
        path.write_bytes(raw[:draw(st.integers(0, len(raw)))])


@settings(max_examples=NEWER_EXAMPLES, **FUZZ)
@given(st.data())
def test_fuzz_tarballs_keep_the_contract(mini_spec, data):
    """--qemu a crafted release tarball: links, devices, FIFOs, paths out,
    set-id modes, other owners, a VERSION that is not one, cut short."""
    with tempfile.TemporaryDirectory(prefix="gen-series-fuzz-") as tmp:
        tmp = Path(tmp)
        secret = tmp / "secret.txt"
        secret.write_text(SECRET + "\n")
        tarball = tmp / "in" / "qemu-9.2.0.tar"
        tarball.parent.mkdir()
        fuzz_tarball(data.draw, tarball, secret)
        cache, out = tmp / "cache", tmp / "out"
        old = os.environ.get("GEN_SERIES_CACHE")
        os.environ["GEN_SERIES_CACHE"] = str(cache)
        try:
            status, stderr, stdout = run_cli_out(
                ["-q", "generate", "--spec", mini_spec[0], "--templates",
                 MINI_TEMPLATES, "--qemu", tarball, "--out", out])
        finally:
            if old is None:
                del os.environ["GEN_SERIES_CACHE"]
            else:
                os.environ["GEN_SERIES_CACHE"] = old
        assert_newer_contract(status, stderr, stdout)
        assert sorted(p.name for p in tmp.iterdir()) == \
            sorted(["secret.txt", "in", "cache"] +
                   (["out"] if out.exists() else []))
        assert not Path("/tmp/escaped-by-fuzz.c").exists()
        for p in cache.rglob("*"):
            st_ = p.lstat()
            assert not st_.st_mode & 0o6000, p
            assert p.is_symlink() or p.is_dir() or p.is_file(), p
            if p.is_symlink():
                assert p.resolve().is_relative_to(cache.resolve()) or \
                    not p.resolve().exists(), p
            elif p.is_file():
                assert SECRET.encode() not in p.read_bytes(), p
