"""Placeholder until the controller command lands; replaced by its owner."""

import click


@click.command()
def controller() -> None:
    """Not built yet."""
    raise click.ClickException("not built yet")
