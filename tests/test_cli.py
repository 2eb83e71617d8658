"""The `vae` command end to end: a real (tiny) `vae finetune` run, then every latent command on it.

Commands run in-process through Typer's CliRunner, whose stdout and stderr are separate (click >= 8.2),
so "data on stdout, everything else on stderr" is checked directly. Expected outputs are computed
through the Python API (`TextVAE`) and `vaecli.files.vectors` on the same model directory.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vaecli.api import TextVAE
from vaecli.cli import app
from vaecli.config import DECODE_BEAM, PARAPHRASE_RADIUS, SAMPLE_NO_REPEAT_NGRAM
from vaecli.files.vector_reader import read_vectors
from vaecli.files.vectors import write_vectors
from vaecli.inference import latent as infer
from vaecli.modeling.prior import AggregatePrior

CORPUS = Path(__file__).resolve().parent.parent / "examples" / "wordnet" / "train.txt"  # as in conftest
TEXTS = ["the old man", "he said it was a long day at the house", "a dog", "the priest said mass"]
FORMATS = ["jsonl", "tsv", "npy", "safetensors"]
SOURCES = ["args", "file", "stdin", "dash"]

runner = CliRunner()


def invoke(*args: str, model: Path | None = None, **kwargs):
    argv = [str(a) for a in args] + (["--model", str(model)] if model is not None else [])
    return runner.invoke(app, argv, **kwargs)


def ok(result) -> None:
    """Exit code 0, with the stderr and any exception in the failure message."""
    assert result.exit_code == 0, (result.exit_code, result.stderr, repr(result.exception))


def one_error_line(result, code: int) -> str:
    """Exit `code`, nothing on stdout, exactly one line on stderr; returns that line."""
    assert result.exit_code == code, (result.exit_code, result.stderr, repr(result.exception))
    assert result.stdout == ""
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, repr(result.stderr)
    return result.stderr.rstrip("\n")


def vectors_bytes(vectors: np.ndarray, texts: list[str] | None, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    write_vectors(buf, vectors, texts, fmt, **kwargs)
    return buf.getvalue()


def lines_of(texts: list[str]) -> str:
    return "".join(t + "\n" for t in texts)


def bits(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)


# -- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def trained(t5_dir, tmp_path_factory) -> Path:
    """A model directory made by the real `vae finetune` (both phases, 15 steps each, latent size 8)."""
    out = tmp_path_factory.mktemp("cli") / "model"
    result = invoke(
        "finetune", CORPUS, "--model", t5_dir, "--out", out, "--phase1-steps", "15", "--phase2-steps", "15",
        "--batch-size", "16", "--valid-every", "15", "--bf16", "no", "--latent-dim", "8",
    )
    ok(result)
    assert result.stdout == f"{out}\n"  # stdout: only the model path
    valid = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"valid"' in line]
    kept = [r for r in valid if r["phase"] == 2 and r["best"]][-1]
    assert result.stderr.splitlines()[-1] == (
        f"model saved in {out}: phase 2 step {kept['step']}, the best validation rec ({kept['rec']:.3f}; kl {kept['kl']:.3f} "
        f"au {kept['au']}/8 mi {kept['mi']:.3f} gap {kept['gap']:.3f} token accuracy {kept['acc']:.3f})"
    )
    # off a terminal, a progress line at each phase's first step (then every 30 s)
    progress = [line for line in result.stderr.splitlines() if "/15: rec " in line]
    assert [line.split(":")[0] for line in progress][:1] == ["phase 1 step 1/15"] and "phase 2 step 1/15" in [p.split(":")[0] for p in progress]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "training.json", "metrics.jsonl"):
        assert (out / name).is_file(), name
    for name in ("config.json", "model.safetensors", "tokenizer.json", "optimizer.safetensors", "trainer_state.json"):
        assert (out / "checkpoint" / name).is_file(), name
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (out / "phase1" / name).is_file(), name
    resolved = json.loads((out / "training.json").read_text())["resolved"]
    assert (resolved["phase1_steps"], resolved["phase2_steps"]) == (15, 15)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {(r["phase"], r["step"]) for r in records if r["kind"] == "valid"} == {(1, 15), (2, 15)}
    return out


@pytest.fixture(scope="session")
def vae(trained) -> TextVAE:
    model = TextVAE.from_pretrained(trained)
    assert model.config.latent_dim == 8
    return model


@pytest.fixture(scope="session")
def mu(vae) -> np.ndarray:
    return vae.encode(TEXTS)


@pytest.fixture(scope="session")
def far(vae) -> np.ndarray:
    """Prior draws far from the origin: unlike the barely trained model's mu, they decode to varied text."""
    z = infer.prior(vae, 5, 20.0, seed=0)
    assert len(set(vae.decode(z))) > 1
    return z


