"""Placeholder until the simulate command lands; replaced by its owner."""

import click


@click.command()
def simulate() -> None:
    """Not built yet."""
    raise click.ClickException("not built yet")
