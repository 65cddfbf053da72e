"""Placeholder until the run, report, agents and runs commands land."""

import click

COMMANDS: list[click.Command] = []