def source_args(source: str, texts: list[str], tmp_path: Path) -> tuple[list[str], dict]:
    """CLI arguments and runner kwargs that feed `texts` to a command from `source`."""
    data = lines_of(texts)
    if source == "args":
        return list(texts), {}
    if source == "file":
        path = tmp_path / "in.txt"
        path.write_text(data)
        return ["-i", str(path)], {}
    if source == "stdin":
        return [], {"input": data}
    return ["-i", "-"], {"input": data}


# -- encode --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_encode_every_source_and_format(trained, mu, source, tmp_path):
    """Each source gives the same bytes as write_vectors on the API's mu; the formats agree bit for bit."""
    args, kwargs = source_args(source, TEXTS, tmp_path)
    outputs = {}
    for fmt in FORMATS:
        expected = vectors_bytes(mu, TEXTS, fmt, key="mu")
        if fmt in ("jsonl", "tsv"):
            result = invoke("encode", *args, "-f", fmt, model=trained, **kwargs)
            ok(result)
            assert result.stdout_bytes == expected
            data = result.stdout_bytes
        else:
            path = tmp_path / f"out.{fmt}"
            result = invoke("encode", *args, "-f", fmt, "-o", path, model=trained, **kwargs)
            ok(result)
            assert result.stdout_bytes == b""
            data = path.read_bytes()
            assert data == expected
        assert result.stderr == ""
        outputs[fmt] = data

    # npy (binary) to stdout: fine when stdout is not a terminal.
    result = invoke("encode", *args, "-f", "npy", model=trained, **kwargs)
    ok(result)
    assert result.stdout_bytes == outputs["npy"]

    for fmt, data in outputs.items():
        vectors, texts = read_vectors(data, fmt, dim=8)
        assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 8)
        np.testing.assert_array_equal(bits(vectors), bits(mu), err_msg=fmt)
        assert texts == (None if fmt == "npy" else TEXTS)
        detected, _ = read_vectors(data, None, dim=8)
        np.testing.assert_array_equal(bits(detected), bits(mu), err_msg=f"{fmt} detected")


@pytest.mark.parametrize("fmt", FORMATS)
def test_encode_output_format_follows_the_files_extension(trained, mu, fmt, tmp_path):
    """`-o z.npy` without --format writes npy (np.load reads it), as `-o z.safetensors` writes safetensors; a --format
    that another known extension contradicts is refused before anything is written."""
    path = tmp_path / f"z.{fmt}"
    result = invoke("encode", *TEXTS, "-o", path, model=trained)
    ok(result)
    assert path.read_bytes() == vectors_bytes(mu, TEXTS, fmt, key="mu")
    if fmt == "npy":
        np.testing.assert_array_equal(bits(np.load(path, allow_pickle=False)), bits(mu))
    other = "jsonl" if fmt != "jsonl" else "tsv"
    clash = tmp_path / f"clash.{fmt}"
    line = one_error_line(invoke("encode", *TEXTS, "-f", other, "-o", clash, model=trained), 2)
    assert line == f"error: --format {other} but -o {clash} names a .{fmt} file; drop --format or rename the file"
    assert not clash.exists()
    plain = tmp_path / "z.vectors"  # an extension that names no format: the default, jsonl
    ok(invoke("encode", *TEXTS, "-o", plain, model=trained))
    assert plain.read_bytes() == vectors_bytes(mu, TEXTS, "jsonl", key="mu")


def test_encode_vector_does_not_depend_on_batch(trained):
    """A sentence's mu is the same alone and among other (longer, shorter) sentences.

    Not bit for bit: padding and the batch's shape change the order of float operations (matmul
    blocking, masked mean), which moves values at the 1e-8 level. Anything above 1e-6 would mean
    padding or other rows leak into a row's encoding.
    """
    target = "the priest said mass"
    alone = invoke("encode", target, model=trained)
    others = invoke("encode", "a", target, "he said it was a long day at the house and the night was cold", "it", model=trained)
    ok(alone)
    ok(others)
    z_alone, _ = read_vectors(alone.stdout_bytes, "jsonl")
    z_others, texts = read_vectors(others.stdout_bytes, "jsonl")
    assert texts[1] == target
    np.testing.assert_allclose(z_alone[0], z_others[1], atol=1e-6, rtol=0)


