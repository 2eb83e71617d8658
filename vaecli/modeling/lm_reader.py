"""The decoder LM as its own sentence encoder (`--encoder decoder`): the causal LM reads the sentence, z is
pooled from its states.

Its weights are already in memory and its tokens are the decoder's, so there is no second model to load
or to keep. The LM reads without a gradient: the pass costs one forward of the decoder, what reaches z is
trained only in the VAE's own layers (pooling and heads), and the decoder's roles cannot pull each other
(with `--lora`, the adapters as they stand take part in reading and learn only from decoding). A causal
LM's residual stream has a few dimensions hundreds of times larger than the rest (the first token's
above all), so each layer's states are standardised per token (layer norm without weights) before the
pooler averages them.

`--reader-layers K` reads with the LM's first K blocks only: the rest of the forward is skipped (SmolLM2 read
by 10 of its 30 blocks: 1.2x the steps per second). A linear probe finds more of a sentence's words in an LM's
early layers (0.63 from SmolLM2's layer 2 against 0.50 from layer 30), yet reading with all of them gives the
better z at equal minutes (README, "Measured", round five), so the default is all.

`--reader-echo` has the LM read the sentence twice and pools z from the second reading (echo embeddings, Springer
et al. 2024): a causal LM's state at a token has seen only the tokens before it, so in one reading the first words'
states know nothing of the rest; in the second, every token's state has seen the whole sentence. The reading costs a
forward over twice the tokens.

`LMReader` holds the LM without registering it as a submodule: it owns no parameter, and the model's
weights are saved once, under `decoder.*`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from vaecli.errors import ConfigError

READER_CLASS = "LMReader"
"""What config.json names as the encoder class of a model whose decoder reads its own sentences."""


class LMReader(nn.Module):
    """Looks like an encoder (`config`, a forward returning `hidden_states` and `last_hidden_state`) and runs
    the causal LM it was given, without a gradient."""

    pooler = None

    def __init__(self, lm: nn.Module, depth: int = 0, echo: bool = False) -> None:
        super().__init__()
        self.echo = echo
        """Read the sentence twice; the states are the second reading's."""
        self.__dict__["lm"] = lm  # a reference, not a submodule: no parameter of its own, saved once as the decoder
        if depth > lm.config.num_hidden_layers:
            raise ConfigError(f"--reader-layers {depth}: the LM has {lm.config.num_hidden_layers} blocks")
        self.depth = depth
        """Blocks that read (0: all of them)."""
        self.states = (depth or lm.config.num_hidden_layers) + 1
        """Hidden states a read returns: the embeddings' and each reading block's."""

    @property
    def config(self) -> Any:
        """The LM's config; reading with fewer blocks, a copy that says how many (what the pooler and config.json see)."""
        if not self.depth:
            return self.lm.config
        cut = copy.deepcopy(self.lm.config)
        cut.num_hidden_layers = self.depth
        return cut

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, output_hidden_states: bool = True) -> Any:
        body = self.lm.base_model  # the transformer without its vocabulary head: the logits are never needed
        ids, mask = twice(input_ids, attention_mask) if self.echo else (input_ids, attention_mask)
        with torch.no_grad(), first_blocks(body, self.depth) if self.depth else nullcontext():
            out = body(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False)
        if len(out.hidden_states) != self.states:  # e.g. hooks installed by a shallower read first
            raise RuntimeError(f"the LM returned {len(out.hidden_states)} hidden states, not {self.states}")
        hidden = out.hidden_states
        if self.echo:
            hidden = tuple(second_reading(h, attention_mask) for h in hidden)
        return reading(hidden)

    @property
    def plain(self) -> bool:
        """Whether a reading is one forward of the whole LM over the sentence (no --reader-echo, no --reader-layers)."""
        return not self.echo and not self.depth

    def read_in_context(self, width: int, rows: torch.Tensor, rows_mask: torch.Tensor) -> tuple[Any, tuple[torch.Tensor, ...]]:
        """One forward over `rows`, whose first `width` columns are the sentences a plain reading would read (the same
        tokens, padding after them; what follows is masked for the reading): (that reading, as forward gives it; the raw
        hidden states of every column). A causal LM's states of the first columns do not depend on the ones after, so the
        reading is the plain one (--distill's teacher reads on in the same pass: modeling.distill)."""
        if not self.plain:
            raise ValueError("read_in_context reads plainly: no --reader-echo, no --reader-layers")
        with torch.no_grad():
            out = self.lm.base_model(input_ids=rows, attention_mask=rows_mask, output_hidden_states=True, use_cache=False)
        return reading(tuple(h[:, :width] for h in out.hidden_states)), out.hidden_states


def reading(hidden: tuple[torch.Tensor, ...]) -> Any:
    """What the encoder returns: each layer's states standardised per token (layer norm without weights)."""
    states = tuple(nn.functional.layer_norm(h.float(), h.shape[-1:]).to(h.dtype) for h in hidden)
    return SimpleNamespace(hidden_states=states, last_hidden_state=states[-1])


@contextmanager
def first_blocks(body: nn.Module, depth: int) -> Iterator[None]:
    """Within the block, `body` (a decoder-only transformer) runs only its first `depth` blocks: its list of blocks (the
    child ModuleList as long as the config's layer count: Llama's `layers`, GPT-2's `h`) is cut, and put back after.

    The body itself runs, not a copy: transformers installs its hidden-state hooks once per model object, so a fresh
    copy at every call would add a set of hooks to the shared blocks each time."""
    count = body.config.num_hidden_layers
    names = [name for name, child in body.named_children() if isinstance(child, nn.ModuleList) and len(child) == count]
    if len(names) != 1:
        raise ValueError(f"--reader-layers: cannot find the list of {count} blocks in {type(body).__name__}")
    blocks = body._modules[names[0]]
    body._modules[names[0]] = nn.ModuleList(list(blocks)[:depth])
    try:
        yield
    finally:
        body._modules[names[0]] = blocks


def twice(input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids and mask -> (B, 2T): each row's real tokens, then the same again, then padding (whatever side the
    input was padded on), so that the LM sees `sentence sentence` at positions 0 .. 2n - 1, as it would alone."""
    real = mask.to(torch.bool)
    width, count = real.shape[1], real.sum(dim=1, keepdim=True)
    packed = input_ids.gather(1, torch.argsort((~real).to(torch.int8), dim=1, stable=True))  # real tokens first, in order
    place = torch.arange(2 * width, device=input_ids.device).unsqueeze(0)
    source = torch.where(place < count, place, place - count).clamp(0, width - 1)
    return packed.gather(1, source), (place < 2 * count).to(mask.dtype)


def second_reading(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, 2T, H) states of `twice`'s rows -> (B, T, H) in the input's layout: a real token's state is its second reading's
    (padding gets some state; the pooler masks it)."""
    real = mask.to(torch.long)
    rank = (real.cumsum(dim=1) - 1).clamp(min=0)
    source = (real.sum(dim=1, keepdim=True) + rank).clamp(max=states.shape[1] - 1)
    return states.gather(1, source.unsqueeze(-1).expand(-1, -1, states.shape[-1]))
