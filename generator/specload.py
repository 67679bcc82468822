"""YAML text -> plain data whose mappings remember their source lines.

Every mapping is a `Node` (a dict) with `.info` (where the mapping starts)
and `.key_info[key]` (where each key is), so later stages can say
"specs/x.yaml:12: in patch 'foo': unknown key 'templat'".
"""

from pathlib import Path

import yaml

from generator.errors import SpecError
from generator.source import SourceInfo


class Node(dict):
    info: SourceInfo
    key_info: dict


class _Loader(yaml.SafeLoader):
    pass


# libyaml's parser, when PyYAML has it, is ten times faster; a file it
# refuses is read again by the Python one, whose messages are clearer
class _FastLoader(getattr(yaml, "CSafeLoader", _Loader)):
    pass


def _construct_mapping(loader, node, deep=False):
    loader.flatten_mapping(node)
    mapping = Node()
    mapping.info = SourceInfo(loader.name, node.start_mark.line + 1)
    mapping.key_info = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
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
    _cls.add_constructor("tag:yaml.org,2002:timestamp",
                         yaml.SafeLoader.construct_yaml_str)


def _parse(cls, text: str, name: str):
    loader = cls(text)
    loader.name = name
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_yaml(path: Path, display: str | None = None):
    """Parse one YAML file; `display` is the name used in messages."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"cannot read spec: {e.strerror}", SourceInfo(name))
    try:
        data = _parse(_FastLoader, text, name)
    except yaml.YAMLError:
        data = None
    loader = _Loader(text)
    loader.name = name
    try:
        if data is None:
            data = loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise SpecError(f"invalid YAML: {e.problem or e.context}",
                        SourceInfo(name, line))
    finally:
        loader.dispose()
    if not isinstance(data, Node):
        raise SpecError("a spec file must be a mapping", SourceInfo(name, 1))
    return data
