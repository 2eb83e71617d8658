"""The finetuning loop: phase 1 (beta = 0, encoder warm-up), phase 2 (full VAE), on accelerate.

Progress goes to an `on_event` callback (the CLI draws it); nothing here prints. State that a
resumed run needs (optimizer, LR schedule, RNG, phase, step) is checkpointed without pickle, and the
data order is a pure function of (seed, phase, epoch), so a resumed run repeats the uninterrupted one.
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path
from typing import Any, Callable

import torch

from vaecli.atomic import disk_full, is_disk_full
from vaecli.backbones import build_causal_vae, build_vae, is_vae_dir
from vaecli.checkpoint import find_checkpoint, load_trainer_state, restore, save_checkpoint, save_model
from vaecli.config import ConfigError, TrainConfig
from vaecli.data import Batches, Corpus, delete_tokens, length_batches, load_corpus
from vaecli.diagnose import collapse_warning, keep_score
from vaecli.io import InputError, check_text_file
from vaecli.model import VAEModel
from vaecli.precision import use_bf16
from vaecli.resume import resume_config
from vaecli.rundir import RunDir, RunError
from vaecli.schedule import beta_at
from vaecli.stopping import StopFlag
from vaecli.validation import validate

Event = dict[str, Any]
LOG_EVERY = 10
CALIBRATION_ROWS = 256  # training sentences that set the new layers' scales (vaecli/calibrate.py)


class Interrupted(Exception):
    """Stopped by Ctrl-C after writing a checkpoint."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__(f"interrupted; checkpoint saved in {checkpoint}; continue with --resume")
        self.checkpoint = checkpoint


def reset_accelerator_state() -> None:
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


