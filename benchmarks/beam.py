"""Beam width against greedy decoding of a trained model's mu: BLEU, exact match and time, side by side in one run.

    python benchmarks/beam.py --model hour_de --test ../shared/data/wordnet/valid.txt --limit 300 --beams 1,2,4,8

Every width decodes the same mu (encoded once, as `vae evaluate` encodes: bf16 autocast by --bf16's rule) with the
decoding of `vae evaluate` (`reconstruction`: corpus BLEU-4 by sacrebleu, exact match after whitespace normalisation),
one width after the other in this process, so the times compare (run it on an idle machine).
"""

from __future__ import annotations

import time

from held_out import held_out_parser  # benchmarks/ is on sys.path when a benchmark runs as a script


def main() -> None:
    import torch

    from vaecli.api import TextVAE
    from vaecli.evaluation.evaluate import reconstruction
    from vaecli.files.text import read_lines
    from vaecli.modeling.precision import use_bf16

    parser = held_out_parser(__doc__)
    parser.add_argument("--beams", default="1,2,4,8")
    args = parser.parse_args()
    vae = TextVAE.from_pretrained(args.model)
    texts = read_lines(path=args.test).texts[: args.limit]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16("auto", vae.num_parameters())):  # encode runs in inference mode
        mu = torch.from_numpy(vae.encode(texts, refine=0))
    targets = vae.family.target_ids(texts, vae.config.max_length)
    print(f"{args.model}: {len(texts)} sentences of {args.test}, decoded from mu\n")
    print("| beam | BLEU | exact match | fluency of the reconstructions | seconds (decoding and fluency scoring) | x greedy |")
    print("| --- | --- | --- | --- | --- | --- |")
    first = None
    for beam in (int(b) for b in args.beams.split(",")):
        started = time.perf_counter()
        m = reconstruction(vae, targets, mu, beam=beam)
        seconds = time.perf_counter() - started
        first = first or seconds
        print(f"| {beam} | {m['bleu']:.1f} | {100 * m['exact_match']:.1f}% | {m['fluency_reconstructions']:.2f} | {seconds:.0f} | "
              f"{seconds / first:.1f} |", flush=True)


if __name__ == "__main__":
    main()
