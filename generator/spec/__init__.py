"""The spec: YAML with the line of everything, checked into typed objects.

Entry points: `model.load_series(path, templates)` -> `Series` (load.py
reads the YAML and its includes, model.py checks it); `templates.make_env`
and `templates.render` (Jinja2 for C); `refmodel.load_model` (the spec's
`model:` state machine).
"""
