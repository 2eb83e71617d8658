"""z's vocabulary bias (`--vocab-bias`, `--vocab-slots K`): a path from z straight to each word's own logit.

A new layer A turns z into K vectors in the decoder's output space; each scored against every word's output embedding
W gives a bias over the whole vocabulary, W (A_k z). With one slot (the default) that bias is added at every position:
it can raise the sentence's words, not say where each goes. With K slots, the decoder's own prediction picks among them
at each position: slot k's weight is a softmax over how much its bias agrees with the next-token distribution the
decoder already has there (the expected bias under it, the prediction taken as it stands, without a gradient), so a
slot can hold a word, and it is added where the decoder is about to say something like it. Each row reads only its own
z, and a position only what the decoder predicts there: decoding one token at a time gives the training forward's
logits.
"""

from __future__ import annotations

import torch
from torch import nn

from vaecli.modeling.precision import autocast_weight

VOCAB_SLOTS_INIT = 1e-4
"""Standard deviation of A's weights at the start when there are several slots (one slot starts at zero): the bias is
near zero, and the slots differ, or they would get the same gradient and stay the same."""


def vocab_biases(to_vocab: nn.Linear, z: torch.Tensor, table: torch.Tensor, slots: int) -> torch.Tensor:
    """z (B, d) -> the slots' biases over the vocabulary: (B, V) for one slot, (B, K, V) for K; row b from z[b] only."""
    table = autocast_weight(table)  # a frozen table's bf16 copy in a bf16 training step, not a cast at every step
    vectors = to_vocab(z).to(table.dtype).view(z.shape[0], slots, table.shape[1])
    biases = vectors @ table.T
    return biases[:, 0] if slots == 1 else biases


def add_vocab_bias(logits: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, V) plus each position's bias: the one bias (B, V) everywhere, or the slots (B, K, V) weighted by
    softmax_k(E_{p_t}[bias_k]), p_t the softmax of the logits at position t."""
    if bias.dim() == 2:
        return logits + bias.unsqueeze(1).to(logits.dtype)
    bias = bias.float()
    predicted = torch.softmax(logits.detach().float(), dim=-1)
    weights = torch.softmax(torch.einsum("btv,bkv->btk", predicted, bias), dim=-1)
    return logits + torch.einsum("btk,bkv->btv", weights, bias).to(logits.dtype)
