"""The run, agents, runs, report and cancel commands.

Exit status:
  0    ok
  1    the run ended PARTIAL, FAILED or CANCELLED, or a threshold failed
  2    invalid input (plan, flag, file)
  3    controller unreachable or its TLS handshake failed; `llmping run` first retries
       for a minute
  130  Ctrl-C, after `llmping run` cancelled its run on the controller
  143  SIGTERM, likewise
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.table import Table
from rich.text import Text

from llmping.cli import report_data
from llmping.cli.client import (
    CONTROLLER_ENV,
    DEFAULT_CONTROLLER,
    TOKEN_ENV,
    ClientConfig,
    ControlClient,
)
from llmping.cli.report import emit_report, report_output_options
from llmping.cli.report_sanitize import clean_text
from llmping.cli.run_follow import deferred_interrupts, interrupt_exit_code, submit_and_report
from llmping.cli.tls_options import client_tls_options
from llmping.errors import LlmpingError
from llmping.estimate import estimate_requests
from llmping.plan import load_plan
from llmping.tls import ClientTlsOptions
from llmping.v1 import llmping_pb2 as pb

P = ParamSpec("P")
R = TypeVar("R")

# Width for tables written to a pipe or file, where rich would otherwise assume 80 columns.
PIPE_WIDTH = 160


def stdout_console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = PIPE_WIDTH
    return console


def stderr_console() -> Console:
    # Soft wrap keeps status lines whole, so paths and commands can be copied. Messages
    # quote provider and controller text, so brackets in them must not be read as markup.
    return Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


def text_cells(*values: str) -> list[Text]:
    """Wrap table cells as Text, with control characters replaced and no markup read."""
    return [Text(clean_text(value)) for value in values]


def exit_on_error(command: Callable[P, R]) -> Callable[P, R]:
    """Print an LlmpingError as ``error: ...`` on stderr and exit with its status."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except LlmpingError as error:
            # Messages may quote the controller's or a provider's text.
            click.echo(f"error: {clean_text(str(error), keep_lines=True)}", err=True)
            raise SystemExit(error.exit_code) from error

    return wrapper


