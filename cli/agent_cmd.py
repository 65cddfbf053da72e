"""Placeholder until the agent command lands; replaced by its owner."""

import click


@click.command()
def agent() -> None:
    """Not built yet."""
    raise click.ClickException("not built yet")
