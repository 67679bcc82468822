"""The spec's model: shape checks (QAPI expr.py style) and typed objects.

A spec is one YAML file, optionally pulling in more files of patches:

    series:   metadata: subject prefix, version, date, cover letter (the
              author is whoever generates the series: with_identity())
    params:   names the series introduces, handed to every template
    probes:   named facts about the target tree (an anchor that may or may
              not resolve); changes select alternatives with `when:`
    include:  further files, each with a `patches:` list, appended in order
    patches:  ordered patches, each a list of changes

See specs/README.md for the full reference.
"""

import dataclasses
import datetime
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import jinja2

from generator.anchors import SCOPE_KINDS, Anchor
from generator.edits import ACTIONS
from generator.errors import SpecError, ToolError
from generator.render import make_env, render_string
from generator.source import SourceInfo, confined, display_path
from generator.specload import Data, Node, load_spec

# invariant kind -> (required, optional) parameters; the checkers are
# check/invariants.py's CHECKERS
INVARIANT_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "call-order": (("file", "function", "first", "then"), ()),
    "calls-checked": (("file", "function", "calls"), ()),
    "call-after-diversion": (("file", "function", "call", "diverted-to"), ()),
    "declarations-defined-and-documented": ((), ("undocumented",)),
    "added-functions-used": ((), ()),
}

ID_RE = re.compile(r"^[a-z][a-z0-9-]*$")


@dataclass(frozen=True)
class Condition:
    probe: str
    negate: bool

    def holds(self, facts: Mapping[str, bool]) -> bool:
        return facts[self.probe] != self.negate


@dataclass(frozen=True)
class Probe:
    name: str
    file: str
    anchor: Anchor
    info: SourceInfo


@dataclass(frozen=True)
class Change:
    id: str
    file: str
    action: str
    anchor: Anchor | None
    template: str | None
    params: dict[str, Data]     # snake_case keys, for the template
    when: Condition | None
    info: SourceInfo
    source: str | None = None   # copy-file: a template-dir path (Jinja2)


@dataclass(frozen=True)
class Patch:
    id: str
    subject: str
    message: str
    changes: tuple[Change, ...]
    when: Condition | None
    info: SourceInfo
    message_template: str | None = None     # rendered, appended to message


# an invariant's parameter, its names rendered
InvariantValue = str | list[str]


@dataclass(frozen=True)
class Invariant:
    id: str
    kind: str
    file: str | None
    # kebab-case keys, names rendered from params
    params: dict[str, InvariantValue]
    info: SourceInfo

    # Any: the kind's checker knows which of a string or a list it takes
    def __getitem__(self, key: str) -> Any:
        return self.params[key]


@dataclass(frozen=True)
class Series:
    name: str
    subject_prefix: str
    version: int
    author: str             # "" until with_identity()
    date: str
    signoffs: tuple[str, ...]
    cover_subject: str
    cover_body: str
    params: dict[str, Data]
    probes: dict[str, Probe]
    patches: tuple[Patch, ...]
    templates: Path
    invariants: tuple[Invariant, ...] = ()
    model: Node | None = None   # the reference model's section, raw
    # checkpatch warnings the series accepts: (compiled regex, reason)
    accepted_warnings: tuple[tuple[re.Pattern[str], str], ...] = ()
    info: SourceInfo | None = field(compare=False, default=None)


class SeriesMeta(TypedDict):
    """The `series:` section's part of a Series."""
    name: str
    subject_prefix: str
    version: int
    author: str
    date: str
    signoffs: tuple[str, ...]
    cover_subject: str
    cover_body: str


# ---- shape checks ---------------------------------------------------------

def _check_keys(node: Data, what: str, required: tuple[str, ...],
                optional: tuple[str, ...] = (),
                at: SourceInfo | None = None) -> None:
    """`at` locates `node` when it is not a mapping (a scalar keeps no line:
    its parent's key does)."""
    if not isinstance(node, Node):
        raise SpecError(f"{what} must be a mapping", _info_of(node) or at)
    allowed = required + optional
    for key in node:
        _check_name(key, allowed, "key", node.key_info[key].at(
            item=node.info.item))
    missing = [k for k in required if k not in node]
    if missing:
        raise SpecError(f"missing key '{missing[0]}'", node.info)


