"""Where a model computes (the GPU where PyTorch sees one), whether a run computes in bf16 (measured faster on big
models where the hardware has it), the attention kernel a bf16 training step runs on a CPU, and frozen weights cast
to bf16 once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

BF16_MIN_PARAMETERS = 10_000_000  # measured (benchmarks/backbones.py): bf16 autocast is 1.5-1.7x faster on
# 49M-140M models on a CPU with native bf16, and 0.7-0.8x on the 50k-parameter test models


def run_device() -> torch.device:
    """Where a loaded model runs: the first GPU where PyTorch sees one (`CUDA_VISIBLE_DEVICES=` hides them), else the
    CPU; the device a training run's accelerator chooses by the same rule."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def use_bf16(setting: str, parameters: int) -> bool:
    """`--bf16 auto`: bf16 autocast where the hardware has it and the model is big enough to gain."""
    if setting in ("yes", "no"):
        return setting == "yes"
    if parameters < BF16_MIN_PARAMETERS:
        return False
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@contextmanager
def training_attention(device_type: str, bf16: bool) -> Iterator[None]:
    """Within the block, a training forward whose backward follows: on a CPU in bf16, scaled-dot-product attention
    runs on its plain (math) kernel, whose backward autograd composes from matmuls and a softmax. PyTorch's CPU
    flash kernel is the faster forward, but its bf16 backward is 2-3x slower at sentence lengths (measured here,
    forward + backward of one SmolLM2 layer's attention, 16 x 18 tokens after 8 prefix slots: 6.6 ms flash, 2.1 ms
    math; 64 x 40 tokens: 59 ms against 24 ms), which made it 19% of a default training step. Elsewhere the
    backends are left as PyTorch chooses them."""
    if device_type != "cpu" or not bf16:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        yield


@contextmanager
def frozen_weights_cast_once(model: nn.Module, bf16: bool) -> Iterator[None]:
    """Within the block, each frozen `nn.Linear` (a weight without a gradient, in float32) computes under bf16 autocast
    with a bf16 copy of its weight made once on entry, where autocast would cast the weight anew at every call (it caches
    only weights that take a gradient). The numbers are the same ones, so a step computes exactly what it did; autocast's
    copies fell from 17.7% to 10.3% of a default training step on a CPU, 1.15x the steps per second (README, round
    nineteen). The parameters themselves stay float32 (what is saved is unchanged) and untouched; a layer whose weight
    takes a gradient, or a call outside bf16 autocast, runs as before. Costs the copies' memory (2 bytes a frozen weight).
    Other code that multiplies by one of these weights itself (z's vocabulary bias, by the output embedding table) gets
    the same copy from `autocast_weight`."""
    if not bf16:
        yield
        return
    patched = []
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if type(module) is nn.Linear and weight is not None and not weight.requires_grad and weight.dtype == torch.float32:
            copy = weight.detach().to(torch.bfloat16)
            module.forward = _cast_once(module, copy)
            patched.append(module)
            _COPIES[id(weight)] = (weight, copy)
    try:
        yield
    finally:
        for module in patched:
            del module.forward  # the class's own forward again
            _COPIES.pop(id(module.weight), None)


_COPIES: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(frozen weight) -> (the weight, its bf16 copy), within the block


def autocast_weight(weight: torch.Tensor) -> torch.Tensor:
    """What bf16 autocast computes with for `weight`: the copy `frozen_weights_cast_once` made of it, where one exists and
    bf16 autocast is on (the same numbers autocast's own cast gives), else `weight` itself."""
    held = _COPIES.get(id(weight))
    device = weight.device.type
    if held is None or held[0] is not weight or not torch.is_autocast_enabled(device) or torch.get_autocast_dtype(device) != torch.bfloat16:
        return weight
    return held[1]


def _cast_once(linear: nn.Linear, weight: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """`linear`'s forward, computing with `weight` (its frozen weight in bf16) where bf16 autocast would cast it."""
    device = linear.weight.device.type

    def forward(x: torch.Tensor) -> torch.Tensor:
        if linear.weight.requires_grad or not torch.is_autocast_enabled(device) or torch.get_autocast_dtype(device) != torch.bfloat16:
            return nn.Linear.forward(linear, x)
        return F.linear(x, weight, linear.bias)

    return forward