def test_encode_sample_seed_and_logvar(trained, vae, mu):
    """--sample --seed is reproducible, draws z (not mu), and matches the API; --with-logvar adds logvar."""
    first = invoke("encode", *TEXTS, "--sample", "--seed", "3", model=trained)
    second = invoke("encode", *TEXTS, "--sample", "--seed", "3", model=trained)
    ok(first)
    ok(second)
    assert first.stdout_bytes == second.stdout_bytes
    z = vae.encode(TEXTS, sample=True, seed=3)
    assert first.stdout_bytes == vectors_bytes(z, TEXTS, "jsonl", key="z")
    records = [json.loads(line) for line in first.stdout.splitlines()]
    assert all(set(r) == {"text", "z"} for r in records)
    read, _ = read_vectors(first.stdout_bytes, "jsonl", dim=8)
    assert not np.allclose(read, mu)

    other = invoke("encode", *TEXTS, "--sample", "--seed", "4", model=trained)
    ok(other)
    assert other.stdout_bytes != first.stdout_bytes

    result = invoke("encode", *TEXTS, "--with-logvar", model=trained)
    ok(result)
    logvar = infer.encode(vae, TEXTS).logvar
    assert result.stdout_bytes == vectors_bytes(mu, TEXTS, "jsonl", key="mu", logvar=logvar)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [list(r) for r in records] == [["text", "mu", "logvar"]] * len(TEXTS)
    np.testing.assert_array_equal(bits(np.array([r["logvar"] for r in records])), bits(logvar))


def test_encode_stdout_carries_only_data(trained, vae):
    """Warnings (blank lines, truncation) go to stderr; stdout is exactly the vectors."""
    long = " ".join(["the old man said it was a long day"] * 10)  # > max_length (64) tokens
    result = invoke("encode", model=trained, input=f"a dog\n\n{long}\n  \n")  # (a blank argument is refused: test_bad_input)
    ok(result)
    texts = ["a dog", long]
    assert result.stdout_bytes == vectors_bytes(vae.encode(texts), texts, "jsonl", key="mu")
    stderr = result.stderr.splitlines()
    assert "skipped 2 blank line(s)" in stderr
    assert any("truncated" in line for line in stderr)
    for line in stderr:
        assert line not in result.stdout
    assert [json.loads(line)["text"] for line in result.stdout.splitlines()] == texts


def test_encode_blank_lines_skipped(trained, vae):
    result = invoke("encode", "-f", "tsv", model=trained, input="a dog\n\n   \nthe old man\n")
    ok(result)
    assert result.stderr == "skipped 2 blank line(s)\n"
    texts = ["a dog", "the old man"]
    assert result.stdout_bytes == vectors_bytes(vae.encode(texts), texts, "tsv", key="mu")


def test_encode_bad_input(trained, tmp_path):
    missing = tmp_path / "missing.txt"
    line = one_error_line(invoke("encode", "-i", missing, model=trained), 2)
    assert str(missing) in line

    line = one_error_line(invoke("encode", model=trained, input=""), 2)
    assert "no sentences" in line

    result = invoke("encode", model=trained, input="\n  \n")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.splitlines()[0] == "skipped 2 blank line(s)"
    assert "no sentences" in result.stderr.splitlines()[1]

    line = one_error_line(invoke("encode", "a", "-f", "xml", model=trained), 2)
    assert "xml" in line

    # a long message stays one line (no wrapping at the console width)
    deep = tmp_path / ("x" * 150) / ("y" * 150) / "missing.txt"
    assert str(deep) in one_error_line(invoke("encode", "-i", deep, model=trained), 2)


def test_error_message_keeps_emoji_codes(trained, tmp_path):
    missing = tmp_path / ":thumbs_up:.txt"
    assert str(missing) in one_error_line(invoke("encode", "-i", missing, model=trained), 2)


