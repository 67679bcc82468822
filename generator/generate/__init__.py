"""The spec applied to a base tree: `gen-series generate`.

Entry point: `series.generate(series, base, out, ...)`.  `anchors.resolve`
finds a change's place in a C or QAPI file, `edits.apply_change` puts the
rendered text there, `provenance.Tracker` remembers which change and
template line wrote each line (series-map.json).
"""
