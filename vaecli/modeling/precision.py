"""Whether a run computes in bf16: measured faster on big models where the hardware has it."""

from __future__ import annotations

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
