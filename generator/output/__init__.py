"""A written series: the files `generate` puts in --out, and what reads
them back.

Entry points: `outdir.replace_series` (--out replaced whole: staging,
journal, manifest); `patchfiles.series_files` / `patchfiles.parse` (a
written series read back, each patch parsed once); `versions` (-v,
change-id, "Changes in vN"); `recipients.add_recipients`
(--to-maintainers); `rangediff.compare` (`gen-series diff`).
"""
