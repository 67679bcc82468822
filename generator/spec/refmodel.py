"""The reference model: interprets the `model:` state machine of the spec.

A machine state is a tuple of vCPU states (named tuples of the spec's
fields); actions are pure functions from a state to a new state or a
refusal.  `explore()` visits every sequence of actions up to a depth and
checks the invariants after each step; a violation comes back with the
shortest sequence of actions that reaches it.
"""

from collections import deque, namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import CodeType
from typing import Protocol, cast

from generator.errors import SpecError
from generator.source import SourceInfo
from generator.spec.load import Data, Node, load_spec
from generator.spec.shape import (
    ID_RE,
    check_keys,
    check_name,
    expression,
    in_item,
    items,
    key_at,
    mapping,
    string,
)

SAFE_BUILTINS = {"all": all, "any": any, "len": len, "zip": zip,
                 "True": True, "False": False, "min": min, "max": max}


class VcpuState(Protocol):
    """A vCPU's state: a named tuple of the spec's fields (its class is
    made at run time, Model.Vcpu)."""

    def _replace(self, **changes: object) -> "VcpuState": ...


State = tuple[VcpuState, ...]           # the machine's: one per vCPU
Trace = list[tuple[str, int | None]]    # [(action, index)]


def _compile(text: Data, where: SourceInfo | None, what: str) -> CodeType:
    if not isinstance(text, str):
        text = repr(text)
    try:
        return compile(text, f"<{what}>", "eval")
    except SyntaxError as e:
        raise SpecError(f"{what}: invalid expression: {e.msg}", where)


def _eval(code: CodeType, names: Mapping[str, object]) -> object:
    return eval(code, {"__builtins__": SAFE_BUILTINS}, names)


@dataclass
class Action:
    name: str
    machine: bool
    refusals: list[tuple[CodeType, str]]   # [(code, error format)]
    effects: dict[str, CodeType]            # field -> code


@dataclass
class Violation:
    invariants: list[str]   # names of the invariants broken
    trace: Trace            # from the initial state
    state: State

    def __str__(self) -> str:
        steps = ", ".join(a if i is None else f"{a}({i})"
                          for a, i in self.trace) or "(initial state)"
        return (f"invariant {', '.join(self.invariants)} broken after: "
                f"{steps}")


class Model:
    def __init__(self, node: Node) -> None:
        def where(n: Data, key: str) -> SourceInfo:
            return n.key_info.get(key, n.info) if isinstance(n, Node) \
                else node.info
        for key in ("fields", "init", "actions"):
            if key not in node:
                raise SpecError(f"model: missing key '{key}'", node.info)
        self.fields = [f.replace("-", "_") for f in node["fields"]]
        self.values = {f.replace("-", "_"): v
                       for f, v in node["fields"].items()}
        # its fields come from the spec: a class mypy cannot see
        self.Vcpu = cast(Callable[..., VcpuState],
                         namedtuple("Vcpu", self.fields))
        init = node["init"]
        if set(init) != set(node["fields"]):
            raise SpecError("model: 'init' must give every field",
                            init.info)
        self.init = {f.replace("-", "_"): _compile(init[f], where(init, f),
                                                   f"init of {f}")
                     for f in init}
        self.actions: dict[str, Action] = {}
        for name, body in node["actions"].items():
            refusals = [(_compile(r["if"], r.info, f"{name}: refuse"),
                         r["error"]) for r in body.get("refuse", [])]
            effects: dict[str, CodeType] = {}
            for f, expr in body["set"].items():
                if f.replace("-", "_") not in self.fields:
                    raise SpecError(f"model: action '{name}' sets unknown "
                                    f"field '{f}'", where(body["set"], f))
                effects[f.replace("-", "_")] = _compile(
                    expr, where(body["set"], f), f"{name}: {f}")
            self.actions[name] = Action(name, bool(body.get("machine")),
                                        refusals, effects)
        self.invariants = {k: _compile(v, where(node["invariants"], k), k)
                           for k, v in node.get("invariants", {}).items()}
        self.step_invariants = {
            k: _compile(v, where(node["step-invariants"], k), k)
            for k, v in node.get("step-invariants", {}).items()}

    # ---- one machine --------------------------------------------------------

    def initial(self, cpus: int, disabled: int, kvm: bool,
                acpi: bool = False) -> State:
        self.config: dict[str, object] = {
            "cpus": cpus, "disabled": disabled, "kvm": kvm, "acpi": acpi}
        return tuple(self.Vcpu(**{f: _eval(code, {**self.config,
                                                  "index": i})
                                  for f, code in self.init.items()})
                     for i in range(cpus + disabled))

    def _names(self, state: State, index: int) -> dict[str, object]:
        return {**self.config, "index": index, "cpu": state[index],
                "vcpus": state}

    def step(self, state: State, action: str, index: int | None = None
             ) -> tuple[State, str | None]:
        """(new state, None) or (state, refusal message)."""
        act = self.actions[action]
        if act.machine:
            indexes: Sequence[int] = range(len(state))
        else:
            assert index is not None    # moves() names the vCPU
            indexes = [index]
        new = list(state)
        for i in indexes:
            names = self._names(state, i)
            for code, error in act.refusals:
                if _eval(code, names):
                    return state, error.format(index=i)
            new[i] = state[i]._replace(**{f: _eval(code, names)
                                          for f, code in act.effects.items()})
        return tuple(new), None

    def broken(self, state: State, old: State | None = None) -> list[str]:
        out = [name for name, code in self.invariants.items()
               if not _eval(code, {**self.config, "vcpus": state})]
        if old is not None:
            out += [name for name, code in self.step_invariants.items()
                    if not _eval(code, {**self.config, "old": old,
                                        "new": state})]
        return out

    def moves(self, state: State) -> Iterator[tuple[str, int | None]]:
        for name, act in self.actions.items():
            if act.machine:
                yield name, None
            else:
                for i in range(len(state)):
                    yield name, i

    def explore(self, cpus: int, disabled: int, kvm: bool, depth: int,
                acpi: bool = False) -> tuple[int, Violation | None]:
        """Breadth-first over every action sequence up to `depth`; returns
        (number of distinct states, first Violation or None)."""
        start = self.initial(cpus, disabled, kvm, acpi)
        if self.broken(start):
            return 1, Violation(self.broken(start), [], start)
        seen: dict[State, Trace] = {start: []}
        queue = deque([start])
        while queue:
            state = queue.popleft()
            trace = seen[state]
            if len(trace) >= depth:
                continue
            for action, index in self.moves(state):
                new, refused = self.step(state, action, index)
                if refused:
                    continue
                broken = self.broken(new, state)
                if broken:
                    return len(seen), Violation(broken,
                                                trace + [(action, index)], new)
                if new not in seen:
                    seen[new] = trace + [(action, index)]
                    queue.append(new)
        return len(seen), None