def controller_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --controller, --token and the TLS flags, read from LLMPING_* variables too.

    The command receives ``controller``, ``token`` and ``tls`` (ClientTlsOptions).
    """
    command = client_tls_options(command)
    command = click.option(
        "--token",
        envvar=TOKEN_ENV,
        show_envvar=True,
        default=None,
        help="Bearer token the controller expects (its --token).",
    )(command)
    return click.option(
        "--controller",
        envvar=CONTROLLER_ENV,
        show_envvar=True,
        default=DEFAULT_CONTROLLER,
        show_default=True,
        help="Controller address, HOST:PORT.",
    )(command)


def _client(controller: str, token: str | None, tls: ClientTlsOptions) -> ControlClient:
    """Open a client; raises InputError for an invalid TLS file."""
    return ControlClient(ClientConfig(address=controller, token=token or None, tls=tls.load()))


# ---------------------------------------------------------------------------
# llmping run
# ---------------------------------------------------------------------------


def exit_for_verdict(report: pb.Report, stderr: Console) -> None:
    """Print why the run failed, if it did, and exit with status 1."""
    reasons = report_data.failure_reasons(report)
    for reason in reasons:
        stderr.print(f"error: {reason}", highlight=False)
    if reasons:
        raise SystemExit(1)


@click.command("run")
@click.argument("plan_file", metavar="PLAN")
@report_output_options
@click.option("--no-progress", is_flag=True, help="Do not show live progress on stderr.")
@click.option(
    "--dry-run", is_flag=True, help="Validate the plan and print the estimate; submit nothing."
)
@controller_options
@exit_on_error
def run(
    plan_file: str,
    report_format: str,
    output: Path | None,
    no_progress: bool,
    dry_run: bool,
    controller: str,
    token: str | None,
    tls: ClientTlsOptions,
) -> None:
    """Run PLAN (a YAML file) on the controller's agents and print the report.

    When the controller cannot be reached mid-run, the command retries for a minute
    before it exits 3. Ctrl-C or SIGTERM cancels the run on the controller and exits
    130 or 143.
    """
    stderr = stderr_console()
    plan = load_plan(plan_file)
    stderr.print(estimate_requests(plan).describe(), highlight=False)
    if dry_run:
        stderr.print(f"plan {plan.name!r} is valid; dry run, nothing submitted")
        return

    try:
        with _client(controller, token, tls) as client, deferred_interrupts(client):
            report = submit_and_report(client, plan, not no_progress, stderr)
    except KeyboardInterrupt as interrupt:
        raise SystemExit(interrupt_exit_code(interrupt)) from None

    emit_report(report, report_format, output, stdout_console(), stderr)
    exit_for_verdict(report, stderr)


# ---------------------------------------------------------------------------
# llmping agents / runs / report / cancel
# ---------------------------------------------------------------------------


def _age_s(unix_ns: int) -> str:
    if unix_ns <= 0:
        return report_data.MISSING
    return f"{(time.time_ns() - unix_ns) / 1e9:.1f} s ago"


def agents_table(agents: list[pb.AgentInfo]) -> Table:
    table = Table(title=f"{len(agents)} agents connected", title_justify="left")
    columns = ("agent", "labels", "host", "peer", "version", "last heartbeat")
    for column in (*columns, "clock offset", "in flight", "assignments"):
        table.add_column(column)
    for agent in sorted(agents, key=lambda a: (a.labels.get("region", ""), a.agent_id)):
        labels = ", ".join(f"{k}={v}" for k, v in sorted(agent.labels.items()))
        table.add_row(
            *text_cells(
                agent.agent_id,
                labels,
                agent.hostname,
                agent.peer,
                agent.version,
                _age_s(agent.last_heartbeat_unix_ns),
                f"{agent.clock_offset_ns / 1e6:.1f} ms",
                str(agent.load.requests_in_flight),
                str(len(agent.assignment_ids)),
            )
        )
    return table


def _print_json(messages: list[Any]) -> None:
    documents = [
        MessageToDict(m, preserving_proto_field_name=True, unquote_int64_if_possible=True)
        for m in messages
    ]
    click.echo(json.dumps(documents, ensure_ascii=False, indent=2, sort_keys=True))


@click.command("agents")
@click.option(
    "--format",
    "list_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@controller_options
@exit_on_error
def agents(list_format: str, controller: str, token: str | None, tls: ClientTlsOptions) -> None:
    """List the agents connected to the controller, with their labels."""
    with _client(controller, token, tls) as client:
        found = client.list_agents()
    if list_format == "json":
        _print_json(found)
        return
    stdout_console().print(agents_table(found))


def runs_table(runs_found: list[pb.RunInfo]) -> Table:
    table = Table(title=f"{len(runs_found)} runs", title_justify="left")
    for column in ("run", "plan", "state", "created", "took", "reason"):
        table.add_column(column)
    for info in runs_found:
        _, took_s = report_data.run_timing(info)
        took = report_data.MISSING if took_s is None else f"{took_s:.1f} s"
        table.add_row(
            *text_cells(
                info.run_id,
                info.plan_name,
                report_data.state_name(info.state),
                report_data.format_unix_ns(info.created_unix_ns),
                took,
                info.reason,
            )
        )
    return table


@click.command("runs")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Number of most recent runs to list.",
)
@click.option(
    "--format",
    "list_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@controller_options
@exit_on_error
def runs(
    limit: int, list_format: str, controller: str, token: str | None, tls: ClientTlsOptions
) -> None:
    """List recent runs and their states."""
    with _client(controller, token, tls) as client:
        found = client.list_runs(limit)
    if list_format == "json":
        _print_json(found)
        return
    stdout_console().print(runs_table(found))


@click.command("report")
@click.argument("run_id")
@report_output_options
@controller_options
@exit_on_error
def report(
    run_id: str,
    report_format: str,
    output: Path | None,
    controller: str,
    token: str | None,
    tls: ClientTlsOptions,
) -> None:
    """Print the report of run RUN_ID.

    Exits 0 whatever the run's outcome; `llmping run` is the command whose exit
    status gates CI.
    """
    stderr = stderr_console()
    with _client(controller, token, tls) as client:
        found = client.get_report(run_id)
    emit_report(found, report_format, output, stdout_console(), stderr)
    for reason in report_data.failure_reasons(found):
        stderr.print(f"note: {reason}", highlight=False)


@click.command("cancel")
@click.argument("run_id")
@click.option(
    "--reason",
    default="cancelled from the CLI",
    show_default=True,
    help="Reason stored with the run.",
)
@controller_options
@exit_on_error
def cancel(
    run_id: str, reason: str, controller: str, token: str | None, tls: ClientTlsOptions
) -> None:
    """Cancel run RUN_ID; agents stop and send what they measured."""
    with _client(controller, token, tls) as client:
        info = client.cancel_run(run_id, reason)
    click.echo(f"run {info.run_id or run_id} is {report_data.state_name(info.state)}")


COMMANDS: list[click.Command] = [run, agents, runs, report, cancel]