# -- decode --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "tsv", "npy"])
def test_encode_decode_round_trip_through_stdin(trained, vae, mu, fmt):
    encoded = invoke("encode", *TEXTS, "-f", fmt, model=trained)
    ok(encoded)
    decoded = invoke("decode", model=trained, input=encoded.stdout_bytes)
    ok(decoded)
    assert decoded.stdout == lines_of(vae.decode(mu))
    assert decoded.stderr == ""


def test_decode_files_and_formats(trained, vae, far, tmp_path):
    """Vectors written by write_vectors in any format, from -i FILE or stdin, decode like the API."""
    expected = lines_of(vae.decode(far))
    for fmt in FORMATS:
        data = vectors_bytes(far, None, fmt)
        path = tmp_path / f"z.{fmt}"
        path.write_bytes(data)
        for args, kwargs in ((["-i", path], {}), ([], {"input": data}), (["-i", "-", "-f", fmt], {"input": data})):
            result = invoke("decode", *args, model=trained, **kwargs)
            ok(result)
            assert result.stdout == expected, (fmt, args)

    # encode --with-logvar in tsv: the logvar half is recognised by the latent size and dropped
    result = invoke("encode", *TEXTS, "-f", "tsv", "--with-logvar", model=trained)
    ok(result)
    decoded = invoke("decode", model=trained, input=result.stdout_bytes)
    ok(decoded)
    assert decoded.stdout == lines_of(vae.decode(vae.encode(TEXTS)))


def test_a_sentences_z_decodes_by_beam_search_by_default_and_samples_stay_greedy(trained, vae, far):
    """DECODE_BEAM (measured: BLEU 37.3 -> 42.2 on the hour-long default) for decode, interpolate, paraphrase, steer and
    analogy, in the CLI and the API; `sample` stays greedy."""
    z = infer.prior(vae, 40, 20.0, seed=1)
    greedy, beam = vae.decode(z, beam=1), vae.decode(z, beam=DECODE_BEAM)
    assert greedy != beam  # these z decode differently by the two, so the comparisons below can tell them apart
    assert vae.decode(z) == beam
    result = invoke("decode", model=trained, input=vectors_bytes(z, None, "jsonl"))
    ok(result)
    assert result.stdout == lines_of(beam)
    result = invoke("analogy", "the old house", "a dog", "it rained", model=trained)
    ok(result)
    assert result.stdout == lines_of([vae.analogy("the old house", "a dog", "it rained", beam=DECODE_BEAM)])
    draws = vae.prior(6, seed=0)
    assert vae.sample(6, seed=0) == vae.decode(draws, beam=1, no_repeat_ngram=SAMPLE_NO_REPEAT_NGRAM, seed=0)
    result = invoke("sample", "-n", "6", "--seed", "0", model=trained)
    ok(result)
    assert result.stdout == lines_of(vae.sample(6, seed=0))


@pytest.mark.parametrize("beam", [1, 3])
def test_decode_row_does_not_depend_on_batch(trained, vae, far, beam):
    together = invoke("decode", "--beam", str(beam), model=trained, input=vectors_bytes(far, None, "jsonl"))
    ok(together)
    lines = together.stdout.splitlines()
    assert lines == vae.decode(far, beam=beam)
    for i, z in enumerate(far):
        alone = invoke("decode", "--beam", str(beam), model=trained, input=json.dumps(z.tolist()) + "\n")
        ok(alone)
        assert alone.stdout == lines[i] + "\n", i


@pytest.mark.parametrize("fmt", ["jsonl", "tsv", "npy", "safetensors"])
def test_decode_wrong_size(trained, fmt):
    data = vectors_bytes(np.ones((2, 3), np.float32), None, fmt)
    line = one_error_line(invoke("decode", model=trained, input=data), 2)
    assert "latent has 8" in line and "3 values" in line


@pytest.mark.parametrize(
    "data",
    [b"hello world\n", b"\x00\x01\x02garbage", b"\x93NUMPY garbage", b'{"z": [1, 2\n', b"\x1f\x8b\x08\x00gz", b"", b"\n\n"],
    ids=["words", "binary", "bad-npy", "bad-json", "gzip", "empty", "blank"],
)
def test_decode_garbage(trained, data):
    one_error_line(invoke("decode", model=trained, input=data), 2)


def test_decode_missing_file(trained, tmp_path):
    missing = tmp_path / "nope.jsonl"
    assert str(missing) in one_error_line(invoke("decode", "-i", missing, model=trained), 2)