class Trainer:
    """One `vae finetune` run, both phases or one."""

    def __init__(self, cfg: TrainConfig, on_event: Callable[[Event], None] | None = None, resume: bool = False, overwrite: bool = False,
                 given: set[str] | None = None) -> None:
        """Every check that can fail (files, --out, the lock, options, model, data) runs before the
        old run is cleared (--overwrite; see vaecli.rundir). `given`: the options the user set, which
        --resume compares with the checkpoint's."""
        from accelerate import PartialState

        self.on_event = on_event or (lambda event: None)
        for path in (cfg.train_file, cfg.valid_file):
            if path:
                check_text_file(path)  # before any weights load: a bad file fails at once
        # On a machine without CUDA, processes started by `accelerate launch` / torchrun join over gloo.
        state = PartialState(cpu=not torch.cuda.is_available())
        self.out = Path(cfg.out)
        self.run_dir = RunDir(cfg.out, resume, overwrite) if state.is_main_process else None
        try:
            self._start(cfg, resume, given or set())
            if self.run_dir is not None:
                self.run_dir.clear()
        except BaseException:
            if self.run_dir is not None:
                self.run_dir.release(failed=True)
            raise
        state.wait_for_everyone()

    def _start(self, cfg: TrainConfig, resume: bool, given: set[str]) -> None:
        from accelerate import Accelerator, DataLoaderConfiguration
        from accelerate.utils import set_seed

        self.resume_state: dict[str, Any] | None = None
        self.checkpoint_dir = find_checkpoint(self.out) if resume else None
        self.notes: list[str] = []
        if self.checkpoint_dir is not None:
            self.resume_state = load_trainer_state(self.checkpoint_dir)
            saved = self.resume_state["trainer"]
            cfg, changes = resume_config(TrainConfig.from_dict(saved["config"]), cfg, given, saved["phase"], saved["step"])
            if changes:
                self.notes.append(f"resuming with {', '.join(changes)}")
        self.cfg = cfg
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        set_seed(cfg.seed)
        fresh = self.checkpoint_dir is None and not (cfg.model is not None and is_vae_dir(cfg.model))
        if self.checkpoint_dir is not None:
            self.model = VAEModel.from_pretrained(self.checkpoint_dir)
        elif cfg.model is not None:
            self.model = build_vae(cfg.model, cfg.vae_config())
        else:
            self.model = build_causal_vae(cfg.encoder, cfg.decoder, cfg.vae_config())
        reset_accelerator_state()
        # split_batches: --batch-size is the global batch, cut across processes, so N processes take
        # the same optimizer steps on the same sentences as one process does.
        self.accelerator = Accelerator(
            cpu=not torch.cuda.is_available(),
            mixed_precision="bf16" if use_bf16(cfg.bf16, self.model.num_parameters()) else "no",
            dataloader_config=DataLoaderConfiguration(split_batches=True),
        )
        if cfg.batch_size % self.accelerator.num_processes:
            raise RunError(f"--batch-size {cfg.batch_size} must be a multiple of the {self.accelerator.num_processes} processes")
        self.model.train()
        tok = self.model.tokenizer
        self.protected = [int(t) for t in tok.all_special_ids]
        max_length = self.model.config.max_length
        targets = self.model.family.target_ids
        self.train_data = load_corpus(cfg.train_file, tok, max_length, targets=targets)
        if len(self.train_data) == 0:
            raise InputError(f"{cfg.train_file} has no sentences (empty, or only blank lines)")
        if cfg.valid_file:
            self.valid_data = load_corpus(cfg.valid_file, tok, max_length, limit=cfg.valid_size, targets=targets)
        else:
            self.valid_data = self._hold_out()
        if fresh and cfg.calibrate:
            from vaecli.calibrate import calibrate

            model = self.model
            calibrate(model, self.train_data.batch(range(min(CALIBRATION_ROWS, len(self.train_data))), model.input_pad_id, model.pad_id))
        self.stop = StopFlag()
        self.best = math.inf
        self.kept: dict[str, Any] | None = None  # the validation of the saved model
        self.validations_without_gain = 0
        self.steps_per_second: dict[str, float] = {}

    def _hold_out(self) -> Corpus:
        """Without --valid: the last 5% of the training lines (at most valid_size) are held out."""
        data = self.train_data
        if len(data) < 2:
            return data  # one sentence: validate on it
        self.train_data, valid = data.split(min(self.cfg.valid_size, max(1, len(data) // 20)))
        return valid

    # -- helpers -------------------------------------------------------------------------------

    def emit(self, kind: str, **values: Any) -> None:
        if self.accelerator.is_main_process:
            self.on_event({"kind": kind, **values})

    def log_metrics(self, record: dict[str, Any]) -> None:
        if self.accelerator.is_main_process:
            path = self.out / "metrics.jsonl"
            try:
                with open(path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
            except OSError as e:  # a torn last line is dropped on --resume (_trim_metrics)
                if is_disk_full(e):
                    raise disk_full(path) from None
                raise

    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.train_data) / self.cfg.batch_size)

    def phase_steps(self, phase: int) -> int:
        epochs = self.cfg.phase1_epochs if phase == 1 else self.cfg.phase2_epochs
        if epochs is not None:
            return max(1, math.ceil(epochs * self.batches_per_epoch()))
        return self.cfg.phase1_steps if phase == 1 else self.cfg.phase2_steps

    def loader(self, phase: int, epoch: int, skip: int) -> Any:
        from torch.utils.data import DataLoader

        data = self.train_data
        batches = length_batches(data.lengths, self.cfg.batch_size, self.cfg.seed + 1000 * phase, epoch)
        model = self.accelerator.unwrap_model(self.model)
        pad_id, target_pad_id = model.input_pad_id, model.pad_id
        # A private generator: creating the iterator must not draw from the global RNG (exact resume).
        loader = DataLoader(range(len(data)), batch_sampler=Batches(batches, self.cfg.batch_size), generator=torch.Generator().manual_seed(0),
                            collate_fn=lambda rows: data.batch(rows, pad_id, target_pad_id))
        loader = self.accelerator.prepare_data_loader(loader)
        return self.accelerator.skip_first_batches(loader, skip) if skip else loader

    def batch_stream(self, phase: int, start_step: int):
        per_epoch = self.batches_per_epoch()
        epoch, skip = divmod(start_step, per_epoch)
        while True:
            yield from self.loader(phase, epoch, skip)
            epoch, skip = epoch + 1, 0

    # -- validation ----------------------------------------------------------------------------

    def validate(self, model: VAEModel) -> dict[str, float]:
        return validate(model, self.valid_data, self.cfg.batch_size, self.cfg.seed, self.accelerator)

    # -- the loop ------------------------------------------------------------------------------

    def trainer_state(self, phase: int, step: int) -> dict[str, Any]:
        return {
            "config": self.cfg.to_dict(),
            "phase": phase,
            "step": step,
            "best": self.best if math.isfinite(self.best) else None,
            "kept": self.kept,
            "validations_without_gain": self.validations_without_gain,
        }

    def run(self) -> Path:
        phases = {"both": [1, 2], "1": [1], "2": [2]}[self.cfg.phase]
        start_phase, start_step = phases[0], 0
        if self.resume_state is not None:
            saved = self.resume_state["trainer"]
            start_phase, start_step = saved["phase"], saved["step"]
            self.best = saved["best"] if saved["best"] is not None else math.inf
            self.validations_without_gain = saved["validations_without_gain"]
            self.kept = saved.get("kept")
            self._trim_metrics(start_phase, start_step)
        self.stop.install()
        try:
            for phase in phases:
                if phase < start_phase:
                    continue
                self.run_phase(phase, start_step if phase == start_phase else 0)
                if phase == 1 and 2 in phases and self.accelerator.is_main_process:
                    save_model(self.accelerator.unwrap_model(self.model), self.out / "phase1")
        finally:
            self.stop.uninstall()
        self.write_training_json()
        if self.kept is not None:
            self.emit("kept", **self.kept)
        return self.out

    def _trim_metrics(self, phase: int, step: int) -> None:
        """Drop records written after the checkpoint, so a resumed run's metrics.jsonl has no repeats.

        A line that does not parse (the torn tail a kill during the append leaves) is dropped too:
        it can only be the last record, and the resumed run writes it again.
        """
        from vaecli.atomic import atomic_write_bytes
        from vaecli.io import read_records

        path = self.out / "metrics.jsonl"
        if not path.exists() or not self.accelerator.is_main_process:
            return
        keep = [r for r in read_records(path) if (r.get("phase", 0), r.get("step", 0)) <= (phase, step)]
        atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in keep).encode("utf-8"))

    def run_phase(self, phase: int, start_step: int) -> None:
        from transformers import get_linear_schedule_with_warmup

        cfg, acc = self.cfg, self.accelerator
        model = acc.unwrap_model(self.model)
        for p in model.parameters():
            p.requires_grad_(True)
        if cfg.lora or (phase == 1 and cfg.freeze_decoder) or (phase == 2 and cfg.freeze_decoder_phase2):
            model.freeze_decoder()
        total = self.phase_steps(phase)
        params = [p for p in model.parameters() if p.requires_grad]
        new = {id(p) for p in model.new_parameters()}
        groups = [{"params": [p for p in params if id(p) not in new], "lr": cfg.lr},
                  {"params": [p for p in params if id(p) in new], "lr": cfg.lr * cfg.new_lr_scale}]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=cfg.weight_decay)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup * total), max(1, total))
        if start_step > 0 and self.checkpoint_dir is not None:
            restore(self.checkpoint_dir, optimizer, scheduler, self.resume_state, self.accelerator.process_index)
        if start_step == 0:
            self.best, self.validations_without_gain, self.kept = math.inf, 0, None
        wrapped, optimizer = acc.prepare(model, optimizer)
        self.model = wrapped
        denoise = cfg.phase1_denoise if phase == 1 else cfg.denoise
        free_bits = 0.0 if phase == 1 else cfg.free_bits
        stream = self.batch_stream(phase, start_step)
        started, step = time.perf_counter(), start_step
        self.emit("phase", phase=phase, total=total, start=start_step)
        while step < total:
            if self.stop_requested():
                path = self.checkpoint(model, optimizer, scheduler, phase, step)
                raise Interrupted(path)
            batch = next(stream)
            beta = 0.0 if phase == 1 else beta_at(step, total, cfg.beta_schedule, cfg.beta_max, cfg.beta_cycles, cfg.beta_ramp)
            noisy_ids, noisy_mask = delete_tokens(batch["input_ids"], batch["attention_mask"], denoise, model.input_pad_id, self.protected)
            out = wrapped(noisy_ids, noisy_mask, batch.get("target_ids", batch["input_ids"]), batch.get("target_mask", batch["attention_mask"]),
                          beta=beta, free_bits=free_bits, word_dropout=cfg.word_dropout, bow=cfg.bow)
            if not torch.isfinite(out.loss):
                raise RunError(
                    f"the loss became {out.loss.item()} at phase {phase} step {step + 1}; "
                    f"lower --lr (now {cfg.lr}) or try --bf16 no; the last checkpoint is in {self.out / 'checkpoint'}"
                )
            acc.backward(out.loss)
            if cfg.clip > 0:
                acc.clip_grad_norm_(params, cfg.clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            # Logged values are means over the whole (global) batch, whatever the number of processes.
            loss, rec, kl = acc.reduce(torch.stack([out.loss, out.rec, out.kl]).detach().float(), "mean").tolist()
            values = {"phase": phase, "step": step, "total": total, "loss": loss, "rec": rec, "kl": kl, "beta": beta,
                      "lr": scheduler.get_last_lr()[0]}
            elapsed = time.perf_counter() - started
            values["steps_per_s"] = (step - start_step) / elapsed if elapsed > 0 else 0.0
            self.emit("step", **values)
            if step % LOG_EVERY == 0 or step == total:
                self.log_metrics({"kind": "train", **values})
            stop_early = False
            if step % cfg.valid_every == 0 or step == total:
                stop_early = self.validate_and_keep(model, phase, step)
            if step % cfg.save_every == 0 or step == total or stop_early:
                self.checkpoint(model, optimizer, scheduler, phase, step)
            if stop_early:
                self.emit("message", text=f"early stopping at phase {phase} step {step}: no better validation Rec in {cfg.patience} validations")
                break
        self.steps_per_second[f"phase{phase}"] = (step - start_step) / max(1e-9, time.perf_counter() - started)
        self.model = model

    def stop_requested(self) -> bool:
        """Whether any process got a stop signal: all processes stop at the same step."""
        if self.accelerator.num_processes == 1:
            return self.stop.requested
        flag = torch.tensor([1.0 if self.stop.requested else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, "sum").item() > 0)

    def validate_and_keep(self, model: VAEModel, phase: int, step: int) -> bool:
        """Validate, save the model directory when the score improves; True when early stopping is due."""
        metrics = self.validate(model)
        dims = model.config.latent_dim
        score = keep_score(metrics)
        improved = score < self.best
        if improved:
            self.best, self.validations_without_gain = score, 0
            self.kept = {"phase": phase, "step": step, "dims": dims, **metrics}
            if self.accelerator.is_main_process:
                save_model(model, self.out)
        else:
            self.validations_without_gain += 1
        self.log_metrics({"kind": "valid", "phase": phase, "step": step, **metrics, "best": improved})
        self.emit("valid", phase=phase, step=step, best=improved, dims=dims, **metrics)
        warning = collapse_warning(self.cfg, phase, metrics, self.phase_steps(1))
        if warning:
            self.emit("message", text=warning)
        return phase == 2 and self.cfg.patience > 0 and self.validations_without_gain >= self.cfg.patience

    def checkpoint(self, model: VAEModel, optimizer: Any, scheduler: Any, phase: int, step: int) -> Path:
        acc = self.accelerator
        rng = [torch.get_rng_state()]
        if acc.num_processes > 1:
            from accelerate.utils import gather_object

            rng = gather_object(rng)  # every process resumes with its own random stream
        path = self.out / "checkpoint"
        if acc.is_main_process:
            path = save_checkpoint(self.out, model, optimizer, scheduler, self.trainer_state(phase, step), rng)
        acc.wait_for_everyone()
        return path

    def write_training_json(self) -> None:
        if not self.accelerator.is_main_process:
            return
        from vaecli.atomic import atomic_write_bytes

        record = {
            "config": self.cfg.to_dict(),
            "resolved": {
                "phase1_steps": self.phase_steps(1),
                "phase2_steps": self.phase_steps(2),
                "bf16": self.accelerator.mixed_precision == "bf16",
                "processes": self.accelerator.num_processes,
                "train_sentences": len(self.train_data),
                "valid_sentences": len(self.valid_data),
                "blank_lines_skipped": self.train_data.blank,
                "lines_truncated": self.train_data.truncated,
                "steps_per_second": self.steps_per_second,
                "parameters": self.accelerator.unwrap_model(self.model).num_parameters(),
            },
            "seed": self.cfg.seed,
            "versions": versions(),
        }
        atomic_write_bytes(self.out / "training.json", (json.dumps(record, indent=2) + "\n").encode())


def is_main_process() -> bool:
    """False in the non-main processes of an `accelerate launch` / torchrun job."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available()).is_main_process


def finetune(cfg: TrainConfig, on_event: Callable[[Event], None] | None = None, resume: bool = False, overwrite: bool = False,
             given: set[str] | None = None) -> Path:
    """Run `vae finetune`; returns the model directory. `given`: the TrainConfig fields the user set
    (the CLI's options on the command line); with --resume, those that differ from the checkpoint's
    are applied where they can change (RESUMABLE) and refused otherwise."""
    try:
        trainer = Trainer(cfg, on_event, resume, overwrite, given)
    except ConfigError as e:
        raise RunError(str(e)) from None
    try:
        trainer.emit(
            "data",
            train=len(trainer.train_data),
            valid=len(trainer.valid_data),
            blank=trainer.train_data.blank,
            truncated=trainer.train_data.truncated,
        )
        for note in trainer.notes:
            trainer.emit("message", text=note)
        return trainer.run()
    finally:
        if trainer.run_dir is not None:
            trainer.run_dir.release()

