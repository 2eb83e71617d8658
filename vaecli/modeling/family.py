"""The model-family interface (`Family`), and what it passes around: sizes and the decoder's state.

A family (`seq2seq.Seq2SeqFamily`, `causal.CausalFamily`) knows how its backbone encodes a
sentence, how z reaches its decoder and how its decoder scores tokens; `vae.VAEModel` holds the
parts common to every VAE (pooling, heads, projections, loss, save/load) and asks the family for the
rest. A third family is one more class that satisfies `Family`, not a branch in `VAEModel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import torch


@dataclass
class Dims:
    """Sizes the VAE's new layers need."""

    enc_hidden: int
    dec_hidden: int
    layers: int
    """Decoder layers (each gets prefix slots)."""
    kv_heads: int
    head_dim: int
    enc_states: int
    """Hidden states the encoder returns: its layers and the embeddings (what --layers mean / mix combine)."""


@dataclass
class DecodeState:
    """What the decoder needs besides tokens: the memory it reads, the self-attention cache, z's embedding."""

    memory: torch.Tensor | None
    memory_mask: torch.Tensor | None
    cache: Any
    z_embedding: torch.Tensor | None
    position: int = 0
    """Tokens fed so far (causal decoders number positions from 0 after the prefix)."""
    vocab_bias: torch.Tensor | None = None
    """(B, V) added to the logits at every position (--vocab-bias), (B, K, V) for --vocab-slots K, or None."""
    keep_hidden: bool = False
    """Whether `logits` keeps the decoder's hidden states of the tokens it reads in `hidden` (--distill)."""
    hidden: tuple[torch.Tensor, ...] | None = None
    """The decoder's hidden states (embeddings, then each layer's; each (B, T, H)) of the last tokens read, with keep_hidden."""

    def select(self, index: torch.Tensor) -> None:
        """Keep / reorder / repeat rows (beam search)."""
        if self.memory is not None:
            self.memory = self.memory.index_select(0, index)
            self.memory_mask = self.memory_mask.index_select(0, index)
        if self.z_embedding is not None:
            self.z_embedding = self.z_embedding.index_select(0, index)
        if self.vocab_bias is not None:
            self.vocab_bias = self.vocab_bias.index_select(0, index)
        if self.cache is not None:
            self.cache.reorder_cache(index)


class Family(Protocol):
    """What `VAEModel` asks of a model family. A family holds no parameters of its own: it drives a backbone."""

    name: str
    """The family's name in config.json ("seq2seq", "causal"); vaecli.config keys its defaults and rules by it."""
    dims: Dims
    """Sizes of the backbone that the VAE's new layers are built to."""
    start_id: int
    """The decoder's first input token."""
    eos_id: int
    """The token that ends a decoded sentence."""
    pad_id: int
    """The decoder's padding token (targets are padded with it; generation emits it after the end)."""

    def encoder_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every layer's per-token states (B, T, enc_hidden) of the encoder's tokens, embeddings first and the
        final layer last (dims.enc_states of them), which the VAE pools into one vector (pooling.Pooler)."""
        ...

    def target_ids(self, texts: list[str], max_length: int) -> list[list[int]] | None:
        """The decoder's own token ids of each text (end token appended), or None when the decoder reconstructs
        the encoder's tokens (one shared tokenizer). It must not hold the model: training passes it to a
        `datasets` map, which hashes what it holds."""
        ...

    def new_state(self, batch: int, memory: torch.Tensor | None, prefix: list[tuple[torch.Tensor, torch.Tensor]] | None,
                  z_embedding: torch.Tensor | None, reference: torch.Tensor, cache: bool) -> DecodeState:
        """A fresh decoder state holding what z became (memory vectors, per-layer key/value prefix, an added
        embedding); `cache`: keep a self-attention cache for step-by-step decoding."""
        ...

    def logits(self, state: DecodeState, ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V) for decoder inputs `ids` after what `state` holds; appends to its cache."""
        ...

    def context_states(self, dec_in: torch.Tensor, dec_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """--distill's teacher: the decoder's hidden states (embeddings first, each (B, T, dec_hidden)) at each of the
        decoder inputs `dec_in` (real where `dec_mask`) when the sentence itself precedes them in its context, without a
        gradient (modeling.distill). A family whose decoder cannot read the sentence so raises NotImplementedError
        (config.family_problems refuses --distill for it first)."""
        ...

    def read_with_context(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, dec_in: torch.Tensor,
                          dec_mask: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """(encoder_states of the input, context_states of the decoder inputs): the same as the two calls, in one pass where
        the encoder is the decoder LM reading its own tokens."""
        ...

    def add_lora(self, rank: int, targets: str, dropout: float = 0.0) -> None:
        """Put LoRA adapters of this rank on the decoder, in place: on its attention (targets "attention") or on
        every linear layer of its blocks ("all"), with `dropout` on their input while training."""
        ...

    def input_embeddings(self) -> torch.nn.Module:
        """The decoder's input embedding layer (calibration measures its scale)."""
        ...

    def output_embeddings(self) -> torch.Tensor:
        """The decoder's output embedding table (V, hidden): its logits are its last states times this table's
        transpose (--vocab-bias writes through it). The input table where the two are tied."""
        ...

    def self_attention_cache(self, state: DecodeState) -> Any:
        """The decoder self-attention cache inside `state` (calibration reads each layer's keys and values)."""
        ...

    def decoder_parameter_ids(self) -> tuple[set[int], set[int]]:
        """(ids of the decoder's parameters, ids of the encoder's): what --freeze-decoder may freeze."""
        ...

    def config_dict(self) -> dict[str, Any]:
        """The backbone's classes and configs, for config.json (enough to rebuild it without weights)."""
        ...

    @staticmethod
    def backbone_from_config(saved: dict[str, Any], build: Callable[..., Any]) -> torch.nn.Module:
        """An untrained backbone from config.json's `config_dict` part; `build(class_name, config, allowed)` makes each model."""
        ...

    def save_tokenizers(self, tokenizer: Any, decoder_tokenizer: Any, directory: Path) -> None:
        """Write the tokenizer(s) into a model directory."""
        ...

    @staticmethod
    def load_tokenizers(directory: Path, load: Callable[[Path], Any]) -> tuple[Any, Any]:
        """(encoder tokenizer, decoder tokenizer) of a model directory, each read with `load`."""
        ...
