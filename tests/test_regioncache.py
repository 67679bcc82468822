"""The anchor resolutions `generate` keeps between runs
(generator/generate/regioncache.py): a warm run writes the same series as
a cold one, and a damaged cache is ignored, never trusted."""

import json

from conftest import PROJECT, run_gen_series

MINI_SPEC = PROJECT / "tests" / "fixtures" / "mini-spec.yaml"
MINI_TEMPLATES = PROJECT / "tests" / "spec-errors" / "templates"


def generate(qemu, out):
    run_gen_series("-q", "generate", "--spec", MINI_SPEC, "--templates",
                   MINI_TEMPLATES, "--qemu", qemu, "--out", out, check=0)
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())
            if p.is_file()}


def cache_files(cache):
    return sorted((cache / "anchors").glob("*.json"))


def test_a_warm_run_writes_the_same_series(minitree, tmp_path, monkeypatch):
    monkeypatch.setenv("GEN_SERIES_CACHE", str(tmp_path / "cache"))
    cold = generate(minitree, tmp_path / "cold")
    [cache] = cache_files(tmp_path / "cache")
    entries = json.loads(cache.read_text())
    assert entries and all(len(e) == 2 for e in entries.values())
    before = cache.stat().st_mtime_ns
    assert generate(minitree, tmp_path / "warm") == cold
    # every entry was used: the file is not written again
    assert cache.stat().st_mtime_ns == before


def test_a_damaged_cache_is_ignored(minitree, tmp_path, monkeypatch):
    monkeypatch.setenv("GEN_SERIES_CACHE", str(tmp_path / "cache"))
    reference = generate(minitree, tmp_path / "reference")
    [cache] = cache_files(tmp_path / "cache")
    good = json.loads(cache.read_text())
    # every region moved by a line (its checksum no longer fits), every
    # missing anchor found: a trusted entry would change the series
    wrong = {}
    for key, (value, checksum) in good.items():
        if value[0] == "region":
            value = ["region", value[1] + 1, value[2] + 1, *value[3:]]
        else:
            value = ["region", 0, 1, None, None]
        wrong[key] = [value, checksum]
    for damage in (json.dumps(wrong), "{not json", json.dumps([1, 2]),
                   json.dumps({k: [["region", "0", 1, None, None], c]
                               for k, (_, c) in good.items()})):
        cache.write_text(damage)
        assert generate(minitree, tmp_path / "out") == reference, damage
        # and the run put the good entries back
        assert json.loads(cache.read_text()) == good