def test_decode_unknown_format_is_one_line(trained):
    one_error_line(invoke("decode", "-f", "xml", model=trained, input="[1, 2, 3, 4, 5, 6, 7, 8]\n"), 2)


# -- sample, interpolate, paraphrase, steer, analogy -------------------------------------------------


def test_sample_reproducible(trained, vae):
    first = invoke("sample", "-n", "4", "--seed", "1", model=trained)
    second = invoke("sample", "-n", "4", "--seed", "1", model=trained)
    ok(first)
    ok(second)
    assert first.stdout == second.stdout
    assert len(first.stdout.splitlines()) == 4
    assert first.stdout == lines_of(vae.sample(4, seed=1))

    # Far from the origin of N(0, I) the texts vary; two seeds' draws then decode differently.
    a = invoke("sample", "-n", "4", "--scale", "20", "--seed", "1", "--prior", "standard", model=trained)
    b = invoke("sample", "-n", "4", "--scale", "20", "--seed", "2", "--prior", "standard", model=trained)
    ok(a)
    ok(b)
    assert a.stdout == lines_of(vae.sample(4, temperature=20.0, seed=1, prior="standard"))
    assert a.stdout != b.stdout

    # token sampling is reproducible with a seed too
    c = invoke("sample", "-n", "3", "--scale", "20", "--sample", "--seed", "5", model=trained)
    d = invoke("sample", "-n", "3", "--scale", "20", "--sample", "--seed", "5", model=trained)
    ok(c)
    ok(d)
    assert c.stdout == d.stdout and len(c.stdout.splitlines()) == 3


@pytest.mark.parametrize("slerp", [False, True])
def test_interpolate(trained, vae, slerp):
    a, b = "the old man", "he said it was a long day at the house"
    result = invoke("interpolate", a, b, "--steps", "4", *(["--slerp"] if slerp else []), model=trained)
    ok(result)
    lines = result.stdout.splitlines()
    assert len(lines) == 4  # plain lines, not a table: the runner's stdout is not a terminal
    assert lines[0] == vae.decode(vae.encode(a))[0]
    assert lines[-1] == vae.decode(vae.encode(b))[0]
    assert lines == vae.interpolate(a, b, steps=4, slerp=slerp)


@pytest.mark.parametrize("slerp", [False, True])
@pytest.mark.parametrize("steps", [2, 4, 7])
def test_path_ends_are_the_encodings(vae, slerp, steps):
    mu = vae.encode(["the old man", "a dog"])
    for a, b in ((mu[0], mu[1]), (mu[0], mu[0]), (mu[0], -mu[0]), (mu[0], 3 * mu[0])):
        t, points = infer.path(a, b, steps, slerp)
        assert points.dtype == np.float32 and points.shape == (steps, 8)
        assert t[0] == 0.0 and t[-1] == 1.0 and len(t) == steps
        np.testing.assert_array_equal(bits(points[0]), bits(a))
        np.testing.assert_array_equal(bits(points[-1]), bits(b))
        assert np.isfinite(points).all()


def test_paraphrase_draws_at_a_share_of_the_prior_spread(vae, monkeypatch):
    """z = mu + scale * PARAPHRASE_RADIUS * WIDEN^round * L eps, L the aggregate prior's factor (I without one), 2n a round;
    the posterior's sigma plays no part."""
    text, spread = "the old man", np.array([[2.0, 0.0, *[0.0] * 6]] + [[0.5] * (k + 1) + [0.0] * (7 - k) for k in range(1, 8)], np.float32)
    mu = vae.encode([text], refine=0)  # paraphrase draws around the encoder's mu
    for prior, factor in ((AggregatePrior(np.zeros(8, np.float32), spread, 100), spread), (None, np.eye(8, dtype=np.float32))):
        monkeypatch.setattr(vae, "aggregate_prior", prior)
        seen: list[np.ndarray] = []
        monkeypatch.setattr(infer, "decode", lambda model, z, **kw: seen.append(z) or [text] * len(z))
        assert vae.paraphrase(text, 3, scale=2.0, seed=7) == []
        rng = np.random.default_rng(7)
        assert len(seen) == 4
        for round_, z in enumerate(seen):
            eps = rng.standard_normal((6, 8)).astype(np.float32)
            expected = mu + (2.0 * PARAPHRASE_RADIUS * infer.WIDEN**round_) * (eps @ factor.T)
            np.testing.assert_allclose(z, expected, rtol=1e-6, atol=1e-6)
        monkeypatch.undo()