def _check_name(name: Data, valid: tuple[str, ...], what: str,
                info: SourceInfo,
                plural: str | None = None) -> None:
    """QAPI's "unknown X; valid Xs are ..." for every name a spec picks
    from a fixed set (keys, actions, invariant kinds, model fields)."""
    if name not in valid:
        raise SpecError(f"unknown {what} '{name}'; valid "
                        f"{plural or what + 's'} are "
                        + ", ".join(f"'{v}'" for v in valid), info)


def _info_of(node: Data) -> SourceInfo | None:
    info: SourceInfo | None = getattr(node, "info", None)
    return info


def _at(node: Node, key: str) -> SourceInfo:
    """Where `key` of `node` is, in the item `node` describes."""
    return node.key_info.get(key, node.info).at(item=node.info.item)


def _str(node: Node, key: str, default: str | None = None) -> str:
    value = node.get(key, default)
    if not isinstance(value, str) or (not value and default is None):
        raise SpecError(f"'{key}' must be a non-empty string", _at(node, key))
    return value


def _line(node: Node, key: str) -> str:
    """A one-line text that git keeps as written: a subject (git would
    take a blank subject's next paragraph instead, and a newline would
    split the subject)."""
    text = _str(node, key)
    if not text.strip():
        raise SpecError(f"'{key}' must not be blank", _at(node, key))
    if len(text.splitlines()) > 1 or text.endswith(("\n", "\r")):
        raise SpecError(f"'{key}' must be one line", _at(node, key))
    if (bad := header_unsafe(text)) is not None:
        raise SpecError(f"'{key}' holds {bad!r}, which a mail header may "
                        "not hold", _at(node, key))
    if text != text.strip():
        raise SpecError(f"'{key}' must not start or end with blanks "
                        "(git strips them)", _at(node, key))
    return text


def _list(node: Node, key: str) -> list[Data]:
    value = node.get(key, [])
    if not isinstance(value, list):
        raise SpecError(f"'{key}' must be a list", _at(node, key))
    return value


def _tree_path(node: Node, key: str) -> str:
    """A path in the QEMU tree: relative, without '..', so that no spec
    reads or writes outside the tree (symbolic links are refused when
    the tree is read, edits.tree_file())."""
    text = _str(node, key)
    parts = Path(text).parts
    if Path(text).is_absolute() or ".." in parts or "\0" in text or \
            not parts or text.endswith("/"):
        raise SpecError(f"'{key}' must be a file's path relative to the "
                        f"QEMU tree, without '..', not '{text}'",
                        _at(node, key))
    return text


def _in(node: Data, item: str | None,
        at: SourceInfo | None = None) -> Node:
    """Tag a mapping (for messages) with the spec item it describes; `at`
    locates a value that is not a mapping."""
    if not isinstance(node, Node):
        raise SpecError(f"{item} must be a mapping",
                        SourceInfo(at.file, at.line) if at else None)
    node.info = node.info.at(item=item)
    return node


def _check_id(node: Node, key: str, seen: dict[str, SourceInfo],
              kind: str) -> str:
    ident = _str(node, key)
    if not ID_RE.match(ident):
        raise SpecError(f"{kind} id '{ident}' must be lower-case letters, "
                        "digits and '-'", node.key_info[key])
    if ident in seen:
        raise SpecError(f"duplicate {kind} id '{ident}' (first defined at "
                        f"{seen[ident]})", node.key_info[key])
    seen[ident] = node.key_info[key]
    return ident


def _check_params(node: Node, key: str) -> dict[str, Data]:
    params = node.get(key, Node())
    if not isinstance(params, Node):    # every mapping YAML gives is one
        raise SpecError(f"'{key}' must be a mapping", node.key_info[key])
    out = {}
    for name, value in params.items():
        if not isinstance(name, str) or not re.match(r"^[a-z][a-z0-9-]*$", name):
            raise SpecError(f"parameter name '{name}' must be kebab-case",
                            params.key_info[name])
        out[name.replace("-", "_")] = value
    return out


