"""The `vae` command (Typer): the only package that knows Typer and rich."""

from vaecli.cli.app import app, main

__all__ = ["app", "main"]
