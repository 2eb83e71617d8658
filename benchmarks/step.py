"""The default's training step on a CPU in bf16: the attention kernel and the AdamW implementation, side by side.

    python benchmarks/step.py --rounds 2 --steps 60
    python benchmarks/step.py --rounds 3 --steps 40 \
        --variants "math attention, fused AdamW;today: math attention, fused AdamW, frozen weights cast once"
    python benchmarks/step.py --rounds 4 --steps 40 \
        --variants "today: math attention, fused AdamW, frozen weights cast once;\
round twenty-one: + the prefix split by unbind, the table's bf16 copy"

Six variants (or the `;`-separated `--variants`) of `vae finetune`'s own loop (the default: SmolLM2 reading and writing its own sentences, batches of 16 of
examples/wordnet/train-10k.txt, bf16 autocast), each in a fresh process, one after the other, `--rounds` times
alternating; steps/s is timed from the step after `--warm` to the last, and the table gives each variant's median.
"before" is how the loop ran until the change (PyTorch's choice of attention kernel, the CPU flash kernel, and AdamW's
per-tensor loop); "today" is `vaecli.modeling.precision.training_attention` (the math kernel where a backward follows)
with a fused AdamW, and `frozen_weights_cast_once` (the frozen LM's weights cast to bf16 once a phase, not at every
forward). "round twenty-one" adds `vae.layer_slots` (z's keys and values split into the layers by unbind, not by
an index per layer, whose backward fills a zero tensor of their whole size) and `precision.autocast_weight` (z's
vocabulary bias multiplies by the output table's cast-once copy, not a cast at every step); "today" runs without
them. Run it on an idle machine: a second job on the two cores makes every number meaningless.
"""

from __future__ import annotations

import json
from contextlib import nullcontext

from settings_speed import compare, options, steps_per_second  # benchmarks/ is on sys.path when a benchmark runs as a script

VARIANTS = {  # (math attention, fused AdamW, frozen weights cast once, round twenty-one's prefix split and table)
    "before: flash attention, AdamW per-tensor loop": (False, False, False, False),
    "math attention where a backward follows, AdamW loop": (True, False, False, False),
    "flash attention, fused AdamW": (False, True, False, False),
    "math attention, fused AdamW": (True, True, False, False),
    "today: math attention, fused AdamW, frozen weights cast once": (True, True, True, False),
    "round twenty-one: + the prefix split by unbind, the table's bf16 copy": (True, True, True, True),
}


def child(name: str, steps: int, warm: int, train: str) -> None:
    """One variant's run: prints {"steps_per_s": ...} as its last line."""
    import torch

    import vaecli.training.trainer as trainer

    math_attention, fused, cast_once, twenty_one = VARIANTS[name]
    if not twenty_one:
        import vaecli.modeling.vae as vae
        import vaecli.modeling.vocab_bias as vocab_bias

        vae.layer_slots = lambda kv: [(kv[i, 0], kv[i, 1]) for i in range(kv.shape[0])]  # as until round twenty
        vocab_bias.autocast_weight = lambda weight: weight  # autocast casts the table at every step
    if not math_attention:
        trainer.training_attention = lambda *args: nullcontext()
    if not cast_once:
        trainer.frozen_weights_cast_once = lambda *args: nullcontext()
    if not fused:
        class LoopAdamW(torch.optim.AdamW):
            def __init__(self, *args, fused=None, **kwargs):
                super().__init__(*args, fused=False, foreach=False, **kwargs)

        torch.optim.AdamW = LoopAdamW
    print(json.dumps({"steps_per_s": steps_per_second(steps, warm, train)}))


def main() -> None:
    args = options(__doc__, ";".join(VARIANTS))
    if args.child:
        child(args.child, args.steps, args.warm, args.train)
        return
    chosen = args.variants.split(";")
    unknown = [name for name in chosen if name not in VARIANTS]
    if unknown:
        raise SystemExit(f"step.py: unknown variant {unknown[0]!r}; the variants are: {'; '.join(VARIANTS)}")
    compare(__file__, chosen, args, first=chosen[0].split(":")[0])


if __name__ == "__main__":
    main()
