"""Building a series: `gen-series build` and `gen-series tables`.

Entry points: `build.build` (git am onto a clean base, configure, ninja),
`build.cross_build`, `build.kvm_host_build`; `qtests.run_case` (QEMU's
qtests in a build dir); `tables.rebuild` (the expected ACPI tables).
"""
