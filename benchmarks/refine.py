"""Encoding refined by gradient steps (`--refine`) against the encoder's mu: fidelity, fluency and time, side by side in one run.

    python benchmarks/refine.py --model hourH --test ../shared/data/wordnet/valid.txt --limit 300 \
        --variants "0;3;5;10"

Each variant is STEPS@LR (a step's RMS per coordinate; STEPS alone: the default rate, vaecli.config.REFINE_LR), `;` between variants.
Every variant runs `vae evaluate`'s own computation (`evaluate` with `refine` = STEPS, no importance samples beyond one)
on the same sentences in this process, one after the other: token accuracy from mu and from the refined encoding,
BLEU and exact match of the encodings decoded as `vae decode` does (beam DECODE_BEAM, --rerank), the reconstructions'
fluency, and the fluency of midpoints between random pairs of encodings (a wide move off the encoder's mu must not leave
holes between sentences). Seconds: the refinement alone, per sentence (run it on an idle machine).
"""

from __future__ import annotations

import time
from functools import partial

from held_out import held_out_parser  # benchmarks/ is on sys.path when a benchmark runs as a script


def main() -> None:
    import numpy as np

    import vaecli.evaluation.evaluate as evaluation
    from vaecli.api import TextVAE
    from vaecli.config import REFINE_LR
    from vaecli.files.text import read_lines
    from vaecli.inference.latent import encode
    from vaecli.inference.refine import refine_rows
    from vaecli.modeling.tokens import tokenize

    parser = held_out_parser(__doc__)
    parser.add_argument("--variants", default="0;3;5;10")
    parser.add_argument("--samples", type=int, default=100, help="midpoints (and prior samples) whose fluency is measured")
    args = parser.parse_args()
    vae = TextVAE.from_pretrained(args.model)
    texts = read_lines(path=args.test).texts[: args.limit]
    targets = vae.family.target_ids(texts, vae.config.max_length) or tokenize(vae.tokenizer, texts, vae.config.max_length)[0]
    mu = encode(vae, texts, refine=0).mu
    print(f"{args.model}: {len(texts)} sentences of {args.test}\n")
    print("| refine steps @ rate | token accuracy from mu | token accuracy, refined | BLEU | exact match | fluency: inputs / "
          "reconstructions / midpoints | midpoints at the limit | move / norm of mu | s per sentence |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for variant in args.variants.split(";"):
        steps_text, _, lr_text = variant.partition("@")
        steps, lr = int(steps_text), float(lr_text or REFINE_LR)
        evaluation.refine_rows = partial(refine_rows, lr=lr)
        started = time.perf_counter()
        z = refine_rows(vae, mu, targets, steps, 64, lr=lr) if steps else mu
        seconds = (time.perf_counter() - started) / len(texts)
        move = float(np.linalg.norm(z - mu, axis=1).mean() / np.linalg.norm(mu, axis=1).mean())
        m = evaluation.evaluate(vae, texts, iw_samples=1, samples=args.samples, seed=0, refine=steps)
        refined = m["token_accuracy_refined"]
        print(f"| {steps} @ {lr:g} | {100 * m['token_accuracy']:.1f}% | {'-' if refined is None else f'{100 * refined:.1f}%'} | "
              f"{m['bleu']:.1f} | {100 * m['exact_match']:.1f}% | {m['fluency_inputs']:.2f} / {m['fluency_reconstructions']:.2f} / "
              f"{m['midpoint_fluency']:.2f} | {100 * m['midpoint_at_limit']:.0f}% | {move:.3f} | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
