"""The ``llmping`` command: one click group, one module per command family."""

from __future__ import annotations

import os

# gRPC's C core prints its own log lines (handshake failures, ports it cannot bind) to
# stderr ahead of the llmping error that explains them. It reads GRPC_VERBOSITY when
# grpc initialises, so the default must be set before any module below imports grpc.
# A user who sets the variable, for example GRPC_VERBOSITY=DEBUG, still gets the lines.
# Worker processes of `llmping agent --processes` inherit the setting.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import click

from llmping import __version__
from llmping.cli import (
    agent_cmd,
    compare_cmd,
    controller_cmd,
    demo_cmd,
    run_cmds,
    simulate_cmd,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="llmping")
def cli() -> None:
    """Measure the latency and concurrency of LLM APIs from several networks at once."""


cli.add_command(agent_cmd.agent)
cli.add_command(controller_cmd.controller)
cli.add_command(simulate_cmd.simulate)
cli.add_command(demo_cmd.demo)
for command in run_cmds.COMMANDS:
    cli.add_command(command)
cli.add_command(compare_cmd.compare)


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
