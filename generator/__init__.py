"""gen-series: render a declarative spec into a QEMU patch series.

The pipeline, one module per stage:

    specload  YAML text -> plain data carrying SourceInfo
    model     data -> checked Series/Patch/Change objects
    qemutree  --qemu PATH (git tree, tarball, .dsc) -> a cached base repo
    anchors   find functions, structs, statements, QAPI definitions in C/QAPI
    render    Jinja2 templates -> text
    edits     rendered text placed at resolved anchors
    series    commits in a scratch clone -> git format-patch
    build     git am onto a clean base -> configure -> ninja
"""
