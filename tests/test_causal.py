"""The encoder + causal-LM family on tiny random BERT + Llama (grouped-query attention) and BERT + GPT-2.

Every guarantee the encoder-decoder family has: row independence in each injection mode, save ->
load identical outputs, decoding (greedy, beam, nucleus) consistent with the training forward,
both phases, free bits, denoising of the encoder's tokens only, frozen decoder, calibration, exact resume.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file

from vaecli.config import DECODE_BEAM, TrainConfig, VAEConfig
from vaecli.errors import ConfigError, Interrupted, ModelDirError
from vaecli.inference.generate import generate
from vaecli.modeling.backbones import build_causal_vae
from vaecli.modeling.vae import VAEModel
from vaecli.training.calibrate import calibrate
from vaecli.training.trainer import finetune

SENTENCES = ["he breathed new life into the old house", "the priest said mass", "she soaks up foreign languages like a sponge", "a dog"]
OTHERS = ["you could see the tumor", "the old man", "he said it was a long day at the house", "it"]
INJECTIONS = ["prefix", "embedding", "both"]
TINY = dict(batch_size=8, valid_every=4, save_every=100, bf16="no", valid_size=40, latent_dim=8, lr=1e-3)


def assert_base_weights_kept(base: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> None:
    """Every pretrained weight of the LM (`base`) is in the saved VAE (`after`) bit for bit, under LoRA's names too."""
    compared = 0
    for k, v in after.items():
        name = k.removeprefix("backbone.decoder.").replace(".base_layer", "")
        if k.startswith("backbone.decoder.") and name in base:  # tied weights are stored under one name
            assert torch.equal(base[name], v), name
            compared += 1
    assert compared >= len(base) - 1


def make(bert_dir, lm_dir, injection="both", **kw) -> VAEModel:
    torch.manual_seed(0)
    return build_causal_vae(str(bert_dir), str(lm_dir), VAEConfig(injection=injection, latent_dim=8, **kw)).eval()


