"""Everything a run needs before its first step, checked before anything of an old run is touched.

`start_run` checks the files, takes --out (RunDir: lock, --resume, --overwrite), applies a resumed
checkpoint's settings, builds the model and the accelerator, reads the data and calibrates the new
layers. Only when all of that has worked is a replaced run's old contents cleared: a typo in
--model or a missing corpus leaves the old run as it was.
"""

from __future__ import annotations

import math
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from vaecli.config import TrainConfig
from vaecli.errors import InputError, RunError
from vaecli.files.corpus import check_corpora
from vaecli.modeling.backbones import build_causal_vae, build_vae
from vaecli.modeling.layout import is_model_dir
from vaecli.modeling.precision import run_device, use_bf16
from vaecli.modeling.vae import VAEModel
from vaecli.training.checkpoint import find_checkpoint, load_trainer_state
from vaecli.training.data import Corpus, load_corpus
from vaecli.training.diagnose import Keeper
from vaecli.training.resume import resume_config
from vaecli.training.rundir import RunDir
from vaecli.training.stopping import StopFlag
from vaecli.training.tracking import LOGS_DIR, Tracking, scalar_config

Event = dict[str, Any]
CALIBRATION_ROWS = 256  # training sentences that set the new layers' scales (vaecli/training/calibrate.py)


@dataclass
class Run:
    """One `vae finetune` run, ready for its first step."""

    cfg: TrainConfig
    run_dir: RunDir
    accelerator: Any
    model: VAEModel
    train_data: Corpus
    valid_data: Corpus
    on_event: Callable[[Event], None]
    checkpoint_dir: Path | None = None
    """The checkpoint a resumed run continues from."""
    resume_state: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    keeper: Keeper = field(default_factory=Keeper)
    stop: StopFlag = field(default_factory=StopFlag)
    steps_per_second: dict[str, float] = field(default_factory=dict)
    tracking: Tracking | None = None
    """--report-to's trackers (a Tracking that does nothing without it)."""
    timed_steps: dict[int, int] = field(default_factory=dict)
    """The steps a phase's --phaseN-minutes came to (training.pace), once its start has timed them."""
    timed_validation: dict[int, float] = field(default_factory=dict)
    """The seconds a validation of a phase in minutes was timed at, when its start timed its steps."""

    def emit(self, kind: str, **values: Any) -> None:
        """An event for the caller's progress display (the main process's only)."""
        if self.accelerator.is_main_process:
            self.on_event({"kind": kind, **values})

    def phase_minutes(self, phase: int) -> float | None:
        return self.cfg.phase1_minutes if phase == 1 else self.cfg.phase2_minutes

    def phase_runs(self, phase: int) -> bool:
        """Whether a phase has anything to do (its minutes, epochs or steps)."""
        return self.phase_minutes(phase) is not None or self.phase_steps(phase) > 0

    def phase_steps(self, phase: int) -> int:
        """Optimizer steps of a phase: what its --phaseN-minutes came to (0 until its start has timed them), --phaseN-epochs
        over the training sentences, or --phaseN-steps."""
        if self.phase_minutes(phase) is not None:
            return self.timed_steps.get(phase, 0)
        epochs = self.cfg.phase1_epochs if phase == 1 else self.cfg.phase2_epochs
        if epochs is not None:
            return max(1, math.ceil(epochs * math.ceil(len(self.train_data) / self.cfg.batch_size)))
        return self.cfg.phase1_steps if phase == 1 else self.cfg.phase2_steps


def start_run(cfg: TrainConfig, on_event: Callable[[Event], None] | None, resume: bool, overwrite: bool, given: set[str]) -> Run:
    """Check, build and load everything a run needs (see module docstring); `given` is the set of
    options the user set, which --resume compares with the checkpoint's."""
    from accelerate import PartialState

    check_corpora([cfg.train_file, cfg.valid_file], cfg.data_format)  # before any weights load: a bad file fails at once
    # On a machine without CUDA, processes started by `accelerate launch` / torchrun join over gloo.
    state = PartialState(cpu=run_device().type == "cpu")
    run_dir = RunDir(cfg.out, resume, overwrite, main=state.is_main_process)
    try:
        run = _build(cfg, run_dir, on_event or (lambda event: None), resume, given)
        run_dir.clear()
    except BaseException:
        run_dir.release(failed=True)
        raise
    state.wait_for_everyone()
    return run


