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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import jinja2

from generator.errors import SpecError, ToolError
from generator.source import SourceInfo, confined, display_path
from generator.spec.load import Data, Node, load_spec
from generator.spec.refmodel import check_model_section
from generator.spec.shape import (
    ID_RE,
    check_id,
    check_keys,
    check_name,
    header_unsafe,
    in_item,
    items,
    key_at,
    one_line,
    string,
    tree_path,
)
from generator.spec.templates import make_env, render_string

# Where an anchor's scope may be: key in the spec -> what it names.
SCOPE_KINDS = ("function", "struct", "enum", "declaration", "qapi")

@dataclass(frozen=True)
class Anchor:
    scope_kind: str | None      # one of SCOPE_KINDS, or None for the whole file
    scope_name: str | None
    match: re.Pattern[str] | None   # a unique match inside the scope
    info: SourceInfo

    def describe(self) -> str:
        parts = []
        if self.scope_kind:
            parts.append(f"{self.scope_kind} '{self.scope_name}'")
        if self.match is not None:
            parts.append(f"match /{self.match.pattern}/")
        return " ".join(parts)


@dataclass(frozen=True)
class ActionNeeds:
    """What a change of one action must (and must not) carry."""
    anchor: bool                # needs 'anchor' (else it writes a file)
    template: bool              # needs 'template'
    source: bool = False        # needs 'source' (copy-file's bytes)
    match: bool = False         # its anchor needs a 'match'


# the actions (generate/edits.py HANDLERS holds the code of each)
ACTIONS = {
    "insert-before": ActionNeeds(anchor=True, template=True),
    "insert-after": ActionNeeds(anchor=True, template=True),
    "replace": ActionNeeds(anchor=True, template=True),
    "insert-at-start": ActionNeeds(anchor=True, template=True),
    "insert-at-end": ActionNeeds(anchor=True, template=True),
    "replace-match": ActionNeeds(anchor=True, template=True, match=True),
    "make-non-static": ActionNeeds(anchor=True, template=False),
    "create-file": ActionNeeds(anchor=False, template=True),
    "copy-file": ActionNeeds(anchor=False, template=False, source=True),
}

# invariant kind -> (required, optional) parameters; the checkers are
# check/invariants.py's CHECKERS
INVARIANT_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "call-order": (("file", "function", "first", "then"), ()),
    "calls-checked": (("file", "function", "calls"), ()),
    "call-after-diversion": (("file", "function", "call", "diverted-to"), ()),
    "declarations-defined-and-documented": ((), ("undocumented",)),
    "added-functions-used": ((), ()),
}

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


# ---- the spec's items -----------------------------------------------------

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
    node = in_item(node, item, at)
    check_keys(node, "'anchor'", (), SCOPE_KINDS + ("match",))
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
        pattern = string(node, "match")
        try:
            match = re.compile(pattern, re.MULTILINE)
        except re.error as e:
            raise SpecError(f"'match' is not a valid regular expression: {e}",
                            node.key_info["match"].at(item=item))
    kind = scopes[0] if scopes else None
    return Anchor(kind, string(node, kind) if kind else None, match,
                  node.info)


def _check_when(node: Node, probes: Mapping[str, Probe],
                item: str | None) -> Condition | None:
    if "when" not in node:
        return None
    text = string(node, "when").strip()
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
        node = in_item(node, f"change '{node['id']}' of patch '{patch_id}'")
    else:
        node = in_item(node, f"a change of patch '{patch_id}'", at)
    check_keys(node, "a change", ("id", "file", "action"),
                ("anchor", "template", "params", "when", "source"))
    item = node.info.item
    change_id = check_id(node, "id", seen, "change")
    action = string(node, "action")
    check_name(action, tuple(ACTIONS), "action", key_at(node, "action"))
    needs = ACTIONS[action]
    anchor_node = node.get("anchor")
    if needs.match and not (isinstance(anchor_node, Node)
                            and "match" in anchor_node):
        raise SpecError(f"action '{action}' needs an anchor with 'match'",
                        key_at(node, "action"))
    for key, needed in (("anchor", needs.anchor), ("template", needs.template),
                        ("source", needs.source)):
        if needed and key not in node:
            raise SpecError(f"action '{action}' needs '{key}'", node.info)
        if not needed and key in node:
            raise SpecError(f"action '{action}' takes no '{key}'",
                            key_at(node, key))
    anchor = _check_anchor(anchor_node, item, key_at(node, "anchor")) \
        if needs.anchor else None
    template = _check_template(node, "template", templates, item) \
        if needs.template else None
    return Change(change_id, tree_path(node, "file"), action, anchor,
                  template, _check_params(node, "params"),
                  _check_when(node, probes, item), node.info,
                  _template_path(node, "source") if "source" in node
                  else None)


