"""A written series: the files `generate` puts in --out, and what reads
them back.

Entry points: `outdir.replace_series` (--out replaced whole: staging,
journal, manifest); `written.WrittenSeries` (a written series read back:
patches, cover letter, base commit, version, change-id, series-map.json;
`written.parse` parses a patch once); `versions` (-v,
change-id, "Changes in vN"); `recipients.add_recipients`
(--to-maintainers); `rangediff.compare` (`gen-series diff`).
"""
