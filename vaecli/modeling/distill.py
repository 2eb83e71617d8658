"""`--distill W`: the LM that has read the sentence teaches the LM that reads z.

A causal LM that has the sentence in its context repeats it almost without error (its copying heads); given z
instead, it has to learn to. The reconstruction loss tells it one number per token: how likely the right one was.
The LM itself, reading `sentence <start> sentence` without a gradient (its adapters as they stand), has at every layer
and every token of the second copy the hidden state of a decoder that knows the sentence: `--distill W` adds W times the
mismatch of the decoder's own states (reading z) with those, a target for each of its layers' 576 numbers at every
token. What the decoder reads from z is then taught by the LM's own way of reading the sentence.

The mismatch of one state is the mean over dimensions of ((student - teacher) / s)^2, s each dimension's spread in
the LM's states: a causal LM's residual stream has a few dimensions hundreds of times larger than the rest (SmolLM2's
largest holds 98% of the energy in its middle layers), which would otherwise be the whole loss. The spreads are the
pretrained LM's (adapters off) on the first training sentences, measured once at every start of a run (training.setup),
so a run and its resumption use the same, and no row's loss depends on the rest of its batch. Layers 1..L count, the
embeddings (layer 0: the same tokens in both) do not; a sentence's mismatch is summed over its tokens, like its NLL.

The teacher's pass costs a forward over about twice the sentence's tokens, without a gradient. Where the encoder is the LM
reading its own tokens (`--encoder decoder`, the default), that reading is the first part of the teacher's rows (a causal
LM's states there do not depend on what follows), so one pass does both (`Family.read_with_context`).

Training only: decoding, evaluation and the saved model are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

MIN_SPREAD = 1e-3
"""Below this, a dimension's spread counts as this (a dimension constant over the sentences must not divide by ~0)."""


def context_rows(dec_in: torch.Tensor, dec_mask: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The teacher's rows: (B, T) decoder inputs `start t1 .. tn` (real where `dec_mask`) -> (B, 2T - 1) ids
    `t1 .. tn start t1 .. tn` padded at the end with `pad_id`, their mask, and each row's position of its `start` (n)."""
    count = dec_mask.to(torch.long).sum(dim=1, keepdim=True)  # n + 1
    width = 2 * dec_in.shape[1] - 1
    place = torch.arange(width, device=dec_in.device).unsqueeze(0)
    n = count - 1
    source = torch.where(place < n, place + 1, place - n).clamp(0, dec_in.shape[1] - 1)
    real = place < n + count
    ids = dec_in.gather(1, source).masked_fill(~real, pad_id)
    return ids, real.to(dec_mask.dtype), n.squeeze(1)


def second_copy(states: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    """(B, 2T - 1, H) states of `context_rows` -> (B, length, H): each row's states from its `start` on, aligned with the
    decoder's inputs (past a row's end: some state, masked by the caller)."""
    place = (starts.unsqueeze(1) + torch.arange(length, device=states.device).unsqueeze(0)).clamp(max=states.shape[1] - 1)
    return states.gather(1, place.unsqueeze(-1).expand(-1, -1, states.shape[-1]))


def spreads(chunks: Iterable[tuple[tuple[torch.Tensor, ...], torch.Tensor]]) -> torch.Tensor:
    """(L + 1, H): each layer's per-dimension standard deviation over the real tokens of every chunk of teacher states
    (a chunk: its (B, T, H) states per layer and their (B, T) mask), in float64 sums (memory bounded by a chunk)."""
    total = squares = None
    count = 0
    for states, mask in chunks:
        keep = mask.to(torch.bool)
        x = torch.stack([h[keep].double() for h in states])  # (L + 1, N, H)
        total = x.sum(dim=1) if total is None else total + x.sum(dim=1)
        squares = (x * x).sum(dim=1) if squares is None else squares + (x * x).sum(dim=1)
        count += x.shape[1]
    if total is None or count < 2:
        raise ValueError("a spread needs at least two tokens")
    variance = (squares - total * total / count) / (count - 1)
    return variance.clamp(min=0).sqrt().float().clamp(min=MIN_SPREAD)


def mismatch(student: tuple[torch.Tensor, ...], teacher: tuple[torch.Tensor, ...], mask: torch.Tensor,
             spread: torch.Tensor) -> torch.Tensor:
    """(B,): per sentence, the sum over its tokens (`mask`) of the mean over layers 1..L and dimensions of
    ((student - teacher) / spread)^2."""
    total = torch.zeros(mask.shape[0], device=mask.device)
    for layer in range(1, len(student)):
        diff = ((student[layer].float() - teacher[layer].float()) / spread[layer]) ** 2
        total = total + (diff.mean(dim=-1) * mask).sum(dim=1)
    return total / (len(student) - 1)
