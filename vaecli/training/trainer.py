"""The finetuning loop: phase 1 (beta = 0, the decoder learns to read z), then phase 2 (the full VAE), on accelerate.

Read top to bottom: `finetune` runs the phases, `train_phase` is the loop (batch, forward, backward,
step, log, validate, checkpoint). What a run needs before its first step is built in `setup.py`;
the files it writes belong to `rundir.RunDir` (metrics, training.json, the kept model) and
`checkpoint.py` (what --resume needs). Progress goes to an `on_event` callback (the CLI draws it);
nothing here prints. The data order is a pure function of (seed, phase, epoch), so a resumed run
repeats the uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path
from time import perf_counter
from typing import Any, Callable, Iterator

import torch

from vaecli.config import VALID_BATCH_MIN, TrainConfig
from vaecli.errors import ConfigError, Interrupted, RunError
from vaecli.modeling.layout import CHECKPOINT_DIR, WEIGHTS_NAME
from vaecli.modeling.precision import frozen_weights_cast_once, training_attention
from vaecli.modeling.randomness import rng_states
from vaecli.modeling.tokens import length_batches
from vaecli.modeling.vae import VAEModel
from vaecli.training.checkpoint import restore, save_checkpoint
from vaecli.training.data import Batches, delete_tokens
from vaecli.training.diagnose import Keeper, collapse_warning
from vaecli.training.pace import (
    LoopTime,
    Retiming,
    describe,
    describe_replan,
    mean_batch_tokens,
    seconds_of,
    seconds_per_token,
    steps_for,
    update_seconds,
    validation_seconds,
)
from vaecli.training.prior import fit_aggregate_prior
from vaecli.training.schedule import WarmupDecay, beta_at, distill_at
from vaecli.training.setup import Event, Run, start_run, versions
from vaecli.training.validation import validate

LOG_EVERY = 10  # a training record in metrics.jsonl every this many steps


def finetune(cfg: TrainConfig, on_event: Callable[[Event], None] | None = None, resume: bool = False, overwrite: bool = False,
             given: set[str] | None = None) -> Path:
    """Run `vae finetune`; returns the model directory. `given`: the TrainConfig fields the user set
    (the CLI's options on the command line); with --resume, those that differ from the checkpoint's
    are applied where they can change (config.RESUMABLE) and refused otherwise."""
    try:
        run = start_run(cfg, on_event, resume, overwrite, given or set())
    except ConfigError as e:  # a checkpoint's settings that no longer validate: the run cannot go on
        raise RunError(str(e)) from None
    try:
        data = run.train_data
        run.emit("data", train=len(data), valid=len(run.valid_data), blank=data.blank, truncated=data.truncated)
        for note in run.notes:
            run.emit("message", text=note)
        phases = [p for p in {"both": [1, 2], "1": [1], "2": [2]}[run.cfg.phase] if run.phase_runs(p)]
        start_phase, start_step = phases[0], 0
        if run.resume_state is not None:
            saved = run.resume_state["trainer"]
            start_phase, start_step = saved["phase"], saved["step"]
            run.timed_steps = {int(p): n for p, n in saved.get("timed_steps", {}).items()}
            run.keeper = Keeper.from_state(saved)
            run.run_dir.trim_metrics(start_phase, start_step)
        run.stop.install()
        try:
            for phase in phases:
                if phase < start_phase:
                    continue
                train_phase(run, phase, start_step if phase == start_phase else 0)
                if phase == 1 and 2 in phases:
                    run.run_dir.save_model(run.model, phase1=True)
        finally:
            run.stop.uninstall()
        if run.accelerator.is_main_process and len(run.train_data) >= 2:
            if run.keeper.kept is not None:  # the prior belongs to the kept weights: loaded in place, no second model in memory
                run.model.load_weights(run.run_dir.path / WEIGHTS_NAME)
            with run.accelerator.autocast():  # the precision training ran in (bf16: 2.2x faster for SmolLM2 reading)
                prior = fit_aggregate_prior(run.model.eval(), run.train_data, run.cfg.seed, run.cfg.prior_sentences)
            run.run_dir.save_prior(prior)
        run.run_dir.write_training(training_record(run))
        run.tracking.end()
        if run.keeper.kept is not None:
            run.emit("kept", **run.keeper.kept)
        return run.run_dir.path
    finally:
        run.run_dir.release()


def train_phase(run: Run, phase: int, start_step: int) -> None:
    """Phase `phase` from `start_step` to its last step (or an early stop); in bf16, its frozen weights cast once."""
    params = set_trainable(run.model, run.cfg, phase)
    with frozen_weights_cast_once(run.model, run.accelerator.mixed_precision == "bf16"):
        phase_steps(run, phase, start_step, params)


def phase_steps(run: Run, phase: int, start_step: int, params: list[torch.nn.Parameter]) -> None:
    """The steps of train_phase, `params` training."""
    cfg, acc, model = run.cfg, run.accelerator, run.model
    protected = [int(t) for t in model.tokenizer.all_special_ids]  # never deleted by the denoising
    if run.phase_minutes(phase) is not None and phase not in run.timed_steps:
        time_steps(run, phase, params, protected)
    total = run.phase_steps(phase)
    optimizer, scheduler = make_optimizer(model, params, cfg, total)
    if start_step > 0 and run.checkpoint_dir is not None:
        restore(run.checkpoint_dir, optimizer, scheduler, run.resume_state, acc.process_index, acc.device)
    if start_step == 0:
        run.keeper = Keeper()
    wrapped, optimizer = acc.prepare(model, optimizer)
    stream = batch_stream(run, phase, start_step)
    started, step = perf_counter(), start_step
    spent = LoopTime()
    retiming = Retiming(total if run.phase_minutes(phase) is not None and start_step == 0 else 0)
    run.emit("phase", phase=phase, total=total, start=start_step)
    while step < total:
        if stop_requested(run):
            raise Interrupted(checkpoint(run, optimizer, scheduler, phase, step))
        batch = next(stream)
        beta = 0.0 if phase == 1 else beta_at(step, total, cfg.beta_schedule, cfg.beta_max, cfg.beta_cycles, cfg.beta_ramp)
        out = forward(run, wrapped, batch, phase, beta, protected, distill_at(step, total, cfg.distill, cfg.distill_decay))
        if not torch.isfinite(out.loss):
            raise RunError(f"the loss became {out.loss.item()} at phase {phase} step {step + 1}; lower --lr (now {cfg.lr}) or try "
                           f"--bf16 no; the last checkpoint is in {run.run_dir.path / CHECKPOINT_DIR}")
        acc.backward(out.loss)
        if cfg.clip > 0:
            acc.clip_grad_norm_(params, cfg.clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        # Logged values are means over the whole (global) batch, whatever the number of processes.
        logged = [out.loss, out.rec, out.kl] + ([out.distill] if out.distill is not None else [])
        loss, rec, kl, *match = acc.reduce(torch.stack(logged).detach().float(), "mean").tolist()
        elapsed = perf_counter() - started
        values = {"phase": phase, "step": step, "total": total, "loss": loss, "rec": rec, "kl": kl, "beta": beta,
                  "lr": scheduler.get_last_lr()[0], "steps_per_s": (step - start_step) / elapsed if elapsed > 0 else 0.0}
        if match:  # --distill: the hidden states' mismatch with the teacher's (modeling.distill)
            values["distill"] = match[0]
        run.emit("step", **values)
        if step % LOG_EVERY == 0 or step == total:
            run.run_dir.log({"kind": "train", **values})
            run.tracking.record({"kind": "train", **values})
        stop_early = False
        if step % cfg.valid_every == 0 or step == total:
            mark = perf_counter()
            stop_early = validate_and_keep(run, model, phase, step)
            spent.validations, spent.validation_seconds = spent.validations + 1, spent.validation_seconds + perf_counter() - mark
        if step == retiming.at:  # before this step's checkpoint, which then holds the new length
            total = retime(run, phase, scheduler, step, perf_counter() - started, spent)
            retiming.next_after(total, step)
        if step % cfg.save_every == 0 or step == total or stop_early:
            mark = perf_counter()
            checkpoint(run, optimizer, scheduler, phase, step)
            spent.checkpoint_seconds += perf_counter() - mark
        if stop_early:
            run.emit("message", text=f"early stopping at phase {phase} step {step}: no better validation Rec in {cfg.patience} validations")
            break
    seconds = perf_counter() - started
    run.steps_per_second[f"phase{phase}"] = (step - start_step) / max(1e-9, seconds)
    if run.phase_minutes(phase) is not None and start_step == 0:  # whether the timing held (a resumed phase ran in parts)
        run.emit("message", text=f"phase {phase}: {step} steps and their validations took {seconds / 60:.1f} minutes of its "
                                 f"{run.phase_minutes(phase):g}")


def retime(run: Run, phase: int, scheduler: Any, step: int, elapsed: float, spent: LoopTime) -> int:
    """A phase in minutes, `step` steps and `elapsed` seconds into its loop, times itself again (training.pace): its steps'
    own seconds (the loop's less its validations and checkpoints) and the time left give its new step count; the learning
    rate goes on from where it stands to 0 at the new count. Every process takes the slowest's count; returns it."""
    acc, cfg = run.accelerator, run.cfg
    step_seconds, valid_seconds = spent.step_seconds(elapsed, step), spent.validation(run.timed_validation.get(phase, 0.0))
    step_seconds, valid_seconds, elapsed = acc.gather(torch.tensor([[step_seconds, valid_seconds, elapsed]],
                                                                   device=acc.device)).max(dim=0).values.tolist()
    before = run.timed_steps[phase]
    total = run.timed_steps[phase] = steps_for(run.phase_minutes(phase), step_seconds, valid_seconds, cfg.valid_every,
                                               done=step, spent=elapsed)
    scheduler.lr_lambdas[0].retime(step, total)  # one WarmupDecay, shared by every parameter group (make_optimizer)
    if phase == 1 and cfg.phase == "both":
        run.tracking.phase1_steps = total
    if total != before:
        run.emit("message", text=describe_replan(phase, step, step_seconds, total, before))
    return total


def forward(run: Run, wrapped: Any, batch: dict[str, torch.Tensor], phase: int, beta: float, protected: list[int],
            distill: float | None = None) -> Any:
    """The training forward of one batch: the phase's token deletion on the encoder's input, then the VAE's loss (--distill's
    weight `distill`, else its setting)."""
    cfg, acc, model = run.cfg, run.accelerator, run.model
    denoise = cfg.phase1_denoise if phase == 1 else cfg.denoise
    noisy_ids, noisy_mask = delete_tokens(batch["input_ids"], batch["attention_mask"], denoise, model.input_pad_id, protected)
    with training_attention(acc.device.type, acc.mixed_precision == "bf16"):
        return wrapped(noisy_ids, noisy_mask, batch.get("target_ids", batch["input_ids"]), batch.get("target_mask", batch["attention_mask"]),
                       beta=beta, free_bits=0.0 if phase == 1 else cfg.free_bits, word_dropout=cfg.word_dropout, bow=cfg.bow,
                       distill=cfg.distill if distill is None else distill)


def time_steps(run: Run, phase: int, params: list[torch.nn.Parameter], protected: list[int]) -> None:
    """--phaseN-minutes -> the phase's steps (training.pace): passes on its first batches time a step, an update on zero
    gradients its clipping and optimizer, a few validation sentences a validation; every process takes the slowest's count."""
    acc, model, cfg = run.accelerator, run.model, run.cfg

    def run_pass(batch: dict[str, torch.Tensor]) -> None:
        with acc.autocast():  # the precision the loop runs in (the model is not prepared by accelerate yet in phase 1)
            out = forward(run, model, batch, phase, cfg.beta_max if phase == 2 else 0.0, protected)
        # the backward's cost without touching .grad (nor the gradient hooks of a model that data parallelism wrapped before)
        torch.autograd.grad(out.loss, params, allow_unused=True)

    per_token = seconds_per_token(batch_stream(run, phase, 0), run_pass)
    step_seconds = per_token * mean_batch_tokens(epoch_batches(run, phase, 0), run.train_data.lengths) / acc.num_processes
    step_seconds += update_seconds(params, lambda: make_optimizer(model, params, cfg, 1)[0], cfg.clip)
    valid_seconds = 0.0
    if len(run.valid_data):
        size = max(cfg.batch_size, VALID_BATCH_MIN)
        few = run.valid_data.split(min(size, len(run.valid_data)))[1]
        valid_seconds = validation_seconds(seconds_of(lambda: validate(model, few, size, cfg.seed, acc), acc.device), few.lengths, run.valid_data.lengths, size)
    step_seconds, valid_seconds = acc.gather(torch.tensor([[step_seconds, valid_seconds]], device=acc.device)).max(dim=0).values.tolist()
    run.timed_validation[phase] = valid_seconds
    minutes = run.phase_minutes(phase)
    steps = run.timed_steps[phase] = steps_for(minutes, step_seconds, valid_seconds, cfg.valid_every)
    if phase == 1 and cfg.phase == "both":
        run.tracking.phase1_steps = steps  # phase 2's records follow phase 1's on a tracker's step axis
    run.emit("message", text=describe(phase, minutes, step_seconds, steps, valid_seconds, cfg.valid_every))


def set_trainable(model: VAEModel, cfg: TrainConfig, phase: int) -> list[torch.nn.Parameter]:
    """Unfreeze everything, then freeze what this phase keeps fixed; returns the parameters that train."""
    for p in model.parameters():
        p.requires_grad_(True)
    if cfg.lora or (phase == 1 and cfg.freeze_decoder) or (phase == 2 and cfg.freeze_decoder_phase2):
        model.freeze_decoder()
    return [p for p in model.parameters() if p.requires_grad]


def make_optimizer(model: VAEModel, params: list[torch.nn.Parameter], cfg: TrainConfig, total: int) -> tuple[Any, Any]:
    """AdamW with the pretrained weights at --lr and the VAE's own layers at --lr x --new-lr-scale; linear
    warm-up over --warmup of the phase's real steps, then linear decay to 0 (schedule.WarmupDecay).

    AdamW runs fused (one kernel over every tensor): the same update as its per-tensor loop, measured 6.8x faster on
    the default's 25M trainable parameters (16 ms against 110 ms a step, 9% of a step)."""
    new = {id(p) for p in model.new_parameters()}
    groups = [{"params": [p for p in params if id(p) not in new], "lr": cfg.lr},
              {"params": [p for p in params if id(p) in new], "lr": cfg.lr * cfg.new_lr_scale}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=cfg.weight_decay, fused=True)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupDecay(int(cfg.warmup * total), max(1, total)))


def batch_stream(run: Run, phase: int, start_step: int) -> Iterator[dict[str, torch.Tensor]]:
    """Training batches from `start_step` on, epoch after epoch: the order is a function of (seed, phase, epoch)."""
    from torch.utils.data import DataLoader

    data, cfg, acc, model = run.train_data, run.cfg, run.accelerator, run.model
    per_epoch = -(-len(data) // cfg.batch_size)
    epoch, skip = divmod(start_step, per_epoch)
    while True:
        batches = epoch_batches(run, phase, epoch)
        # A private generator: creating the iterator must not draw from the global RNG (exact resume).
        loader = DataLoader(range(len(data)), batch_sampler=Batches(batches, cfg.batch_size), generator=torch.Generator().manual_seed(0),
                            collate_fn=lambda rows: data.batch(rows, model.input_pad_id, model.pad_id))
        loader = acc.prepare_data_loader(loader)
        yield from acc.skip_first_batches(loader, skip) if skip else loader
        epoch, skip = epoch + 1, 0


def epoch_batches(run: Run, phase: int, epoch: int) -> list[Any]:
    """The training sentences' indices, batch by batch, of one epoch of a phase: a function of (seed, phase, epoch)."""
    return length_batches(run.train_data.lengths, run.cfg.batch_size, run.cfg.seed + 1000 * phase, epoch)


def validate_and_keep(run: Run, model: VAEModel, phase: int, step: int) -> bool:
    """Validate; save the model directory when the validation is the best so far; True when early stopping is due."""
    metrics = validate(model, run.valid_data, max(run.cfg.batch_size, VALID_BATCH_MIN), run.cfg.seed, run.accelerator)
    dims = model.config.latent_dim
    improved = run.keeper.judge(metrics, phase, step, dims)
    if improved:
        run.run_dir.save_model(model)
    record = {"kind": "valid", "phase": phase, "step": step, **metrics, "best": improved}
    run.run_dir.log(record)
    run.tracking.record(record)
    if run.tracking.enabled and run.accelerator.is_main_process:
        run.tracking.reconstructions(shown_reconstructions(model, run.valid_data), phase, step)
    run.emit("valid", phase=phase, step=step, best=improved, dims=dims, **metrics)
    warning = collapse_warning(run.cfg, phase, metrics, run.phase_steps(1))
    if warning:
        run.emit("message", text=warning)
    return phase == 2 and run.cfg.patience > 0 and run.keeper.without_gain >= run.cfg.patience


@torch.no_grad()
def shown_reconstructions(model: VAEModel, data: Any) -> list[tuple[str, str]]:
    """The first few validation sentences (as the decoder's tokenizer writes them) and their greedy reconstructions from mu."""
    from vaecli.inference.generate import generate
    from vaecli.training.tracking import SHOWN

    was_training = model.training
    model.eval()
    batch = {k: v.to(model.device) for k, v in data.batch(range(min(SHOWN, len(data))), model.input_pad_id, model.pad_id).items()}
    target = batch.get("target_ids", batch["input_ids"])
    mu, _ = model.posterior(batch["input_ids"], batch["attention_mask"])
    out = generate(model, mu.float(), model.config.max_length)
    tok = model.decoder_tokenizer
    refs = tok.batch_decode(target.tolist(), skip_special_tokens=True)
    model.train(was_training)
    return [(a.strip(), b.strip()) for a, b in zip(refs, tok.batch_decode(out, skip_special_tokens=True))]


def checkpoint(run: Run, optimizer: Any, scheduler: Any, phase: int, step: int) -> Path:
    """Write what --resume needs (every process's RNG state included); returns the checkpoint's path."""
    acc = run.accelerator
    rng = [rng_states(acc.device)]
    if acc.num_processes > 1:
        from accelerate.utils import gather_object

        rng = gather_object(rng)  # every process resumes with its own random stream
    path = run.run_dir.path / CHECKPOINT_DIR
    if acc.is_main_process:
        state = {"config": run.cfg.to_dict(), "phase": phase, "step": step, **run.keeper.state(),
                 "timed_steps": {str(p): n for p, n in run.timed_steps.items()}}
        path = save_checkpoint(run.run_dir.path, run.model, optimizer, scheduler, state, rng)
    acc.wait_for_everyone()
    return path


def stop_requested(run: Run) -> bool:
    """Whether any process got a stop signal: all processes stop at the same step."""
    acc = run.accelerator
    if acc.num_processes == 1:
        return run.stop.requested
    flag = torch.tensor([1.0 if run.stop.requested else 0.0], device=acc.device)
    return bool(acc.reduce(flag, "sum").item() > 0)


def training_record(run: Run) -> dict[str, Any]:
    """training.json: the resolved settings, what the run saw and did, seed and library versions."""
    return {
        "config": run.cfg.to_dict(),
        "resolved": {
            "phase1_steps": run.phase_steps(1),
            "phase2_steps": run.phase_steps(2),
            "bf16": run.accelerator.mixed_precision == "bf16",
            "processes": run.accelerator.num_processes,
            "train_sentences": len(run.train_data),
            "valid_sentences": len(run.valid_data),
            "blank_lines_skipped": run.train_data.blank,
            "lines_truncated": run.train_data.truncated,
            "steps_per_second": run.steps_per_second,
            "parameters": run.model.num_parameters(),
            # where --valid is from any directory (`vae plot` reads it): the config keeps the path as given
            "valid_file": str(Path(run.cfg.valid_file).resolve()) if run.cfg.valid_file and Path(run.cfg.valid_file).exists() else None,
        },
        "seed": run.cfg.seed,
        "versions": versions(),
    }
