"""--vocab-bias: z -> a bias on every next-token logit through the decoder's output embeddings, for every model family.

The bias is exactly W (A z) at every position (W the output table, the input one only where the two are tied), each
row's from its own z; it starts at zero, trains at the new layers' rate, reaches every decoding (greedy, beam) the same
as the training forward, and survives save -> load. With --vocab-slots K, each position adds the slots' biases weighted
by how much each agrees with the decoder's prediction there; the same properties hold.
"""

from __future__ import annotations

import json

import pytest
import torch

from vaecli.config import TrainConfig, VAEConfig
from vaecli.errors import ConfigError, ModelDirError
from vaecli.inference.generate import generate
from vaecli.modeling.backbones import build_causal_vae, build_vae
from vaecli.modeling.vae import VAEModel
from vaecli.modeling.vocab_bias import add_vocab_bias

SENTENCES = ["he breathed new life into the old house", "the priest said mass", "she soaks up foreign languages like a sponge", "a dog"]
OTHERS = ["you could see the tumor", "the old man", "he said it was a long day at the house", "it"]
FAMILIES = ["t5", "bart", "llama", "gpt2", "qwen2", "gemma3"]


@pytest.fixture
def dirs(backbone_dirs, lm_dirs, more_lm_dirs):
    return {**backbone_dirs, **lm_dirs, **more_lm_dirs}


def build(dirs, family: str, config: VAEConfig) -> VAEModel:
    """An encoder-decoder of its own, or the causal LM reading its own sentences (the default shape)."""
    return build_vae(str(dirs[family]), config) if family in ("t5", "bart") else build_causal_vae("decoder", str(dirs[family]), config)


def make(dirs, family: str, **kw) -> VAEModel:
    """A VAE with the bias on and A made non-zero (at the start it is zero, so it would show nothing)."""
    torch.manual_seed(0)
    vae = build(dirs, family, VAEConfig(latent_dim=8, vocab_bias=True, **kw))
    with torch.no_grad():
        vae.to_vocab.weight.normal_(std=1.0)
        vae.to_vocab.bias.normal_(std=0.1)
    return vae.eval()


def tokens(vae: VAEModel, texts: list[str]) -> dict[str, torch.Tensor]:
    return vae.tokenize_batch(texts) if vae.family.name == "causal" else dict(vae.tokenizer(texts, padding=True, return_tensors="pt"))


