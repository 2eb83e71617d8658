"""Training: schedules, token deletion, batching, freezing, exact resume, the finetune CLI."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from vaecli.cli import app
from vaecli.config import TrainConfig, VAEConfig
from vaecli.errors import ConfigError, Interrupted, RunError
from vaecli.modeling.tokens import length_batches
from vaecli.modeling.vae import VAEModel
from vaecli.training.data import delete_tokens, load_corpus
from vaecli.training.schedule import beta_at
from vaecli.training.trainer import finetune

TINY = dict(batch_size=8, valid_every=4, save_every=100, bf16="no", valid_size=40, latent_dim=8, lr=1e-3)


def test_beta_schedules_on_real_steps():
    assert [beta_at(s, 10, "linear", 1.0, ramp=0.5) for s in range(0, 10, 2)] == [0.0, 0.4, 0.8, 1.0, 1.0]
    # 4 cycles over 8 steps: each cycle is 2 steps, rising over its first half.
    assert [beta_at(s, 8, "cyclical", 2.0, cycles=4, ramp=0.5) for s in range(8)] == [0.0, 2.0] * 4
    cyc = [beta_at(s, 100, "cyclical", 1.0, cycles=4, ramp=0.5) for s in range(100)]
    assert cyc[0] == 0.0 and cyc[12] == pytest.approx(12 / 12.5) and cyc[13] == 1.0 and cyc[25] == 0.0
    assert max(cyc) == 1.0  # beta_max is reached whatever the budget (authors' bug 3)
    assert {beta_at(s, 7, "constant", 0.3) for s in range(7)} == {0.3}


def test_token_deletion_keeps_ids_and_mask_aligned():
    ids = torch.tensor([[5, 10, 11, 12, 13, 1, 0, 0], [5, 20, 21, 1, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    gen = torch.Generator().manual_seed(0)
    new_ids, new_mask = delete_tokens(ids, mask, 0.5, pad_id=0, protected=[5, 1], generator=gen)
    for row, (old, m) in enumerate(zip(ids.tolist(), mask.tolist())):
        kept = [t for t, k in zip(new_ids[row].tolist(), new_mask[row].tolist()) if k]
        assert new_mask[row].tolist() == sorted(new_mask[row].tolist(), reverse=True)  # real tokens first
        assert all(t != 0 for t in kept) and all(t == 0 for t, k in zip(new_ids[row].tolist(), new_mask[row].tolist()) if not k)
        real = [t for t, k in zip(old, m) if k]
        it = iter(real)
        assert all(t in it for t in kept)  # a subsequence, order kept
        assert kept[0] == 5 and kept[-1] == 1  # special tokens never deleted
    assert new_mask.sum() < mask.sum()
    same = delete_tokens(ids, mask, 0.0, pad_id=0)
    assert torch.equal(same[0], ids) and torch.equal(same[1], mask)


def test_length_batches_cover_each_index_once_and_repeat_by_seed():
    lengths = [(i * 7) % 13 + 1 for i in range(100)]
    def batches(epoch: int) -> list[list[int]]:
        return [b.tolist() for b in length_batches(lengths, 8, seed=1, epoch=epoch)]

    a = batches(0)
    assert sorted(i for b in a for i in b) == list(range(100))
    assert a == batches(0) and a != batches(1)
    # 100 sentences are one group: batches are consecutive runs of the length-sorted group.
    runs = sorted(([lengths[i] for i in b] for b in a), key=max, reverse=True)
    assert all(min(x) >= max(y) for x, y in zip(runs, runs[1:]))
    ordered = length_batches(lengths, 8, 0, 0, shuffle=False)
    flat = [lengths[i] for b in ordered for i in b]
    assert flat == sorted(lengths, reverse=True)


def test_corpus_counts_blank_and_truncated(t5_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(t5_dir)
    path = tmp_path / "c.txt"
    path.write_text("the old house\n\n   \nthe old man\r\n" + "the " * 50 + "end\nlast line without newline", encoding="utf-8")
    corpus = load_corpus(path, tok, max_length=10)
    assert corpus.blank == 2 and corpus.truncated == 1 and len(corpus) == 4
    rows = corpus.ids(range(4))
    assert rows[1] == tok("the old man")["input_ids"]  # CRLF stripped
    assert max(len(r) for r in rows) == 10 and corpus.lengths.tolist() == [len(r) for r in rows]
    assert rows[2][-1] == tok.eos_token_id  # truncation keeps the end-of-sentence token
    head, tail = corpus.split(1)
    assert len(head) == 3 and tail.ids([0]) == rows[3:] and head.blank == 2


def test_config_errors_are_reported_together():
    with pytest.raises(ConfigError) as e:
        TrainConfig(train_file="x", denoise=1.5, beta_schedule="sawtooth", injection="nope")
    assert "--denoise" in str(e.value) and "--beta-schedule" in str(e.value) and "injection" in str(e.value)


def test_a_run_with_no_steps_is_refused_before_anything_loads():
    with pytest.raises(ConfigError, match=r"^nothing to train: --phase both has 0 steps"):
        TrainConfig(train_file="x", phase1_steps=0)  # the causal pair's phase 2 has 0 steps by default
    with pytest.raises(ConfigError, match=r"^nothing to train: --phase 2 has 0 steps"):
        TrainConfig(train_file="x", phase="2")
    assert TrainConfig(train_file="x", phase="2", phase2_epochs=0.5).phase2_epochs == 0.5


def test_a_phase_of_0_steps_is_skipped(t5_dir, corpus, tmp_path):
    """Both phases asked for, phase 2 with 0 steps: phase 1's best is the model, no phase1/ copy, the prior fitted."""
    events: list[dict] = []
    out = tmp_path / "m"
    finetune(TrainConfig(train_file=str(corpus), model=str(t5_dir), out=str(out), phase1_steps=4, phase2_steps=0, **TINY), events.append)
    assert {e["phase"] for e in events if e["kind"] == "step"} == {1}
    kept = [e for e in events if e["kind"] == "kept"]
    assert len(kept) == 1 and kept[0]["phase"] == 1 and kept[0]["step"] == 4
    assert not (out / "phase1").exists() and (out / "prior.safetensors").is_file()


