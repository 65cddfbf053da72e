"""PlanIssue and PlanValidationError, and the translation of pydantic errors into issues."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from llmping.errors import PlanError
from llmping.plan_schema import PlanSpec, RequestSpecModel

# ---------------------------------------------------------------------------
# Issues and their translation into one PlanError.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanIssue:
    """One problem in a plan, with the field path and how to fix it."""

    path: str
    problem: str
    hint: str = ""
    line: int | None = None

    def describe(self) -> str:
        where = self.path + (f" (line {self.line})" if self.line else "")
        text = f"{where}: {self.problem}"
        return f"{text}; {self.hint}" if self.hint else text


class PlanValidationError(PlanError):
    """A plan with one or more invalid fields; ``issues`` lists them all."""

    def __init__(self, source: str, issues: Sequence[PlanIssue]) -> None:
        first = issues[0]
        super().__init__(first.path, first.problem, first.hint)
        self.source = source
        self.issues = list(issues)

    def __str__(self) -> str:
        if len(self.issues) == 1:
            return f"invalid plan {self.source}, field {self.issues[0].describe()}"
        lines = [f"invalid plan {self.source}, {len(self.issues)} problems:"]
        lines += [f"  field {issue.describe()}" for issue in self.issues]
        return "\n".join(lines)


def format_path(loc: Sequence[int | str]) -> str:
    """Join a pydantic location into ``providers[1].base_url``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def _model_at(loc: Sequence[int | str]) -> type[BaseModel] | None:
    """Follow a location through the model classes; None where it leaves them."""
    model: type[BaseModel] = PlanSpec
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        inner = _first_model(info.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def _known_keys(model: type[BaseModel]) -> list[str]:
    keys = list(model.model_fields)
    if model is RequestSpecModel:
        keys.append("prompt")
    return keys


def issue_from_pydantic(error: Any) -> PlanIssue:
    loc = [p for p in error["loc"] if isinstance(p, (int, str))]
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "plan_value":
        return PlanIssue(format_path(loc), ctx["problem"], ctx.get("hint", ""))
    if kind == "extra_forbidden":
        return _unknown_key_issue(loc)
    if kind == "missing":
        return PlanIssue(format_path(loc), "missing required key", f"add {loc[-1]}: to the plan")
    if kind in _NUMBER_ERRORS:
        return _number_issue(loc, kind, ctx, error.get("input"))
    if kind == "list_type" and isinstance(error.get("input"), dict):
        return _mapping_for_list_issue(loc, error["input"])
    problem = str(error["msg"]).removeprefix("Value error, ")
    secret = any(p in ("api_key_env", "headers") for p in loc)
    value = error.get("input")
    if not secret and isinstance(value, (str, int, float, bool)):
        problem += f", got {str(value)[:60]!r}"
    return PlanIssue(format_path(loc), problem[:1].lower() + problem[1:])


def _mapping_for_list_issue(loc: list[int | str], value: dict[Any, Any]) -> PlanIssue:
    """Describe a mapping written where the plan wants a list, with the list form."""
    first_key = next(iter(value), "key")
    hint = f"write each entry as a list item starting with '- ', for example '- {first_key}: ...'"
    return PlanIssue(format_path(loc), "expected a list, got a mapping", hint)


def _unknown_key_issue(loc: list[int | str]) -> PlanIssue:
    key = str(loc[-1])
    model = _model_at(loc[:-1])
    known = _known_keys(model) if model else []
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        hint = f"did you mean {close[0]}?"
    elif known:
        hint = "remove it; known keys here: " + ", ".join(known)
    else:
        hint = "remove it"
    return PlanIssue(format_path(loc), f"unknown key {key!r}", hint)


# ---------------------------------------------------------------------------
# Numbers: wrong type, not finite, over a limit.
# ---------------------------------------------------------------------------

_NUMBER_ERRORS = frozenset({"int_type", "float_type", "finite_number", "less_than_equal"})
_SECONDS_PER_DAY = 86400


def _number_issue(
    loc: Sequence[int | str], kind: str, ctx: dict[str, Any], value: Any
) -> PlanIssue:
    """Describe a wrongly typed, non-finite or too large number with the fix."""
    path = format_path(loc)
    unit = " s" if str(loc[-1]).endswith("_s") else ""
    if kind == "finite_number":
        return PlanIssue(path, f"{value} is not a finite number", "write a number such as 10")
    if kind == "less_than_equal":
        limit = f"{_format_number(ctx['le'])}{unit}{_in_days(ctx['le'], unit)}"
        problem = f"{_format_number(value)}{unit} is over the maximum of {limit}"
        return PlanIssue(path, problem, f"use at most {limit}")
    expected = "an integer" if kind == "int_type" else "a number"
    if isinstance(value, bool):
        return PlanIssue(
            path, f"expected {expected}, got {str(value).lower()}", "write a number, e.g. 4"
        )
    if isinstance(value, str):
        return PlanIssue(
            path, f"expected {expected}, got the string {value[:60]!r}", "remove the quotes"
        )
    if isinstance(value, float):
        return PlanIssue(path, f"expected {expected}, got {value:g}", "write a whole number")
    return PlanIssue(path, f"expected {expected}, got {type(value).__name__}", "write a number")


def _format_number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _in_days(limit: Any, unit: str) -> str:
    """Return " (30 days)" for a limit in seconds that is a whole number of days."""
    if unit != " s" or limit % _SECONDS_PER_DAY:
        return ""
    days = int(limit // _SECONDS_PER_DAY)
    return f" ({days} day{'s' if days != 1 else ''})"
