"""The repetition guard of decoding (`--no-repeat-ngram`), on exact tensors and tiny random models."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from vaecli.config import SAMPLE_NO_REPEAT_NGRAM, VAEConfig
from vaecli.inference.generate import ban_repeats, generate
from vaecli.modeling.backbones import build_causal_vae


def ngrams(ids: list[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]


def test_ban_repeats_bans_exactly_the_completing_tokens_per_row():
    logits = torch.zeros(3, 10)
    history = torch.tensor([[1, 2, 3, 1, 2],   # ends "1 2": "1 2 3" exists -> 3 banned
                            [4, 5, 6, 7, 8],   # ends "7 8": never seen before -> nothing banned
                            [2, 2, 9, 2, 2]])  # ends "2 2": followed by 9 earlier -> 9 banned; "2 2 2" never
    out = ban_repeats(logits, history, 3)
    banned = [torch.isinf(row).nonzero().flatten().tolist() for row in out]
    assert banned == [[3], [], [9]]
    assert torch.equal(logits, torch.zeros(3, 10))  # the input is left alone
    assert torch.isinf(ban_repeats(logits, history, 1)[1]).nonzero().flatten().tolist() == [4, 5, 6, 7, 8]
    assert torch.equal(ban_repeats(logits, history, 0), logits)
    assert torch.equal(ban_repeats(logits, history[:, :1], 3), logits)  # too short to hold a 3-gram


def test_guard_stops_loops_and_keeps_rows_independent(bert_dir, llama_dir):
    torch.manual_seed(0)
    vae = build_causal_vae(str(bert_dir), str(llama_dir), VAEConfig(injection="both", latent_dim=8)).eval()
    z = torch.randn(6, 8) * 3
    free = generate(vae, z, 24)
    assert any(len(set(ngrams(row, 2))) < len(ngrams(row, 2)) for row in free)  # a random LM loops
    for beam in (1, 3):
        guarded = generate(vae, z, 24, beam=beam, no_repeat_ngram=2)
        assert all(len(set(ngrams(row, 2))) == len(ngrams(row, 2)) for row in guarded)
        assert guarded == [generate(vae, z[i : i + 1], 24, beam=beam, no_repeat_ngram=2)[0] for i in range(6)]
    sampled = generate(vae, z, 24, sample=True, generator=torch.Generator().manual_seed(0), no_repeat_ngram=2)
    assert all(len(set(ngrams(row, 2))) == len(ngrams(row, 2)) for row in sampled)


class ScriptedLM:
    """A decoder whose next-token probabilities depend only on the last token: 0 pad, 1 end, 2 start, 3 a word that loops,
    4 a word that ends the sentence."""

    pad_id, eos_id, start_id = 0, 1, 2
    NEXT = {2: {3: 0.5, 4: 0.5}, 3: {3: 0.95, 1: 0.05}, 4: {1: 0.9, 3: 0.1}}

    def decode_state(self, z):
        from types import SimpleNamespace

        return SimpleNamespace(select=lambda rows: None)

    def decoder_logits(self, state, last):
        table = torch.full((5, 5), -torch.inf)  # what NEXT does not list cannot follow
        for token, nxt in self.NEXT.items():
            for t, p in nxt.items():
                table[token, t] = float(torch.tensor(p).log())
        return table[last[:, -1]].unsqueeze(1)


def test_beam_search_prefers_a_sentence_that_ended_to_a_loop_cut_at_the_limit():
    """[4, end] scores (log .5 + log .9) / 2 = -0.40 per token; [3, 3, 3, 3, 3, 3], cut at 6 tokens without ending,
    (log .5 + 5 log .95) / 6 = -0.16: by the mean alone the loop would win."""
    z = torch.zeros(2, 1)
    assert generate(ScriptedLM(), z, 6, beam=2) == [[4], [4]]
    assert generate(ScriptedLM(), z, 1, beam=2) in ([[3], [3]], [[4], [4]])  # nothing ended: the best cut one


def test_sample_guards_by_default_and_can_turn_it_off(tmp_path, bert_dir, llama_dir):
    from vaecli.cli import app

    torch.manual_seed(0)
    vae = build_causal_vae(str(bert_dir), str(llama_dir), VAEConfig(injection="both", latent_dim=8)).eval()
    vae.save_pretrained(tmp_path / "m")
    runner = CliRunner()
    default = runner.invoke(app, ["sample", "-n", "6", "--seed", "0", "-m", str(tmp_path / "m")])
    explicit = runner.invoke(app, ["sample", "-n", "6", "--seed", "0", "-m", str(tmp_path / "m"), "--no-repeat-ngram", str(SAMPLE_NO_REPEAT_NGRAM)])
    off = runner.invoke(app, ["sample", "-n", "6", "--seed", "0", "-m", str(tmp_path / "m"), "--no-repeat-ngram", "0"])
    assert default.exit_code == explicit.exit_code == off.exit_code == 0, default.output
    assert default.output == explicit.output
    assert default.output != off.output


def test_decoded_line_breaks_never_split_an_output_line(capsys):
    """A causal LM can emit newlines (Austen samples did): each text stays one line of stdout."""
    from vaecli.cli.common import out_lines

    out_lines(["a\nb", "c\rd", "e\u2028f\x0bg", "plain"])
    assert capsys.readouterr().out == "a b\nc d\ne f g\nplain\n"
