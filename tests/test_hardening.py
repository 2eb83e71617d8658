"""Issue 11, hardening: data loss, disk full, closed pipes, hostile vector files and model folders,
huge lines, streaming stdin. Each test failed before its fix."""

from __future__ import annotations

import io
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vaecli.cli import app
from vaecli.config import VAEConfig
from vaecli.errors import InputError
from vaecli.files.atomic import atomic_open
from vaecli.files.vector_reader import read_vectors
from vaecli.modeling.backbones import build_vae

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
VAE = [sys.executable, "-m", "vaecli"]


@pytest.fixture(scope="module")
def model_dir(t5_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("saved")
    build_vae(str(t5_dir), VAEConfig(latent_dim=8)).save_pretrained(out)
    return out


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def sentences(n: int) -> str:
    return "".join(f"the old house {i}\n" for i in range(n))


# -- 5: a full disk ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["encode", pytest.param("decode", marks=pytest.mark.slow)])  # a subprocess each
def test_full_stdout_is_one_line_exit_1(model_dir, tmp_path, command):
    vectors = tmp_path / "v.jsonl"
    vectors.write_text(json.dumps([0.0] * 8) + "\n")
    args = ["encode", "the old house"] if command == "encode" else ["decode", "-i", str(vectors)]
    with open("/dev/full", "wb") as full:
        r = subprocess.run([*VAE, *args, "--model", str(model_dir)], stdout=full, stderr=subprocess.PIPE, text=True, env=ENV, timeout=120)
    assert r.returncode == 1
    assert one_line(r.stderr) == "error: cannot write <stdout>: no space left on device"


@pytest.fixture
def small_fs(tmp_path) -> Path:
    """A 1 MiB tmpfs (root only); skipped where mounting is not allowed."""
    mount = tmp_path / "fs"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(folder: Path, leave: int) -> None:
    """Fill the filesystem of folder up to `leave` free bytes."""
    stats = os.statvfs(folder)
    with open(folder / "filler", "wb") as f:
        f.write(b"\0" * max(0, stats.f_bavail * stats.f_frsize - leave))


def test_encode_output_onto_full_disk_keeps_the_old_file(model_dir, small_fs, tmp_path):
    big = tmp_path / "big.txt"
    big.write_text(sentences(400))
    out = small_fs / "v.jsonl"
    out.write_text("previous\n")
    fill(small_fs, 16 * 1024)
    r = CliRunner().invoke(app, ["encode", "-i", str(big), "-o", str(out), "--model", str(model_dir)])
    assert r.exit_code == 1, r.output
    assert one_line(r.stderr) == f"error: cannot write {out}: no space left on device"
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in small_fs.iterdir()) == ["filler", "v.jsonl"]


def test_temp_file_of_a_killed_write_is_cleaned_by_the_next(tmp_path):
    target = tmp_path / "v.jsonl"
    code = (f"from vaecli.files.atomic import atomic_open\nwith atomic_open({str(target)!r}) as f:\n"
            "    f.write(b'x'); f.flush(); import os; os.kill(os.getpid(), 9)")
    subprocess.run([sys.executable, "-c", code], env=ENV, timeout=60)
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".v.jsonl.vaecli-") and left[0].endswith(".tmp")  # recognisable
    with atomic_open(target) as f:
        f.write(b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["v.jsonl"]


# -- 14: files written aside get the permissions of an ordinary write ---------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_written_aside_respect_the_umask(tmp_path, umask):
    from safetensors.numpy import save_file

    from vaecli.files.atomic import atomic_save

    old = os.umask(umask)
    try:
        atomic_save(tmp_path / "w.safetensors", lambda p: save_file({"a": np.zeros(2, np.float32)}, p))
        with atomic_open(tmp_path / "v.bin") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    assert oct((tmp_path / "w.safetensors").stat().st_mode & 0o777) == oct(0o666 & ~umask)
    assert oct((tmp_path / "v.bin").stat().st_mode & 0o777) == oct(0o666 & ~umask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.bin", "w.safetensors"]


# -- 6: a reader that closes the pipe -------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["npy", pytest.param("safetensors", marks=pytest.mark.slow)])  # a subprocess each
def test_closed_pipe_exits_0_for_every_format(model_dir, tmp_path, fmt):
    big = tmp_path / "big.txt"
    big.write_text(sentences(4000))  # > 64 KiB of output in every format: the writer meets the closed pipe
    proc = subprocess.Popen([*VAE, "encode", "-i", str(big), "-f", fmt, "--model", str(model_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=ENV)
    assert len(proc.stdout.read(10)) == 10
    proc.stdout.close()  # like `| head -c 10`
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, stderr
    assert stderr == ""


# -- 9: crafted vector files ----------------------------------------------------------------------


def npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": dtype, "fortran_order": False, "shape": shape})
    return out.getvalue()


def test_deeply_nested_json_is_bad_input():
    with pytest.raises(InputError, match="line 1: bad JSON"):
        read_vectors(b"[" * 100_000 + b"\n", name="v.jsonl")


def test_npy_header_is_checked_against_the_file_size():
    data = npy_header((10**11, 32)) + b"\0" * 129
    with pytest.raises(InputError, match=r"header says shape \(100000000000, 32\)"):
        read_vectors(data, name="v.npy")


def test_bf16_safetensors_is_read_as_float32():
    import torch
    from safetensors.torch import save

    z = torch.randn(3, 8)
    vectors, texts = read_vectors(save({"mu": z.bfloat16()}, metadata={"texts": '["a", "b", "c"]'}), name="v.safetensors", dim=8)
    assert vectors.dtype == np.float32 and np.array_equal(vectors, z.bfloat16().float().numpy())
    assert texts == ["a", "b", "c"]


@pytest.mark.parametrize("case", ["nested", "huge npy", "bf16 wrong size"])
def test_crafted_vector_files_through_the_cli_exit_2(model_dir, case):
    import torch
    from safetensors.torch import save

    data = {"nested": b"[" * 100_000, "huge npy": npy_header((10**11, 32)) + b"\0" * 129,
            "bf16 wrong size": save({"z": torch.zeros(2, 3, dtype=torch.bfloat16)})}[case]
    r = CliRunner().invoke(app, ["decode", "--model", str(model_dir)], input=data)
    assert r.exit_code == 2
    assert one_line(r.stderr).startswith("error: <stdin>")


# -- 10: a huge line is cut before it is tokenised --------------------------------------------------


def test_tokenizer_never_sees_more_than_a_bound_of_characters(model_dir):
    from vaecli.api import TextVAE
    from vaecli.modeling.tokens import CHARS_PER_TOKEN, tokenize_rows

    tok = TextVAE.from_pretrained(model_dir).tokenizer
    seen = []

    def spy(texts, **kwargs):
        seen.extend(len(t) for t in texts)
        return tok(texts, **kwargs)

    ids, cut = tokenize_rows(spy, ["the old house", "a " * 1_000_000, "a" * 5000], 64)
    assert max(seen) <= 64 * CHARS_PER_TOKEN
    assert cut == [False, True, True] and len(ids[1]) == 64  # the cut line counts as truncated


def peak_rss_mib(cmd: list[str]) -> tuple[int, float, str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, text=True)
    peak = 0
    while proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            peak = max(peak, int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]))
        except (OSError, StopIteration, ValueError):
            pass
        time.sleep(0.02)
    return proc.returncode, peak / 1024, proc.stderr.read()


@pytest.mark.slow  # ~10 s: a subprocess tokenising a 16.8 MB line
def test_a_16_mb_line_does_not_take_gigabytes(model_dir, tmp_path):
    big = tmp_path / "one-line.txt"
    big.write_text("the old house\n" + "house " * 2_800_000 + "\n")  # 16.8 MB on one line
    code, peak, stderr = peak_rss_mib([*VAE, "encode", "-i", str(big), "-f", "tsv", "--model", str(model_dir)])
    assert code == 0, stderr
    assert "1 sentence(s) longer than 64 tokens were truncated" in stderr
    assert peak < 1000, f"peak RSS {peak:.0f} MiB"  # was ~3 GB


# -- 11: encode streams stdin -----------------------------------------------------------------------


def test_encode_writes_before_stdin_is_closed(model_dir):
    proc = subprocess.Popen([*VAE, "encode", "-f", "tsv", "--model", str(model_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=ENV)
    try:
        proc.stdin.write(b"the old house\na dog barked\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 90)
        assert ready, "no output while stdin stayed open"
        first = proc.stdout.readline().decode()
        assert first.startswith("the old house\t")
        proc.stdin.write(b"\nthe end\n")
        proc.stdin.close()
        rest = proc.stdout.read().decode().splitlines()
        assert [line.split("\t")[0] for line in rest] == ["a dog barked", "the end"]
        assert proc.wait(timeout=60) == 0
        assert proc.stderr.read().decode() == "skipped 1 blank line(s)\n"
    finally:
        proc.kill()
        proc.wait()


def test_streamed_encode_matches_one_shot_encode(model_dir, monkeypatch):
    """In chunks (of 1024 lines; 16 here): the vectors, order and counts are those of encoding all at once."""
    from vaecli.api import TextVAE
    from vaecli.cli import common

    monkeypatch.setattr(common, "READ_CHUNK", 16)
    text = "".join(f"{'the old house ' * (i % 7)}{i}\n" + ("\n" if i % 20 == 0 else "") for i in range(100))
    r = CliRunner().invoke(app, ["encode", "--model", str(model_dir)], input=text)
    assert r.exit_code == 0, r.output
    assert r.stderr == "skipped 5 blank line(s)\n"
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    expected = [t.strip() for t in text.splitlines() if t.strip()]
    assert [row["text"] for row in rows] == expected
    mu = TextVAE.from_pretrained(model_dir).encode(expected)
    np.testing.assert_allclose(np.array([row["mu"] for row in rows], dtype=np.float32), mu, atol=1e-5)


# -- 12: blank lines are counted by every command that reads sentences ---------------------------------


def test_evaluate_and_steer_count_blank_lines(model_dir, tmp_path):
    f = tmp_path / "s.txt"
    f.write_text("the old house\n\na dog barked\n   \n")
    r = CliRunner().invoke(app, ["evaluate", str(f), "--iw-samples", "2", "--no-bleu", "--json", "--model", str(model_dir)])
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines()[0] == "skipped 2 blank line(s)"  # then evaluate's progress lines (off a terminal)
    assert r.stderr.count("blank") == 1
    r = CliRunner().invoke(app, ["steer", "the old house", "--from", str(f), "--to", str(f), "--model", str(model_dir)])
    assert r.exit_code == 0, r.output
    assert r.stderr == "skipped 2 blank line(s)\nskipped 2 blank line(s)\n"


# -- 7: a model folder cannot run code, on any stream -------------------------------------------------


def evil_copy(source: Path, tmp_path: Path, marker: Path) -> Path:
    """source with a tokenizer (and config) whose auto_map points at a .py file that writes marker."""
    evil = tmp_path / "evil"
    shutil.copytree(source, evil)
    (evil / "evil_code.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration\n"
        "class EvilTokenizer(PreTrainedTokenizerFast):\n    pass\n"
        "class EvilConfig(T5Config):\n    pass\n"
        "class EvilModel(T5ForConditionalGeneration):\n    pass\n"
    )
    for name, entry in (("tokenizer_config.json", {"AutoTokenizer": [None, "evil_code.EvilTokenizer"]}),
                        ("config.json", {"AutoConfig": "evil_code.EvilConfig", "AutoModelForSeq2SeqLM": "evil_code.EvilModel"})):
        data = json.loads((evil / name).read_text())
        data["auto_map"] = entry
        if name == "tokenizer_config.json":
            data["tokenizer_class"] = "EvilTokenizer"
        (evil / name).write_text(json.dumps(data))
    return evil


def run_on_terminal(cmd: list[str], answer: bytes = b"y\n", timeout: float = 120) -> tuple[int, str]:
    """Run cmd with a pseudo-terminal as stdin, stdout and stderr; answer any question with `answer`."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=ENV, close_fds=True)
    os.close(slave)
    seen, deadline, answered = b"", time.time() + timeout, False
    try:
        while time.time() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
                if b"[y/N]" in seen and not answered:
                    os.write(master, answer)
                    answered = True
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=30), seen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


@pytest.mark.parametrize("kind", ["vaecli model", pytest.param("backbone", marks=pytest.mark.slow)])  # a subprocess each
def test_model_folder_code_never_runs_even_on_a_terminal(model_dir, t5_dir, tmp_path, kind):
    marker = tmp_path / "PWNED"
    if kind == "vaecli model":
        evil = evil_copy(model_dir, tmp_path, marker)
        cmd = [*VAE, "encode", "the old house", "-f", "tsv", "--model", str(evil)]
    else:
        evil = evil_copy(t5_dir, tmp_path, marker)
        corpus = tmp_path / "c.txt"
        corpus.write_text(sentences(20))
        cmd = [*VAE, "finetune", str(corpus), "--model", str(evil), "--out", str(tmp_path / "o"), "--phase1-steps", "1",
               "--phase2-steps", "1", "--batch-size", "4", "--latent-dim", "8", "--bf16", "no", "--threads", "1"]
    code, seen = run_on_terminal(cmd)
    assert "[y/N]" not in seen and "Do you wish" not in seen, seen[-2000:]  # never asked
    assert not marker.exists()  # never run
    assert "Traceback" not in seen, seen[-3000:]
    if code != 0:  # refused: one line, exit 1
        assert code == 1 and len(seen.strip().splitlines()) == 1 and seen.startswith("error: "), seen


# -- 1-5: the run directory: --overwrite, the lock, torn metrics, --resume options, a full disk --------


def finetune_args(corpus: Path, t5_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["finetune", str(corpus), "--model", str(t5_dir), "--out", str(out), "--phase1-steps", "2", "--phase2-steps", "2",
            "--batch-size", "4", "--latent-dim", "8", "--bf16", "no", "--threads", "1", *extra]


@pytest.fixture(scope="module")
def finished_run(t5_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    r = CliRunner().invoke(app, finetune_args(ROOT / "examples" / "wordnet" / "train.txt", t5_dir, out))
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_overwrite_refuses_a_folder_vaecli_did_not_write(corpus, t5_dir, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    shutil.copy(corpus, precious / "corpus.txt")
    (precious / "notes.md").write_text("draft\n")
    (precious / "config.json").write_text('{"name": "not a vaecli model"}')  # names alone do not make a run
    (precious / "checkpoint").mkdir()
    (precious / "checkpoint" / "chapter1.tex").write_text("...")
    before = tree(precious)
    # A bad model is refused first (before torch loads), a good one by the --overwrite check: nothing is deleted.
    r = CliRunner().invoke(app, finetune_args(precious / "corpus.txt", Path("/nonexistent"), precious, "--overwrite"))
    assert r.exit_code == 2 and one_line(r.stderr) == "error: --model /nonexistent: no such directory"
    assert tree(precious) == before
    r = CliRunner().invoke(app, finetune_args(precious / "corpus.txt", t5_dir, precious, "--overwrite"))
    assert r.exit_code == 1
    assert one_line(r.stderr) == (f"error: --overwrite: {precious} is not a vaecli run or model directory; "
                                  "refusing to delete it (choose another --out)")
    assert tree(precious) == before


@pytest.mark.parametrize("fault", ["missing model", "missing corpus", "bad option"])
def test_overwrite_keeps_the_old_run_until_every_check_passed(run_copy, corpus, t5_dir, tmp_path, fault):
    before = tree(run_copy)
    model = "/nonexistent" if fault == "missing model" else str(t5_dir)
    train = tmp_path / "missing.txt" if fault == "missing corpus" else corpus
    extra = ["--beta-ramp", "0"] if fault == "bad option" else []
    r = CliRunner().invoke(app, finetune_args(train, Path(model), run_copy, "--overwrite", *extra))
    assert r.exit_code in (1, 2)
    one_line(r.stderr)
    assert tree(run_copy) == before


def test_overwrite_replaces_a_vaecli_run(run_copy, corpus, t5_dir):
    (run_copy / "curves.png").write_bytes(b"old plot")
    r = CliRunner().invoke(app, finetune_args(corpus, t5_dir, run_copy, "--overwrite", "--phase", "1"))
    assert r.exit_code == 0, r.output
    assert not (run_copy / "curves.png").exists() and not (run_copy / "phase1").exists()
    assert [json.loads(line)["phase"] for line in (run_copy / "metrics.jsonl").read_text().splitlines()] == [1, 1]


def test_a_second_run_into_a_locked_directory_is_refused(run_copy, corpus, t5_dir):
    """The lock is what a running `vae finetune` holds; here this test holds it."""
    import fcntl

    before = tree(run_copy)
    fd = os.open(run_copy / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.pwrite(fd, b"4242\n", 0)
        for extra in (["--resume", "--phase2-steps", "3"], ["--overwrite"]):
            r = CliRunner().invoke(app, finetune_args(corpus, t5_dir, run_copy, *extra))
            assert r.exit_code == 1
            assert one_line(r.stderr) == (f"error: {run_copy} is in use by another `vae finetune` (pid 4242); "
                                          "wait for it to end or choose another --out")
    finally:
        os.close(fd)  # what the kernel does when the holder dies, however it dies
    assert tree(run_copy) == before
    r = CliRunner().invoke(app, finetune_args(corpus, t5_dir, run_copy, "--resume", "--phase2-steps", "3"))
    assert r.exit_code == 0, r.output


@pytest.mark.slow  # two real runs (~20 s)
def test_two_real_runs_into_one_directory(corpus, t5_dir, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([*VAE, *finetune_args(corpus, t5_dir, out, "--phase1-steps", "100000", "--save-every", "100000")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "metrics.jsonl").exists():
            time.sleep(0.1)
        r = subprocess.run([*VAE, *finetune_args(corpus, t5_dir, out, "--overwrite")], capture_output=True, text=True, env=ENV, timeout=120)
        assert r.returncode == 1
        assert one_line(r.stderr) == f"error: {out} is in use by another `vae finetune` (pid {first.pid}); wait for it to end or choose another --out"
    finally:
        first.kill()
        first.wait()
    r = subprocess.run([*VAE, *finetune_args(corpus, t5_dir, out, "--overwrite")], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr  # the kernel dropped the killed run's lock


def test_resume_repairs_a_torn_metrics_line(run_copy, corpus, t5_dir):
    metrics = run_copy / "metrics.jsonl"
    good = metrics.read_text()
    metrics.write_text(good + '{"kind": "train", "phase": 2, "st')  # a kill during the append
    r = CliRunner().invoke(app, finetune_args(corpus, t5_dir, run_copy, "--resume"))
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    assert metrics.read_text() == good


def test_plot_reads_a_run_with_a_torn_metrics_line(run_copy):
    from vaecli.evaluation.plot import read_metrics

    metrics = run_copy / "metrics.jsonl"
    good = [json.loads(line) for line in metrics.read_text().splitlines()]
    metrics.write_text(metrics.read_text() + '{"kind": "valid", "ph')
    assert read_metrics(run_copy) == good


def test_resume_refuses_options_that_cannot_change(run_copy, corpus, t5_dir):
    before = tree(run_copy)
    r = CliRunner().invoke(app, finetune_args(corpus, t5_dir, run_copy, "--resume", "--phase2-steps", "30", "--lr", "0.5", "--seed", "7"))
    assert r.exit_code == 1
    line = one_line(r.stderr)
    assert line.startswith("error: --resume cannot change --lr 0.5 (checkpoint: 0.0001), --seed 7 (checkpoint: 42); ")
    assert "phase2" not in line.split(";")[0]
    assert tree(run_copy) == before


def test_resume_applies_a_longer_phase_2_and_says_so(run_copy, corpus, t5_dir):
    r = CliRunner().invoke(app, finetune_args(corpus, t5_dir, run_copy, "--resume", "--phase2-steps", "4", "--valid-every", "1"))
    assert r.exit_code == 0, r.output
    assert "resuming with --phase2-steps 4 (was 2), --valid-every 1 (was 500)" in r.stderr
    state = json.loads((run_copy / "checkpoint" / "trainer_state.json").read_text())["trainer"]
    assert (state["phase"], state["step"], state["config"]["phase2_steps"]) == (2, 4, 4)
    valid_steps = [(r["phase"], r["step"]) for r in map(json.loads, (run_copy / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "valid"]
    assert valid_steps == [(1, 2), (2, 2), (2, 3), (2, 4)]


def test_finetune_onto_a_full_disk_is_one_line_and_leaves_no_litter(corpus, t5_dir, small_fs):
    out = small_fs / "run"
    fill(small_fs, 450 * 1024)  # room for the phase-1 model (~200 KB), not for a checkpoint (~600 KB)
    r = CliRunner().invoke(app, finetune_args(corpus, t5_dir, out, "--phase", "1"))
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.stderr
    assert r.stderr.splitlines()[-1] == f"error: cannot write {out / 'checkpoint.tmp'}: no space left on device"
    assert [p.name for p in out.rglob("*") if "tmp" in p.name] == []


def test_checkpoint_files_get_ordinary_permissions(finished_run):
    mask = os.umask(0)
    os.umask(mask)
    assert oct((finished_run / "checkpoint" / "optimizer.safetensors").stat().st_mode & 0o777) == oct(0o666 & ~mask)


# -- 9: fuzzing the vector readers --------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def valid_files() -> list[bytes]:
    from vaecli.files.vectors import write_vectors

    files = []
    for fmt in ("jsonl", "tsv", "npy", "safetensors"):
        out = io.BytesIO()
        write_vectors(out, np.arange(12, dtype=np.float32).reshape(3, 4), texts=["a", "b\tc", "42"], fmt=fmt,
                      logvar=np.zeros((3, 4), np.float32) if fmt != "npy" else None)
        files.append(out.getvalue())
    return files


VALID_FILES = valid_files()


def reads_or_refuses(data: bytes, fmt: str | None = None, dim: int | None = None) -> None:
    try:
        vectors, texts = read_vectors(data, fmt, name="fuzz", dim=dim)
    except InputError as e:
        assert "\n" not in str(e)
        return
    assert vectors.dtype == np.float32 and vectors.ndim == 2 and np.isfinite(vectors).all()
    assert texts is None or len(texts) == len(vectors)


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(range(len(VALID_FILES))), st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=6),
       st.integers(0, 5000), st.sampled_from([None, "jsonl", "tsv", "npy", "safetensors"]), st.sampled_from([None, 4, 8]))
def test_fuzz_mutated_vector_files(index, flips, cut, fmt, dim):
    data = bytearray(VALID_FILES[index])
    for position, value in flips:
        if data:
            data[position % len(data)] = value
    reads_or_refuses(bytes(data[: max(cut, 1)] if cut < len(data) else data), fmt, dim)


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=200).map(lambda b: b"\x93NUMPY" + b),
    st.tuples(st.lists(st.integers(0, 2**40), max_size=3), st.sampled_from(["<f4", "<f8", "|u1", "<U3", "|O", "<c8", "|b1", "<m8"]),
              st.binary(max_size=64)).map(lambda t: npy_header(tuple(t[0]), t[1]) + t[2]),
    st.tuples(st.dictionaries(st.sampled_from(["z", "mu", "logvar", "__metadata__", "x"]),
                              st.fixed_dictionaries({"dtype": st.sampled_from(["F32", "BF16", "F16", "I64", "BOOL", "U8", "F8_E4M3"]),
                                                     "shape": st.lists(st.integers(0, 5), max_size=3),
                                                     "data_offsets": st.lists(st.integers(0, 80), min_size=2, max_size=2)}),
                              max_size=3),
              st.binary(max_size=80)).map(lambda t: (lambda h: len(h).to_bytes(8, "little") + h + t[1])(json.dumps(t[0]).encode())),
    st.text(alphabet="[]{}\",:0123456789.eE-+ \t\nzmutextnaif", max_size=120).map(str.encode),
))
def test_fuzz_crafted_vector_files(data):
    reads_or_refuses(data)
    reads_or_refuses(data, dim=4)


def test_no_pretrained_load_asks_for_kernels_from_the_hub(t5_dir, llama_dir, bert_dir):
    # transformers 5 kernelizes a pretrained model (compiled layers downloaded from the hub) wherever the `kernels`
    # package is installed, on the first .train() or .eval() on a GPU; found on an H200 in round twenty-four, offline:
    # "Version 2 of 'kernels-community/rotary' is not available in the local cache". No load of ours asks for it.
    from vaecli.modeling.backbones import build_causal_vae

    pytest.importorskip("kernels")  # transformers requires it; without it nothing could ask
    for model in (build_vae(str(t5_dir), VAEConfig(latent_dim=4)), build_causal_vae(str(bert_dir), str(llama_dir), VAEConfig(latent_dim=4)),
                  build_causal_vae("decoder", str(llama_dir), VAEConfig(latent_dim=4))):
        backbones = [m for m in model.modules() if hasattr(m, "use_kernels")]
        assert backbones and not any(m.use_kernels for m in backbones)
