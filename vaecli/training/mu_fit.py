"""Calibration of z's head (`--mu-fit`): to_mu starts reading the directions of the pooled states that tell the words.

Random, to_mu reads `latent_dim` random directions of the pooled states (2,304 numbers for the default: 4 attention
queries over SmolLM2's 576), and z holds of the sentence's words what those directions happen to. Fitted, it reads the
directions along which the pooled states predict the sentence's bag of words best: reduced-rank ridge regression, the
ridge solution B from the pooled states X (centred) to the bags Y (which tokens the decoder's target has, the end token
not counted; the vocabulary is the tokens these sentences use), then the top right singular vectors V of the fitted
bags X B, and to_mu's rows are (B V)^T. Calibration standardises each of z's dimensions afterwards, as it does a random
head's, so only the directions come from here. Where the fit has fewer directions than z has dimensions (fewer
sentences, or fewer distinct tokens, than dimensions), the rest keep their random ones.
"""

from __future__ import annotations

import torch

from vaecli.modeling.vae import VAEModel
from vaecli.training.vocab_fit import ridge_map

ROWS = 1024
"""Training sentences the fit reads (the pooled states are 2,304 numbers wide for the default; 256, calibration's
batch, would fit noise)."""
RIDGE = 0.1
"""The ridge penalty, as a multiple of the mean variance of the pooled states' dimensions."""
CHUNK = 32  # sentences per pass of the encoder


def bags(labels: torch.Tensor, eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, v) 0/1 bags of the tokens each row of `labels` has (-100 and the end token not counted), and the (v,) token ids
    the columns stand for: those that occur."""
    real = (labels != -100) & (labels != eos_id)
    vocab, inverse = torch.unique(labels[real], return_inverse=True)
    rows = torch.arange(len(labels)).unsqueeze(1).expand_as(labels)[real]
    out = torch.zeros(len(labels), len(vocab), dtype=torch.float64)
    out[rows, inverse] = 1.0
    return out, vocab


def reduced_rank_directions(x: torch.Tensor, y: torch.Tensor, rank: int, ridge: float = RIDGE) -> torch.Tensor:
    """(r, p), r <= rank: the directions of x (n, p) whose projections predict y (n, v) best by a linear map, from the
    ridge solution B (penalty `ridge` times the mean variance of x's dimensions) and the top right singular vectors of
    the fitted x B; each row has unit norm. r is at most the rank of the fit."""
    x = x.double()
    coef = ridge_map(x, y, ridge)[0].T.double()  # (p, v)
    _, singular, vh = torch.linalg.svd((x - x.mean(dim=0)) @ coef, full_matrices=False)
    keep = min(rank, int((singular > singular[0] * 1e-6).sum())) if len(singular) and singular[0] > 0 else 0
    directions = (coef @ vh[:keep].T).T  # (r, p)
    return (directions / directions.norm(dim=1, keepdim=True).clamp(min=1e-12)).float()


@torch.no_grad()
def fit_mu_directions(model: VAEModel, batch: dict[str, torch.Tensor]) -> int:
    """Set the first rows of `model.to_mu.weight` to the directions of the pooled states that predict these sentences'
    bags of tokens (its bias to zero: calibration then centres and scales each dimension); returns how many rows were
    set. The encoder reads CHUNK sentences at a time."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    target, target_mask = batch.get("target_ids", ids), batch.get("target_mask", mask)
    pooled = torch.cat([model.pooled(ids[i : i + CHUNK], mask[i : i + CHUNK]).float() for i in range(0, len(ids), CHUNK)])
    _, labels = model.targets(target, target_mask)
    y, _ = bags(labels, model.eos_id)
    if len(pooled) < 2 or y.shape[1] == 0:
        return 0
    directions = reduced_rank_directions(pooled, y, model.to_mu.out_features)
    weight = model.to_mu.weight
    weight[: len(directions)] = directions.to(weight.dtype) * weight.norm(dim=1, keepdim=True)[: len(directions)]
    model.to_mu.bias.zero_()
    return len(directions)