def _check_anchor(node: Data, item: str | None, at: SourceInfo) -> Anchor:
    node = _in(node, item, at)
    _check_keys(node, "'anchor'", (), SCOPE_KINDS + ("match",))
    scopes = [k for k in SCOPE_KINDS if k in node]
    if len(scopes) > 1:
        raise SpecError("an anchor names one scope, not "
                        + " and ".join(f"'{k}'" for k in scopes), node.info)
    if not scopes and "match" not in node:
        raise SpecError("an anchor needs a scope ("
                        + ", ".join(f"'{k}'" for k in SCOPE_KINDS)
                        + ") or 'match'", node.info)
    match = None
    if "match" in node:
        pattern = _str(node, "match")
        try:
            match = re.compile(pattern, re.MULTILINE)
        except re.error as e:
            raise SpecError(f"'match' is not a valid regular expression: {e}",
                            node.key_info["match"].at(item=item))
    kind = scopes[0] if scopes else None
    return Anchor(kind, _str(node, kind) if kind else None, match,
                  node.info)


def _check_when(node: Node, probes: Mapping[str, Probe],
                item: str | None) -> Condition | None:
    if "when" not in node:
        return None
    text = _str(node, "when").strip()
    negate = text.startswith("not ")
    name = text[4:].strip() if negate else text
    if name not in probes:
        raise SpecError(f"'when' names unknown probe '{name}'",
                        node.key_info["when"].at(item=item))
    return Condition(name, negate)


def _check_change(node: Data, patch_id: str, probes: Mapping[str, Probe],
                  templates: Path, seen: dict[str, SourceInfo],
                  at: SourceInfo) -> Change:
    if isinstance(node, Node) and isinstance(node.get("id"), str):
        _in(node, f"change '{node['id']}' of patch '{patch_id}'")
    else:
        _in(node, f"a change of patch '{patch_id}'", at)
    _check_keys(node, "a change", ("id", "file", "action"),
                ("anchor", "template", "params", "when", "source"))
    item = node.info.item
    change_id = _check_id(node, "id", seen, "change")
    action = _str(node, "action")
    _check_name(action, tuple(ACTIONS), "action", _at(node, "action"))
    needs = ACTIONS[action]
    anchor_node = node.get("anchor")
    if needs.match and not (isinstance(anchor_node, Node)
                            and "match" in anchor_node):
        raise SpecError(f"action '{action}' needs an anchor with 'match'",
                        _at(node, "action"))
    for key, needed in (("anchor", needs.anchor), ("template", needs.template),
                        ("source", needs.source)):
        if needed and key not in node:
            raise SpecError(f"action '{action}' needs '{key}'", node.info)
        if not needed and key in node:
            raise SpecError(f"action '{action}' takes no '{key}'",
                            _at(node, key))
    anchor = _check_anchor(anchor_node, item, _at(node, "anchor")) \
        if needs.anchor else None
    template = _check_template(node, "template", templates, item) \
        if needs.template else None
    return Change(change_id, _tree_path(node, "file"), action, anchor,
                  template, _check_params(node, "params"),
                  _check_when(node, probes, item), node.info,
                  _template_path(node, "source") if "source" in node
                  else None)


def _template_path(node: Node, key: str) -> str:
    """A path under the templates directory (rendered later for a
    copy-file source): relative, without '..'."""
    text = _str(node, key)
    if Path(text).is_absolute() or ".." in Path(text).parts:
        raise SpecError(f"'{key}' must be a path relative to the templates "
                        f"directory, without '..', not '{text}'",
                        _at(node, key))
    return text


def _check_template(node: Node, key: str, templates: Path,
                    item: str | None) -> str:
    template = _template_path(node, key)
    path = confined(templates, template)
    if path is None:
        raise SpecError(f"template '{template}' is outside "
                        f"{display_path(templates)}/ (a symbolic link?)",
                        node.key_info[key].at(item=item))
    if not path.is_file():
        raise SpecError(f"template '{template}' not found in "
                        f"{display_path(templates)}/",
                        node.key_info[key].at(item=item))
    return template