def logits_with_and_without_the_bias(vae: VAEModel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(z, the teacher-forced logits of SENTENCES decoded from z, the same with the bias taken out of the state)."""
    batch = tokens(vae, SENTENCES)
    ids, mask = (batch["target_ids"], batch["target_mask"]) if "target_ids" in batch else (batch["input_ids"], batch["attention_mask"])
    dec_in, _ = vae.targets(ids, mask)
    z = torch.randn(len(SENTENCES), 8)
    with torch.no_grad():
        with_bias = vae.decoder_logits(vae.decode_state(z, cache=False), dec_in)
        plain = vae.decode_state(z, cache=False)
        plain.vocab_bias = None
        return z, with_bias, vae.decoder_logits(plain, dec_in)


def output_table(vae: VAEModel, family: str) -> torch.Tensor:
    return vae.backbone.get_output_embeddings().weight if family in ("t5", "bart") else vae.backbone.decoder.get_output_embeddings().weight


@pytest.mark.parametrize("family", FAMILIES)
def test_the_bias_is_z_through_the_output_table_at_every_position(dirs, family):
    vae = make(dirs, family)
    z, with_bias, without = logits_with_and_without_the_bias(vae)
    table = output_table(vae, family)
    with torch.no_grad():
        expected = (vae.to_vocab(z) @ table.T).unsqueeze(1).expand_as(with_bias)
    torch.testing.assert_close(with_bias - without, expected, atol=1e-4, rtol=1e-4)
    assert expected.abs().max() > 0.1
    if family == "qwen2":  # an untied head: the bias goes through the output table, not the input one
        inputs = vae.family.input_embeddings().weight
        assert inputs.data_ptr() != table.data_ptr()
        assert (vae.to_vocab(z) @ inputs.T - expected[:, 0]).abs().max() > 1e-2


@pytest.mark.parametrize("slots", [1, 3])
@pytest.mark.parametrize("family", FAMILIES)
def test_each_row_s_bias_is_its_own(dirs, family, slots):
    """Row 0's logits do not move when the other rows change, and another z moves them."""
    vae = make(dirs, family, vocab_slots=slots)
    a_batch, b_batch = tokens(vae, SENTENCES), tokens(vae, [SENTENCES[0]] + OTHERS[1:])
    with torch.no_grad():
        a, b = vae(**a_batch, sample=False), vae(**b_batch, sample=False)
        n = int((a_batch.get("target_mask", a_batch["attention_mask"]))[0].sum()) - (0 if vae.family.name == "causal" else 1)
        torch.testing.assert_close(a.logits[0, :n], b.logits[0, :n], atol=1e-4, rtol=0)
        state = vae.decode_state(torch.stack([a.mu[1], a.mu[0]]))
    torch.testing.assert_close(state.vocab_bias[1], vae.decode_state(a.mu[:1]).vocab_bias[0], atol=1e-5, rtol=0)
    assert (state.vocab_bias[0] - state.vocab_bias[1]).abs().max() > 1e-3


@pytest.mark.parametrize("slots", [1, 3])
@pytest.mark.parametrize("family", ["t5", "llama", "qwen2"])
def test_decoding_reads_the_bias_as_training_does(dirs, family, slots):
    """Greedy tokens are the argmax of the teacher-forced forward; beam search keeps each row's bias with its beams
    (a batch decodes as its rows alone)."""
    vae = make(dirs, family, vocab_slots=slots)
    z = torch.randn(4, 8) * 2
    out = generate(vae, z, 6)
    for i, ids in enumerate(out):
        with torch.no_grad():
            logits = vae.decoder_logits(vae.decode_state(z[i : i + 1], cache=False), torch.tensor([[vae.start_id] + ids]))
        assert logits[0].argmax(-1).tolist()[: len(ids)] == ids
    plain = make(dirs, family, vocab_slots=slots)
    with torch.no_grad():
        plain.to_vocab.weight.zero_()
        plain.to_vocab.bias.zero_()
    assert generate(plain, z, 6) != out  # the bias changes what is decoded
    for beam in (1, 3):
        assert generate(vae, z, 6, beam=beam) == [generate(vae, z[i : i + 1], 6, beam=beam)[0] for i in range(4)]
    # Rows kept, reordered and repeated (DecodeState.select) take their bias with them.
    rows, start = torch.tensor([2, 0, 0]), torch.full((3, 1), vae.start_id)
    with torch.no_grad():
        state = vae.decode_state(z)
        state.select(rows)
        got, expected = vae.decoder_logits(state, start), vae.decoder_logits(vae.decode_state(z[rows]), start)
    # float32 at the logits' scale (t5's reach 90 here; the slots' weights pass a few ULPs of difference on)
    torch.testing.assert_close(got, expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-5)


@pytest.mark.parametrize("family", ["bart", "gpt2"])
def test_it_starts_at_zero_and_trains_at_the_new_layers_rate(dirs, family):
    torch.manual_seed(0)
    config = VAEConfig(latent_dim=8, vocab_bias=True)
    vae = build(dirs, family, config)
    assert not vae.to_vocab.weight.any() and not vae.to_vocab.bias.any()
    assert {id(p) for p in vae.to_vocab.parameters()} <= {id(p) for p in vae.new_parameters()}
    vae(**tokens(vae, SENTENCES)).loss.backward()
    assert vae.to_vocab.weight.grad.abs().sum() > 0
    # The model starts as the same seed's model without it: the same weights, the same logits.
    torch.manual_seed(0)
    off = build(dirs, family, VAEConfig(latent_dim=8, vocab_bias=False))
    assert off.to_vocab is None and off.decode_state(torch.zeros(1, 8)).vocab_bias is None
    torch.manual_seed(0)
    on = build(dirs, family, config)
    shared = off.state_dict()
    assert all(torch.equal(v, shared[k]) for k, v in on.state_dict().items() if not k.startswith("to_vocab."))
    with torch.no_grad():
        batch = tokens(on, SENTENCES)
        assert torch.equal(on.eval()(**batch, sample=False).logits, off.eval()(**batch, sample=False).logits)


@pytest.mark.parametrize(("family", "slots"), [("t5", 1), ("gemma3", 1), ("gemma3", 3)])
def test_save_load_identical(dirs, family, slots, tmp_path):
    vae = make(dirs, family, vocab_slots=slots)
    vae.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["vae"]["vocab_bias"] is True
    assert json.loads((tmp_path / "config.json").read_text())["vae"]["vocab_slots"] == slots
    loaded = VAEModel.from_pretrained(tmp_path)
    batch = tokens(vae, SENTENCES)
    with torch.no_grad():
        a, b = vae(**batch, sample=False), loaded(**batch, sample=False)
    assert torch.equal(a.logits, b.logits)
    assert generate(vae, a.mu, 6, beam=2) == generate(loaded, b.mu, 6, beam=2)


@pytest.mark.parametrize("family", ["bart", "llama", "gemma3"])
def test_each_position_weighs_the_slots_by_the_prediction_there(dirs, family):
    """--vocab-slots 3: the logits move by sum_k softmax_k(E_p[b_k]) b_k, p the decoder's prediction at the position
    without the bias, b_k = W (A_k z) (that positions pick different slots: the test after this one)."""
    vae = make(dirs, family, vocab_slots=3)
    z, with_bias, without = logits_with_and_without_the_bias(vae)
    table = output_table(vae, family)
    with torch.no_grad():
        biases = vae.to_vocab(z).view(len(SENTENCES), 3, -1) @ table.T
        weights = torch.softmax(torch.einsum("btv,bkv->btk", torch.softmax(without, dim=-1), biases), dim=-1)
        expected = torch.einsum("btk,bkv->btv", weights, biases)
    torch.testing.assert_close(with_bias - without, expected, atol=1e-4, rtol=1e-4)


def test_a_position_picks_the_slot_of_the_word_it_predicts():
    """Two slots, one for word 0 and one for word 1: where the decoder predicts word 0 the first slot's bias is added,
    where it predicts word 1 the second's; one slot is the same bias at every position."""
    logits = torch.tensor([[[8.0, 0.0, 0.0, 0.0], [0.0, 8.0, 0.0, 0.0]]])
    slots = torch.tensor([[[6.0, 0.0, 0.0, 0.0], [0.0, 6.0, 0.0, 0.0]]])
    moved = add_vocab_bias(logits, slots) - logits
    assert moved[0, 0, 0] > 5.9 and moved[0, 0, 1] < 0.1
    assert moved[0, 1, 1] > 5.9 and moved[0, 1, 0] < 0.1
    assert torch.equal(add_vocab_bias(logits, slots[:, 0]) - logits, slots[:, :1].expand(1, 2, 4))


def test_slots_start_near_zero_and_apart(dirs):
    torch.manual_seed(0)
    vae = build(dirs, "llama", VAEConfig(latent_dim=8, vocab_bias=True, vocab_slots=3))
    weight = vae.to_vocab.weight.view(3, -1, 8)
    assert weight.abs().max() < 1e-3 and not vae.to_vocab.bias.any()
    assert (weight[0] != weight[1]).any() and (weight[1] != weight[2]).any()
    torch.manual_seed(0)
    off = build(dirs, "llama", VAEConfig(latent_dim=8, vocab_bias=False)).state_dict()
    assert all(torch.equal(v, off[k]) for k, v in vae.state_dict().items() if not k.startswith("to_vocab."))


def test_slots_need_the_bias(dirs):
    with pytest.raises(ConfigError, match="--vocab-slots must be >= 1, got 0"):
        TrainConfig(train_file="x", vocab_slots=0)
    with pytest.raises(ConfigError, match="--vocab-slots divides z's vocabulary bias into slots: it needs --vocab-bias"):
        TrainConfig(train_file="x", model="minilm", vocab_slots=4)  # an encoder-decoder: the bias is off by default
    with pytest.raises(ModelDirError, match="it needs --vocab-bias"):
        build(dirs, "t5", VAEConfig(latent_dim=8, vocab_bias=False, vocab_slots=2))
    assert TrainConfig(train_file="x", vocab_slots=4).vae_config().vocab_slots == 4
    assert VAEConfig.from_dict({"latent_dim": 8, "vocab_bias": True}).vocab_slots == 1  # saved before --vocab-slots: one


def test_on_for_a_causal_lm_by_default_off_for_models_saved_before_it():
    assert TrainConfig(train_file="x").vae_config().vocab_bias is True
    assert TrainConfig(train_file="x", vocab_bias=False).vae_config().vocab_bias is False
    assert TrainConfig(train_file="x", model="minilm").vae_config().vocab_bias is False
    assert VAEConfig.from_dict({"latent_dim": 8, "injection": "both", "prefix_slots": 1, "init_logvar": 0.0}).vocab_bias is False


def test_finetune_with_the_option(llama_dir, corpus, valid, tmp_path):
    """`vae finetune --vocab-bias` trains A (non-zero after a few steps) and the model decodes."""
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from vaecli.cli import app

    runner = CliRunner()
    out = tmp_path / "model"
    result = runner.invoke(app, ["finetune", str(corpus), "--valid", str(valid), "--decoder", str(llama_dir), "--out", str(out),
                                 "--phase1-steps", "3", "--batch-size", "8", "--valid-every", "3", "--bf16", "no", "--latent-dim", "8",
                                 "--valid-size", "20", "--lora", "0", "--vocab-bias", "--vocab-slots", "2"], env={"HF_HUB_OFFLINE": "1"})
    assert result.exit_code == 0, result.stderr
    assert json.loads((out / "config.json").read_text())["vae"]["vocab_slots"] == 2
    assert load_file(out / "model.safetensors")["to_vocab.bias"].abs().sum() > 0  # zero at the start
    vectors = runner.invoke(app, ["encode", "the old house", "a dog", "--model", str(out)]).stdout
    assert len(runner.invoke(app, ["decode", "--model", str(out)], input=vectors).stdout.splitlines()) == 2


@pytest.mark.parametrize("family", ["t5", "llama"])
def test_bag_of_words_through_the_output_table(dirs, family):
    """--bow-head table: the bag-of-words loss scores z through the decoder's output table, W (B z) with B a new layer
    of the table's width, each row from its own z; --bow-head own keeps a layer to the whole vocabulary."""
    torch.manual_seed(0)
    own = build(dirs, family, VAEConfig(latent_dim=8, bow=1.0, bow_head="own"))
    torch.manual_seed(0)
    vae = build(dirs, family, VAEConfig(latent_dim=8, bow=1.0, bow_head="table")).eval()
    table = vae.family.output_embeddings()
    assert own.to_bow.out_features == len(own.decoder_tokenizer) and vae.to_bow.weight.shape == (table.shape[1], 8)
    batch = tokens(vae, SENTENCES)
    ids, mask = (batch["target_ids"], batch["target_mask"]) if "target_ids" in batch else (batch["input_ids"], batch["attention_mask"])
    _, labels = vae.targets(ids, mask)
    z = torch.randn(len(SENTENCES), 8)
    with torch.no_grad():
        nll = vae.bag_of_words_nll(z, ids, mask)
        logp = torch.log_softmax(vae.to_bow(z) @ table.T, dim=-1)
        alone = vae.bag_of_words_nll(z[1:2], ids[1:2], mask[1:2])
    expected = torch.stack([-logp[b, labels[b][labels[b] != -100]].sum() for b in range(len(SENTENCES))])
    torch.testing.assert_close(nll, expected)
    torch.testing.assert_close(alone[0], nll[1])
    with pytest.raises(ConfigError, match="--bow-head must be one of own, table"):
        TrainConfig(train_file="x", bow=1.0, bow_head="tied")