def load_model(spec_path: Path) -> Model:
    """The model of a spec: its `model:` section, possibly in an included
    file, checked (load_series() checks the rest of the spec)."""
    top, *included = load_spec(spec_path)
    for node in [top] + included:
        if "model" in node:
            return Model(check_model_section(
                in_item(node["model"], "model", key_at(node, "model"))))
    raise SpecError("the spec has no 'model' section", top.info)


def check_model_section(node: Node) -> Node:
    """The shape of the `model:` section, which refmodel.py interprets:
    `fields` (name -> values), `init` (field -> expression), `actions`
    (name -> refuse/set/machine), `invariants` and `step-invariants`
    (name -> expression).  The raw Node is kept for refmodel."""
    check_keys(node, "'model'", ("fields", "init", "actions"),
                ("invariants", "step-invariants"))
    fields = mapping(node, "fields")
    for name, values in fields.items():
        if not isinstance(name, str) or not ID_RE.match(name):
            raise SpecError(f"model field '{name}' must be lower-case "
                            "letters, digits and '-'", key_at(fields, name))
        if not isinstance(values, list) or not values:
            raise SpecError(f"model field '{name}' must list its values",
                            key_at(fields, name))
    init = mapping(node, "init")
    for name in init:
        check_name(name, tuple(fields), "field", key_at(init, name))
        expression(init, name)
    for name in fields:
        if name not in init:
            raise SpecError(f"'init' does not give field '{name}'",
                            key_at(node, "init"))
    actions = mapping(node, "actions")
    for name, body in actions.items():
        item = f"model action '{name}'"
        body = in_item(body, item, key_at(actions, name))
        check_keys(body, item, ("set",), ("refuse", "machine"))
        if not isinstance(body.get("machine", False), bool):
            raise SpecError("'machine' must be true or false",
                            key_at(body, "machine"))
        effects = in_item(body["set"], item, key_at(body, "set"))
        for field_name in effects:
            check_name(field_name, tuple(fields), "field",
                        key_at(effects, field_name))
            expression(effects, field_name)
        for refusal in items(body, "refuse"):
            refusal = in_item(refusal, item, key_at(body, "refuse"))
            check_keys(refusal, "a refusal", ("if", "error"))
            expression(refusal, "if")
            string(refusal, "error")
    for key in ("invariants", "step-invariants"):
        group = mapping(node, key)
        for name in group:
            expression(group, name)
    return node