def _check_patch(node: Data, probes: Mapping[str, Probe], templates: Path,
                 seen_patches: dict[str, SourceInfo],
                 seen_changes: dict[str, SourceInfo],
                 at: SourceInfo) -> Patch:
    if isinstance(node, Node) and isinstance(node.get("id"), str):
        _in(node, f"patch '{node['id']}'")
    _check_keys(node, "a patch", ("id", "subject", "message", "changes"),
                ("when", "message-template"), at)
    patch_id = _check_id(node, "id", seen_patches, "patch")
    changes = node["changes"]
    if not isinstance(changes, list) or not changes:
        raise SpecError("'changes' must be a non-empty list",
                        node.key_info["changes"].at(item=node.info.item))
    return Patch(patch_id, _line(node, "subject"),
                 _str(node, "message").rstrip("\n"),
                 tuple(_check_change(c, patch_id, probes, templates,
                                     seen_changes, _at(node, "changes"))
                       for c in changes),
                 _check_when(node, probes, node.info.item), node.info,
                 _check_template(node, "message-template", templates,
                                 node.info.item)
                 if "message-template" in node else None)


def _check_probes(node: Node) -> dict[str, Probe]:
    probes = {}
    raw = node.get("probes", Node())
    if not isinstance(raw, Node):
        raise SpecError("'probes' must be a mapping", node.key_info["probes"])
    for name, body in raw.items():
        item = f"probe '{name}'"
        if not isinstance(name, str) or not ID_RE.match(name):
            raise SpecError("probe names are lower-case letters, digits, '-'",
                            raw.key_info[name])
        if not isinstance(body, Node):
            raise SpecError(f"{item} must be a mapping", raw.key_info[name])
        _in(body, item)
        _check_keys(body, item, ("file", "anchor"))
        probes[name] = Probe(name, _tree_path(body, "file"),
                             _check_anchor(body["anchor"], item,
                                           _at(body, "anchor")), body.info)
    return probes


# git's date parser keeps the years 1970-2099 only: it reads 0001 as 2001
DATE_YEARS = range(1970, 2100)


def _check_date(node: Node) -> str:
    text = _str(node, "date")
    try:
        date = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise SpecError(f"'date' must be an ISO 8601 date and time with a "
                        f"UTC offset, not '{text}'", _at(node, "date"))
    if date.tzinfo is None:
        raise SpecError("'date' needs a UTC offset (e.g. +00:00)",
                        _at(node, "date"))
    if date.year not in DATE_YEARS or \
            date.astimezone(datetime.timezone.utc).year not in DATE_YEARS:
        raise SpecError(f"'date' must be in the years {DATE_YEARS.start} to "
                        f"{DATE_YEARS.stop - 1} (what git can write), not "
                        f"'{text}'", _at(node, "date"))
    return text


IDENTITY_RE = re.compile(r"^[^<>\n]+ <[^<>@\s]+@[^<>\s]+>$")


# what a mail header's display name or address may not hold: control
# characters (CR, NEL, ESC, ...), line and paragraph separators, text
# direction overrides (they make the name read otherwise), and the
# surrogates Python makes of bytes that are not UTF-8
BIDI_CONTROLS = set("\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                    "\u2066\u2067\u2068\u2069")


def header_unsafe(text: str) -> str | None:
    """The first character of `text` that must not go into a mail header
    (From:, To:, Cc:, a trailer), or None."""
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Cs") or \
                ch in BIDI_CONTROLS:
            return ch
    return None


def check_identity(identity: str, origin: str) -> str:
    """'Name <email>', as git and the DCO's Signed-off-by want it: an
    RFC 5322 display name and address on one line, nothing a mail header
    or trailer could be injected with."""
    bad = header_unsafe(identity)
    if bad is not None:
        raise ToolError(f"{origin}: {identity!r} holds {bad!r} "
                        f"(U+{ord(bad):04X}), which no name or address in a "
                        "mail header may hold")
    if not IDENTITY_RE.match(identity) or identity != identity.strip():
        raise ToolError(f"{origin}: {identity!r} is not 'Name <email>'")
    return identity


def with_identity(series: "Series", identity: str) -> "Series":
    """The series authored and signed off by `identity`."""
    return dataclasses.replace(series, author=identity,
                               signoffs=(identity,))


def _check_series_meta(node: Data, at: SourceInfo) -> SeriesMeta:
    _in(node, "series", at)
    for key in ("author", "signed-off-by"):
        if key in node:
            raise SpecError(
                f"'{key}' is not part of the spec: the patches carry the "
                "identity of whoever generates them (git config user.name "
                "and user.email, or --author)",
                node.key_info[key].at(item="series"))
    _check_keys(node, "'series'",
                ("name", "subject-prefix", "date", "cover"), ("version",))
    version = node.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) \
            or version < 1:
        raise SpecError("'version' must be a positive integer",
                        node.key_info["version"].at(item="series"))
    cover = _in(node["cover"], "series cover", _at(node, "cover"))
    _check_keys(cover, "'cover'", ("subject", "body"))
    return dict(name=_line(node, "name"),
                subject_prefix=_line(node, "subject-prefix"),
                version=version, author="", date=_check_date(node),
                signoffs=(),
                cover_subject=_line(cover, "subject"),
                cover_body=_str(cover, "body").rstrip("\n"))


