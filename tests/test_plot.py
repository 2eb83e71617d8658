"""`vae plot` writes real PNG figures from a run directory."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from vaecli.cli import app
from vaecli.config import TrainConfig
from vaecli.plot import pca_2d
from vaecli.train import finetune

pytest.importorskip("matplotlib")


def test_plot_writes_curves_and_latent_map(t5_dir, corpus, valid, tmp_path):
    run = tmp_path / "run"
    finetune(TrainConfig(train_file=str(corpus), valid_file=str(valid), model=str(t5_dir), out=str(run), phase1_steps=10,
                         phase2_steps=10, batch_size=8, valid_every=5, bf16="no", latent_dim=4))
    r = CliRunner().invoke(app, ["plot", str(run)])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [str(run / "curves.png"), str(run / "latent-map.png")]
    for name in ("curves.png", "latent-map.png"):
        data = (run / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000

    # RUN_DIR defaults like every command's --model: --model, then $VAE_MODEL, then ./vae-model
    figures = tmp_path / "figures"
    for args, env in ((["--model", str(run)], {}), ([], {"VAE_MODEL": str(run)})):
        r = CliRunner().invoke(app, ["plot", *args, "--out", str(figures), "--sentences", str(valid), "--limit", "50"], env=env)
        assert r.exit_code == 0, r.output
        assert r.stdout.splitlines() == [str(figures / "curves.png"), str(figures / "latent-map.png")]


def test_plot_without_metrics_is_one_line(tmp_path):
    r = CliRunner().invoke(app, ["plot", str(tmp_path)])
    assert r.exit_code == 2 and "metrics.jsonl" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_pca_recovers_the_main_axis():
    import numpy as np

    rng = np.random.default_rng(0)
    x = np.outer(rng.standard_normal(500), [3.0, 0, 0, 0]) + 0.01 * rng.standard_normal((500, 4))
    points, explained = pca_2d(x)
    assert explained[0] > 0.99 and points.shape == (500, 2)
