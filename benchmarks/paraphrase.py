"""How far `vae paraphrase` should draw: each radius side by side on the same sentences of a trained model.

    python benchmarks/paraphrase.py --model hour --test ../shared/data/wordnet/valid.txt --limit 40 -n 3 --radii 0.1,0.25,0.5,1
    python benchmarks/paraphrase.py --model hourH --test ../shared/data/wordnet/valid.txt --limit 40 -n 3 --radii 0.25 --refines 0,5

For each radius r (z = mu + r L eps, L the prior's spread; `vae paraphrase --scale S` is r = S * PARAPHRASE_RADIUS) and
each sentence, `TextVAE.paraphrase` (its widening rounds included) asks for n paraphrases around the sentence's encoding,
refined by each of `--refines` steps (0: the encoder's mu). Columns: the share of the n
found; the share of the input's content words (lower-cased words of letters, not in STOP) a paraphrase keeps; the share
of paraphrases that keep at least half of them; BLEU of the paraphrases against their inputs (sacrebleu, corpus); the
paraphrases' fluency (the decoder LM's NLL per token without z) against the inputs'; seconds per sentence. One radius after
the other in this process, so the times compare (run it on an idle machine).
"""

from __future__ import annotations

import re
import time

from held_out import held_out_parser  # benchmarks/ is on sys.path when a benchmark runs as a script

STOP = frozenset(
    "a an the and or but if of to in on at by for with from as into onto over under about after before than then so "
    "is are was were be been being am do does did have has had it its this that these those he she they we you i me him "
    "her them us my your his their our not no very too can could will would shall should may might must there here "
    "who whom which what when where why how all any some each one up out off down".split()
)
"""Function words: what is left of a sentence is the content that a paraphrase should keep."""


def content(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if w not in STOP}


def main() -> None:
    import numpy as np
    import sacrebleu

    from vaecli.api import TextVAE
    from vaecli.config import PARAPHRASE_RADIUS
    from vaecli.evaluation.fluency import fluency
    from vaecli.files.text import read_lines

    parser = held_out_parser(__doc__, limit=40)
    parser.add_argument("-n", type=int, default=3)
    parser.add_argument("--radii", default="0.1,0.25,0.5,1")
    parser.add_argument("--refines", default="0", help="gradient steps refining each encoding, comma-separated (0: mu)")
    parser.add_argument("--show", type=int, default=2, help="print the paraphrases of this many sentences at each radius")
    args = parser.parse_args()
    vae = TextVAE.from_pretrained(args.model)
    texts = [t for t in read_lines(path=args.test).texts if content(t)][: args.limit]
    spread = "the aggregate posterior" if vae.aggregate_prior is not None else "N(0, I)"
    print(f"{args.model}: {len(texts)} sentences of {args.test}, {args.n} paraphrases each, the prior's spread from {spread}")
    print(f"inputs' fluency {fluency(vae, texts):.2f}\n")
    rows = []
    for refine, radius in ((int(k), float(r)) for k in args.refines.split(",") for r in args.radii.split(",")):
        started = time.perf_counter()
        pairs = [(t, p) for i, t in enumerate(texts) for p in vae.paraphrase(t, args.n, scale=radius / PARAPHRASE_RADIUS, seed=i, refine=refine)]
        seconds = (time.perf_counter() - started) / len(texts)
        kept = [len(content(p) & content(t)) / len(content(t)) for t, p in pairs]
        bleu = sacrebleu.corpus_bleu([p for _, p in pairs], [[t for t, _ in pairs]]).score if pairs else float("nan")
        rows.append((refine, radius, len(pairs) / (args.n * len(texts)), np.mean(kept), np.mean([k >= 0.5 for k in kept]), bleu,
                     fluency(vae, [p for _, p in pairs]), seconds))
        for t in texts[: args.show]:
            print(f"refine {refine}, r={radius}: {t!r} -> {[p for s, p in pairs if s == t]}")
    print("\n| refine steps | radius | --scale | found | content words kept | keeping half or more | BLEU to the input | fluency | s per sentence |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for refine, radius, found, kept, half, bleu, flu, seconds in rows:
        print(f"| {refine} | {radius:g} | {radius / PARAPHRASE_RADIUS:g} | {found:.0%} | {kept:.0%} | {half:.0%} | {bleu:.1f} | {flu:.2f} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
