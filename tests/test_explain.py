"""`gen-series explain` and the series-map.json beside a series: every line
a patch adds comes from a spec item and a template line, and back."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import unidiff
from conftest import PROJECT, RELEASES, patch_file, run_gen_series

from generator.errors import GenError
from generator.generate import provenance
from generator.output import written
from generator.review import explain

TRACE = PROJECT / "tests" / "fixtures" / "trace"


@pytest.fixture(scope="module")
def traced(minitree, tmp_path_factory) -> Path:
    """tests/fixtures/trace/spec.yaml rendered on the mini tree."""
    out = tmp_path_factory.mktemp("trace") / "series"
    run_gen_series("-q", "generate", "--spec", TRACE / "spec.yaml",
                   "--templates", TRACE / "templates", "--qemu", minitree,
                   "--out", out, check=0)
    return out


def explain_cli(series: Path, *args, check=0):
    return run_gen_series("explain", *args, "--series", series, check=check)


def answer(series: Path, *args) -> list:
    return explain_cli(series, *args).stdout.splitlines()


PROPERTIES = "spec: spec.yaml:31: change 'properties' of patch 'one'"


@pytest.mark.parametrize("line, text, origin", [
    # the for loop's two iterations come from the same template lines
    ("1:22", "+    /* from the spec */",
     [PROPERTIES, "template: templates/multi.c.j2:2"]),
    ("0001:23", '+    object_class_property_add_bool(class, "first",',
     [PROPERTIES, "template: templates/multi.c.j2:4"]),
    ("1:25", '+    object_class_property_add_bool(class, "second",',
     [PROPERTIES, "template: templates/multi.c.j2:4"]),
    ("0001-qdev-one.patch:26", "+                                   NULL, NULL);",
     [PROPERTIES, "template: templates/multi.c.j2:5"]),
    # the branch of the {% if %} the probe takes
    ("1:27", "+    /* realized */",
     [PROPERTIES, "template: templates/multi.c.j2:8"]),
    # replace-match: the rest of the line is upstream's, the text the
    # template's (which has no final newline)
    ("1:35", "+    dc->hotpluggable = false;",
     ["spec: spec.yaml:38: change 'value' of patch 'one'",
      "template: templates/value.c.j2:1"]),
    ("2:24", "+bool device_get_realized(Object *obj, Error **errp)",
     ["spec: spec.yaml:52: change 'export' of patch 'two'",
      "template: none (make-non-static drops `static` from the line; the "
      "spec item is its source)"]),
    # git shows the inserted "##" one line earlier than the edit made it
    # (the next definition's own "##" follows): still the template's first
    ("2:41", "+##", ["spec: spec.yaml:65: change 'frob' of patch 'two'",
                     "template: templates/qapi.json.j2:1"]),
    ("2:45", "+##", ["spec: spec.yaml:65: change 'frob' of patch 'two'",
                     "template: templates/qapi.json.j2:5"]),
    ("2:47", "+", ["spec: spec.yaml:65: change 'frob' of patch 'two'",
                   "template: templates/qapi.json.j2:7"]),
])
def test_an_added_line_names_its_spec_item_and_template_line(
        traced, line, text, origin):
    head, *rest = answer(traced, line)
    name = "0001-qdev-one.patch" if line.startswith(("1:", "0001")) \
        else "0002-qdev-two.patch"
    assert head == f"{name}:{line.rpartition(':')[2]}: {text}"
    assert rest == origin


def test_context_and_removed_lines_name_their_hunk(traced):
    assert answer(traced, "1:34") == [
        "0001-qdev-one.patch:34: -    dc->hotpluggable = true;",
        "an upstream line, removed by spec.yaml:38: change 'value' of "
        "patch 'one'"]
    assert answer(traced, "1:31")[1:] == [
        "upstream context, in the hunk of hw/core/qdev.c made by",
        "  spec.yaml:31: change 'properties' of patch 'one'",
        "  spec.yaml:38: change 'value' of patch 'one'"]
    assert answer(traced, "2:48")[1:] == [
        "upstream context, in the hunk of qapi/qdev.json made by",
        "  spec.yaml:65: change 'frob' of patch 'two'"]
    assert answer(traced, "1:5")[1:] == [
        "the mail header or commit message of patch 'one' (spec.yaml:26)"]


def test_a_spec_item_lists_the_lines_it_wrote(traced):
    lines = ["spec.yaml:31: change 'properties' of patch 'one'"] + [
        f"0001-qdev-one.patch:{n}: {text}  (template: "
        f"templates/multi.c.j2:{t})" for n, text, t in [
            (22, "+    /* from the spec */", 2),
            (23, '+    object_class_property_add_bool(class, "first",', 4),
            (24, "+                                   NULL, NULL);", 5),
            (25, '+    object_class_property_add_bool(class, "second",', 4),
            (26, "+                                   NULL, NULL);", 5),
            (27, "+    /* realized */", 8)]]
    assert answer(traced, "--spec-item", "properties") == lines
    # any line of the item in the spec file, by its path's last components
    assert answer(traced, "trace/spec.yaml:33") == lines
    assert answer(traced, "spec.yaml:31") == lines


def test_a_left_out_item_and_a_template_line(traced):
    assert answer(traced, "templates/multi.c.j2:4") == [
        "templates/multi.c.j2:4: change 'properties'",
        '0001-qdev-one.patch:23: +    object_class_property_add_bool(class, '
        "\"first\",  (spec.yaml:31: change 'properties' of patch 'one')",
        '0001-qdev-one.patch:25: +    object_class_property_add_bool(class, '
        "\"second\",  (spec.yaml:31: change 'properties' of patch 'one')"]
    assert answer(traced, "multi.c.j2:10") == [
        "templates/multi.c.j2:10: change 'properties'",
        "no line of this series comes from this line"]


@pytest.mark.parametrize("args, message", [
    (["9:1"], "9: no such patch in {series} (patches 0001 to 0002)"),
    (["1:999"], "0001-qdev-one.patch:999: the file has lines 1 to 36"),
    (["1:x"], "1:x: expected PATCH:LINE (0009:123, 0009-name.patch:123) "
     "or FILE:LINE (a spec file or a template)"),
    (["nowhere.c:3"], "nowhere.c: neither a spec file nor a template of "
     "the series in {series}"),
    (["--spec-item", "nope"], "--spec-item nope: no such change in the "
     "spec of {series}"),
    ([], "explain: give PATCH:LINE, FILE:LINE or --spec-item ID (one of "
     "them)"),
])
def test_bad_input_is_one_line_and_exit_2(traced, args, message):
    proc = explain_cli(traced, *args, check=2)
    assert proc.stderr == \
        f"gen-series: error: {message.format(series=traced)}\n"
    assert proc.stdout == ""


def test_a_series_without_a_map_or_edited_since_is_refused(traced, tmp_path):
    copy = tmp_path / "series"
    shutil.copytree(traced, copy)
    patch = copy / "0001-qdev-one.patch"
    patch.write_text(patch.read_text().replace("first", "1st"))
    proc = explain_cli(copy, "1:22", check=2)
    assert proc.stderr == (f"gen-series: error: {patch}: changed since "
                           "generate wrote series-map.json: generate the "
                           "series again\n")
    (copy / "series-map.json").unlink()
    proc = explain_cli(copy, "1:22", check=2)
    assert proc.stderr == (f"gen-series: error: --series {copy}: no "
                           "series-map.json: generate the series again "
                           "(generate writes it)\n")


def test_a_multi_line_value_maps_to_its_tag_line():
    source = "first\n{{ text }}\n{% if x %}\nlast{% endif %}"
    marked = provenance.marked_source(source)
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    plain = env.from_string(source).render(text="a\nb", x=True) + "\n"
    assert provenance.template_lines(
        env.from_string(marked).render(text="a\nb", x=True), plain) == \
        [1, 2, 2, 4]
    source = "a\n{% if x %}\nb\n{% endif %}"
    assert provenance.template_lines(
        env.from_string(provenance.marked_source(source)).render(x=True),
        "a\nb\n") == [1, 3]
    # a marked rendering that is not the real one maps nothing
    assert provenance.template_lines("other\x1e1\x1f\n", "text\n") is None


# ---- the acceptance: every added line of the committed series -----------

def skeleton(template_line: str) -> re.Pattern:
    """A template line as a pattern: its Jinja tags match anything."""
    parts = provenance.TAG_RE.split(template_line.rstrip("\n"))
    return re.compile(".*".join(re.escape(p) for p in parts))


@pytest.mark.parametrize("release", list(RELEASES))
def test_every_added_line_of_the_committed_series_is_traced(release):
    """Each `+` line of patches/<release> resolves (through explain) to a
    spec item and the template line that wrote it, whose text it holds;
    a copy-file line to its data file's line, a make-non-static line to
    the spec item alone."""
    series = PROJECT / "patches" / release
    smap = explain.load(series)
    seen = 0
    for path in sorted(series.glob("[0-9][0-9][0-9][0-9]-*.patch")):
        if path.name.startswith("0000-"):
            continue
        for pf in unidiff.PatchSet.from_filename(str(path), encoding="utf-8"):
            for hunk in pf:
                for line in hunk:
                    if line.is_added:
                        _check_traced(smap, path.name, line)
                        seen += 1
    assert seen > 1000


def _check_traced(smap, name: str, line) -> None:
    where = f"{name}:{line.diff_line_no}"
    try:
        head, spec, source = explain.explain_line(smap, name,
                                                  line.diff_line_no)
    except GenError as e:
        raise AssertionError(f"{where}: {e}")
    assert head == f"{where}: +{line.value.rstrip(chr(10))}"
    m = re.fullmatch(r"spec: (specs/[\w-]+\.yaml):(\d+): change '([\w-]+)' "
                     r"of patch '[\w-]+'", spec)
    assert m, f"{where}: {spec}"
    change = smap.changes[m[3]]
    spec_text = (PROJECT / m[1]).read_text().splitlines()
    assert spec_text[int(m[2]) - 1].strip() == f"- id: {m[3]}", where
    text = line.value.rstrip("\n")
    if change["action"] == "make-non-static":
        assert source.startswith("template: none"), where
        assert not text.startswith("static"), where
        return
    kind, _, at = source.partition(": ")
    file, _, number = at.rpartition(":")
    lines = (PROJECT / file).read_text().splitlines(keepends=True)
    assert number.isdigit() and 1 <= int(number) <= len(lines), \
        f"{where}: {source}"
    if kind == "data":
        assert change["action"] == "copy-file" and file == change["data"]
        assert lines[int(number) - 1].rstrip("\n") == text, where
    else:
        assert kind == "template" and file == change["template"], where
        assert skeleton(lines[int(number) - 1]).search(text), \
            f"{where}: {text!r} is not from {source}"


def test_the_map_is_the_same_wherever_it_is_written(traced, minitree,
                                                     tmp_path):
    """From another directory, into another directory: the same bytes."""
    out = tmp_path / "elsewhere" / "series"
    subprocess.run([sys.executable, "-m", "generator", "-q", "generate",
                    "--spec", TRACE / "spec.yaml", "--templates",
                    TRACE / "templates", "--qemu", minitree, "--out", out],
                   cwd=tmp_path, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(PROJECT)})
    data = (out / "series-map.json").read_bytes()
    assert data == (traced / "series-map.json").read_bytes()
    assert str(tmp_path).encode() not in data
    assert str(PROJECT).encode() not in data
    assert "series-map.json" in (out / ".gen-series-manifest").read_text()


def test_a_map_gen_series_did_not_write_is_not_replaced(minitree, tmp_path):
    out = tmp_path / "series"
    out.mkdir()
    (out / "series-map.json").write_text("{}\n")
    proc = run_gen_series("-q", "generate", "--spec", TRACE / "spec.yaml",
                          "--templates", TRACE / "templates", "--qemu",
                          minitree, "--out", out, check=2)
    assert proc.stderr == (
        f"gen-series: error: --out {out}: series-map.json was not written "
        "by gen-series: move it away (or remove it) and run again; nothing "
        "was written\n")
    assert [p.name for p in out.iterdir()] == ["series-map.json"]


def test_the_map_names_the_changes_that_wrote_lines_of_a_file():
    """What `check` adds to an invariant's failure: the spec changes that
    wrote the function's lines in the patch git names (WrittenSeries
    reads them from the map); none for a patch edited since."""
    series = written.WrittenSeries.read(PROJECT / "patches" / "10.2.2")
    patch = series.dir / patch_file(series.dir, "arm-kvm-create-host-vcpu")
    added = written.parse(patch).added_at["target/arm/kvm.c"]
    everything = range(min(added), max(added) + 1)
    changes = series.changes_in(patch, "target/arm/kvm.c", everything)
    assert changes and all(
        series.series_map["changes"][c]["file"] == "target/arm/kvm.c"
        for c in changes)
    assert series.changes_in(patch, "target/arm/kvm.c", range(0)) == []
    assert f"change '{changes[0]}' (specs/" in \
        series.describe_changes(changes[:1])

