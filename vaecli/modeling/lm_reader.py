"""The decoder LM as its own sentence encoder (`--encoder decoder`): the causal LM reads the sentence, z is
pooled from its states.

Its weights are already in memory and its tokens are the decoder's, so there is no second model to load
or to keep. The LM reads without a gradient: the pass costs one forward of the decoder, what reaches z is
trained only in the VAE's own layers (pooling and heads), and the decoder's roles cannot pull each other
(with `--lora`, the adapters as they stand take part in reading and learn only from decoding). A causal
LM's residual stream has a few dimensions hundreds of times larger than the rest (the first token's
above all), so each layer's states are standardised per token (layer norm without weights) before the
pooler averages them.

`LMReader` holds the LM without registering it as a submodule: it owns no parameter, and the model's
weights are saved once, under `decoder.*`.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

READER_CLASS = "LMReader"
"""What config.json names as the encoder class of a model whose decoder reads its own sentences."""


class LMReader(nn.Module):
    """Looks like an encoder (`config`, a forward returning `hidden_states` and `last_hidden_state`) and runs
    the causal LM it was given, without a gradient."""

    pooler = None

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.__dict__["lm"] = lm  # a reference, not a submodule: no parameter of its own, saved once as the decoder

    @property
    def config(self) -> Any:
        return self.lm.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, output_hidden_states: bool = True) -> Any:
        body = self.lm.base_model  # the transformer without its vocabulary head: the logits are never needed
        with torch.no_grad():
            out = body(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, use_cache=False)
        states = tuple(nn.functional.layer_norm(h.float(), h.shape[-1:]).to(h.dtype) for h in out.hidden_states)
        return SimpleNamespace(hidden_states=states, last_hidden_state=states[-1])
