"""YAML text -> plain data whose mappings remember their source lines.

Every mapping is a `Node` (a dict) with `.info` (where the mapping starts)
and `.key_info[key]` (where each key is), so later stages can say
"specs/x.yaml:12: in patch 'foo': unknown key 'templat'".
"""

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import yaml

from generator.errors import SpecError
from generator.source import SourceInfo, confined, display_path, read_input

# What YAML holds: a scalar, a list or a Node, checked where it is read
Data: TypeAlias = Any


class Node(dict[Data, Data]):
    info: SourceInfo
    key_info: dict[Data, SourceInfo]


class _Loader(yaml.SafeLoader):
    pass


# libyaml's parser, when PyYAML has it, is ten times faster; a file it
# refuses is read again by the Python one, whose messages are clearer
if TYPE_CHECKING:
    _FastBase = yaml.CSafeLoader
else:
    _FastBase = getattr(yaml, "CSafeLoader", _Loader)


class _FastLoader(_FastBase):
    name: str       # set as the Python loader's reader has it


def _construct_mapping(loader: _Loader | _FastLoader,
                       node: yaml.MappingNode, deep: bool = False) -> Node:
    loader.flatten_mapping(node)
    mapping = Node()
    mapping.info = SourceInfo(loader.name, node.start_mark.line + 1)
    mapping.key_info = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise SpecError("a key must be a plain scalar",
                            SourceInfo(loader.name, key_node.start_mark.line + 1))
        if key in mapping:
            raise SpecError(f"duplicate key '{key}'",
                            SourceInfo(loader.name, key_node.start_mark.line + 1))
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_info[key] = SourceInfo(loader.name, key_node.start_mark.line + 1)
    return mapping


for _cls in (_Loader, _FastLoader):
    _cls.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                         _construct_mapping)
    # Keep dates and times as the strings the user wrote.
    # (the stubs want a loader's method; SafeConstructor defines this one)
    _cls.add_constructor(  # type: ignore[type-var]
        "tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)


def _parse(cls: type[_Loader | _FastLoader], text: str, name: str) -> Data:
    loader = cls(text)
    loader.name = name
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 text without NUL bytes, as specs, templates and C sources
    are; otherwise an error naming the file and line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise SpecError(f"not UTF-8 text (byte {data[e.start]:#04x})",
                        SourceInfo(name, line))
    if "\0" in text:
        raise SpecError("a NUL byte in a text file",
                        SourceInfo(name, text.count("\n", 0, text.index("\0"))
                                   + 1))
    return text


def load_yaml(path: Path, display: str | None = None) -> Node:
    """Parse one YAML file; `display` is the name used in messages."""
    name = display or str(path)
    try:
        raw = read_input(path)
    except OSError as e:
        raise SpecError(f"cannot read spec: {e.strerror}", SourceInfo(name))
    text = decode_text(raw, name)
    try:
        data = _parse(_FastLoader, text, name)
    except (yaml.YAMLError, RecursionError):
        data = None     # the Python loader below says where and why
    loader = None
    try:
        if data is None:
            # its reader refuses control characters already here
            loader = _Loader(text)
            loader.name = name
            data = loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise SpecError(f"invalid YAML: {e.problem or e.context}",
                        SourceInfo(name, line))
    except yaml.reader.ReaderError as e:
        char = e.character if isinstance(e.character, int) \
            else ord(e.character[:1] or "\0")
        raise SpecError(f"invalid YAML: character U+{char:04X} is not "
                        "allowed", SourceInfo(name, text.count("\n", 0,
                                                               e.position) + 1))
    except yaml.YAMLError as e:
        raise SpecError(f"invalid YAML: {str(e).splitlines()[0]}",
                        SourceInfo(name))
    except RecursionError:
        raise SpecError("invalid YAML: nested too deeply", SourceInfo(name))
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, Node):
        raise SpecError("a spec file must be a mapping", SourceInfo(name, 1))
    return data


def load_spec(path: Path) -> list[Node]:
    """A spec: its file and the files its `include:` list names, in that
    order, each a Node.  An include is a path relative to the spec's
    directory and may not leave it (symbolic links included)."""
    top = load_yaml(path, display_path(path))
    names = top.get("include", [])
    where = top.key_info.get("include", top.info)
    if not isinstance(names, list):
        raise SpecError("'include' must be a list", where)
    files = [top]
    for name in names:
        if not isinstance(name, str) or not name:
            raise SpecError("'include' lists file names", where)
        inc = confined(path.parent, name)
        if inc is None or Path(name).is_absolute() or ".." in Path(name).parts:
            raise SpecError(f"include '{name}' is outside the spec's "
                            f"directory {display_path(path.parent)}/", where)
        files.append(load_yaml(inc, display_path(path.parent / name)))
    return files
