"""Calibration of z's vocabulary bias (`--vocab-fit`): the map A of `logits += W (A z)` starts fitted, not at zero.

At zero, the path from z to each word's own logit carries nothing until training has grown it. Fitted, it starts as a
bag of the sentence's words, as far as z tells them apart at the start: A (with its bias) is the ridge regression, over
the calibration sentences, of each sentence's mean output embedding (W's rows for its words, the end token not
counted), less their mean over the sentences, on its z, so W (A z) is highest at the words of the sentence whose z it is and lowest at those of
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
SIZES = (0.0,) + tuple(2.0**k for k in range(-4, 5))
"""The bias's RMS over the vocabulary (nats) that the held-out half chooses from: 0 and 1/16 to 16, in steps of 2."""
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


class VocabFit:
    """The fit in parts, so that calibration's pass of the decoder without z's writes can serve it: A fitted on the first
    half at construction, each chunk's logits scored on the held-out half (`score`), then `finish`."""

    def __init__(self, model: VAEModel, z: torch.Tensor, labels: torch.Tensor) -> None:
        self.model, self.z, self.labels = model, z.float(), labels
        self.table = model.family.output_embeddings().detach().float()
        self.words = mean_embeddings(self.table, labels.masked_fill(labels == model.eos_id, -100))  # not the end every sentence has
        self.half = len(z) // 2
        weight, bias = ridge_map(self.z[: self.half], self.words[: self.half])
        held = (self.z[self.half :] @ weight.T + bias) @ self.table.T  # (n - half, V): the half-fit's bias on the other half
        self.held = held / max(_spread(held), 1e-12)
        self.nll = torch.zeros(len(SIZES), dtype=torch.float64)

    @torch.no_grad()
    def score(self, start: int, logits: torch.Tensor) -> None:
        """The decoder's logits (rows, T, V) for the sentences from `start` on: those of the held-out half add their NLL
        under each size's bias."""
        stop, first = start + len(logits), max(start, self.half)
        if first >= stop:
            return
        labels = self.labels[first:stop]
        real = labels != -100
        flat, target = logits[first - start :].float()[real], labels[real]
        rows = self.held[first - self.half : stop - self.half].repeat_interleave(real.sum(dim=1), dim=0)
        for k, size in enumerate(SIZES):
            self.nll[k] += float(F.cross_entropy(flat + size * rows, target, reduction="sum"))

    @torch.no_grad()
    def finish(self) -> float:
        """Set `model.to_vocab` at the size of lowest held-out NLL, fitted on all the sentences; returns the size."""
        size = SIZES[int(self.nll.argmin())]
        if size == 0.0:
            return 0.0
        weight, bias = ridge_map(self.z, self.words)
        scale = size / max(_spread((self.z @ weight.T + bias) @ self.table.T), 1e-12)
        self.model.to_vocab.weight.copy_(scale * weight)
        self.model.to_vocab.bias.copy_(scale * bias)
        return size


@torch.no_grad()
def fit_vocab_bias(model: VAEModel, z: torch.Tensor, dec_in: torch.Tensor, labels: torch.Tensor) -> float:
    """Set `model.to_vocab` (one slot) from these sentences' z, decoder inputs and labels, with a pass of its own of the
    decoder over the held-out half; returns the bias's RMS over the vocabulary (0.0: left at zero, also with fewer than
    MIN_ROWS sentences)."""
    if len(z) < MIN_ROWS:
        return 0.0
    fit = VocabFit(model, z, labels)
    for start in range(fit.half, len(z), CHUNK):
        rows = dec_in[start : start + CHUNK]
        fit.score(start, model.family.logits(model.family.new_state(len(rows), None, None, None, z, cache=False), rows))
    return fit.finish()
