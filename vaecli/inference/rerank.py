"""Choosing among beam search's hypotheses by the encoder (`--rerank`): the one whose own encoding lies nearest z.

Beam search ranks what the decoder finds likely given z, p(x | z). A VAE also has the other direction, the encoder.
Among the hypotheses that ended in a row's beam within RERANK_MARGIN nats per token of the best one's mean log-prob,
the one chosen is the one whose posterior mean mu(x) is nearest z (each hypothesis decoded to text and encoded again, as
`vae encode` would encode it). So where the beam holds the sentence z was encoded from, that sentence comes back
(its mu is z itself), and otherwise the one the encoder puts closest: decode then encode returns to z as nearly as
the beam allows. The distance, not the posterior's density log q(z | x): the density also rewards a narrower
posterior, and could prefer another sentence to the one whose mu is z. It costs one pass of the encoder over the
hypotheses (up to beam width x rows), after the decoding.
"""

from __future__ import annotations

import torch

from vaecli.config import RERANK_MARGIN
from vaecli.modeling.tokens import pad_batch, tokenize
from vaecli.modeling.vae import VAEModel

BATCH = 64  # hypotheses per pass of the encoder


def choose(model: VAEModel, z: torch.Tensor, hyps: list[list[list[int]]], scores: torch.Tensor, margin: float = RERANK_MARGIN) -> list[list[int]]:
    """For each row of z, one of its hypotheses `hyps` (hyps[j][i]: row i's j-th, token ids without the end token, as
    inference.generate.strip_ids gives them), whose mean log-probs are `scores` (rows, keep, best
    first, -inf: none): of those within `margin` of the row's best that are not empty, the one whose mu(x) is nearest z
    (the first of equals); the best where fewer than two qualify. Each row's choice depends on its own hypotheses only.
    (The encoding is not `inference.latent.encode_ids`: latent imports generate, which imports this module.)"""
    rows, keep = scores.shape
    near = (torch.isfinite(scores) & (scores >= scores[:, :1] - margin)).tolist()
    live = [[j for j in range(keep) if near[i][j] and hyps[j][i]] for i in range(rows)]
    pairs = [(i, j) for i in range(rows) if len(live[i]) > 1 for j in live[i]]
    distance = {}
    if pairs:
        texts = model.decoder_tokenizer.batch_decode([hyps[j][i] for i, j in pairs], skip_special_tokens=True)
        encoded, _ = tokenize(model.tokenizer, [t.strip() for t in texts], model.config.max_length)
        for start in range(0, len(pairs), BATCH):
            part = pairs[start : start + BATCH]
            batch = pad_batch(encoded[start : start + BATCH], model.input_pad_id)
            mu, _ = model.posterior(batch["input_ids"].to(model.device), batch["attention_mask"].to(model.device))
            at = torch.tensor([i for i, _ in part], device=z.device)
            distance.update(zip(part, (z[at].float() - mu.float()).pow(2).sum(dim=-1).tolist()))
    picked = [min(live[i], key=lambda j: distance[i, j]) if len(live[i]) > 1 else 0 for i in range(rows)]
    return [hyps[j][i] for i, j in enumerate(picked)]
