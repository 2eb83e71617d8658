"""LoRA adapters (peft) seen from the VAE: switched off where the pretrained weights must judge alone."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn


@contextmanager
def adapters_off(module: nn.Module) -> Iterator[None]:
    """Run `module` as its pretrained weights, without the peft adapters injected into it (none: no change).

    peft's switch also clears the adapters' requires_grad; each parameter's flag is restored afterwards, so
    a phase's choice of what trains survives a call made in the middle of it."""
    layers = [m for m in module.modules() if callable(getattr(m, "enable_adapters", None)) and hasattr(m, "lora_A")]
    flags = [(p, p.requires_grad) for m in layers for p in m.parameters()]
    for m in layers:
        m.enable_adapters(False)
    try:
        yield
    finally:
        for m in layers:
            m.enable_adapters(True)
        for p, flag in flags:
            p.requires_grad_(flag)
