"""gen-series: render a declarative spec into a QEMU patch series.

The pipeline as folders; each imports only the base and the folders
above it in this list (tests/test_structure.py keeps it so):

    (base)    errors, source (SourceInfo), paths (project, ../shared,
              cache), gitops (every git call), qemutree (--qemu PATH ->
              a cached base repo), csyntax (C syntax trees), guest (the
              files of ../shared/guest)
    spec/     YAML -> the checked model; Jinja2 templates; the
              reference model
    output/   a written series: --out replaced whole, read back, its
              versions, recipients, two series compared
    generate/ the spec applied to a base: anchors, edits, the series,
              each line's provenance
    build/    git am, configure, ninja; QEMU's qtests; the expected ACPI
              tables
    kvm/      the series under real KVM on an emulated Arm host
    check/    `gen-series check`: is the series ready to send?
    review/   `gen-series drift` and `explain`: a spec on a new release,
              a line back to the spec
    cli, commands/  argparse (one module per command); the only place that
              prints errors and exits
"""