def test_paraphrase_of_a_confident_posterior(vae, monkeypatch):
    """A trained model's sigma is about 0.05 where its sentences spread about 1 per dimension: draws at the posterior's
    sigma all decoded to the input, and paraphrase found none (examples/api.py printed [])."""
    text = "the old man"
    confident = infer.encode(vae, [text])
    confident.logvar[:] = -20.0
    monkeypatch.setattr(infer, "encode", lambda model, texts, refine=0: confident)
    monkeypatch.setattr(vae, "aggregate_prior", AggregatePrior(confident.mu[0], 20.0 * np.eye(8, dtype=np.float32), 100))
    found = vae.paraphrase(text, 3, seed=0)
    assert len(found) == 3 and len(set(found)) == 3 and text not in found


def test_paraphrase(trained, vae):
    text = "the old man"
    first = invoke("paraphrase", text, "-n", "3", "--seed", "0", "--scale", "3", model=trained)
    second = invoke("paraphrase", text, "-n", "3", "--seed", "0", "--scale", "3", model=trained)
    ok(first)
    ok(second)
    assert first.stdout == second.stdout
    lines = first.stdout.splitlines()
    assert 1 <= len(lines) <= 3
    assert lines == vae.paraphrase(text, 3, scale=3.0, seed=0)
    assert len(set(lines)) == len(lines)
    assert all(" ".join(line.lower().split()) != text for line in lines)
    if len(lines) < 3:
        assert f"found {len(lines)} distinct paraphrase(s) of 3" in first.stderr
    for line in first.stderr.splitlines():
        assert line not in first.stdout


def test_steer_and_analogy(trained, vae, tmp_path):
    source, target = tmp_path / "from.txt", tmp_path / "to.txt"
    src = ["the old man", "the priest said mass"]
    dst = ["a dog", "he said it was a long day at the house", "it"]
    source.write_text(lines_of(src) + "\n")
    target.write_text(lines_of(dst))
    text = "the priest said mass"

    result = invoke("steer", text, "--from", source, "--to", target, model=trained)
    ok(result)
    assert result.stdout == vae.steer(text, src, dst) + "\n"

    result = invoke("steer", text, "--from", source, "--to", target, "--alpha", "0", model=trained)
    ok(result)
    assert result.stdout == vae.decode(vae.encode(text))[0] + "\n"

    result = invoke("steer", text, "--from", source, "--to", target, "--alpha", "25", "--beam", "3", model=trained)
    ok(result)
    assert result.stdout == vae.steer(text, src, dst, 25.0, beam=3) + "\n"

    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert "no sentences" in one_error_line(invoke("steer", text, "--from", empty, "--to", target, model=trained), 2)

    result = invoke("analogy", "the old man", "a dog", "the priest said mass", model=trained)
    ok(result)
    assert result.stdout.count("\n") == 1
    assert result.stdout == vae.analogy("the old man", "a dog", "the priest said mass") + "\n"


def test_finetune_refuses_existing_out(trained, t5_dir):
    before = (trained / "model.safetensors").read_bytes()
    line = one_error_line(invoke("finetune", CORPUS, "--model", t5_dir, "--out", trained, "--phase1-steps", "1",
                                 "--phase2-steps", "1", "--bf16", "no", "--latent-dim", "8"), 1)
    assert "already exists" in line and "--overwrite" in line
    assert (trained / "model.safetensors").read_bytes() == before


# -- model resolution ---------------------------------------------------------------------------------


def test_model_missing(tmp_path):
    missing = tmp_path / "no-model"
    for args in (["encode", "a"], ["sample", "-n", "1"], ["decode"]):
        result = invoke(*args, model=missing, input="[1, 2]\n")
        line = one_error_line(result, 1)
        assert "vae finetune" in line and str(missing) in line


def test_model_from_env(trained, tmp_path, mu):
    expected = vectors_bytes(mu, TEXTS, "jsonl", key="mu")
    result = invoke("encode", *TEXTS, env={"VAE_MODEL": str(trained)})
    ok(result)
    assert result.stdout_bytes == expected

    # --model wins over $VAE_MODEL
    result = invoke("encode", *TEXTS, model=trained, env={"VAE_MODEL": str(tmp_path / "elsewhere")})
    ok(result)
    assert result.stdout_bytes == expected

    line = one_error_line(invoke("encode", "a", env={"VAE_MODEL": str(tmp_path / "elsewhere")}), 1)
    assert str(tmp_path / "elsewhere") in line and "vae finetune" in line


