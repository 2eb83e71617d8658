"""--distill: the decoder's hidden states reading z are matched, at every layer and token, to the same LM's when it has
read the sentence in its own context (`t1 .. tn start t1 .. tn`, no gradient), each dimension scaled by the pretrained
LM's spread on training sentences. Every causal family; an encoder-decoder is refused."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from vaecli.cli.app import app
from vaecli.config import TrainConfig, VAEConfig
from vaecli.errors import ConfigError
from vaecli.modeling.backbones import build_causal_vae
from vaecli.modeling.causal import same_sentences
from vaecli.modeling.distill import context_rows, mismatch, second_copy, spreads

SENTENCES = ["he breathed new life into the old house", "the priest said mass", "a dog", "she soaks up foreign languages like a sponge"]
FAMILIES = ["llama", "gpt2", "qwen2", "gemma3"]


@pytest.fixture
def dirs(lm_dirs, more_lm_dirs):
    return {**lm_dirs, **more_lm_dirs}


def make(dirs, family: str, lora: int = 0):
    torch.manual_seed(0)
    return build_causal_vae("decoder", str(dirs[family]), VAEConfig(latent_dim=8, lora=lora)).eval()


def test_context_rows_put_the_sentence_before_the_decoder_inputs():
    start, pad = 1, 0
    dec_in = torch.tensor([[start, 5, 6, 7], [start, 8, pad, pad]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    ids, real, starts = context_rows(dec_in, mask, pad)
    assert ids.tolist() == [[5, 6, 7, start, 5, 6, 7], [8, start, 8, pad, pad, pad, pad]]
    assert real.tolist() == [[True] * 7, [True, True, True, False, False, False, False]]
    assert starts.tolist() == [3, 1]
    states = torch.arange(2 * 7, dtype=torch.float).view(2, 7, 1)
    assert second_copy(states, starts, 4)[:, :, 0].tolist() == [[3, 4, 5, 6], [8, 9, 10, 11]]  # row 2 past its end: masked by the caller


@pytest.mark.parametrize("family", FAMILIES)
def test_the_teacher_is_the_lm_reading_each_row_alone(dirs, family):
    """context_states of a padded batch = each row's own hidden states of `sentence start sentence`, read alone, from its start token on."""
    vae = make(dirs, family)
    batch = vae.tokenize_batch(SENTENCES)
    dec_in, labels = vae.targets(batch["target_ids"], batch["target_mask"])
    mask = labels != -100
    with torch.no_grad():
        teacher = vae.family.context_states(dec_in, mask)
        body = vae.backbone.decoder.base_model
        for row in range(len(SENTENCES)):
            tokens = dec_in[row][mask[row]]
            alone = body(input_ids=torch.cat([tokens[1:], tokens]).unsqueeze(0), output_hidden_states=True).hidden_states
            n = len(tokens) - 1
            assert len(teacher) == len(alone) == vae.backbone.decoder.config.num_hidden_layers + 1
            for layer in range(len(alone)):
                torch.testing.assert_close(teacher[layer][row, : n + 1], alone[layer][0, n:], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_one_pass_reads_and_teaches_as_two(dirs, family):
    """The LM reading its own sentences reads them as the start of the teacher's rows: the encoder's states and the
    teacher's are the two passes' own; an input that is not the decoder's sentence (a token deleted) takes two passes."""
    vae = make(dirs, family)
    batch = vae.tokenize_batch(SENTENCES)
    dec_in, labels = vae.targets(batch["target_ids"], batch["target_mask"])
    mask = labels != -100
    ids, attention = batch["input_ids"], batch["attention_mask"]
    _, _, starts = context_rows(dec_in, mask, vae.pad_id)
    deleted = torch.cat([ids[:, 1:], ids[:, :1]], dim=1), torch.cat([attention[:, 1:], torch.zeros_like(attention[:, :1])], dim=1)
    assert same_sentences(ids, attention, context_rows(dec_in, mask, vae.pad_id)[0], starts)
    assert not same_sentences(*deleted, context_rows(dec_in, mask, vae.pad_id)[0], starts)
    with torch.no_grad():
        for encoder_input in ((ids, attention), deleted):
            encoded, teacher = vae.family.read_with_context(*encoder_input, dec_in, mask)
            alone = vae.family.encoder_states(*encoder_input)
            real = encoder_input[1].bool()
            for got, want in zip(encoded, alone, strict=True):
                torch.testing.assert_close(got[real], want[real], rtol=1e-4, atol=1e-4)
            for got, want in zip(teacher, vae.family.context_states(dec_in, mask), strict=True):
                torch.testing.assert_close(got[mask], want[mask], rtol=1e-4, atol=1e-5)


def test_mismatch_and_spreads_are_exact_and_per_row():
    torch.manual_seed(0)
    teacher = tuple(torch.randn(3, 5, 4) for _ in range(3))
    student = tuple(t + torch.randn(3, 5, 4) for t in teacher)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    spread = spreads([(teacher[:1] + teacher[1:], mask)])
    for layer in range(3):
        torch.testing.assert_close(spread[layer], teacher[layer][mask].std(dim=0))
    halves = spreads([(tuple(t[:2] for t in teacher), mask[:2]), (tuple(t[2:] for t in teacher), mask[2:])])
    torch.testing.assert_close(halves, spread)  # in chunks: the same
    got = mismatch(student, teacher, mask, spread)
    expected = torch.stack([sum(((((student[layer][b] - teacher[layer][b]) / spread[layer]) ** 2).mean(dim=-1) * mask[b]).sum()
                                for layer in (1, 2)) / 2 for b in range(3)])
    torch.testing.assert_close(got, expected)
    assert mismatch(teacher, teacher, mask, spread).tolist() == [0.0, 0.0, 0.0]
    alone = mismatch(tuple(s[2:] for s in student), tuple(t[2:] for t in teacher), mask[2:], spread)
    torch.testing.assert_close(alone[0], got[2])


@pytest.mark.parametrize("family", FAMILIES)
def test_the_loss_adds_the_weighted_mismatch_and_trains_z_s_path(dirs, family):
    vae = make(dirs, family, lora=2)
    batch = vae.tokenize_batch(SENTENCES)
    args = (batch["input_ids"], batch["attention_mask"], batch["target_ids"], batch["target_mask"])
    with pytest.raises(RuntimeError, match="fit_context_spread"):
        vae(*args, sample=False, distill=1.0)
    vae.fit_context_spread(batch["target_ids"], batch["target_mask"])
    spread = vae.context_spread.clone()
    with torch.no_grad():  # the spreads are the pretrained LM's: adapters that moved do not change them
        for name, p in vae.named_parameters():
            if "lora_B" in name:
                p.normal_()
    vae.fit_context_spread(batch["target_ids"], batch["target_mask"])
    torch.testing.assert_close(vae.context_spread, spread)
    plain = vae(*args, sample=False)
    out = vae(*args, sample=False, distill=2.0)
    assert plain.distill is None and out.distill > 0
    torch.testing.assert_close(out.loss, plain.loss + 2.0 * out.distill)
    torch.testing.assert_close(out.rec, plain.rec)
    out.distill.backward()
    for layer in (vae.to_decoder, vae.to_mu):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    alone = vae(*(a[2:3] for a in args), sample=False, distill=2.0)  # a row's mismatch is its own
    with torch.no_grad():
        per_row = vae.distill_mismatch(vae_hidden(vae, out.z, batch), batch["target_ids"], batch["target_mask"])
    torch.testing.assert_close(alone.distill, per_row[2], rtol=1e-4, atol=1e-4)


def vae_hidden(vae, z, batch):
    """The decoder's hidden states reading z, teacher-forced on the batch's targets."""
    state = vae.decode_state(z, cache=False)
    state.keep_hidden = True
    dec_in, _ = vae.targets(batch["target_ids"], batch["target_mask"])
    vae.decoder_logits(state, dec_in)
    return state.hidden


def test_an_encoder_decoder_is_refused():
    with pytest.raises(ConfigError, match="--distill teaches a causal LM decoder"):
        TrainConfig(train_file="x", model="t5-small", distill=1.0)
    with pytest.raises(ConfigError, match="--distill must be >= 0"):
        TrainConfig(train_file="x", distill=-1.0)


def test_finetune_with_distill_logs_it(llama_dir, corpus, valid, t5_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "model"
    result = runner.invoke(app, ["finetune", str(corpus), "--valid", str(valid), "--decoder", str(llama_dir), "--out", str(out),
                                 "--phase1-steps", "10", "--batch-size", "8", "--valid-every", "10", "--bf16", "no", "--latent-dim", "8",
                                 "--valid-size", "20", "--distill", "1"], env={"HF_HUB_OFFLINE": "1"})
    assert result.exit_code == 0, result.stderr
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    trained = [row for row in logged if row.get("kind") == "train"]
    assert trained and all(row["distill"] > 0 for row in trained)
    assert json.loads((out / "training.json").read_text())["config"]["distill"] == 1.0
    refused = runner.invoke(app, ["finetune", str(corpus), "--model", str(t5_dir), "--out", str(tmp_path / "t5"), "--distill", "1"])
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1 and "--distill teaches a causal LM decoder" in refused.stderr


def test_distill_decay_holds_then_falls_linearly_to_0_over_the_phase(llama_dir, corpus, tmp_path, monkeypatch):
    from vaecli.training import schedule, trainer
    from vaecli.training.schedule import distill_at

    assert schedule.DISTILL_HOLD == 300
    assert [distill_at(s, 300, 2.0, True) for s in (0, 150, 299)] == [2.0] * 3  # the quick start's phase: the full weight
    assert [distill_at(s, 700, 2.0, True) for s in (0, 299, 300, 400, 600, 699)] == [2.0, 2.0, 2.0, 1.5, 0.5, 0.005]
    assert [distill_at(s, 700, 2.0, False) for s in (0, 400, 699)] == [2.0] * 3
    assert distill_at(3, 0, 2.0, True) == 2.0  # no steps: nothing to fall over
    monkeypatch.setattr(schedule, "DISTILL_HOLD", 2)
    weights, forward = [], trainer.forward

    def spy(run, wrapped, batch, phase, beta, protected, distill=None):
        weights.append(distill)
        return forward(run, wrapped, batch, phase, beta, protected, distill)

    monkeypatch.setattr(trainer, "forward", spy)
    result = CliRunner().invoke(app, ["finetune", str(corpus), "--decoder", str(llama_dir), "--out", str(tmp_path / "m"), "--phase1-steps", "4",
                                      "--batch-size", "8", "--bf16", "no", "--latent-dim", "8", "--valid-size", "20", "--distill", "2",
                                      "--distill-decay"], env={"HF_HUB_OFFLINE": "1"})
    assert result.exit_code == 0, result.stderr
    assert weights == [2.0, 2.0, 2.0, 1.0]
    assert json.loads((tmp_path / "m" / "training.json").read_text())["config"]["distill_decay"] is True
