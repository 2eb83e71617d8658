"""vaecli: turn pretrained Transformers (an encoder-decoder, or an encoder + a causal LM) into a text VAE by finetuning alone.

The public Python API is `TextVAE` (load with `TextVAE.from_pretrained(dir)`); heavy libraries are
imported on first use so that `import vaecli` and `vae --help` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from vaecli.api import TextVAE

__all__ = ["TextVAE", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "TextVAE":
        from vaecli.api import TextVAE

        return TextVAE
    raise AttributeError(f"module 'vaecli' has no attribute {name!r}")
