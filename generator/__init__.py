"""gen-series: render a declarative spec into a QEMU patch series.

The pipeline, one module per stage:

    specload  YAML text -> plain data carrying SourceInfo
    model     data -> checked Series/Patch/Change objects
    qemutree  --qemu PATH (git tree, tarball, .dsc) -> a cached base repo
    csyntax   C syntax trees (tree-sitter), shared and incremental
    anchors   find functions, structs, statements, QAPI definitions in C/QAPI
    render    Jinja2 templates -> text
    edits     rendered text placed at resolved anchors
    series    the edited files per patch -> commits -> git format-patch
    gitops    every git call: scratch repos, fast-import, format-patch, am
    outdir    --out replaced whole (staging, journal, manifest)
    patchfiles  a written series read back, each patch parsed once
    build     git am onto a clean base -> configure -> ninja
    check     the steps of `gen-series check`, run from a registry
    drift, rangediff  a spec on a new release; two series compared
"""
