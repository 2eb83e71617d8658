"""The `vae` Typer app: one command per function of the command modules, registered here."""

from __future__ import annotations

import typer

from vaecli.cli.evaluate import evaluate
from vaecli.cli.finetune import finetune
from vaecli.cli.latent import analogy, decode, encode, interpolate, paraphrase, sample, steer
from vaecli.cli.plot import plot

app = typer.Typer(
    help="Turn pretrained Transformers (an encoder + a causal LM, or an encoder-decoder) into a text VAE, and use its latent space "
         "from a shell.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for command in (finetune, encode, decode, sample, interpolate, paraphrase, steer, analogy, evaluate, plot):
    app.command()(command)


def main() -> None:
    app()