def _check_invariant(node: Data, params: Mapping[str, Data],
                     seen: dict[str, SourceInfo], env: jinja2.Environment,
                     at: SourceInfo) -> Invariant:
    if isinstance(node, Node) and isinstance(node.get("id"), str):
        _in(node, f"invariant '{node['id']}'")
    if not isinstance(node, Node):
        raise SpecError("an invariant must be a mapping", at)
    ident = _check_id(node, "id", seen, "invariant")
    kind = _str(node, "kind")
    _check_name(kind, tuple(INVARIANT_KINDS), "invariant kind",
                _at(node, "kind"), plural="kinds")
    required, optional = INVARIANT_KINDS[kind]
    _check_keys(node, f"a '{kind}' invariant", ("id", "kind") + required,
                optional)
    values: dict[str, InvariantValue] = {}
    for key in required + tuple(k for k in optional if k in node):
        value = node[key]
        where = _at(node, key)
        if isinstance(value, list) and \
                all(isinstance(v, str) for v in value):
            value = [render_string(env, v, params, where) for v in value]
        elif isinstance(value, str):
            value = render_string(env, value, params, where)
        else:
            raise SpecError(f"'{key}' must be a string or a list of strings",
                            where)
        values[key] = value
    file = values.get("file")
    if isinstance(file, list):
        raise SpecError("'file' must be a string (one file)",
                        _at(node, "file"))
    return Invariant(ident, kind, file, values, node.info)


def load_series(path: Path, templates: Path | None = None) -> Series:
    """Load and check a spec; raise SpecError naming file, line and item."""
    path = Path(path)
    top, *included = load_spec(path)
    _check_keys(top, "a spec", ("series",),
                ("params", "probes", "include", "patches", "invariants",
                 "model", "checkpatch-accepted-warnings"))
    templates = templates or path.parent.parent / "templates"
    meta = _check_series_meta(top["series"], _at(top, "series"))
    probes = _check_probes(top)
    # (item, where its list is), so that a scalar item is located too
    raw_patches: list[tuple[Data, SourceInfo]] = []
    raw_invariants: list[tuple[Data, SourceInfo]] = []
    models: list[Node] = []
    for sub in included:
        _check_keys(sub, "an included spec", (),
                    ("patches", "invariants", "model"))
    for node in [top] + included:
        raw_patches += [(p, _at(node, "patches"))
                        for p in _list(node, "patches")]
        raw_invariants += [(i, _at(node, "invariants"))
                           for i in _list(node, "invariants")]
        if "model" in node:
            models.append(_check_model(_in(node["model"], "model",
                                           _at(node, "model"))))
    if len(models) > 1:
        raise SpecError("the spec has a second 'model' section "
                        f"(the first is at {models[0].info})", models[1].info)
    if not raw_patches:
        raise SpecError("the spec has no patches", top.info)
    seen_patches: dict[str, SourceInfo] = {}
    seen_changes: dict[str, SourceInfo] = {}
    patches = tuple(_check_patch(p, probes, templates, seen_patches,
                                 seen_changes, at) for p, at in raw_patches)
    params = _check_params(top, "params")
    seen_invariants: dict[str, SourceInfo] = {}
    env = make_env(templates)
    invariants = tuple(_check_invariant(i, params, seen_invariants, env, at)
                       for i, at in raw_invariants)
    return Series(params=params, probes=probes, patches=patches,
                  templates=templates, invariants=invariants,
                  model=models[0] if models else None,
                  accepted_warnings=_check_accepted_warnings(top),
                  info=top.info, **meta)


