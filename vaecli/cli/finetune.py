"""`vae finetune`: its options are TrainConfig's fields (cli/settings.py); it checks them, then runs training."""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import typer

from vaecli.cli.common import FLAG, err, handled, quiet_libraries
from vaecli.cli.progress import Reporter, kept_text
from vaecli.cli.settings import with_settings
from vaecli.config import EMBEDDED_DECODER, ENCODER_IS_DECODER

CONTROL = [
    inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
        bool, typer.Option("--resume", metavar=FLAG, help="Continue the interrupted run in --out.")]),
    inspect.Parameter("overwrite", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
        bool, typer.Option("--overwrite", metavar=FLAG, help="Replace an existing --out (a vaecli run or model directory).")]),
    inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=typer.Context),
]
"""Options that steer the run without being part of it (not saved in training.json)."""


def finetune(**values: Any) -> None:
    ctx: typer.Context = values.pop("ctx")
    resume, overwrite = values.pop("resume"), values.pop("overwrite")
    # What the user typed (not defaults): --resume compares exactly these with the checkpoint's config.
    given = {name for name in values if (source := ctx.get_parameter_source(name)) is not None and source.name == "COMMANDLINE"}
    with handled():
        from vaecli.config import TrainConfig
        from vaecli.files.corpus import check_corpora
        from vaecli.modeling.hub import check_backbone_name
        from vaecli.training.tracking import check_reporter

        # Options, files and the backbone's name are checked before torch and transformers load (seconds).
        cfg = TrainConfig(**values)
        check_corpora([cfg.train_file, cfg.valid_file], cfg.data_format)
        check_reporter(cfg.report_to)
        if not resume:
            names = {"--model": cfg.model} if cfg.model is not None else {"--encoder": cfg.encoder, "--decoder": cfg.decoder}
            for option, name in names.items():
                check_backbone_name(name, option)
        quiet_libraries()
        from vaecli.training.setup import is_main_process
        from vaecli.training.trainer import finetune as run

        with Reporter() as report:
            path = run(cfg, report, resume=resume, overwrite=overwrite, given=given)
        if is_main_process():
            err(f"model saved in {path}" + (f": {kept_text(report.kept)}" if report.kept else ""))
            print(path)


finetune.__doc__ = ("Finetune a pretrained Transformer into a text VAE (phase 1, then phase 2; for a causal LM phase 1 alone unless "
                    "--phase2-steps is given) and write a model directory. Two families: "
                    f"an encoder + a causal LM (--encoder / --decoder; the default is {EMBEDDED_DECODER}, SmolLM2-135M, offline, "
                    f"reading its own sentences: --encoder {ENCODER_IS_DECODER}) or an encoder-decoder (--model: T5, BART, BERT2BERT).")
with_settings(finetune, CONTROL)
