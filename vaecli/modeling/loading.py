"""Reading a model directory safely: its config, the classes it may name, sizes checked before memory is spent.

A config.json is untrusted input. It may only name backbone classes that transformers defines for
the family (never code from the folder), and the sizes it declares are checked against the
safetensors header -- tensor names and shapes, read without loading any weight -- on a copy of the
model built on the `meta` device, which allocates nothing. Only then is the real model built.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch

from vaecli.errors import ModelDirError
from vaecli.modeling.layout import CONFIG_NAME


def read_model_config(directory: Path) -> tuple[dict[str, Any], Any]:
    """(config.json as a dict, the family class) of a vaecli model directory, or a ModelDirError."""
    from vaecli.modeling.causal import CausalFamily
    from vaecli.modeling.seq2seq import Seq2SeqFamily

    config_path = directory / CONFIG_NAME
    if directory.exists() and not directory.is_dir():
        raise ModelDirError(f"{directory} is a file, not a model directory (train one with `vae finetune corpus.txt`)")
    if not directory.is_dir():
        raise ModelDirError(f"model directory {directory} not found; train one with `vae finetune corpus.txt --out {directory}`")
    if not config_path.is_file():
        raise ModelDirError(f"{directory} has no {CONFIG_NAME}: not a vaecli model directory (train one with `vae finetune`)")
    try:
        saved = json.loads(config_path.read_text(encoding="utf-8"))
        if not isinstance(saved, dict) or not isinstance(saved.get("vae"), dict):
            raise ValueError("no 'vae' settings")
        families = {"seq2seq": Seq2SeqFamily, "causal": CausalFamily}
        name = saved.get("family", "seq2seq")  # format 1 had only encoder-decoders
        if not isinstance(name, str) or name not in families:
            raise ValueError(f"unknown family {name!r}")
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as e:
        raise ModelDirError(f"{config_path} is not a valid vaecli config ({e.__class__.__name__}: {e})") from None
    return saved, families[name]


def load_tokenizer(directory: str | Path) -> Any:
    from transformers import AutoTokenizer

    try:
        # Explicitly False: left unset, transformers asks on a terminal whether to run a folder's code.
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 -- it also parses the folder's untrusted config.json: any failure is one line
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ModelDirError(f"cannot load the tokenizer from {directory} ({first})") from None


def build_backbone(class_name: Any, config_dict: Any, allowed_names: Any) -> Any:
    """An untrained transformers model of class `class_name`, which must be one of `allowed_names`' values."""
    import transformers
    from transformers import AutoConfig

    allowed = set(allowed_names.values())
    if not isinstance(class_name, str) or class_name not in allowed or not hasattr(transformers, class_name):
        raise ModelDirError(f"config.json names backbone class {class_name!r}, which is not one this model family can use")
    if not isinstance(config_dict, dict) or not isinstance(config_dict.get("model_type"), str):
        raise ModelDirError("config.json: a backbone config without a model_type")
    config_dict = dict(config_dict)
    model_type = config_dict.pop("model_type")
    try:
        config = AutoConfig.for_model(model_type, **config_dict)
    except Exception as e:  # noqa: BLE001 -- untrusted values: whatever transformers raises on them is one line
        raise ModelDirError(f"config.json: bad {model_type} config ({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})") from None
    cls = getattr(transformers, class_name)
    if cls.config_class is not None and not isinstance(config, cls.config_class):
        raise ModelDirError(f"config.json: {class_name} does not take a {type(config).__name__}")
    return cls(config)


def header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors header, without reading the tensors."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise ModelDirError(f"{path} is missing; the model directory is incomplete")
    try:
        with safe_open(str(path), "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelDirError(f"{path} is corrupt or truncated ({e}); re-run `vae finetune` or restore it") from None


def _layer_counts(value: Any, key: str = "") -> list[tuple[str, int]]:
    """Every integer a config declares under a key naming layers, nested configs included."""
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            found += _layer_counts(v, str(k))
    elif isinstance(value, int) and not isinstance(value, bool) and "layer" in key:
        found.append((key, value))
    return found


def build_checked(make: Callable[[], Any], weights: Path, saved: dict[str, Any]) -> Any:
    """`make()` the model for real only after a meta-device copy matches the weights' header exactly."""
    from transformers.utils import logging as hf_logging

    shapes = header_shapes(weights)
    for key, count in _layer_counts(saved):
        if count > len(shapes):  # every layer holds at least one tensor
            raise ModelDirError(f"{weights.parent / CONFIG_NAME} declares {key}={count}, but {weights.name} holds only {len(shapes)} tensors")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with torch.device("meta"):
            skeleton = _made(make, weights)
        tensors = {**dict(skeleton.named_parameters()), **dict(skeleton.named_buffers())}
        declared = sum(t.numel() * t.element_size() for t in tensors.values())
        expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
        del skeleton, tensors
        # Tied weights are stored once and counted twice here; anything beyond that is a config
        # declaring sizes (e.g. position tables that are not saved) that the weights do not back.
        limit = 2 * weights.stat().st_size + 256 * 2**20
        if declared > limit:
            raise ModelDirError(f"{weights.parent / CONFIG_NAME} declares {declared / 2**30:.1f} GiB of tensors for "
                                f"{weights.stat().st_size / 2**20:.0f} MiB of weights; refusing to build it")
        for name, shape in expected.items():
            if name in shapes and shapes[name] != shape:
                raise ModelDirError(f"{weights} does not match config.json ({name}: {list(shapes[name])} in the file, {list(shape)} declared)")
        return _made(make, weights)
    finally:
        hf_logging.set_verbosity(verbosity)


def _made(make: Callable[[], Any], weights: Path) -> Any:
    try:
        return make()
    except ModelDirError:
        raise
    except Exception as e:  # noqa: BLE001 -- a constructor fed untrusted sizes may raise anything; it is one line
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ModelDirError(f"{weights.parent / CONFIG_NAME} describes a model that cannot be built ({first})") from None
