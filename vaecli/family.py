"""What the two model families share: sizes, the decoder's per-sentence state, the error type.

A family (`seq2seq.Seq2SeqFamily`, `causal.CausalFamily`) knows how its backbone encodes a
sentence, how z reaches its decoder and how its decoder scores tokens; `model.VAEModel` holds the
parts common to every VAE (pooling, heads, projections, loss, save/load) and asks the family for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


class ModelDirError(ValueError):
    """A model directory is missing, incomplete or inconsistent; one line for stderr."""


@dataclass
class Dims:
    """Sizes the VAE's new layers need."""

    enc_hidden: int
    dec_hidden: int
    layers: int
    kv_heads: int
    head_dim: int


@dataclass
class DecodeState:
    """What the decoder needs besides tokens: the memory it reads, the self-attention cache, z's embedding."""

    memory: torch.Tensor | None
    memory_mask: torch.Tensor | None
    cache: Any
    z_embedding: torch.Tensor | None
    position: int = 0
    """Tokens fed so far (causal decoders number positions from 0 after the prefix)."""

    def select(self, index: torch.Tensor) -> None:
        """Keep / reorder / repeat rows (beam search)."""
        if self.memory is not None:
            self.memory = self.memory.index_select(0, index)
            self.memory_mask = self.memory_mask.index_select(0, index)
        if self.z_embedding is not None:
            self.z_embedding = self.z_embedding.index_select(0, index)
        if self.cache is not None:
            self.cache.reorder_cache(index)
