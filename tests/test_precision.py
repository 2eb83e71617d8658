"""Frozen weights cast to bf16 once a phase (modeling.precision.frozen_weights_cast_once): the same numbers as autocast's
own casts, for every family, and nothing saved changes."""

from __future__ import annotations

import json
from contextlib import nullcontext

import pytest
import torch
from torch import nn

from vaecli.modeling.precision import frozen_weights_cast_once


def test_frozen_linear_computes_what_autocast_computed():
    torch.manual_seed(0)
    frozen, trained = nn.Linear(6, 5), nn.Linear(5, 3)
    frozen.requires_grad_(False)
    model = nn.Sequential(frozen, nn.GELU(), trained)
    x = torch.randn(4, 6, requires_grad=True)

    def run() -> tuple[torch.Tensor, ...]:
        x.grad, trained.weight.grad = None, None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = model(x)
        y.float().square().sum().backward()
        return y, x.grad, trained.weight.grad

    before = run()
    weights = {name: p for name, p in model.named_parameters()}
    with frozen_weights_cast_once(model, bf16=True):
        assert "forward" in vars(frozen) and "forward" not in vars(trained)  # only the frozen layer computes with a copy
        inside = run()
        plain = model(x)  # outside autocast: float32, as before
    assert all(torch.equal(a, b) for a, b in zip(before, inside))
    assert inside[0].dtype == torch.bfloat16
    torch.testing.assert_close(plain, nn.Sequential(frozen, nn.GELU(), trained).forward(x), rtol=0, atol=0)
    assert plain.dtype == torch.float32
    assert "forward" not in vars(frozen)  # the class's forward again
    assert {name: p for name, p in model.named_parameters()} == weights
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with frozen_weights_cast_once(model, bf16=False):
        assert "forward" not in vars(frozen)


def test_a_layer_that_starts_training_in_the_block_computes_with_its_own_weight():
    """Phase 2 may unfreeze what phase 1 froze: a weight that takes a gradient is read, not the copy."""
    frozen = nn.Linear(4, 4)
    frozen.requires_grad_(False)
    x = torch.randn(2, 4)
    with frozen_weights_cast_once(frozen, bf16=True):
        frozen.requires_grad_(True)
        with torch.no_grad():
            frozen.weight.mul_(2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = frozen(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(y, nn.Linear.forward(frozen, x))


@pytest.mark.parametrize("family", ["t5", "bart", "llama reading itself", "bert + gpt2"])
def test_a_bf16_run_is_the_same_with_and_without(family, t5_dir, bart_dir, bert_dir, llama_dir, gpt2_dir, corpus, tmp_path, monkeypatch):
    """Two bf16 runs of both phases, the second with autocast casting the frozen weights itself: the same losses at every
    step and the same saved weights, bit for bit."""
    pytest.importorskip("peft")
    from safetensors.torch import load_file

    import vaecli.training.trainer as trainer
    from vaecli.config import TrainConfig

    backbone = {"t5": dict(model=str(t5_dir), freeze_decoder=True), "bart": dict(model=str(bart_dir), freeze_decoder=True),
                "llama reading itself": dict(decoder=str(llama_dir), encoder="decoder", lora=2),
                "bert + gpt2": dict(encoder=str(bert_dir), decoder=str(gpt2_dir), lora=2)}[family]
    import vaecli.modeling.precision as precision

    copied = []  # the frozen layers given a bf16 copy in the first run: that run did compute with copies
    real_cast_once = precision._cast_once
    monkeypatch.setattr(precision, "_cast_once", lambda linear, weight: copied.append(weight.dtype) or real_cast_once(linear, weight))
    runs = []
    for cast_once in (True, False):
        if not cast_once:
            monkeypatch.setattr(trainer, "frozen_weights_cast_once", lambda *args: nullcontext())
        out = trainer.finetune(TrainConfig(train_file=str(corpus), out=str(tmp_path / str(cast_once)), phase1_steps=3, phase2_steps=2,
                                           batch_size=8, valid_every=100, save_every=100, bf16="yes", valid_size=16, latent_dim=8,
                                           prior_sentences=16, **backbone))
        losses = [(r["step"], r["loss"]) for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"]
        runs.append((losses, load_file(out / "model.safetensors")))
    assert copied and set(copied) == {torch.bfloat16}
    (losses, saved), (losses_cast_by_autocast, saved_cast_by_autocast) = runs
    assert len(losses) == 2 and losses == losses_cast_by_autocast  # each phase's last step is logged
    assert saved.keys() == saved_cast_by_autocast.keys()
    for name, tensor in saved.items():
        assert tensor.dtype == torch.float32 and torch.equal(tensor, saved_cast_by_autocast[name]), name


def test_autocast_weight_is_the_copy_made_once_within_the_block():
    """z's vocabulary bias multiplies by the output table itself: in a bf16 step it gets the copy made once (the numbers
    autocast's own cast gives), and the weight itself everywhere else."""
    from vaecli.modeling.precision import autocast_weight
    from vaecli.modeling.vocab_bias import vocab_biases

    torch.manual_seed(0)
    head, to_vocab = nn.Linear(6, 11, bias=False), nn.Linear(4, 6)
    head.requires_grad_(False)
    z = torch.randn(3, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert autocast_weight(head.weight) is head.weight  # no block: autocast casts as it always did
        cast_by_autocast = vocab_biases(to_vocab, z, head.weight, 1)
    with frozen_weights_cast_once(head, bf16=True):
        assert autocast_weight(head.weight) is head.weight  # outside autocast: the float32 weight
        with torch.autocast("cpu", dtype=torch.bfloat16):
            copy = autocast_weight(head.weight)
            assert copy.dtype == torch.bfloat16 and torch.equal(copy, head.weight.to(torch.bfloat16))
            assert autocast_weight(head.weight) is copy  # made once, not per call
            assert autocast_weight(to_vocab.weight) is to_vocab.weight  # a weight that trains is cast by autocast
            with_copy = vocab_biases(to_vocab, z, head.weight, 1)
    assert torch.equal(with_copy, cast_by_autocast)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert autocast_weight(head.weight) is head.weight  # the block's copies are gone with it

