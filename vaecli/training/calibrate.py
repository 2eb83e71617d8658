"""Data-dependent initialisation of the VAE's own layers, from one batch of training sentences.

With random heads, mu barely varies between sentences (MiniLM's pooled states differ by little), so
z is close to a constant and a pretrained decoder learns a constant prompt instead of reading it
(measured: 60 phase-1 steps of MiniLM + SmolLM2 ended with 0 active units and a 0.15-nat shuffle
gap). Calibration fixes the scales before the first step:

- mu: each dimension is rescaled and shifted to mean 0, standard deviation 1 over the batch, so
  the aggregate posterior starts with the prior's moments and every unit is active;
- the projections into the decoder: each is rescaled so that what z writes is `scale` (--write-scale) times
  the size of what the decoder already carries there -- the RMS of its input embeddings (embedding
  injection), and of each layer's keys and values on the same sentences (prefix injection). At full
  size the random writes disrupt the pretrained LM, and the quickest way to lower the loss is to
  make z constant (measured: mu's spread collapsed again, 4 of 32 units active after 60 steps);
  small writes leave the LM intact while their gradients already depend on the sentence.

Only scales change (the random directions stay), so the result is a deterministic function of the
seed and the batch. With --vocab-fit, the vocabulary bias's map is fitted on the same sentences (training.vocab_fit).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from vaecli.modeling.vae import VAEModel
from vaecli.training.vocab_fit import MIN_ROWS as FIT_ROWS
from vaecli.training.vocab_fit import VocabFit, fit_vocab_bias

MIN_ROWS = 2  # sentences needed to measure mu's spread
CHUNK = 32  # sentences per decoder pass while measuring its keys and values


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.float().pow(2).mean().sqrt().clamp(min=1e-6)


def _cache_rms(model: VAEModel, dec_in: torch.Tensor, z: torch.Tensor,
               on_logits: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """(layers, 2): the RMS of each decoder layer's keys and values over these sentences, run CHUNK rows at a time
    (the logits of 256 sentences over a large vocabulary alone would take a gigabyte); each chunk's logits go to
    `on_logits` (its first row, the logits)."""
    squares, count = torch.zeros(model.dims.layers, 2, dtype=torch.float64), 0
    for start in range(0, len(dec_in), CHUNK):
        rows = dec_in[start : start + CHUNK]
        state = model.family.new_state(len(rows), None, None, None, z, cache=True)
        logits = model.family.logits(state, rows)
        if on_logits is not None:
            on_logits(start, logits)
        kv = model.family.self_attention_cache(state)
        for i in range(model.dims.layers):
            for j, real in enumerate((kv.layers[i].keys, kv.layers[i].values)):
                squares[i, j] += real.double().pow(2).sum()
        count += kv.layers[0].keys.numel()
    return (squares / count).sqrt().float().clamp(min=1e-6)


@torch.no_grad()
def calibrate(model: VAEModel, batch: dict[str, torch.Tensor], scale: float, vocab_fit: bool = False) -> dict[str, float]:
    """Rescale to_mu (and its bias), to_decoder and to_embedding in place, and with `vocab_fit` fit a one-slot vocabulary
    bias (training.vocab_fit); returns the scales measured.

    mu's spread needs two sentences at least: with one, mu is left as it is (the report says so)."""
    was_training = model.training
    model.eval()
    ids, mask = batch["input_ids"], batch["attention_mask"]
    target, target_mask = batch.get("target_ids", ids), batch.get("target_mask", mask)
    pooled = model.pooled(ids, mask).float()
    report: dict[str, float] = {}
    if len(pooled) >= MIN_ROWS:
        mu = model.to_mu(pooled)
        std, mean = mu.std(dim=0).clamp(min=1e-6), mu.mean(dim=0)
        model.to_mu.weight.div_(std.unsqueeze(1))
        model.to_mu.bias.copy_((model.to_mu.bias - mean) / std)
        report["mu_std_before"] = float(std.mean())
    z = model.to_mu(pooled)
    dec_in, labels = model.targets(target, target_mask)
    injection, dims = model.config.injection, model.dims
    embed = model.family.input_embeddings()
    if injection in ("embedding", "both"):
        layer = model.to_embedding if injection == "both" else model.to_decoder
        target_rms = _rms(embed(dec_in))
        layer.weight.mul_(scale * target_rms / _rms(layer(z)))
        report["embedding_rms"] = float(target_rms)
    fit = None
    if vocab_fit and model.to_vocab is not None and model.config.vocab_slots == 1:
        report["vocab_bias_rms"] = 0.0
        if len(z) >= FIT_ROWS and injection in ("prefix", "both"):
            fit = VocabFit(model, z, labels)  # scored in the pass below, which the prefix's scales need anyway
        elif len(z) >= FIT_ROWS:
            report["vocab_bias_rms"] = fit_vocab_bias(model, z, dec_in, labels)
    if injection in ("prefix", "both"):
        real = _cache_rms(model, dec_in, z, fit.score if fit is not None else None)
        slots = model.config.prefix_slots
        out = model.to_decoder(z).view(-1, dims.layers, 2, dims.kv_heads, slots, dims.head_dim)
        weight = model.to_decoder.weight.view(dims.layers, 2, dims.kv_heads, slots, dims.head_dim, -1)
        for i in range(dims.layers):
            for j in range(2):
                weight[i, j].mul_(scale * real[i, j] / _rms(out[:, i, j]))
        report["prefix_rms_layer0"] = float(real[0, 0])
    if fit is not None:
        report["vocab_bias_rms"] = fit.finish()
    model.train(was_training)
    return report
