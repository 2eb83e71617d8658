"""`vae plot`: PNG figures of a run (vaecli.evaluation.plot): training curves and a map of encoded sentences."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from vaecli.cli.common import ModelOpt, err, handled, load_model, out_lines, read_sentences
from vaecli.config import MODEL_DIR
from vaecli.errors import InputError
from vaecli.modeling.layout import TRAINING_NAME


def plot(
    run_dir: Annotated[
        Optional[Path], typer.Argument(metavar="RUN_DIR", help="A `vae finetune` output directory \\[default: --model, $VAE_MODEL, else ./vae-model].")
    ] = None,
    sentences: Annotated[Optional[Path], typer.Option(help="Sentences for the latent map \\[default: the run's --valid file].")] = None,
    limit: Annotated[int, typer.Option(min=2, help="At most this many sentences on the map.")] = 1000,
    out: Annotated[Optional[Path], typer.Option(help="Folder for the PNGs \\[default: RUN_DIR].")] = None,
    model: ModelOpt = None,
) -> None:
    """PNG figures: training curves (Rec, KL, beta, MI, AU, shuffle gap, token accuracy) and a PCA map of encoded sentences."""
    with handled():
        import json

        if run_dir is not None and model is not None and run_dir != model:
            raise InputError("give the run directory as RUN_DIR or as --model, not both")
        run_dir = run_dir or model or Path(os.environ.get("VAE_MODEL") or MODEL_DIR)
        try:
            from vaecli.evaluation.plot import plot_curves, plot_latent_map, read_metrics
            from vaecli.training.schedule import beta_curve
        except ImportError:
            raise InputError("vae plot needs matplotlib: pip install 'vaecli[plot]'") from None
        try:
            records = read_metrics(run_dir)
        except FileNotFoundError as e:
            raise InputError(str(e)) from None
        folder = out or run_dir
        folder.mkdir(parents=True, exist_ok=True)
        training = json.loads((run_dir / TRAINING_NAME).read_text()) if (run_dir / TRAINING_NAME).is_file() else {}
        written = [plot_curves(records, folder / "curves.png", lambda offset: beta_curve(training, offset))]
        fmt = column = None
        if sentences is None:  # the run's --valid, read as finetune read it (--format, --column)
            config = training.get("config", {})
            valid = training.get("resolved", {}).get("valid_file") or config.get("valid_file")
            sentences = Path(valid) if valid else None
            fmt, column = config.get("data_format"), config.get("column")
        if sentences is not None:
            texts = read_sentences(sentences, fmt, column, option=None)[:limit]
            vae = load_model(run_dir)
            # The posterior means (the encoder's mu): refining up to 1,000 sentences would take minutes and map the same space.
            written.append(plot_latent_map(vae.encode(texts, refine=0), texts, folder / "latent-map.png"))
        else:
            err("no --sentences and no --valid file in training.json: latent map skipped")
        out_lines([str(p) for p in written])
