"""Two parts of the default's training step in isolation, before and after round twenty-one (bf16 autocast, 2 threads):

    python benchmarks/step_parts.py --rounds 3 --repeats 20

- z's keys and values split into SmolLM2's 30 layers (z of 256 through its 256 x 92,160 projection, 16 sentences, forward
  and backward): an index per layer (`kv[i, 0]`, until round twenty), whose backward fills a zero tensor of the whole
  prefix for each of the 60 slices, against `vae.layer_slots` (unbind, whose backward stacks the slices once);
- z's vocabulary bias W (A z) (16 sentences, SmolLM2's 49,152 x 576 output table, forward and backward): with the
  table's bf16 copy made once a phase (`precision.autocast_weight`) against autocast casting it at every call.

Each part's two versions alternate `--rounds` times; the table gives each one's median milliseconds. The whole step's
steps/s side by side is `benchmarks/step.py` (round twenty-one's variant there). Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from vaecli.modeling import vocab_bias
from vaecli.modeling.precision import frozen_weights_cast_once
from vaecli.modeling.vae import layer_slots

LAYERS, KV_HEADS, SLOTS, HEAD_DIM, HIDDEN, VOCAB, LATENT, BATCH = 30, 3, 8, 64, 576, 49152, 256, 16


def milliseconds(run, repeats: int) -> float:
    for _ in range(3):
        run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    z = torch.randn(BATCH, LATENT)
    to_prefix = nn.Linear(LATENT, LAYERS * 2 * KV_HEADS * SLOTS * HEAD_DIM)
    table, to_vocab = nn.Linear(HIDDEN, VOCAB, bias=False), nn.Linear(LATENT, HIDDEN)
    table.requires_grad_(False)

    def prefix(split) -> None:
        kv = to_prefix(z).view(BATCH, LAYERS, 2, KV_HEADS, SLOTS, HEAD_DIM).permute(1, 2, 0, 3, 4, 5)
        sum(k.float().sum() + v.float().sum() for k, v in split(kv)).backward()

    def bias(copy_once: bool) -> None:
        weight = vocab_bias.autocast_weight
        if not copy_once:
            vocab_bias.autocast_weight = lambda w: w
        try:
            vocab_bias.vocab_biases(to_vocab, z, table.weight, 1).float().sum().backward()
        finally:
            vocab_bias.autocast_weight = weight

    parts = {
        ("the prefix into layers", "an index per layer (until round twenty)"): lambda: prefix(lambda kv: [(kv[i, 0], kv[i, 1]) for i in range(LAYERS)]),
        ("the prefix into layers", "unbind (today)"): lambda: prefix(layer_slots),
        ("the vocabulary bias", "the table cast by autocast at every call (until round twenty)"): lambda: bias(False),
        ("the vocabulary bias", "the table's bf16 copy made once (today)"): lambda: bias(True),
    }
    times: dict[tuple[str, str], list[float]] = {key: [] for key in parts}
    with frozen_weights_cast_once(table, bf16=True), torch.autocast("cpu", dtype=torch.bfloat16):
        for _ in range(args.rounds):
            for key, run in parts.items():
                times[key].append(milliseconds(run, args.repeats))
    print(f"\nforward and backward, 16 sentences, medians of {args.rounds} rounds of {args.repeats}\n")
    print("| part | version | ms |")
    print("| --- | --- | --- |")
    for (part, version), values in times.items():
        print(f"| {part} | {version} | {statistics.median(values):.1f} |")


if __name__ == "__main__":
    main()
