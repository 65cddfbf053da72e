"""Plan files: YAML text -> validated pydantic models -> ``pb.Plan``.

``load_plan(path)`` is the entry point. Every problem found is collected and raised as
one ``PlanValidationError`` (a ``PlanError``) whose text lists each field path
(``providers[1].base_url``) with its YAML line, the problem and the fix. Pydantic checks
field types, unknown keys and single-field rules. Rules that span fields (load mode
against its figures, Azure settings, threshold references, the cost guard) are checked
afterwards, so that each message can still name the exact field.

Plans never contain API keys: ``api_key_env`` names an environment variable that the
agent reads, and values that look like keys are rejected without being echoed.

This module runs the steps. The models are in ``plan_schema``, the issues in
``plan_issues``, the cross-field rules in ``plan_rules``, the conversion in
``plan_convert`` and the YAML loader in ``plan_yaml``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from llmping.errors import InputError
from llmping.estimate import request_cap_issue
from llmping.plan_convert import to_pb
from llmping.plan_issues import PlanIssue, PlanValidationError, issue_from_pydantic
from llmping.plan_rules import check_rules
from llmping.plan_schema import PlanSpec
from llmping.plan_yaml import line_of, parse_yaml
from llmping.v1 import llmping_pb2 as pb

__all__ = [
    "PlanIssue",
    "PlanSpec",
    "PlanValidationError",
    "load_plan",
    "plan_from_text",
    "to_pb",
    "validate_plan",
]


# ---------------------------------------------------------------------------
# Loading: file -> YAML -> models -> rules -> pb.Plan.
# ---------------------------------------------------------------------------


def validate_plan(
    data: dict[str, Any], source: str = "plan", node: yaml.Node | None = None
) -> PlanSpec:
    """Validate a parsed plan, raising PlanValidationError listing every problem."""
    try:
        spec = PlanSpec.model_validate(data)
    except ValidationError as error:
        issues = [issue_from_pydantic(e) for e in error.errors(include_url=False)]
        raise PlanValidationError(source, _with_lines(issues, node)) from error
    rule_issues = check_rules(spec)
    if rule_issues:
        raise PlanValidationError(source, _with_lines(rule_issues, node))
    return spec


def _with_lines(issues: Sequence[PlanIssue], node: yaml.Node | None) -> list[PlanIssue]:
    return [
        PlanIssue(i.path, i.problem, i.hint, line_of(node, i.path) if node else None)
        for i in issues
    ]


def _check_cost(plan: pb.Plan, source: str, node: yaml.Node | None) -> None:
    found = request_cap_issue(plan)
    if found is not None:
        problem, fix = found
        issue = PlanIssue("load.max_requests", problem, fix)
        raise PlanValidationError(source, _with_lines([issue], node))


def plan_from_text(text: str, source: str = "plan") -> pb.Plan:
    """Parse, validate and convert plan YAML text; the text is kept in source_yaml."""
    data, node = parse_yaml(text, source)
    spec = validate_plan(data, source, node)
    plan = to_pb(spec, source_yaml=text)
    _check_cost(plan, source, node)
    return plan


def load_plan(path: str | Path) -> pb.Plan:
    """Read a plan file and return the validated ``pb.Plan``."""
    plan_path = Path(path)
    try:
        text = plan_path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise InputError(f"plan file not found, {plan_path}, check the path") from error
    except IsADirectoryError as error:
        raise InputError(f"plan path is a folder, {plan_path}, give a YAML file") from error
    except UnicodeDecodeError as error:
        raise InputError(f"plan file is not UTF-8 text, {plan_path}, save it as UTF-8") from error
    except OSError as error:
        raise InputError(f"cannot read plan file {plan_path}: {error.strerror}") from error
    return plan_from_text(text, str(plan_path))