def test_validation_batches_hold_at_least_32_sentences(t5_dir, corpus, valid, tmp_path, monkeypatch):
    """Validation is forward only: batches of 16 took 1.5x the time of batches of 32 on 2 CPU cores (VALID_BATCH_MIN)."""
    import vaecli.training.validation as validation

    seen: list[list[int]] = []

    def spy(*args, **kwargs):
        batches = length_batches(*args, **kwargs)
        seen.append(sorted(len(b) for b in batches))
        return batches

    monkeypatch.setattr(validation, "length_batches", spy)
    finetune(TrainConfig(train_file=str(corpus), valid_file=str(valid), model=str(t5_dir), out=str(tmp_path / "m"), phase1_steps=4,
                         phase2_steps=0, **TINY))
    assert seen == [[8, 32]]  # --batch-size 8, 40 validation sentences, one validation (step 4)


def losses(events: list[dict]) -> list[tuple[int, int, float]]:
    return [(e["phase"], e["step"], e["loss"]) for e in events if e["kind"] == "step"]


def test_interrupted_run_resumes_exactly(t5_dir, corpus, tmp_path):
    """Ctrl-C in phase 2 writes a checkpoint; --resume repeats the uninterrupted run's losses bit for bit."""
    cfg = dict(train_file=str(corpus), model=str(t5_dir), phase1_steps=5, phase2_steps=6, denoise=0.3, **TINY)
    full: list[dict] = []
    finetune(TrainConfig(out=str(tmp_path / "full"), **cfg), full.append)

    part: list[dict] = []

    def interrupt_at_phase2_step3(event: dict) -> None:
        part.append(event)
        if event["kind"] == "step" and (event["phase"], event["step"]) == (2, 3):
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does

    out = tmp_path / "part"
    with pytest.raises(Interrupted):
        finetune(TrainConfig(out=str(out), **cfg), interrupt_at_phase2_step3)
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())
    assert (state["trainer"]["phase"], state["trainer"]["step"]) == (2, 3)
    rest: list[dict] = []
    finetune(TrainConfig(out=str(out), **cfg), rest.append, resume=True)
    assert losses(part) + losses(rest) == losses(full)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    full_records = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "steps_per_s"} for r in rs]  # noqa: E731
    assert strip(records) == strip(full_records)
    a, b = load_file(str(out / "model.safetensors")), load_file(str(tmp_path / "full" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_frozen_decoder_stays_bit_identical(t5_dir, corpus, tmp_path):
    out = tmp_path / "frozen"
    finetune(TrainConfig(train_file=str(corpus), model=str(t5_dir), out=str(out), phase="1", phase1_steps=4, freeze_decoder=True, **TINY))
    before = load_file(str(t5_dir / "model.safetensors"))
    after = {k.removeprefix("backbone."): v for k, v in load_file(str(out / "model.safetensors")).items()}
    decoder = [k for k in before if k.startswith("decoder.")]
    assert decoder and all(torch.equal(before[k], after[k]) for k in decoder)
    shared = VAEModel.from_pretrained(out).backbone.shared.weight  # saved once, under one of its tied names
    assert not torch.equal(before["shared.weight"], shared)  # tied with the encoder: it trains
    assert not torch.equal(before["encoder.block.0.layer.0.SelfAttention.q.weight"], after["encoder.block.0.layer.0.SelfAttention.q.weight"])
    fresh = load_file(str(out / "checkpoint" / "model.safetensors"))
    assert fresh["to_decoder.weight"].abs().sum() > 0 and fresh["to_mu.weight"].abs().sum() > 0


def test_existing_output_is_refused_unless_overwrite_or_resume(t5_dir, corpus, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    cfg = TrainConfig(train_file=str(corpus), model=str(t5_dir), out=str(out), phase1_steps=1, phase2_steps=1, **TINY)
    with pytest.raises(RunError, match="--overwrite"):
        finetune(cfg)
    with pytest.raises(RunError, match="no checkpoint"):
        finetune(cfg, resume=True)
    with pytest.raises(RunError, match="not a vaecli run or model directory"):
        finetune(cfg, overwrite=True)  # a folder vaecli did not write is never deleted
    (out / "config.json").write_text('{"vae": {}}')  # a vaecli model directory: replaced
    finetune(cfg, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").exists()


def test_cli_runs_phase1_then_phase2_from_its_directory(bart_dir, corpus, valid, tmp_path):
    runner = CliRunner()
    p1, p2 = tmp_path / "p1", tmp_path / "p2"
    common = ["--batch-size", "8", "--valid-every", "3", "--bf16", "no", "--latent-dim", "8", "--valid", str(valid)]
    r = runner.invoke(app, ["finetune", str(corpus), "--model", str(bart_dir), "--out", str(p1), "--phase", "1", "--phase1-steps", "3",
                            "--freeze-decoder", *common])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(p1)
    r = runner.invoke(app, ["finetune", str(corpus), "--model", str(p1), "--out", str(p2), "--phase", "2", "--phase2-steps", "3", *common])
    assert r.exit_code == 0, r.output
    training = json.loads((p2 / "training.json").read_text())
    assert training["config"]["model"] == str(p1) and training["resolved"]["phase2_steps"] == 3
    assert {"torch", "transformers", "vaecli"} <= set(training["versions"])
    records = [json.loads(line) for line in (p2 / "metrics.jsonl").read_text().splitlines()]
    valid_records = [r for r in records if r["kind"] == "valid"]
    assert [r["step"] for r in valid_records] == [3] and {"rec", "kl", "elbo", "au", "mi", "gap", "acc"} <= set(valid_records[0])
    assert "100 validation sentences" in r.stderr


@pytest.mark.parametrize("content", [b"\x1f\x8b\x08\x00binary", b"caf\xe9 au lait\n"])
def test_cli_refuses_bad_training_files_in_one_line(t5_dir, tmp_path, content):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    r = CliRunner().invoke(app, ["finetune", str(bad), "--model", str(t5_dir), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert len(r.stderr.strip().splitlines()) == 1 and str(bad) in r.stderr and "Traceback" not in r.output


def test_cli_missing_training_file(tmp_path):
    r = CliRunner().invoke(app, ["finetune", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "nope.txt" in r.stderr and len(r.stderr.strip().splitlines()) == 1


# -- which model is kept, and the collapse warnings ------------------------------------------------


class FakeModel:
    """What validate_and_keep touches: the latent size, and saving."""

    def __init__(self) -> None:
        self.config = VAEConfig(latent_dim=32)
        self.saved = 0

    def save_pretrained(self, path) -> None:
        self.saved += 1


def keep_run(cfg: TrainConfig, phase: int, records: list[dict], tmp_path, monkeypatch) -> tuple[list[dict], list[dict], FakeModel]:
    """trainer.validate_and_keep over fake validation records; returns the events and the metrics lines."""
    from types import SimpleNamespace

    from vaecli.training import trainer
    from vaecli.training.diagnose import Keeper
    from vaecli.training.rundir import RunDir
    from vaecli.training.tracking import Tracking

    queue, events = list(records), []
    tmp_path.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(trainer, "validate", lambda *args: queue.pop(0))  # no model, no data: only the keeping rule runs
    run = SimpleNamespace(cfg=cfg, keeper=Keeper(), run_dir=RunDir(tmp_path, resume=False, overwrite=False), valid_data=None,
                          accelerator=None, emit=lambda kind, **values: events.append({"kind": kind, **values}),
                          phase_steps=lambda phase: cfg.phase1_steps if phase == 1 else cfg.phase2_steps,
                          tracking=Tracking(None, False, 0))
    model = FakeModel()
    for step, _ in enumerate(records, start=1):
        trainer.validate_and_keep(run, model, phase, step * 100)
    run.run_dir.release()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return events, lines, model


USED = dict(rec=57.0, kl=9.9, elbo=66.9, au=32, mi=2.6, gap=2.7)  # z in use (the ablation's two-phase run)
COLLAPSED = dict(rec=58.3, kl=0.0, elbo=58.3, au=0, mi=0.0, gap=0.01)  # lower -ELBO, decoder ignores z


def test_phase2_keeps_the_best_reconstruction_not_the_best_elbo(tmp_path, monkeypatch):
    """A collapsed moment (KL 0) has the lower -ELBO; the kept model is the one whose decoder reads z."""
    cfg = TrainConfig(train_file="x", patience=0)
    events, lines, model = keep_run(cfg, 2, [USED, COLLAPSED, dict(USED, rec=57.5, elbo=67.0)], tmp_path, monkeypatch)
    assert [line["best"] for line in lines] == [True, False, False]
    assert model.saved == 1
    valid = [e for e in events if e["kind"] == "valid"]
    assert [(e["step"], e["best"], e["dims"]) for e in valid] == [(100, True, 32), (200, False, 32), (300, False, 32)]


def test_collapse_warning_in_both_phases_advises_only_what_is_not_set(tmp_path, monkeypatch):
    cfg = TrainConfig(train_file="x", model="minilm", phase1_steps=120, phase2_steps=120)  # encoder-decoder defaults
    phase1 = dict(rec=60.0, kl=5.0, elbo=65.0, au=0, mi=0.069, gap=0.022)
    events, _, _ = keep_run(cfg, 1, [phase1], tmp_path / "a", monkeypatch)
    assert [e["text"] for e in events if e["kind"] == "message"] == [
        "warning: phase 1: the decoder ignores z (AU 0, shuffle gap 0.022 nats). Try a longer phase 1 (now 120 steps), "
        "--freeze-decoder (phase 1 can then lower the loss only through z)"
    ]
    events, _, _ = keep_run(cfg, 2, [COLLAPSED, USED], tmp_path / "b", monkeypatch)
    assert [e["text"] for e in events if e["kind"] == "message"] == [
        "warning: phase 2: the decoder ignores z (AU 0, KL 0.000, shuffle gap 0.010 nats). Try a longer phase 1 (now 120 steps), "
        "--freeze-decoder (phase 1 can then lower the loss only through z), --free-bits 3 (now 0.5), --denoise 0.4 (now 0.15), "
        "--beta-max 0.5 (now 1)"
    ]
    # what is set already is not advised; never the default --beta-schedule cyclical
    set_up = TrainConfig(train_file="x", phase="2", phase2_steps=200, freeze_decoder=True, free_bits=3, denoise=0.5, beta_max=0.2)
    events, _, _ = keep_run(set_up, 2, [COLLAPSED], tmp_path / "c", monkeypatch)
    assert [e["text"] for e in events if e["kind"] == "message"] == ["warning: phase 2: the decoder ignores z (AU 0, KL 0.000, shuffle gap 0.010 nats)"]


def test_a_bf16_step_on_cpu_runs_the_math_attention_kernel_and_a_fused_adamw(llama_dir, corpus, tmp_path):
    # On a CPU in bf16, PyTorch's flash-attention backward is 2-3x slower than the math kernel's at sentence lengths,
    # and AdamW's per-tensor loop 6.8x slower than its fused kernel: the two made the default's step 1.5x slower.
    # Validation and the prior's fit (no backward) keep the flash kernel's faster forward.
    from torch.profiler import profile

    with profile() as prof:
        r = CliRunner().invoke(app, ["finetune", str(corpus), "--decoder", str(llama_dir), "--out", str(tmp_path / "m"), "--batch-size", "8",
                                     "--latent-dim", "6", "--phase1-steps", "3", "--phase2-steps", "0", "--bf16", "yes"])
    assert r.exit_code == 0, r.output
    ops = {e.key for e in prof.key_averages()}
    assert "aten::_scaled_dot_product_attention_math" in ops and "aten::_scaled_dot_product_flash_attention_for_cpu" in ops
    assert "aten::_scaled_dot_product_flash_attention_for_cpu_backward" not in ops
    assert "aten::_fused_adamw_" in ops


def test_the_model_is_on_the_runs_device_before_anything_runs_it(llama_dir, corpus, tmp_path, monkeypatch):
    # Found on a GPU (round twenty-four): a phase in minutes timed its first steps on a model still on the CPU, with the
    # batches already on the GPU ("Expected all tensors to be on the same device"), before accelerate moved the model;
    # the frozen weights' bf16 copies, made on entering a phase, would have been CPU copies too. On a CPU both places
    # are the CPU, so the order is what is checked: the model goes to the run's device before its first forward.
    from vaecli.training import trainer

    moves: list[torch.device] = []
    first_forward: list[list[torch.device]] = []
    to, forward = VAEModel.to, trainer.forward

    def spy_to(self, *args, **kwargs):
        moves.append(torch.device(args[0] if args else kwargs["device"]))
        return to(self, *args, **kwargs)

    def spy_forward(run, *args, **kwargs):
        if not first_forward:
            first_forward.append([*moves, run.accelerator.device])
        return forward(run, *args, **kwargs)

    monkeypatch.setattr(VAEModel, "to", spy_to)
    monkeypatch.setattr(trainer, "forward", spy_forward)
    cfg = TrainConfig(train_file=str(corpus), decoder=str(llama_dir), out=str(tmp_path / "m"), phase="1", phase1_minutes=0.02,
                      **{**TINY, "latent_dim": 6})
    finetune(cfg)
    *before, device = first_forward[0]
    assert before == [device]
