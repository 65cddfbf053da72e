"""YAML parsing of plan text, rejecting duplicate keys, and YAML line lookup by field path."""

from __future__ import annotations

import re
from typing import Any

import yaml

from llmping.errors import InputError


class _PlanLoader(yaml.SafeLoader):
    """A safe loader that rejects duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _PlanLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    # Checked before construct_mapping merges "<<: *anchor" keys, which may be overridden.
    seen: set[str] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        if key_node.value in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
            )
        seen.add(key_node.value)
    return loader.construct_mapping(node, deep=True)


_PlanLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.1 needs a dot in a float, so PyYAML reads 1e3 and 5e-1 as strings. Plans read
# them as the numbers YAML 1.2 and JSON make of them.
_PlanLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml_error(source: str, error: yaml.YAMLError) -> InputError:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return InputError(f"invalid YAML in plan {source}{where}: {problem}, fix the syntax there")


def parse_yaml(text: str, source: str) -> tuple[dict[str, Any], yaml.Node | None]:
    """Parse plan text into a mapping and its node tree (for line numbers)."""
    try:
        data = yaml.load(text, Loader=_PlanLoader)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        raise _yaml_error(source, error) from error
    if data is None:
        raise InputError(f"plan {source} is empty, write a plan (see examples/)")
    if not isinstance(data, dict):
        raise InputError(
            f"plan {source} must be a YAML mapping, got {type(data).__name__}, "
            "start it with name: and providers:"
        )
    return data, node


def line_of(node: yaml.Node | None, path: str) -> int | None:
    """Return the 1-based YAML line of a dotted field path, or of its nearest parent."""
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    line = None
    for part in parts:
        if node is None:
            break
        line = node.start_mark.line + 1
        node = _child_node(node, part)
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _child_node(node: yaml.Node, part: str) -> yaml.Node | None:
    if isinstance(node, yaml.SequenceNode) and part.startswith("["):
        index = int(part[1:-1])
        return node.value[index] if index < len(node.value) else None
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == part:
                # The line of an unknown key is the key itself, so return that node.
                return value_node if isinstance(value_node, yaml.CollectionNode) else key_node
    return None
