"""What a GPU found (an H200, round twenty-four), checked on a CPU: PyTorch's GPU rules are simulated where the CPU has
none (a seeded CPU generator refused for a draw on another device), and a tensor on the `meta` device stands for one
on the GPU."""

from __future__ import annotations

import pytest
import torch

from vaecli.inference.generate import _nucleus
from vaecli.modeling.vae import VAEModel
from vaecli.training.data import delete_tokens

GPU = torch.device("meta")


@pytest.fixture
def strict_generators(monkeypatch):
    """torch.randn / rand / multinomial refuse a generator of another device type than the draw's, as CUDA does:
    "Expected a 'cuda' device type for generator but found 'cpu'"."""
    def strict(draw, device_of):
        def checked(*args, **kwargs):
            generator, device = kwargs.get("generator"), torch.device(device_of(args, kwargs))
            if generator is not None and generator.device.type != device.type:
                raise RuntimeError(f"Expected a '{device.type}' device type for generator but found '{generator.device.type}'")
            return draw(*args, **kwargs)
        return checked

    monkeypatch.setattr(torch, "randn", strict(torch.randn, lambda a, k: k.get("device") or "cpu"))
    monkeypatch.setattr(torch, "rand", strict(torch.rand, lambda a, k: k.get("device") or "cpu"))
    monkeypatch.setattr(torch, "multinomial", strict(torch.multinomial, lambda a, k: a[0].device))


def test_a_seeded_posterior_sample_on_the_gpu(strict_generators):
    # The first validation of the first GPU run stopped here: validation seeds a CPU generator for z ~ q(z|x).
    mu, logvar = torch.zeros(3, 4, device=GPU), torch.zeros(3, 4, device=GPU)
    z = VAEModel.reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    assert z.device == GPU and z.shape == (3, 4)


def test_seeded_token_deletion_on_the_gpu(strict_generators):
    generator = torch.Generator().manual_seed(0)
    ids, mask = torch.ones(2, 5, dtype=torch.long, device=GPU), torch.ones(2, 5, dtype=torch.long, device=GPU)
    kept, kept_mask = delete_tokens(ids, mask, 0.5, 0, [], generator)
    assert kept.device == GPU and kept.shape == (2, 5) and kept_mask.device == GPU


def test_a_seed_draws_what_it_drew_before(strict_generators):
    # Drawn where the generator lives, then moved: on a CPU the numbers are the ones a plain seeded draw gives.
    from vaecli.modeling.randomness import multinomial, rand, randn

    def seeded() -> torch.Generator:
        return torch.Generator().manual_seed(7)

    cpu = torch.device("cpu")
    assert torch.equal(randn((3, 2), seeded(), cpu), torch.randn((3, 2), generator=seeded()))
    assert torch.equal(rand((3, 2), seeded(), cpu), torch.rand((3, 2), generator=seeded()))
    probs = torch.tensor([[0.2, 0.3, 0.5], [0.9, 0.05, 0.05]])
    assert torch.equal(multinomial(probs, seeded()), torch.multinomial(probs, 1, generator=seeded()))
    # `vae sample --seed` and `--sample` decoding draw through it (a meta tensor has no numbers to move to the CPU, so
    # that draw's GPU rule is not simulated here)
    assert torch.equal(_nucleus(probs.log(), 1.0, 1.0, seeded()), torch.multinomial(probs, 1, generator=seeded()).squeeze(-1))


def test_commands_load_the_model_onto_the_gpu_where_there_is_one(tmp_path, monkeypatch):
    # Every command's model (encode, decode, sample, evaluate, ...) ran on the CPU beside a GPU until round twenty-four.
    from vaecli.api import TextVAE
    from vaecli.cli.common import load_model

    devices = []
    monkeypatch.setattr(TextVAE, "from_pretrained", classmethod(lambda cls, path, device="cpu": devices.append(device)))
    (tmp_path / "m").mkdir()
    for available in (True, False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
        load_model(tmp_path / "m")
    assert devices == [torch.device("cuda"), torch.device("cpu")]


def test_a_checkpoint_keeps_the_gpus_random_stream(t5_dir, tmp_path, monkeypatch):
    # On a GPU a run's draws without a generator (z ~ q(z|x), token deletion, word dropout) come from the GPU's stream:
    # a checkpoint holds it beside the CPU's, and a resume on a GPU puts it back (on a CPU it is ignored).
    from vaecli.config import VAEConfig
    from vaecli.modeling.backbones import build_vae
    from vaecli.modeling.randomness import rng_states
    from vaecli.training.checkpoint import load_trainer_state, restore, save_checkpoint

    stream, restored = torch.arange(16, dtype=torch.uint8), []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device=None: stream)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device=None: restored.append((state, device)))
    model = build_vae(str(t5_dir), VAEConfig(latent_dim=4))
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    gpu = torch.device("cuda")
    cpu_stream = torch.get_rng_state()
    path = save_checkpoint(tmp_path, model, optimizer, scheduler, {"step": 1}, [rng_states(gpu)])
    torch.rand(5)  # the CPU's stream moves on
    restore(path, optimizer, scheduler, load_trainer_state(path), 0, gpu)
    assert torch.equal(torch.get_rng_state(), cpu_stream)
    assert len(restored) == 1 and torch.equal(restored[0][0], stream) and restored[0][1] == gpu
    restore(path, optimizer, scheduler, load_trainer_state(path), 0, torch.device("cpu"))
    assert len(restored) == 1


def test_timing_a_step_on_the_gpu_waits_for_it_and_leaves_its_stream(monkeypatch):
    # A GPU computes after the call that queues the work returns: unwaited, a timed pass measured its launch only. The
    # timing's draws must not move the GPU's stream either, or a run in minutes would not repeat as the same steps.
    from contextlib import nullcontext

    from vaecli.training.pace import seconds_of

    events = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append(("wait", device)))
    monkeypatch.setattr(torch.random, "fork_rng", lambda devices=None, **kw: events.append(("fork", devices)) or nullcontext())
    gpu = torch.device("cuda")
    seconds_of(lambda: events.append(("work", None)), gpu)
    assert events == [("fork", [gpu]), ("wait", gpu), ("work", None), ("wait", gpu)]
    events.clear()
    seconds_of(lambda: events.append(("work", None)))
    assert events == [("fork", []), ("work", None)]