def _build(cfg: TrainConfig, run_dir: RunDir, on_event: Callable[[Event], None], resume: bool, given: set[str]) -> Run:
    from accelerate import Accelerator, DataLoaderConfiguration
    from accelerate.utils import set_seed

    checkpoint_dir = find_checkpoint(run_dir.path) if resume else None
    resume_state, notes = None, []
    if checkpoint_dir is not None:
        resume_state = load_trainer_state(checkpoint_dir)
        saved = resume_state["trainer"]
        cfg, changes = resume_config(TrainConfig.from_dict(saved["config"]), cfg, given, saved["phase"], saved["step"])
        if changes:
            notes.append(f"resuming with {', '.join(changes)}")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    fresh = checkpoint_dir is None and not (cfg.model is not None and is_model_dir(cfg.model))
    if checkpoint_dir is not None:
        model = VAEModel.from_pretrained(checkpoint_dir)
    elif cfg.model is not None:
        model = build_vae(cfg.model, cfg.vae_config())
    else:
        model = build_causal_vae(cfg.encoder, cfg.decoder, cfg.vae_config())
    _reset_accelerator_state()
    # split_batches: --batch-size is the global batch, cut across processes, so N processes take
    # the same optimizer steps on the same sentences as one process does.
    logs = run_dir.path / LOGS_DIR
    accelerator = Accelerator(
        cpu=run_device().type == "cpu",
        mixed_precision="bf16" if use_bf16(cfg.bf16, model.num_parameters()) else "no",
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        log_with=[cfg.report_to] if cfg.report_to else None,
        project_dir=str(logs),
    )
    if cfg.batch_size % accelerator.num_processes:
        raise RunError(f"--batch-size {cfg.batch_size} must be a multiple of the {accelerator.num_processes} processes")
    model.train()
    train_data, valid_data = _data(cfg, model)
    if valid_data is train_data:
        notes.append("1 training sentence and no --valid: validating on the training sentence")
    if fresh and cfg.calibrate:
        from vaecli.training.calibrate import calibrate

        if cfg.mu_fit:
            from vaecli.training.mu_fit import ROWS, fit_mu_directions

            fit_mu_directions(model, train_data.batch(range(min(ROWS, len(train_data))), model.input_pad_id, model.pad_id))
        report = calibrate(model, train_data.batch(range(min(CALIBRATION_ROWS, len(train_data))), model.input_pad_id, model.pad_id),
                           cfg.write_scale, bool(cfg.vocab_fit))
        if "mu_std_before" not in report:
            notes.append("calibration: 1 training sentence is too few to standardise mu (it needs 2); only the injection was scaled")
    if cfg.distill > 0:  # on every start, fresh or resumed: the pretrained LM's spreads on the same sentences
        rows = train_data.batch(range(min(CALIBRATION_ROWS, len(train_data))), model.input_pad_id, model.pad_id)
        model.fit_context_spread(rows["target_ids"], rows["target_mask"])
    # On the accelerator's device before anything runs it (the steps' timing, the frozen weights' bf16 copies): the
    # batches are there already. Calibration above ran where the weights loaded, on the CPU.
    model.to(accelerator.device)
    run = Run(cfg, run_dir, accelerator, model, train_data, valid_data, on_event, checkpoint_dir, resume_state, notes)
    if cfg.report_to:
        accelerator.init_trackers("vaecli", config=scalar_config(cfg.to_dict()), init_kwargs={"wandb": {"dir": str(logs)}})
    run.tracking = Tracking(accelerator, cfg.report_to is not None, run.phase_steps(1) if cfg.phase == "both" else 0)
    return run


def _data(cfg: TrainConfig, model: VAEModel) -> tuple[Corpus, Corpus]:
    """(training, validation) corpora; without --valid, the last 5% of the training lines (at most
    --valid-size) are held out (one sentence: validate on it)."""
    tok, max_length, targets = model.tokenizer, model.config.max_length, model.family.target_ids
    source = dict(fmt=cfg.data_format, column=cfg.column, split=cfg.split, config=cfg.data_config)
    train = load_corpus(cfg.train_file, tok, max_length, targets=targets, **source)
    if len(train) == 0:
        raise InputError(f"{cfg.train_file} has no sentences (empty, or only blank lines)")
    if cfg.valid_file:
        return train, load_corpus(cfg.valid_file, tok, max_length, limit=cfg.valid_size, targets=targets, **source)
    if len(train) < 2:
        return train, train  # start_run's caller is told (Run.notes)
    return train.split(min(cfg.valid_size, max(1, len(train) // 20)))


def _reset_accelerator_state() -> None:
    """Let a second run in the same process (the Python API, tests) choose its own mixed precision."""
    from accelerate.state import AcceleratorState

    reset = getattr(AcceleratorState, "_reset_state", None)
    if reset is not None:
        reset()


def versions() -> dict[str, str]:
    import accelerate
    import transformers

    from vaecli import __version__

    return {
        "vaecli": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "python": platform.python_version(),
    }


def is_main_process() -> bool:
    """False in the non-main processes of an `accelerate launch` / torchrun job."""
    from accelerate import PartialState

    return PartialState(cpu=run_device().type == "cpu").is_main_process