@pytest.mark.parametrize("lm", ["llama", "gpt2"])
@pytest.mark.parametrize("injection", INJECTIONS)
def test_rows_are_independent(bert_dir, lm_dirs, lm, injection):
    """Row 0's mu, z and logits do not move when the other rows change; and z is really read."""
    vae = make(bert_dir, lm_dirs[lm], injection, prefix_slots=2)
    with torch.no_grad():
        calibrate(vae, vae.tokenize_batch(SENTENCES + OTHERS), 0.1)
        a_batch, b_batch = vae.tokenize_batch(SENTENCES), vae.tokenize_batch([SENTENCES[0]] + OTHERS[1:])
        gen = torch.Generator().manual_seed(0)
        a = vae(**a_batch, generator=gen)
        b = vae(**b_batch, generator=torch.Generator().manual_seed(0))
        n = int(a_batch["target_mask"][0].sum())
        torch.testing.assert_close(a.mu[0], b.mu[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(a.z[0], b.z[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(a.logits[0, :n], b.logits[0, :n], atol=1e-4, rtol=0)
        z = a.z.clone()
        z[0] = a.z[1]
        _, moved = vae.reconstruction_nll(z, a_batch["target_ids"], a_batch["target_mask"])
    assert (moved[0, :n] - a.logits[0, :n]).abs().max() > 1e-3


def test_prefix_uses_key_value_heads_and_follows_its_row(bert_dir, llama_dir):
    """Grouped-query attention: the prefix has the config's key/value heads (2), not its query heads (4)."""
    vae = make(bert_dir, llama_dir, "prefix", prefix_slots=3)
    z = torch.randn(3, 8)
    cache = vae.decode_state(z).cache
    assert tuple(cache.layers[0].keys.shape) == (3, 2, 3, 8)  # (B, kv heads, slots, head size)
    for i in range(3):
        alone = vae.decode_state(z[i : i + 1]).cache
        for layer in range(vae.dims.layers):
            torch.testing.assert_close(cache.layers[layer].keys[i], alone.layers[layer].keys[0], atol=1e-6, rtol=0)
            torch.testing.assert_close(cache.layers[layer].values[i], alone.layers[layer].values[0], atol=1e-6, rtol=0)


def test_two_tokenizers(bert_dir, llama_dir):
    """The encoder reads its own ids; the decoder reconstructs in its own: the sentence, then its end token."""
    vae = make(bert_dir, llama_dir)
    batch = vae.tokenize_batch(["the old house"])
    enc = vae.tokenizer("the old house")["input_ids"]
    dec = vae.decoder_tokenizer("the old house", add_special_tokens=False)["input_ids"]
    assert batch["input_ids"][0].tolist() == enc and enc[0] == vae.tokenizer.bos_token_id
    assert batch["target_ids"][0].tolist() == dec + [vae.eos_id]
    assert enc[1:-1] != dec  # other vocabularies, other ids
    dec_in, labels = vae.targets(batch["target_ids"], batch["target_mask"])
    assert dec_in[0].tolist() == [vae.start_id] + dec and labels[0].tolist() == dec + [vae.eos_id]


def test_memory_injection_is_refused(bert_dir, llama_dir):
    with pytest.raises(ConfigError, match="memory needs cross-attention"):
        TrainConfig(train_file="x", decoder=str(llama_dir), injection="memory")
    with pytest.raises(ModelDirError, match="cross-attention"):
        make(bert_dir, llama_dir, "memory")
    with pytest.raises(ConfigError, match="one or the other"):
        TrainConfig(train_file="x", model="minilm", decoder=str(llama_dir))


def test_family_defaults():
    """What `vae finetune` resolves when an option is not given, per family (README's option table)."""
    causal, seq2seq, given = TrainConfig(train_file="x"), TrainConfig(train_file="x", model="minilm"), TrainConfig(train_file="x", prefix_slots=2)
    assert (causal.encoder, causal.decoder, causal.latent_dim, causal.layers, causal.injection, causal.prefix_slots, causal.free_bits,
            causal.init_logvar, causal.freeze_decoder, causal.calibrate, causal.new_lr_scale) == (
        "decoder", "smollm2", 256, "mean", "both", 8, 0.5, -6.0, True, True, 3.0)
    assert (seq2seq.latent_dim, seq2seq.layers, seq2seq.injection, seq2seq.prefix_slots, seq2seq.free_bits, seq2seq.init_logvar,
            seq2seq.freeze_decoder, seq2seq.calibrate, seq2seq.new_lr_scale) == (32, "last", "memory", 1, 0.5, 0.0, False, False, 1.0)
    assert given.prefix_slots == 2 and causal.vae_config().prefix_slots == 8
    assert (causal.phase1_steps, causal.phase2_steps, seq2seq.phase1_steps, seq2seq.phase2_steps) == (0, 0, 1000, 2000)
    assert (causal.phase1_minutes, seq2seq.phase1_minutes, causal.phase2_minutes) == (60.0, None, None)  # a causal LM's hour
    # a phase's length is one choice: its steps or epochs given, the default minutes do not apply
    assert [(c.phase1_steps, c.phase1_epochs, c.phase1_minutes) for c in (
        TrainConfig(train_file="x", phase1_steps=500), TrainConfig(train_file="x", phase1_epochs=2.0), TrainConfig(train_file="x", phase1_minutes=4),
        TrainConfig(train_file="x", phase1_steps=0, phase2_steps=30))] == [(500, None, None), (0, 2.0, None), (0, None, 4), (0, None, None)]
    assert (causal.lora, causal.batch_size, seq2seq.lora, seq2seq.batch_size) == (16, 16, 0, 32)
    assert causal.vae_config().lora == 16 and TrainConfig(train_file="x", lora=0).lora == 0
    # --distill: on where the LM reads its own sentences (the teacher reads in the same pass), off with another encoder
    assert (causal.distill, seq2seq.distill, TrainConfig(train_file="x", encoder="minilm").distill) == (2.0, 0.0, 0.0)
    assert TrainConfig(train_file="x", encoder="minilm", distill=1.0).distill == 1.0
    assert TrainConfig.from_dict({"train_file": "x"}).distill == 0.0  # a run saved before the default trained without it
    assert TrainConfig.from_dict(causal.to_dict()).distill == 2.0
    # --distill-decay: on for a causal LM, off for an encoder-decoder; a run saved before it was a default trained without it
    assert (causal.distill_decay, seq2seq.distill_decay, TrainConfig(train_file="x", distill_decay=False).distill_decay) == (True, False, False)
    assert TrainConfig.from_dict({"train_file": "x"}).distill_decay is False
    assert TrainConfig.from_dict(causal.to_dict()).distill_decay is True


@pytest.mark.parametrize("lm", ["llama", "gpt2"])
@pytest.mark.parametrize("injection", INJECTIONS)
def test_save_load_identical(bert_dir, lm_dirs, lm, injection, tmp_path):
    vae = make(bert_dir, lm_dirs[lm], injection)
    with torch.no_grad():
        calibrate(vae, vae.tokenize_batch(SENTENCES), 0.1)
    vae.save_pretrained(tmp_path)
    assert (tmp_path / "decoder" / "tokenizer.json").is_file() and (tmp_path / "tokenizer.json").is_file()
    loaded = VAEModel.from_pretrained(tmp_path)
    batch = vae.tokenize_batch(SENTENCES)
    with torch.no_grad():
        a, b = vae(**batch, sample=False), loaded(**batch, sample=False)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.mu, b.mu)
    assert generate(vae, a.mu, 8) == generate(loaded, b.mu, 8)


@pytest.mark.parametrize("lm", ["llama", "gpt2"])
@pytest.mark.parametrize("injection", INJECTIONS)
def test_greedy_decoding_matches_the_training_forward(bert_dir, lm_dirs, lm, injection):
    """Greedy tokens are the argmax of the teacher-forced forward on those same tokens: positions, prefix
    and the added embedding line up the same in generation (KV cache, one token a step) and in training."""
    vae = make(bert_dir, lm_dirs[lm], injection)
    with torch.no_grad():
        calibrate(vae, vae.tokenize_batch(SENTENCES + OTHERS), 0.1)
        mu, _ = vae.posterior(**{k: v for k, v in vae.tokenize_batch(SENTENCES).items() if k in ("input_ids", "attention_mask")})
    out = generate(vae, mu, 6)
    for i, ids in enumerate(out):
        with torch.no_grad():
            logits = vae.decoder_logits(vae.decode_state(mu[i : i + 1], cache=False), torch.tensor([[vae.start_id] + ids]))
        assert logits[0].argmax(-1).tolist()[: len(ids)] == ids


@pytest.mark.parametrize("injection", INJECTIONS)
def test_decoding_alone_or_in_a_batch(bert_dir, llama_dir, injection):
    vae = make(bert_dir, llama_dir, injection)
    z = torch.randn(4, 8) * 3
    for beam in (1, 3):
        together = generate(vae, z, 6, beam=beam)
        assert together == [generate(vae, z[i : i + 1], 6, beam=beam)[0] for i in range(4)]
    sampled = [generate(vae, z, 6, sample=True, top_p=0.9, generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    assert sampled[0] == sampled[1]


@pytest.mark.parametrize("scale", [0.1, 0.3])
def test_calibration_gives_unit_spread_and_matched_scales(bert_dir, llama_dir, scale):
    """mu is standardised; what z adds to the input embeddings and writes into each layer's keys and values is
    `scale` (--write-scale) times the RMS of what the decoder carries there."""
    vae = make(bert_dir, llama_dir, "both", prefix_slots=2)
    batch = vae.tokenize_batch(SENTENCES + OTHERS)
    with torch.no_grad():
        calibrate(vae, batch, scale)
        mu, _ = vae.posterior(batch["input_ids"], batch["attention_mask"])
        torch.testing.assert_close(mu.std(dim=0), torch.ones(8), atol=1e-4, rtol=0)
        torch.testing.assert_close(mu.mean(dim=0), torch.zeros(8), atol=1e-4, rtol=0)
        dec_in, _ = vae.targets(batch["target_ids"], batch["target_mask"])
        words = vae.family.input_embeddings()(dec_in)
        added = vae.to_embedding(mu)
        assert added.pow(2).mean().sqrt().item() == pytest.approx(scale * words.pow(2).mean().sqrt().item(), rel=1e-4)
        plain = vae.family.new_state(len(dec_in), None, None, None, mu, cache=True)
        vae.family.logits(plain, dec_in)
        real = vae.family.self_attention_cache(plain).layers
        written = vae.decode_state(mu).cache.layers
        for layer in range(vae.dims.layers):
            for part in ("keys", "values"):
                want = scale * getattr(real[layer], part).pow(2).mean().sqrt().item()
                assert getattr(written[layer], part).pow(2).mean().sqrt().item() == pytest.approx(want, rel=1e-4)


def test_training_denoises_encoder_tokens_only(bert_dir, llama_dir, corpus, tmp_path, monkeypatch):
    """Token deletion noises the encoder's input; the decoder's targets stay the clean sentence in its own tokens."""
    seen = []
    original = VAEModel.forward

    def spy(self, input_ids, attention_mask, target_ids=None, target_mask=None, **kw):
        seen.append((input_ids.clone(), attention_mask.clone(), target_ids.clone(), target_mask.clone()))
        return original(self, input_ids, attention_mask, target_ids, target_mask, **kw)

    monkeypatch.setattr(VAEModel, "forward", spy)
    out = tmp_path / "run"
    finetune(TrainConfig(train_file=str(corpus), encoder=str(bert_dir), decoder=str(llama_dir), out=str(out), phase="1",
                         phase1_steps=2, phase1_denoise=0.5, **TINY))
    vae = VAEModel.from_pretrained(out)
    lines = [line for line in corpus.read_text().splitlines() if line.strip()]
    clean = {tuple(r) for r in vae.family.target_ids(lines, vae.config.max_length)}
    enc = {tuple(r) for r in vae.tokenizer(lines)["input_ids"]}
    ids, mask, target, target_mask = seen[0]
    rows_t = [tuple(t[m.bool()].tolist()) for t, m in zip(target, target_mask)]
    rows_x = [tuple(t[m.bool()].tolist()) for t, m in zip(ids, mask)]
    assert all(r in clean for r in rows_t)
    assert sum(r not in enc for r in rows_x) > 0  # some encoder inputs lost tokens


def test_frozen_decoder_both_phases(bert_dir, llama_dir, corpus, tmp_path):
    """--freeze-decoder --freeze-decoder-phase2: the decoder stays bit-identical; encoder, heads, injection train."""
    out = tmp_path / "frozen"
    finetune(TrainConfig(train_file=str(corpus), encoder=str(bert_dir), decoder=str(llama_dir), out=str(out), phase1_steps=3,
                         phase2_steps=3, freeze_decoder=True, freeze_decoder_phase2=True, **TINY))
    before_dec, before_enc = load_file(str(llama_dir / "model.safetensors")), load_file(str(bert_dir / "model.safetensors"))
    after = load_file(str(out / "checkpoint" / "model.safetensors"))
    decoder = {k.removeprefix("backbone.decoder."): v for k, v in after.items() if k.startswith("backbone.decoder.")}
    assert decoder and all(torch.equal(before_dec[k], v) for k, v in decoder.items() if k in before_dec)
    encoder = {k.removeprefix("backbone.encoder."): v for k, v in after.items() if k.startswith("backbone.encoder.")}
    assert any(not torch.equal(before_enc[k], v) for k, v in encoder.items() if k in before_enc)
    fresh = VAEModel.from_pretrained(out)
    assert fresh.to_embedding is not None and fresh.to_decoder.weight.abs().sum() > 0


def test_interrupted_run_resumes_exactly(bert_dir, gpt2_dir, corpus, tmp_path):
    """Ctrl-C in phase 2, then --resume: the uninterrupted run's losses and final weights, bit for bit."""
    cfg = dict(train_file=str(corpus), encoder=str(bert_dir), decoder=str(gpt2_dir), phase1_steps=3, phase2_steps=5, denoise=0.3,
               word_dropout=0.2, free_bits=0.5, **TINY)
    full: list[dict] = []
    finetune(TrainConfig(out=str(tmp_path / "full"), **cfg), full.append)
    part: list[dict] = []

    def interrupt(event: dict) -> None:
        part.append(event)
        if event["kind"] == "step" and (event["phase"], event["step"]) == (2, 2):
            os.kill(os.getpid(), signal.SIGINT)

    out = tmp_path / "part"
    with pytest.raises(Interrupted):
        finetune(TrainConfig(out=str(out), **cfg), interrupt)
    rest: list[dict] = []
    finetune(TrainConfig(out=str(out), **cfg), rest.append, resume=True)
    steps = lambda events: [(e["phase"], e["step"], e["loss"]) for e in events if e["kind"] == "step"]  # noqa: E731
    assert steps(part) + steps(rest) == steps(full)
    a, b = load_file(str(out / "model.safetensors")), load_file(str(tmp_path / "full" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    saved = json.loads((out / "config.json").read_text())
    assert saved["family"] == "causal" and saved["decoder_class"] == "GPT2LMHeadModel"


def test_lora_trains_adapters_only_and_reloads(bert_dir, llama_dir, corpus, tmp_path):
    """--lora R: the decoder's base weights stay bit-identical, the adapters train, and a reload applies them."""
    pytest.importorskip("peft")
    out = tmp_path / "lora"
    finetune(TrainConfig(train_file=str(corpus), encoder=str(bert_dir), decoder=str(llama_dir), out=str(out), phase1_steps=3,
                         phase2_steps=3, lora=4, **TINY))
    after = load_file(str(out / "checkpoint" / "model.safetensors"))
    base = load_file(str(llama_dir / "model.safetensors"))
    adapters = [k for k in after if "lora_B" in k]
    assert adapters and all(after[k].abs().sum() > 0 for k in adapters)  # lora_B starts at 0: it trained
    assert_base_weights_kept(base, after)
    loaded = VAEModel.from_pretrained(out / "checkpoint")
    batch = loaded.tokenize_batch(SENTENCES)
    with torch.no_grad():
        with_adapters = loaded(**batch, sample=False).rec
        for k, p in loaded.named_parameters():
            if "lora_B" in k:
                p.zero_()
        without = loaded(**batch, sample=False).rec
    assert not torch.equal(with_adapters, without)
    with pytest.raises(ConfigError, match="--lora adapts a causal LM"):
        TrainConfig(train_file="x", model="minilm", lora=4)


def test_fluency_is_the_pretrained_lm_s_even_with_lora(bert_dir, llama_dir):
    """unconditional_nll (evaluate's fluency) judges with the pretrained weights: trained adapters do not move it; after
    the call the adapters act again and what trains (requires_grad) is as it was."""
    pytest.importorskip("peft")
    model = build_causal_vae(str(bert_dir), str(llama_dir), VAEConfig(latent_dim=8, lora=4)).eval()
    batch = model.tokenize_batch(SENTENCES)
    with torch.no_grad():
        before = model.unconditional_nll(batch["target_ids"], batch["target_mask"])[0]
        adapters = [p for name, p in model.named_parameters() if "lora_B" in name]
        for p in adapters:
            p.normal_(0, 1.0)
        flags = [p.requires_grad for p in model.parameters()]
        adapted = model(**batch, sample=False).rec
        after = model.unconditional_nll(batch["target_ids"], batch["target_mask"])[0]
        assert [p.requires_grad for p in model.parameters()] == flags
        assert torch.equal(model(**batch, sample=False).rec, adapted)
        for p in adapters:
            p.zero_()
        assert not torch.equal(model(**batch, sample=False).rec, adapted)  # the adapters were acting
    torch.testing.assert_close(after, before)


def test_lora_adapters_train_at_the_new_layers_rate(bert_dir, llama_dir):
    """LoRA adapters start from scratch like the VAE's own layers, so they share their learning rate (--new-lr-scale)."""
    pytest.importorskip("peft")
    from vaecli.training.trainer import make_optimizer

    model = build_causal_vae(str(bert_dir), str(llama_dir), VAEConfig(latent_dim=8, lora=4))
    cfg = TrainConfig(train_file="x", lr=1e-4, new_lr_scale=3.0, lora=4)
    optimizer, _ = make_optimizer(model, [p for p in model.parameters() if p.requires_grad], cfg, 10)
    rate = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    adapters = [p for name, p in model.named_parameters() if "lora_" in name]
    assert adapters and all(rate[id(p)] == pytest.approx(3e-4) for p in adapters)
    assert rate[id(model.to_mu.weight)] == pytest.approx(3e-4)
    assert rate[id(next(model.backbone.encoder.parameters()))] == pytest.approx(1e-4)


def test_every_command_on_an_encoder_and_causal_lm(bert_dir, llama_dir, corpus, valid, tmp_path):
    """`vae finetune --encoder --decoder`, then every latent command and evaluate through the real CLI."""
    from typer.testing import CliRunner

    from vaecli.cli import app

    runner = CliRunner()

    def run(*args, **kw):
        result = runner.invoke(app, [str(a) for a in args], **kw)
        assert result.exit_code == 0, (args, result.stderr)
        return result

    out = tmp_path / "model"
    result = run("finetune", corpus, "--valid", valid, "--encoder", bert_dir, "--decoder", llama_dir, "--out", out, "--phase1-steps", "4",
                 "--phase2-steps", "4", "--batch-size", "8", "--valid-every", "4", "--bf16", "no", "--latent-dim", "8", "--valid-size", "20")
    assert result.stdout == f"{out}\n"
    saved = json.loads((out / "config.json").read_text())
    assert saved["family"] == "causal" and saved["vae"]["injection"] == "both"
    m = ("--model", out)
    vectors = run("encode", "the old house", "a dog", *m).stdout
    assert [json.loads(line)["text"] for line in vectors.splitlines()] == ["the old house", "a dog"]
    decoded = run("decode", *m, input=vectors).stdout.splitlines()
    assert len(decoded) == 2
    assert decoded == run("decode", "--beam", str(DECODE_BEAM), *m, input=vectors).stdout.splitlines()
    assert len(run("decode", "--beam", "3", *m, input=vectors).stdout.splitlines()) == 2
    assert len(run("sample", "-n", "3", "--seed", "0", *m).stdout.splitlines()) == 3
    assert len(run("interpolate", "the old house", "a dog", "--steps", "4", *m).stdout.splitlines()) == 4
    run("paraphrase", "the old house", "-n", "2", "--scale", "3", "--seed", "0", *m)
    (tmp_path / "a.txt").write_text("the old house\n")
    (tmp_path / "b.txt").write_text("a dog\n")
    assert len(run("steer", "the priest said mass", "--from", tmp_path / "a.txt", "--to", tmp_path / "b.txt", *m).stdout.splitlines()) == 1
    assert len(run("analogy", "the old house", "a dog", "the priest", *m).stdout.splitlines()) == 1
    metrics = json.loads(run("evaluate", valid, "--iw-samples", "2", "--limit", "10", "--json", *m).stdout)
    assert metrics["sentences"] == 10 and metrics["au"] <= 8
    vocabulary = len(VAEModel.from_pretrained(out).decoder_tokenizer)
    assert metrics["token_unit"] == f"per subword token of the decoder's {vocabulary:,}-piece vocabulary, EOS counted"
    refused = runner.invoke(app, ["finetune", str(corpus), "--decoder", str(llama_dir), "--injection", "memory", "--out", str(tmp_path / "x")])
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1 and "cross-attention" in refused.stderr


def test_lora_targets_attention_or_every_linear_layer(bert_dir, llama_dir, tmp_path):
    """--lora-targets all adapts the MLP too (not the output layer), and the setting travels with the model directory."""
    pytest.importorskip("peft")

    def adapted(model: VAEModel) -> set[str]:
        return {name.split(".lora_A")[0].rsplit(".", 1)[-1] for name, _ in model.named_parameters() if ".lora_A" in name}

    attention = build_causal_vae(str(bert_dir), str(llama_dir), VAEConfig(latent_dim=8, lora=4))
    every = build_causal_vae(str(bert_dir), str(llama_dir), VAEConfig(latent_dim=8, lora=4, lora_targets="all"))
    assert adapted(attention) == {"q_proj", "v_proj"}
    assert adapted(every) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    with torch.no_grad():
        for name, p in every.named_parameters():
            if "lora_B" in name:
                p.normal_()
    every.save_pretrained(tmp_path)
    loaded = VAEModel.from_pretrained(tmp_path)
    assert adapted(loaded) == adapted(every)
    batch = every.tokenize_batch(SENTENCES)
    with torch.no_grad():
        assert torch.equal(every.eval()(**batch, sample=False).logits, loaded(**batch, sample=False).logits)
    with pytest.raises(ConfigError, match="--lora-targets must be one of attention, all, got 'mlp'"):
        VAEConfig(lora_targets="mlp")


def test_lora_dropout(bert_dir, llama_dir, tmp_path):
    """--lora-dropout drops the adapters' input while training only: two training forwards differ, two in eval mode
    are equal; it is saved; outside [0, 1) it is refused in one line."""
    pytest.importorskip("peft")
    vae = build_causal_vae(str(bert_dir), str(llama_dir), VAEConfig(latent_dim=8, lora=4, lora_dropout=0.5))
    drops = [m.p for name, m in vae.named_modules() if "lora_dropout" in name and isinstance(m, torch.nn.Dropout)]
    assert drops and set(drops) == {0.5}
    for module in vae.modules():  # non-zero adapters, so that what drops shows in the logits
        if hasattr(module, "lora_B") and "default" in getattr(module, "lora_B", {}):
            torch.nn.init.normal_(module.lora_B["default"].weight, std=0.5)
    batch = vae.tokenize_batch(SENTENCES)
    with torch.no_grad():
        vae.train()
        assert not torch.equal(vae(**batch, sample=False).logits, vae(**batch, sample=False).logits)
        vae.eval()
        assert torch.equal(vae(**batch, sample=False).logits, vae(**batch, sample=False).logits)
    vae.save_pretrained(tmp_path)
    assert VAEModel.from_pretrained(tmp_path).config.lora_dropout == 0.5
    with pytest.raises(ConfigError, match=r"--lora-dropout must be in \[0, 1\), got 1.0"):
        VAEConfig(latent_dim=8, lora=4, lora_dropout=1.0)


def test_lora_on_a_model_type_peft_does_not_list(bert_dir, llama_dir, gpt2_dir):
    """A decoder newer than peft's table gets adapters on its q_proj / v_proj; one without them is refused in one line."""
    pytest.importorskip("peft")
    model = build_causal_vae(str(bert_dir), str(llama_dir), VAEConfig(latent_dim=8, lora=0))
    model.backbone.decoder.config.model_type = "a-future-lm"
    model.family.add_lora(4, "attention")
    adapted = {name.split(".lora_A")[0].rsplit(".", 1)[-1] for name, _ in model.named_parameters() if ".lora_A" in name}
    assert adapted == {"q_proj", "v_proj"}
    gpt2 = build_causal_vae(str(bert_dir), str(gpt2_dir), VAEConfig(latent_dim=8, lora=0))
    gpt2.backbone.decoder.config.model_type = "a-future-lm"
    with pytest.raises(ModelDirError, match="no attention projections known for model type 'a-future-lm'"):
        gpt2.family.add_lora(4, "attention")


@pytest.mark.parametrize("lm", ["llama", "gpt2"])
def test_the_decoder_reads_its_own_sentences(lm_dirs, lm, tmp_path):
    """--encoder decoder: z is pooled from the causal LM's own states of the sentence, with no gradient through
    them and no second copy of its weights; rows stay independent, and save -> load gives the same model."""
    from vaecli.modeling.lm_reader import READER_CLASS

    vae = build_causal_vae("decoder", str(lm_dirs[lm]), VAEConfig(latent_dim=8)).eval()
    decoder = vae.backbone.decoder
    assert vae.tokenizer is vae.decoder_tokenizer and vae.dims.enc_hidden == decoder.config.hidden_size
    assert vae.dims.enc_states == decoder.config.num_hidden_layers + 1
    assert not list(vae.backbone.encoder.parameters())
    assert not [k for k in vae.state_dict() if k.startswith("backbone.encoder.")]
    with torch.no_grad():
        calibrate(vae, vae.tokenize_batch(SENTENCES + OTHERS), 0.1)
    a_batch, b_batch = vae.tokenize_batch(SENTENCES), vae.tokenize_batch([SENTENCES[0]] + OTHERS[1:])
    assert a_batch["input_ids"][0].tolist() == vae.decoder_tokenizer(SENTENCES[0])["input_ids"]
    assert a_batch["input_ids"].shape[1] != b_batch["input_ids"].shape[1]  # row 0 is padded differently in the two batches
    states = vae.family.encoder_states(a_batch["input_ids"], a_batch["attention_mask"])
    assert not any(h.requires_grad for h in states)  # the LM reads without a gradient
    out = vae(**a_batch, sample=False)
    out.loss.backward()
    assert vae.to_mu.weight.grad is not None and vae.to_mu.weight.grad.abs().sum() > 0
    with torch.no_grad():
        b = vae(**b_batch, sample=False)
        torch.testing.assert_close(out.mu[0], b.mu[0], atol=1e-5, rtol=0)
        assert (out.mu[1] - b.mu[1]).abs().max() > 1e-3  # mu is the sentence's own
    vae.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["encoder_class"] == READER_CLASS and saved["encoder"] == saved["decoder"]
    assert not [k for k in load_file(tmp_path / "model.safetensors") if k.startswith("backbone.encoder.")]
    loaded = VAEModel.from_pretrained(tmp_path)
    with torch.no_grad():
        a, c = vae(**a_batch, sample=False), loaded(**a_batch, sample=False)
    assert torch.equal(a.mu, c.mu) and torch.equal(a.logits, c.logits)


def rows_independent_and_reloaded(vae: VAEModel, tmp_path) -> tuple:
    """Calibrated, a sentence's mu is the same in batches padded to different lengths; returns the model's output on
    SENTENCES and the model saved to `tmp_path` and loaded back."""
    a_batch, b_batch = vae.tokenize_batch(SENTENCES), vae.tokenize_batch([SENTENCES[0]] + OTHERS[1:])
    assert a_batch["input_ids"].shape[1] != b_batch["input_ids"].shape[1]  # row 0 is padded differently in the two batches
    with torch.no_grad():
        calibrate(vae, vae.tokenize_batch(SENTENCES + OTHERS), 0.1)
        a, b = vae(**a_batch, sample=False), vae(**b_batch, sample=False)
    torch.testing.assert_close(a.mu[0], b.mu[0], atol=1e-5, rtol=0)
    vae.save_pretrained(tmp_path)
    return a, VAEModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("lm", ["llama", "gpt2", "gemma3"])
def test_the_decoder_reads_with_its_first_blocks(lm_dirs, more_lm_dirs, lm, tmp_path):
    """--reader-layers K: the LM reads with its first K blocks and never runs the others; the states it shares with a
    full read are equal, the pooler sizes itself to K + 1 states, rows stay independent, and save -> load keeps K."""
    from vaecli.modeling.lm_reader import LMReader

    lm_dir = {**lm_dirs, **more_lm_dirs}[lm]
    vae = build_causal_vae("decoder", str(lm_dir), VAEConfig(latent_dim=8, reader_layers=1, layers="mix")).eval()
    blocks = vae.backbone.decoder.config.num_hidden_layers
    assert blocks >= 2 and vae.dims.enc_states == 2 and vae.pooler.layer_weights.numel() == 2
    body = vae.backbone.decoder.base_model
    block_list = next(child for child in body.children() if isinstance(child, torch.nn.ModuleList))
    ran = []
    hooks = [block.register_forward_hook(lambda module, args, output, i=i: ran.append(i)) for i, block in enumerate(block_list)]
    batch = vae.tokenize_batch(SENTENCES)
    whole = LMReader(vae.backbone.decoder)(batch["input_ids"], batch["attention_mask"])  # the same LM, read whole
    assert ran == list(range(blocks)) and len(whole.hidden_states) == blocks + 1
    for _ in range(2):  # the same on every call (transformers' hidden-state hooks are installed once)
        ran.clear()
        cut = vae.backbone.encoder(batch["input_ids"], batch["attention_mask"])
        assert ran == [0] and len(cut.hidden_states) == 2  # the embeddings and block 1; blocks 2.. never ran
    assert len(block_list) == blocks  # put back whole
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(cut.hidden_states[0], whole.hidden_states[0], atol=0, rtol=0)
    a_batch = vae.tokenize_batch(SENTENCES)
    a, loaded = rows_independent_and_reloaded(vae, tmp_path)
    assert loaded.backbone.encoder.depth == 1 and loaded.config.reader_layers == 1
    with torch.no_grad():  # a fresh LM whose first read is the shallow one, read twice
        c, again = loaded(**a_batch, sample=False), loaded(**a_batch, sample=False)
    assert torch.equal(a.mu, c.mu) and torch.equal(a.logits, c.logits) and torch.equal(c.mu, again.mu)
    with pytest.raises(ConfigError, match=f"--reader-layers {blocks + 1}: the LM has {blocks} blocks"):
        build_causal_vae("decoder", str(lm_dir), VAEConfig(latent_dim=8, reader_layers=blocks + 1))


@pytest.mark.parametrize("lm", ["llama", "gpt2", "gemma3"])
def test_the_decoder_reads_each_sentence_twice(lm_dirs, more_lm_dirs, lm, tmp_path):
    """--reader-echo: the states are those of the second of two readings of the sentence, as the LM gives them for the
    unpadded `sentence sentence` alone, whatever the padding; rows stay independent, and save -> load keeps it."""
    lm_dir = {**lm_dirs, **more_lm_dirs}[lm]
    vae = build_causal_vae("decoder", str(lm_dir), VAEConfig(latent_dim=8, reader_echo=True)).eval()
    body = vae.backbone.decoder.base_model
    a_batch, b_batch = vae.tokenize_batch(SENTENCES), vae.tokenize_batch([SENTENCES[0]] + OTHERS[1:])
    assert a_batch["input_ids"].shape[1] != b_batch["input_ids"].shape[1]  # row 0 is padded differently in the two batches
    for batch in (a_batch, b_batch):
        read = vae.backbone.encoder(batch["input_ids"], batch["attention_mask"])
        for row in range(2):
            n = int(batch["attention_mask"][row].sum())
            ids = batch["input_ids"][row, :n]
            with torch.no_grad():
                alone = body(input_ids=torch.cat([ids, ids]).unsqueeze(0), output_hidden_states=True).hidden_states
            for layer in (0, 1, len(alone) - 1):
                second = torch.nn.functional.layer_norm(alone[layer][0, n:], alone[layer].shape[-1:])
                torch.testing.assert_close(read.hidden_states[layer][row, :n], second, atol=1e-4, rtol=1e-4)
    ids, mask = a_batch["input_ids"], a_batch["attention_mask"]
    shifts = (mask.shape[1] - mask.sum(dim=1)).tolist()  # the same rows padded on the left
    left_ids = torch.stack([row.roll(k) for row, k in zip(ids, shifts)])
    left_mask = torch.stack([row.roll(k) for row, k in zip(mask, shifts)])
    right_read = vae.backbone.encoder(ids, mask).hidden_states[-1]
    left_read = vae.backbone.encoder(left_ids, left_mask).hidden_states[-1]
    torch.testing.assert_close(left_read[left_mask.bool()], right_read[mask.bool()], atol=1e-4, rtol=1e-4)
    once = build_causal_vae("decoder", str(lm_dir), VAEConfig(latent_dim=8)).eval().backbone.encoder
    first = once(ids, mask).hidden_states[-1]
    assert (first - right_read)[mask.bool()].abs().max() > 1e-3  # not the first reading
    a, loaded = rows_independent_and_reloaded(vae, tmp_path)
    assert loaded.backbone.encoder.echo and loaded.config.reader_echo
    with torch.no_grad():
        assert torch.equal(loaded(**a_batch, sample=False).mu, a.mu)


def test_reader_echo_needs_the_decoder_as_encoder(bert_dir, llama_dir):
    with pytest.raises(ConfigError, match="--reader-echo has the decoder LM read twice: it needs --encoder decoder"):
        TrainConfig(train_file="t.txt", encoder=str(bert_dir), decoder=str(llama_dir), reader_echo=True)


def test_reader_layers_needs_the_decoder_as_encoder(bert_dir, llama_dir):
    """--reader-layers with another encoder, or below 0, is refused in one line before anything loads."""
    with pytest.raises(ConfigError, match="--reader-layers sets how deep the decoder LM reads: it needs --encoder decoder"):
        TrainConfig(train_file="t.txt", encoder=str(bert_dir), decoder=str(llama_dir), reader_layers=2)
    with pytest.raises(ConfigError, match="--reader-layers must be >= 0, got -1"):
        TrainConfig(train_file="t.txt", reader_layers=-1)


def test_finetune_with_the_decoder_as_encoder(llama_dir, corpus, valid, tmp_path):
    """The CLI: `--encoder decoder` with LoRA trains the heads and adapters, leaves the LM's weights as they were, and the
    model encodes and decodes; the reserved name needs no directory, offline too."""
    from typer.testing import CliRunner

    from vaecli.cli import app

    runner = CliRunner()
    out = tmp_path / "model"
    result = runner.invoke(app, ["finetune", str(corpus), "--valid", str(valid), "--encoder", "decoder", "--decoder", str(llama_dir),
                                 "--out", str(out), "--phase1-steps", "4", "--batch-size", "8", "--valid-every", "4", "--bf16", "no",
                                 "--latent-dim", "8", "--valid-size", "20", "--lora", "2"], env={"HF_HUB_OFFLINE": "1"})
    assert result.exit_code == 0, result.stderr
    base = load_file(llama_dir / "model.safetensors")
    after = load_file(out / "model.safetensors")
    assert_base_weights_kept(base, after)
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in after.items()) and not any(k.startswith("backbone.encoder.") for k in after)
    vectors = runner.invoke(app, ["encode", "the old house", "a dog", "--model", str(out)]).stdout
    assert len(runner.invoke(app, ["decode", "--model", str(out)], input=vectors).stdout.splitlines()) == 2
