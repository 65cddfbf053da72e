"""Control characters taken out of the text that reports and listings print.

Error messages, model names and provider names come from providers, agents and plans.
A raw ESC or C1 character in them would retitle the terminal, change colors or hide
text when a report is printed. So every string is cleaned before it is rendered. Line
breaks and tabs become spaces, because a table cell has one line. Every other C0
character, DEL and every C1 character becomes a visible ``\\xNN`` escape.
"""

from __future__ import annotations

import re
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from llmping.v1 import llmping_pb2 as pb

CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
WHITESPACE_CONTROLS = frozenset("\t\n\r\v\f")
# The plan's YAML keeps its line breaks and tabs: the HTML report shows it in <pre>.
MULTILINE_FIELDS = frozenset({"source_yaml"})


def clean_text(text: str, keep_lines: bool = False) -> str:
    """Replace control characters: whitespace ones with a space, others with ``\\xNN``."""
    if not CONTROL_CHARS.search(text):
        return text

    def replace(match: re.Match[str]) -> str:
        char = match.group()
        if keep_lines and char in "\n\t":
            return char
        if char in WHITESPACE_CONTROLS:
            return " "
        return f"\\x{ord(char):02x}"

    return CONTROL_CHARS.sub(replace, text)


def printable_report(report: pb.Report) -> pb.Report:
    """Return a copy of the report with every string field, map keys included, cleaned."""
    copy = pb.Report()
    copy.CopyFrom(report)
    clean_message(copy)
    return copy


def clean_message(message: Message) -> None:
    """Clean every string in a message and its nested messages, in place."""
    for field, value in message.ListFields():
        if _is_map(field):
            _clean_map(field.message_type, value)
        elif field.type == FieldDescriptor.TYPE_STRING:
            keep_lines = field.name in MULTILINE_FIELDS
            if field.is_repeated:
                value[:] = [clean_text(item, keep_lines) for item in value]
            else:
                setattr(message, field.name, clean_text(value, keep_lines))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value if field.is_repeated else [value]:
                clean_message(item)


def _is_map(field: FieldDescriptor) -> bool:
    entry = field.message_type
    return entry is not None and entry.GetOptions().map_entry


def _clean_map(entry: Descriptor, mapping: Any) -> None:
    """Clean the keys and values of a map field (labels, error_classes, a Struct)."""
    key_is_text = entry.fields_by_name["key"].type == FieldDescriptor.TYPE_STRING
    value_type = entry.fields_by_name["value"].type
    for key in list(mapping.keys()):
        new_key = clean_text(key) if key_is_text else key
        if value_type == FieldDescriptor.TYPE_MESSAGE:
            clean_message(mapping[key])
            if new_key != key:
                mapping[new_key].CopyFrom(mapping[key])
                del mapping[key]
            continue
        value = mapping[key]
        if value_type == FieldDescriptor.TYPE_STRING:
            value = clean_text(value)
        if new_key != key:
            del mapping[key]
        mapping[new_key] = value
