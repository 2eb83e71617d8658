"""Seeded draws for tensors on any device: drawn where the generator lives, then moved.

A seeded `torch.Generator()` lives on the CPU, and PyTorch refuses it for a draw made on a GPU ("Expected a 'cuda'
device type for generator but found 'cpu'": found on an H200 in round twenty-four, at the first validation). Drawing
on the generator's device and moving the numbers also makes a seed give the same numbers on a CPU and a GPU. Without a
generator a draw is made on the target device from its own global generator, as PyTorch does.
"""

from __future__ import annotations

import torch


def _where(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def randn(shape: torch.Size | tuple[int, ...], generator: torch.Generator | None, device: torch.device,
          dtype: torch.dtype | None = None) -> torch.Tensor:
    """Standard normal numbers of `shape` on `device`."""
    return torch.randn(shape, generator=generator, device=_where(generator, device), dtype=dtype).to(device)


def rand(shape: torch.Size | tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform numbers in [0, 1) of `shape` on `device`."""
    return torch.rand(shape, generator=generator, device=_where(generator, device)).to(device)


def multinomial(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One index per row of `probs` drawn in proportion to it, on probs' device."""
    return torch.multinomial(probs.to(_where(generator, probs.device)), 1, generator=generator).to(probs.device)
