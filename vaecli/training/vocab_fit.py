"""Calibration of z's vocabulary bias (`--vocab-fit`): the map A of `logits += W (A z)` starts fitted, not at zero.

At zero, the path from z to each word's own logit carries nothing until training has grown it. Fitted, it starts as a
bag of the sentence's words, as far as z tells them apart at the start: A (with its bias) is the ridge regression, over
the calibration sentences, of each sentence's mean output embedding (W's rows for its words, the end token not counted), less their mean
over the sentences, on its z, so W (A z) is highest at the words of the sentence whose z it is and lowest at those of
sentences unlike it. How loudly it starts is measured: A is fitted on the first half of the sentences, and its bias, at
each RMS over the vocabulary in SIZES (each sentence's mean over the vocabulary set apart), is added to the logits of
the decoder without z's other writes on the second half; the size with the lowest NLL there is kept (0 is among them: a
fit that does not help leaves A at zero, as without this), and A is fitted again on all the sentences and scaled to
that RMS.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vaecli.modeling.vae import VAEModel

RIDGE = 1.0
"""The ridge penalty, as a multiple of the mean variance of z's dimensions (1 after calibration's standardisation)."""
SIZES = (0.0,) + tuple(2 ** (k / 2) for k in range(-8, 9))
"""The bias's RMS over the vocabulary (nats) that the held-out half chooses from: 0 and 1/16 to 16, steps of sqrt 2."""
MIN_ROWS = 4  # sentences for a fit on one half and a choice of size on the other
CHUNK = 32  # sentences per decoder pass


def mean_embeddings(table: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(n, h): each sentence's mean of `table`'s rows over its labels (-100: padding, not counted)."""
    real = labels != -100
    summed = (table[labels.clamp(min=0)] * real.unsqueeze(-1)).sum(dim=1)
    return summed / real.sum(dim=1, keepdim=True).clamp(min=1)


def ridge_map(z: torch.Tensor, targets: torch.Tensor, ridge: float = RIDGE) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (h, d), bias (h,)) of the linear map from z (n, d) to the targets' (n, h) difference from their mean, of
    least squared error plus `ridge` times the mean variance of z's dimensions times the weight's squared norm."""
    z, targets = z.double(), targets.double()
    z_mean, t_mean = z.mean(dim=0), targets.mean(dim=0)
    zc, tc = z - z_mean, targets - t_mean
    gram = zc.T @ zc / len(z)
    penalty = ridge * float(gram.diagonal().mean().clamp(min=1e-12))
    coef = torch.linalg.solve(gram + penalty * torch.eye(gram.shape[0], dtype=gram.dtype), zc.T @ tc / len(z))
    weight = coef.T
    return weight.float(), (-weight @ z_mean).float()


def _spread(biases: torch.Tensor) -> float:
    """The RMS over the vocabulary of biases (rows, V), each row's mean set apart (a softmax does not see it)."""
    return float((biases - biases.mean(dim=1, keepdim=True)).pow(2).mean().sqrt())


@torch.no_grad()
def fit_vocab_bias(model: VAEModel, z: torch.Tensor, dec_in: torch.Tensor, labels: torch.Tensor) -> float:
    """Set `model.to_vocab` (one slot) from these sentences' z, decoder inputs and labels; returns the bias's RMS over
    the vocabulary on them (0.0: left at zero, also with fewer than MIN_ROWS sentences)."""
    n = len(z)
    if n < MIN_ROWS:
        return 0.0
    z = z.float()
    table = model.family.output_embeddings().detach().float()
    words = mean_embeddings(table, labels.masked_fill(labels == model.eos_id, -100))  # the words, not the end every sentence has
    half = n // 2
    weight, bias = ridge_map(z[:half], words[:half])
    held = (z[half:] @ weight.T + bias) @ table.T  # (n - half, V): the half-fit's bias on the other half
    held = held / max(_spread(held), 1e-12)
    nll = torch.zeros(len(SIZES), dtype=torch.float64)
    for start in range(half, n, CHUNK):
        stop = min(start + CHUNK, n)
        state = model.family.new_state(stop - start, None, None, None, z[start:stop], cache=False)
        logits = model.family.logits(state, dec_in[start:stop]).float()
        real = labels[start:stop] != -100
        flat, target = logits[real], labels[start:stop][real]
        rows = held[start - half : stop - half].repeat_interleave(real.sum(dim=1), dim=0)
        for k, size in enumerate(SIZES):
            nll[k] += float(F.cross_entropy(flat + size * rows, target, reduction="sum"))
    size = SIZES[int(nll.argmin())]
    if size == 0.0:
        return 0.0
    weight, bias = ridge_map(z, words)
    scale = size / max(_spread((z @ weight.T + bias) @ table.T), 1e-12)
    model.to_vocab.weight.copy_(scale * weight)
    model.to_vocab.bias.copy_(scale * bias)
    return size
