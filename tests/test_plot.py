"""`vae plot` writes real PNG figures from a run directory."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from vaecli.cli import app
from vaecli.config import TrainConfig
from vaecli.evaluation.plot import pca_2d
from vaecli.training.trainer import finetune

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
    x = np.outer(rng.standard_normal(500), [3.0, 1.0, 0.5, 0.2]) + 0.01 * rng.standard_normal((500, 4))
    points, explained = pca_2d(x)
    assert explained[0] > 0.99 and points.shape == (500, 2)


def test_pca_is_not_one_wide_dimension():
    """One dimension with a 100x spread made the map a line ("PC1 100%"): dimensions are standardised first."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 4)) * np.array([100.0, 1.0, 1.0, 1.0])
    _, explained = pca_2d(x)
    assert 0.2 < explained[0] < 0.35 and 0.2 < explained[1] < 0.35


def test_labels_are_cut_at_a_word_boundary():
    from vaecli.evaluation.plot import short_label

    assert short_label("the old house") == "the old house"
    assert short_label("he breathed new life into the old house, and then he left it", width=36) == "he breathed new life into the old\u2026"
    assert short_label("she soaks up foreign languages, like a sponge", width=32) == "she soaks up foreign languages\u2026"
    assert short_label("supercalifragilisticexpialidocious", width=10) == "supercali\u2026"
    for width in range(8, 40):
        label = short_label("a b cc ddd eeee fffff gggggg hhhhhhh iiiiiiii", width)
        assert len(label) <= width and label.removesuffix("\u2026") in "a b cc ddd eeee fffff gggggg hhhhhhh iiiiiiii"
        assert label.endswith("\u2026") and label[-2] != " " and (label[:-1] + " ") in "a b cc ddd eeee fffff gggggg hhhhhhh iiiiiiii "


def test_labelled_points_do_not_overlap():
    import numpy as np

    from vaecli.evaluation.plot import label_points

    points = np.random.default_rng(0).standard_normal((1000, 2))
    chosen = label_points(points, 15, box=(0.35, 0.05))
    assert len(chosen) == 15 and len(set(chosen)) == 15
    scaled = (points - points.min(0)) / (points.max(0) - points.min(0))
    for i in chosen:
        for j in chosen:
            if i != j:
                assert abs(scaled[i, 0] - scaled[j, 0]) >= 0.35 or abs(scaled[i, 1] - scaled[j, 1]) >= 0.05


def test_beta_is_drawn_from_the_schedule_at_every_step():
    """metrics.jsonl keeps every 10th step, which showed cyclical dips at 0.6; the curve comes from the schedule."""
    from vaecli.training.schedule import beta_curve

    training = {"config": {"phase": "both", "beta_schedule": "cyclical", "beta_max": 1.0, "beta_cycles": 4, "beta_ramp": 0.5},
                "resolved": {"phase1_steps": 3, "phase2_steps": 8}}
    xs, ys = beta_curve(training, offset=3)
    assert xs == list(range(1, 12))
    assert ys == [0.0, 0.0, 0.0] + [0.0, 1.0] * 4
    assert beta_curve({}, 3) is None


def test_the_latent_map_is_of_the_encoders_mu_not_refined(t5_dir, corpus, valid, tmp_path, monkeypatch):
    import numpy as np

    import vaecli.evaluation.plot as plot
    from vaecli.api import TextVAE

    run = tmp_path / "run"
    finetune(TrainConfig(train_file=str(corpus), valid_file=str(valid), model=str(t5_dir), out=str(run), phase1_steps=2,
                         phase2_steps=0, batch_size=8, bf16="no", latent_dim=4))
    mapped = []
    monkeypatch.setattr(plot, "plot_latent_map", lambda z, texts, path: mapped.append((z, texts)) or path)
    r = CliRunner().invoke(app, ["plot", str(run), "--limit", "6"])
    assert r.exit_code == 0, r.output
    z, texts = mapped[0]
    vae = TextVAE.from_pretrained(run)
    np.testing.assert_allclose(z, vae.encode(texts, refine=0), atol=1e-6)
    assert not np.allclose(z, vae.encode(texts), atol=1e-6)