def _mapping(node: Node, key: str) -> Node:
    value = node.get(key, Node())
    if not isinstance(value, Node):
        raise SpecError(f"'{key}' must be a mapping", _at(node, key))
    if not hasattr(value, "info"):     # the empty default
        value.info, value.key_info = node.info, {}
    value.info = value.info.at(item=node.info.item)
    return value


def _expression(node: Node, key: str) -> None:
    """A model expression's text (compiled by refmodel.py, which names
    its syntax errors with this line)."""
    value = node[key]
    if not isinstance(value, (str, bool, int)) or value == "":
        raise SpecError(f"'{key}' must be an expression (a string)",
                        _at(node, key))


def _check_model(node: Node) -> Node:
    """The shape of the `model:` section, which refmodel.py interprets:
    `fields` (name -> values), `init` (field -> expression), `actions`
    (name -> refuse/set/machine), `invariants` and `step-invariants`
    (name -> expression).  The raw Node is kept for refmodel."""
    _check_keys(node, "'model'", ("fields", "init", "actions"),
                ("invariants", "step-invariants"))
    fields = _mapping(node, "fields")
    for name, values in fields.items():
        if not isinstance(name, str) or not ID_RE.match(name):
            raise SpecError(f"model field '{name}' must be lower-case "
                            "letters, digits and '-'", _at(fields, name))
        if not isinstance(values, list) or not values:
            raise SpecError(f"model field '{name}' must list its values",
                            _at(fields, name))
    init = _mapping(node, "init")
    for name in init:
        _check_name(name, tuple(fields), "field", _at(init, name))
        _expression(init, name)
    for name in fields:
        if name not in init:
            raise SpecError(f"'init' does not give field '{name}'",
                            _at(node, "init"))
    actions = _mapping(node, "actions")
    for name, body in actions.items():
        item = f"model action '{name}'"
        body = _in(body, item, _at(actions, name))
        _check_keys(body, item, ("set",), ("refuse", "machine"))
        if not isinstance(body.get("machine", False), bool):
            raise SpecError("'machine' must be true or false",
                            _at(body, "machine"))
        effects = _in(body["set"], item, _at(body, "set"))
        for field_name in effects:
            _check_name(field_name, tuple(fields), "field",
                        _at(effects, field_name))
            _expression(effects, field_name)
        for refusal in _list(body, "refuse"):
            refusal = _in(refusal, item, _at(body, "refuse"))
            _check_keys(refusal, "a refusal", ("if", "error"))
            _expression(refusal, "if")
            _str(refusal, "error")
    for key in ("invariants", "step-invariants"):
        group = _mapping(node, key)
        for name in group:
            _expression(group, name)
    return node


def _check_accepted_warnings(
        top: Node) -> tuple[tuple[re.Pattern[str], str], ...]:
    key = "checkpatch-accepted-warnings"
    raw = top.get(key, [])
    if not isinstance(raw, list):
        raise SpecError(f"'{key}' must be a list", top.key_info[key])
    out = []
    for node in raw:
        if not isinstance(node, Node):
            raise SpecError(f"'{key}' lists mappings with 'match' and "
                            "'reason'", top.key_info[key])
        _in(node, f"accepted checkpatch warning '{node.get('match')}'")
        _check_keys(node, "an accepted warning", ("match", "reason"))
        try:
            pattern = re.compile(_str(node, "match"))
        except re.error as e:
            raise SpecError(f"'match' is not a valid regular expression: {e}",
                            node.key_info["match"].at(item=node.info.item))
        out.append((pattern, _str(node, "reason")))
    return tuple(out)
