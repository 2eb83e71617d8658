"""Whether a run computes in bf16 (measured faster on big models where the hardware has it), and the
attention kernel a bf16 training step runs on a CPU."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

BF16_MIN_PARAMETERS = 10_000_000  # measured (benchmarks/backbones.py): bf16 autocast is 1.5-1.7x faster on
# 49M-140M models on a CPU with native bf16, and 0.7-0.8x on the 50k-parameter test models


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
