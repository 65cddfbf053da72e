"""Placeholder until the demo command lands; replaced by its owner."""

import click


@click.command()
def demo() -> None:
    """Not built yet."""
    raise click.ClickException("not built yet")
