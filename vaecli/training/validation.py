"""Validation during training: the cheap metrics that show progress and collapse, on all processes.

Rec, KL, -ELBO (one z sample), AU, MI, the z-shuffle gap and the teacher-forced token accuracy from mu
over the whole validation set. With
several processes each takes every N-th batch and the per-sentence results are gathered, so AU and
MI see all encodings. Each batch's z noise is seeded by its index: the numbers do not depend on the
number of processes. (`vae evaluate` computes the full, more expensive set.)
"""

from __future__ import annotations

from typing import Any

import torch

from vaecli.evaluation.metrics import active_units, mutual_information
from vaecli.modeling.tokens import length_batches
from vaecli.modeling.vae import VAEModel
from vaecli.training.data import Corpus


@torch.no_grad()
def validate(model: VAEModel, data: Corpus, batch_size: int, seed: int, accelerator: Any) -> dict[str, float]:
    """The metrics above for `data`; `accelerator` gives the process index and count and autocast."""
    acc = accelerator
    model.eval()
    batches = length_batches(data.lengths, batch_size, 0, 0, shuffle=False)
    results = []
    for index in range(acc.process_index, len(batches), acc.num_processes):
        rows = batches[index]
        generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
        batch = {k: v.to(model.device) for k, v in data.batch(rows, model.input_pad_id, model.pad_id).items()}
        target, target_mask = batch.get("target_ids", batch["input_ids"]), batch.get("target_mask", batch["attention_mask"])
        with acc.autocast():
            out = model(batch["input_ids"], batch["attention_mask"], target, target_mask, generator=generator)
            # Each sentence decoded from its neighbour's z: near 0 gap = the decoder ignores z.
            shuffled, _ = model.reconstruction_nll(out.z.roll(1, dims=0), target, target_mask)
            hits, tokens = model.token_hits(out.mu, target, target_mask)
        results.append((rows, out.rec_per_sentence.float().cpu(), out.kl_per_sentence.cpu(), shuffled.float().cpu(), out.mu.cpu(), out.logvar.cpu(),
                        hits.cpu(), tokens.cpu()))
    model.train()
    if acc.num_processes > 1:
        from accelerate.utils import gather_object

        results = gather_object(results)
    n, d = len(data), model.config.latent_dim
    rec, kl, rec_shuffled = torch.zeros(n), torch.zeros(n), torch.zeros(n)
    mu, logvar = torch.zeros(n, d), torch.zeros(n, d)
    hits = tokens = 0
    for rows, r, k, sh, m, lv, h, t in results:
        rec[rows], kl[rows], mu[rows], logvar[rows] = r, k, m, lv
        rec_shuffled[rows] = sh if len(rows) > 1 else r
        hits, tokens = hits + int(h.sum()), tokens + int(t.sum())
    several = n >= 2  # AU, MI and the shuffle gap compare sentences: with one they are not computable (None), not 0
    return {
        "rec": float(rec.mean()),
        "kl": float(kl.mean()),
        "elbo": float((rec + kl).mean()),
        "au": active_units(mu) if several else None,
        "mi": mutual_information(mu, logvar, torch.Generator().manual_seed(seed)) if several else None,
        "gap": float((rec_shuffled - rec).mean()) if several else None,
        "acc": hits / max(tokens, 1),
    }
