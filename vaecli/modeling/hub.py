"""Whether a `--model` / `--encoder` / `--decoder` name can name a backbone, decided without torch or transformers, and
what every pretrained load passes so that nothing else comes from the hub (NO_HUB_KERNELS).

`vae finetune --model NAME` takes `minilm`, a local directory, or a hub name (`--encoder`: `minilm` too;
`decoder`, the causal LM itself; `--decoder`: `smollm2`). A typo used to surface,
after the heavy imports, as the hub's network error ("We couldn't connect to 'https://huggingface.co'").
Offline (HF_HUB_OFFLINE set), a name that is neither a directory nor in the hub cache cannot load:
it is refused at once, as a bad option (exit 2).
"""

from __future__ import annotations

import os
from pathlib import Path

from vaecli.config import EMBEDDED_DECODER, EMBEDDED_ENCODER, ENCODER_IS_DECODER
from vaecli.errors import InputError

NO_HUB_KERNELS = {"use_kernels": False}
"""What every pretrained load passes: transformers 5 swaps layers for compiled kernels that it downloads from the hub
wherever the `kernels` package is installed (transformers requires it) and a GPU is used: code from the network, refused
offline ("kernels-community/rotary ... not available in the local cache", found on an H200 in round twenty-four)."""

EMBEDDED = {"--model": EMBEDDED_ENCODER, "--encoder": EMBEDDED_ENCODER, "--decoder": EMBEDDED_DECODER}


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def in_hub_cache(name: str) -> bool:
    """A hub model's config.json is in the local cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError:  # not a valid repo id ("a b", "x//y"): cannot be on the hub either
        return False


def unknown_model(name: str, option: str = "--model") -> InputError:
    return InputError(f"{option} {name}: no local directory or cached hub model named {name!r}; is it a typo?")


def check_backbone_name(name: str, option: str = "--model") -> None:
    """Refuse a backbone name that cannot load: a missing path, or, offline, a name the hub cache lacks."""
    path = Path(name)
    if name == EMBEDDED[option] or (option == "--encoder" and name == ENCODER_IS_DECODER) or path.is_dir():
        return
    if path.exists() or name.startswith((".", "/", "~")):
        raise InputError(f"{option} {name}: no such directory")
    if hub_offline() and not in_hub_cache(name):
        raise unknown_model(name, option)
