"""Random streams on any device: seeded draws made where the generator lives, then moved; the streams a run saves,
restores and forks, the GPU's with the CPU's.

A seeded `torch.Generator()` lives on the CPU, and PyTorch refuses it for a draw made on a GPU ("Expected a 'cuda'
device type for generator but found 'cpu'": found on an H200 in round twenty-four, at the first validation). Drawing
on the generator's device and moving the numbers also makes a seed give the same numbers on a CPU and a GPU. Without a
generator a draw is made on the target device from its own global generator, as PyTorch does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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


def rng_states(device: torch.device) -> dict[str, torch.Tensor]:
    """This process's global random streams, by name: the CPU's ("torch"), and the GPU's ("cuda") where `device` is one
    (a run's draws without a generator are made there: z ~ q(z|x), token deletion, word dropout)."""
    states = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states: dict[str, torch.Tensor], device: torch.device) -> None:
    """Put back what rng_states gave; a GPU's stream only where `device` is a GPU (a CPU run ignores it)."""
    torch.set_rng_state(states["torch"])
    if "cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)


@contextmanager
def forked(device: torch.device) -> Iterator[None]:
    """Within the block, draws from the global streams (the CPU's, and `device`'s where it is a GPU) leave them as they
    were outside it."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield
