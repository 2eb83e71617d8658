"""Model directories are untrusted input: crafted sizes, wrong classes and random configs give one line, fast."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaecli.config import VAEConfig
from vaecli.errors import ModelDirError
from vaecli.modeling.backbones import build_causal_vae, build_vae
from vaecli.modeling.vae import VAEModel


@pytest.fixture(scope="module")
def saved_t5(t5_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("saved-t5")
    build_vae(str(t5_dir), VAEConfig(latent_dim=8)).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def saved_causal(bert_dir, llama_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("saved-causal")
    build_causal_vae(str(bert_dir), str(llama_dir), VAEConfig(latent_dim=8, injection="both")).save_pretrained(out)
    return out


def crafted(source, tmp_path, edit) -> str:
    target = tmp_path / "crafted"
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    edit(config)
    (target / "config.json").write_text(json.dumps(config))
    return str(target)


def set_in(path: list[str], value):
    def edit(config):
        node = config
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


CASES = {
    "latent_dim": (["vae", "latent_dim"], 10_000_000),
    "vocabulary": (["backbone", "vocab_size"], 5_000_000),
    "layers": (["backbone", "num_layers"], 100_000),
    "positions": (["backbone", "relative_attention_num_buckets"], 50_000_000),
}


def test_crafted_sizes_cost_one_line_and_little_memory(saved_t5, saved_causal, tmp_path):
    """Sizes that would need gigabytes are refused from the safetensors header, in one process under 1.5 GB of RSS."""
    dirs = {}
    for name, (path, value) in CASES.items():
        dirs[name] = crafted(saved_t5, tmp_path / name, set_in(path, value))
    dirs["decoder vocabulary"] = crafted(saved_causal, tmp_path / "dv", set_in(["decoder", "vocab_size"], 5_000_000))
    dirs["decoder layers"] = crafted(saved_causal, tmp_path / "dl", set_in(["decoder", "num_hidden_layers"], 100_000))
    dirs["encoder positions"] = crafted(saved_causal, tmp_path / "ep", set_in(["encoder", "max_position_embeddings"], 1_000_000_000))
    script = textwrap.dedent(f"""
        import json, resource, time
        from transformers import BertModel, LlamaForCausalLM, T5ForConditionalGeneration  # imports are not what is timed
        from vaecli.modeling.vae import VAEModel
        from vaecli.errors import ModelDirError
        for name, path in {json.dumps(dirs)}.items():
            start = time.perf_counter()
            try:
                VAEModel.from_pretrained(path)
                print(name + "|LOADED|")
            except ModelDirError as e:
                print(name + "|" + str(round(time.perf_counter() - start, 2)) + "|" + str(e).replace(chr(10), " / "))
        print("maxrss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert len(lines) == len(dirs) + 1, out.stdout
    for line in lines[:-1]:
        _, seconds, message = line.split("|", 2)
        assert seconds != "LOADED" and float(seconds) < 10, line
        assert "config.json" in message, line
    assert int(lines[-1].split()[1]) < 1500, lines[-1]


def test_class_that_does_not_fit_its_config(saved_t5, saved_causal, tmp_path):
    with pytest.raises(ModelDirError, match="does not take"):
        VAEModel.from_pretrained(crafted(saved_t5, tmp_path / "a", set_in(["backbone_class"], "BartForConditionalGeneration")))
    with pytest.raises(ModelDirError, match="not one this model family can use"):
        VAEModel.from_pretrained(crafted(saved_causal, tmp_path / "b", set_in(["decoder_class"], "T5ForConditionalGeneration")))
    with pytest.raises(ModelDirError, match="not one this model family can use"):
        VAEModel.from_pretrained(crafted(saved_t5, tmp_path / "c", set_in(["backbone_class"], "os.system")))


def test_unknown_family(saved_t5, tmp_path):
    with pytest.raises(ModelDirError, match="unknown family"):
        VAEModel.from_pretrained(crafted(saved_t5, tmp_path / "f", set_in(["family"], "diffusion")))


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True), st.text(max_size=8),
                   st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


def random_config_case(saved_causal, tmp_path_factory, data) -> None:
    """Any config.json: a loaded model or a ModelDirError, nothing else."""
    config = json.loads((saved_causal / "config.json").read_text())
    section = data.draw(st.sampled_from(["vae", "encoder", "decoder", None]))
    key = data.draw(st.sampled_from(sorted(config[section]) if section else sorted(config)))
    value = data.draw(VALUES)
    target = tmp_path_factory.mktemp("fuzz")
    for f in saved_causal.rglob("*"):
        if f.is_file():
            (target / f.relative_to(saved_causal)).parent.mkdir(parents=True, exist_ok=True)
            (target / f.relative_to(saved_causal)).symlink_to(f)
    (target / "config.json").unlink()
    (config[section] if section else config)[key] = value
    (target / "config.json").write_text(json.dumps(config))
    try:
        VAEModel.from_pretrained(target)
    except ModelDirError as e:
        assert "\n" not in str(e)


FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings(max_examples=40, **FUZZ)
@given(data=st.data())
def test_random_configs_never_give_a_traceback(saved_causal, tmp_path_factory, data):
    random_config_case(saved_causal, tmp_path_factory, data)


@pytest.mark.slow
@settings(max_examples=2000, **FUZZ)
@given(data=st.data())
def test_random_configs_never_give_a_traceback_thousands(saved_causal, tmp_path_factory, data):
    random_config_case(saved_causal, tmp_path_factory, data)