def test_model_default_dir(trained, tmp_path, monkeypatch, mu):
    monkeypatch.delenv("VAE_MODEL", raising=False)
    monkeypatch.chdir(tmp_path)
    line = one_error_line(invoke("encode", "a", env={"VAE_MODEL": None}), 1)
    assert "vae-model" in line and "vae finetune" in line

    (tmp_path / "vae-model").symlink_to(trained, target_is_directory=True)
    result = invoke("encode", *TEXTS, env={"VAE_MODEL": None})
    ok(result)
    assert result.stdout_bytes == vectors_bytes(mu, TEXTS, "jsonl", key="mu")


# -- a real process and a real pipe -------------------------------------------------------------------


def test_broken_pipe_is_quiet(trained, tmp_path):
    """`vae encode -i big | head -1`: the reader leaves early; vae stops quietly with exit code 0."""
    lines = CORPUS.read_text().splitlines()
    big = tmp_path / "big.txt"
    big.write_text(lines_of(list(itertools.islice(itertools.cycle(lines), 5000))))  # ~1 MB of jsonl > pipe buffer
    env = dict(os.environ, PY=sys.executable, BIG=str(big), MODEL=str(trained), ERR=str(tmp_path / "err.txt"),
               STATUS=str(tmp_path / "status"), OMP_NUM_THREADS="1")
    env.pop("VAE_MODEL", None)
    script = 'set +o pipefail; "$PY" -m vaecli encode -i "$BIG" --model "$MODEL" 2>"$ERR" | head -1; echo "${PIPESTATUS[0]}" >"$STATUS"'
    proc = subprocess.run([shutil.which("bash") or "/bin/bash", "-c", script], env=env, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode().splitlines()
    assert len(out) == 1
    assert json.loads(out[0])["text"] == lines[0].strip()
    stderr = (tmp_path / "err.txt").read_text()
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
    assert stderr == ""
    assert (tmp_path / "status").read_text().strip() == "0"


# -- help text -----------------------------------------------------------------------------------------


def help_lines(*command: str) -> list[str]:
    """`vae COMMAND --help` on a wide terminal, box drawing removed, runs of spaces squeezed."""
    result = runner.invoke(app, [*command, "--help"], prog_name="vae", env={"COLUMNS": "250"}, terminal_width=250)
    ok(result)
    lines = [" ".join(line.strip(" │╭╮╰╯─").split()) for line in result.stdout.splitlines()]
    return [line for line in lines if line]


def test_help_shows_defaults_metavars_and_flags():
    encode = help_lines("encode")
    assert encode[0] == "Usage: vae encode [OPTIONS] [TEXT]..."
    assert "--model -m <path> Model directory [default: $VAE_MODEL, else ./vae-model]." in encode
    assert "--sample Draw z ~ q(z|x) instead of the mean mu." in encode
    assert "--with-logvar Add the posterior log-variance." in encode
    assert "TEXT <list[str]> Sentences (default: -i FILE or stdin, one per line; a lone - is stdin)." in encode

    finetune = help_lines("finetune")
    assert finetune[0] == "Usage: vae finetune [OPTIONS] {TRAIN_FILE}"
    assert ("--batch-size <int> Sentences per optimizer step, all processes together (the global batch). "
            "[default: 32 for an encoder-decoder, 16 for a causal LM]") in finetune
    assert ("--freeze-decoder --no-freeze-decoder Phase 1: keep the decoder's pretrained weights fixed (new parts still train). "
            "[default: off for an encoder-decoder, on for a causal LM]") in finetune
    assert ("--calibrate --no-calibrate Data-dependent init of the new layers on the first training batch (vaecli/training/calibrate.py). "
            "[default: off for an encoder-decoder, on for a causal LM]") in finetune
    assert "--free-bits <float> Free bits lambda: nats per latent dimension, on the batch-averaged KL (see README). [default: 0.5]" in finetune
    assert "--weight-decay <float> AdamW weight decay. [default: 0.0]" in finetune

    plot = help_lines("plot")
    assert plot[0] == "Usage: vae plot [OPTIONS] [RUN_DIR]"
    assert "RUN_DIR <path> A `vae finetune` output directory [default: --model, $VAE_MODEL, else ./vae-model]." in plot
    assert "--sentences <path> Sentences for the latent map [default: the run's --valid file]." in plot
    assert "--model -m <path> Model directory [default: $VAE_MODEL, else ./vae-model]." in plot

    assert help_lines("interpolate")[0] == "Usage: vae interpolate [OPTIONS] {A} {B}"
    assert help_lines("analogy")[0] == "Usage: vae analogy [OPTIONS] {A} {B} {C}"
    assert help_lines("evaluate")[0] == "Usage: vae evaluate [OPTIONS] {TEST_FILE}"
    for command in ("finetune", "encode", "decode", "sample", "interpolate", "paraphrase", "steer", "analogy", "evaluate", "plot"):
        flags = [line for line in help_lines(command) if "<bool>" in line]
        assert [line.split()[0] for line in flags] == ["--help"], command  # typer's own --help keeps its label


def test_encode_lone_dash_reads_stdin(trained, mu):
    result = invoke("encode", "-", model=trained, input=lines_of(TEXTS))
    ok(result)
    assert result.stdout_bytes == vectors_bytes(mu, TEXTS, "jsonl", key="mu")


def test_progress_lines_off_a_terminal_at_a_steady_interval_in_time(capsys):
    """A pipe or a log gets a progress line at the first step, then one per 30 s of the clock, whatever the step count."""
    from vaecli.cli.progress import Reporter

    now = [0.0]
    with Reporter(every=30.0, clock=lambda: now[0]) as report:
        for phase, times in ((1, [2.0, 10.0, 32.0, 40.0, 62.0]), (2, [63.0, 64.0])):
            report({"kind": "phase", "phase": phase, "total": 100, "start": 0})
            for step, t in enumerate(times, start=1):
                now[0] = t
                report({"kind": "step", "phase": phase, "step": step, "total": 100, "rec": 55.123, "kl": 3.25 * step,
                        "beta": 0.5 * (phase - 1), "steps_per_s": 0.5, "loss": 0.0, "lr": 1e-4})
        report({"kind": "valid", "phase": 2, "step": 2, "best": True, "dims": 32, "rec": 54.5, "kl": 10.0, "elbo": 64.5, "au": 29,
                "mi": 3.0, "gap": 3.5, "acc": 0.625})
        report({"kind": "kept", "phase": 2, "step": 2, "dims": 32, "rec": 54.5})
    assert capsys.readouterr().err.splitlines() == [
        "phase 1 step 1/100: rec 55.12 kl 3.25 beta 0.00, 0.50 steps/s, ETA 3m18s",
        "phase 1 step 3/100: rec 55.12 kl 9.75 beta 0.00, 0.50 steps/s, ETA 3m14s",
        "phase 1 step 5/100: rec 55.12 kl 16.25 beta 0.00, 0.50 steps/s, ETA 3m10s",
        "phase 2 step 1/100: rec 55.12 kl 3.25 beta 0.50, 0.50 steps/s, ETA 3m18s",
        "phase 2 step 2: valid rec 54.500 kl 10.000 -elbo 64.500 au 29/32 mi 3.000 gap 3.500 acc 0.625 (best, saved)",
    ]
    assert report.kept["step"] == 2


def test_examples_api_runs_every_call_of_the_readme(trained):
    """examples/api.py makes each call of the README's Python API section, and runs."""
    import re

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Python API"):]
    block = section[section.index("```python") : section.index("```", section.index("```python") + 3)]
    calls = set(re.findall(r"\bvae(\.\w+)?\(", block))
    assert {".encode", ".decode", ".sample", ".interpolate", ".paraphrase", ".steer", ".analogy", ".tokenize_batch", ""} <= calls
    example = (root / "examples" / "api.py").read_text(encoding="utf-8")
    assert calls <= set(re.findall(r"\bvae(\.\w+)?\(", example))
    env = dict(os.environ, VAE_MODEL=str(trained), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(root / "examples" / "api.py")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    printed = [line.split(":")[0] for line in proc.stdout.splitlines()]
    assert printed == ["latent size", "reconstructions", "beam search", "interpolation", "slerp", "prior samples", "posterior", "streamed",
                       "path", "paraphrases", "steered", "analogy", "forward"]