def _template_path(node: Node, key: str) -> str:
    """A path under the templates directory (rendered later for a
    copy-file source): relative, without '..'."""
    text = string(node, key)
    if Path(text).is_absolute() or ".." in Path(text).parts:
        raise SpecError(f"'{key}' must be a path relative to the templates "
                        f"directory, without '..', not '{text}'",
                        key_at(node, key))
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
        node = in_item(node, f"patch '{node['id']}'")
    check_keys(node, "a patch", ("id", "subject", "message", "changes"),
                ("when", "message-template"), at)
    patch_id = check_id(node, "id", seen_patches, "patch")
    changes = node["changes"]
    if not isinstance(changes, list) or not changes:
        raise SpecError("'changes' must be a non-empty list",
                        node.key_info["changes"].at(item=node.info.item))
    return Patch(patch_id, one_line(node, "subject"),
                 string(node, "message").rstrip("\n"),
                 tuple(_check_change(c, patch_id, probes, templates,
                                     seen_changes, key_at(node, "changes"))
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
        body = in_item(body, item)
        check_keys(body, item, ("file", "anchor"))
        probes[name] = Probe(name, tree_path(body, "file"),
                             _check_anchor(body["anchor"], item,
                                           key_at(body, "anchor")), body.info)
    return probes


# git's date parser keeps the years 1970-2099 only: it reads 0001 as 2001
DATE_YEARS = range(1970, 2100)


def _check_date(node: Node) -> str:
    text = string(node, "date")
    try:
        date = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise SpecError(f"'date' must be an ISO 8601 date and time with a "
                        f"UTC offset, not '{text}'", key_at(node, "date"))
    if date.tzinfo is None:
        raise SpecError("'date' needs a UTC offset (e.g. +00:00)",
                        key_at(node, "date"))
    if date.year not in DATE_YEARS or \
            date.astimezone(datetime.timezone.utc).year not in DATE_YEARS:
        raise SpecError(f"'date' must be in the years {DATE_YEARS.start} to "
                        f"{DATE_YEARS.stop - 1} (what git can write), not "
                        f"'{text}'", key_at(node, "date"))
    return text


IDENTITY_RE = re.compile(r"^[^<>\n]+ <[^<>@\s]+@[^<>\s]+>$")


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
    node = in_item(node, "series", at)
    for key in ("author", "signed-off-by"):
        if key in node:
            raise SpecError(
                f"'{key}' is not part of the spec: the patches carry the "
                "identity of whoever generates them (git config user.name "
                "and user.email, or --author)",
                node.key_info[key].at(item="series"))
    check_keys(node, "'series'",
                ("name", "subject-prefix", "date", "cover"), ("version",))
    version = node.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) \
            or version < 1:
        raise SpecError("'version' must be a positive integer",
                        node.key_info["version"].at(item="series"))
    cover = in_item(node["cover"], "series cover", key_at(node, "cover"))
    check_keys(cover, "'cover'", ("subject", "body"))
    return dict(name=one_line(node, "name"),
                subject_prefix=one_line(node, "subject-prefix"),
                version=version, author="", date=_check_date(node),
                signoffs=(),
                cover_subject=one_line(cover, "subject"),
                cover_body=string(cover, "body").rstrip("\n"))


def _check_invariant(node: Data, params: Mapping[str, Data],
                     seen: dict[str, SourceInfo], env: jinja2.Environment,
                     at: SourceInfo) -> Invariant:
    if isinstance(node, Node) and isinstance(node.get("id"), str):
        node = in_item(node, f"invariant '{node['id']}'")
    if not isinstance(node, Node):
        raise SpecError("an invariant must be a mapping", at)
    ident = check_id(node, "id", seen, "invariant")
    kind = string(node, "kind")
    check_name(kind, tuple(INVARIANT_KINDS), "invariant kind",
                key_at(node, "kind"), plural="kinds")
    required, optional = INVARIANT_KINDS[kind]
    check_keys(node, f"a '{kind}' invariant", ("id", "kind") + required,
                optional)
    values: dict[str, InvariantValue] = {}
    for key in required + tuple(k for k in optional if k in node):
        value = node[key]
        where = key_at(node, key)
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
                        key_at(node, "file"))
    return Invariant(ident, kind, file, values, node.info)


def load_series(path: Path, templates: Path | None = None) -> Series:
    """Load and check a spec; raise SpecError naming file, line and item."""
    path = Path(path)
    top, *included = load_spec(path)
    check_keys(top, "a spec", ("series",),
                ("params", "probes", "include", "patches", "invariants",
                 "model", "checkpatch-accepted-warnings"))
    templates = templates or path.parent.parent / "templates"
    meta = _check_series_meta(top["series"], key_at(top, "series"))
    probes = _check_probes(top)
    # (item, where its list is), so that a scalar item is located too
    raw_patches: list[tuple[Data, SourceInfo]] = []
    raw_invariants: list[tuple[Data, SourceInfo]] = []
    models: list[Node] = []
    for sub in included:
        check_keys(sub, "an included spec", (),
                    ("patches", "invariants", "model"))
    for node in [top] + included:
        raw_patches += [(p, key_at(node, "patches"))
                        for p in items(node, "patches")]
        raw_invariants += [(i, key_at(node, "invariants"))
                           for i in items(node, "invariants")]
        if "model" in node:
            models.append(check_model_section(in_item(node["model"], "model",
                                           key_at(node, "model"))))
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
        node = in_item(node, f"accepted checkpatch warning '{node.get('match')}'")
        check_keys(node, "an accepted warning", ("match", "reason"))
        try:
            pattern = re.compile(string(node, "match"))
        except re.error as e:
            raise SpecError(f"'match' is not a valid regular expression: {e}",
                            node.key_info["match"].at(item=node.info.item))
        out.append((pattern, string(node, "reason")))
    return tuple(out)
