"""Issue 18, item 2: live tracking through accelerate's trackers, read back from the TensorBoard event file."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from vaecli.cli import app


def test_tensorboard_gets_every_record_the_settings_and_reconstructions(t5_dir, corpus, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "m"
    r = CliRunner().invoke(app, ["finetune", str(corpus), "--model", str(t5_dir), "--out", str(out), "--phase1-steps", "20",
                                 "--phase2-steps", "10", "--valid-every", "10", "--batch-size", "8", "--latent-dim", "4", "--bf16", "no",
                                 "--report-to", "tensorboard"])
    assert r.exit_code == 0, r.output
    run = out / "logs" / "vaecli"
    (events,) = run.glob("events.out.tfevents.*")  # the scalars and text; the settings are an hparams run beside it
    (hparams,) = run.glob("*/hparams.yml")
    assert {"lr: 0.0001", "latent_dim: 4", "report_to: tensorboard"} <= set(hparams.read_text().splitlines())
    tb = EventAccumulator(str(events), size_guidance={"scalars": 0, "tensors": 0})
    tb.Reload()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for kind, metric in (("train", "rec"), ("train", "lr"), ("valid", "rec"), ("valid", "acc"), ("valid", "gap"), ("valid", "au")):
        logged = [(e.step, e.value) for e in tb.Scalars(f"{kind}/{metric}")]
        expected = [(r["step"] + (20 if r["phase"] == 2 else 0), r[metric]) for r in records if r["kind"] == kind]
        assert [s for s, _ in logged] == [s for s, _ in expected] and len(logged) >= 3
        assert all(abs(a - b) <= 1e-5 * max(1.0, abs(b)) for (_, a), (_, b) in zip(logged, expected)), (kind, metric)
    texts = tb.Tensors("valid/reconstructions/text_summary")
    assert [t.step for t in texts] == [10, 20, 30]
    assert "| sentence | reconstruction |" in texts[0].tensor_proto.string_val[0].decode()


def test_a_missing_tracker_is_one_line_before_anything_loads(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    corpus = tmp_path / "c.txt"
    corpus.write_text("the old house\n")
    r = CliRunner().invoke(app, ["finetune", str(corpus), "--report-to", "wandb", "--out", str(tmp_path / "o")])
    assert (r.exit_code, r.stderr) == (2, "error: --report-to wandb needs the wandb package: pip install 'vaecli[wandb]'\n")
    r = CliRunner().invoke(app, ["finetune", str(corpus), "--report-to", "mlflow", "--out", str(tmp_path / "o")])
    assert (r.exit_code, r.stderr) == (2, "error: --report-to must be tensorboard or wandb, not 'mlflow'\n")
