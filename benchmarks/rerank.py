"""The encoder choosing among a beam's hypotheses (`--rerank`) against the beam's own best: BLEU, exact match and time.

    python benchmarks/rerank.py --model hour_vf --test ../shared/data/wordnet/valid.txt --limit 300 --beams 4,8 --margins 0.5,1,2,inf
    python benchmarks/rerank.py --model hourH --test ../shared/data/wordnet/valid.txt --limit 300 --beams 1,4,8 --margins 1 --refine 5

mu is encoded once (as `vae evaluate` encodes it: bf16 autocast by --bf16's rule; with `--refine N`, then refined by N
steps as `vae encode` does, inference.refine); each beam width decodes it once,
keeping its whole pool of ended hypotheses, and each margin (nats per token below the best one's mean log-prob) then
lets the encoder choose among that pool (inference.rerank.choose). Scored as `vae evaluate` scores reconstructions
(corpus BLEU-4 by sacrebleu, exact match after whitespace normalisation, fluency of the reconstructions). "input in
pool" is the share of sentences whose own text is among the hypotheses within the margin: what a perfect chooser
could reach. Run it on an idle machine for the seconds to compare.
"""

from __future__ import annotations

import time

from held_out import held_out_parser  # benchmarks/ is on sys.path when a benchmark runs as a script


def main() -> None:
    import torch

    from vaecli.api import TextVAE
    from vaecli.evaluation.evaluate import DECODE_BATCH, corpus_bleu
    from vaecli.evaluation.fluency import fluency
    from vaecli.files.text import read_lines
    from vaecli.inference.generate import beam_search, strip_ids
    from vaecli.inference.rerank import choose
    from vaecli.modeling.precision import use_bf16
    from vaecli.modeling.tokens import length_batches

    parser = held_out_parser(__doc__)
    parser.add_argument("--beams", default="4")
    parser.add_argument("--margins", default="0.5,1,2,inf")
    parser.add_argument("--refine", type=int, default=0, help="gradient steps refining each encoding (0: the encoder's mu)")
    args = parser.parse_args()
    vae = TextVAE.from_pretrained(args.model)
    model = vae
    texts = read_lines(path=args.test).texts[: args.limit]
    # mu as `vae evaluate` encodes it (bf16 by --bf16's rule); refined, as `vae encode` does (float32)
    bf16 = use_bf16("auto", vae.num_parameters()) and not args.refine
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # encode runs in inference mode
        mu = torch.from_numpy(vae.encode(texts, refine=args.refine))
    targets = model.family.target_ids(texts, model.config.max_length)
    tok = model.decoder_tokenizer
    refs = [t.strip() for t in tok.batch_decode(targets, skip_special_tokens=True)]
    norm = [" ".join(r.split()) for r in refs]
    print(f"{args.model}: {len(texts)} sentences of {args.test}, decoded from mu" + (f" refined by {args.refine} steps" if args.refine else "") + "\n")
    print("| beam | chosen by | BLEU | exact match | input in pool | fluency of the reconstructions | seconds (decoding / choosing) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for k in (int(b) for b in args.beams.split(",")):
        started = time.perf_counter()
        pools = []  # (rows, ids (n, k, T), scores (n, k))
        with torch.inference_mode():
            for rows in length_batches([len(r) for r in targets], max(1, DECODE_BATCH // k), 0, 0, shuffle=False):
                ids, scores = beam_search(model, mu[rows], model.config.max_length, k, keep=k)
                pools.append((rows, ids, scores))
        decoding = time.perf_counter() - started
        for margin in [None, *(float(m) for m in args.margins.split(","))]:
            started = time.perf_counter()
            hyps = [""] * len(texts)
            with torch.inference_mode():
                for rows, ids, scores in pools:
                    hyps_k = [strip_ids(ids[:, j], model) for j in range(k)]
                    out = hyps_k[0] if margin is None else choose(model, mu[rows], hyps_k, scores, margin)
                    for i, text in zip(rows, tok.batch_decode(out, skip_special_tokens=True)):
                        hyps[i] = text.strip()
            choosing = time.perf_counter() - started
            found = set()
            if margin is not None:
                for rows, ids, scores in pools:
                    near = (scores >= scores[:, :1] - margin).tolist()
                    for j in range(k):
                        for n, (i, text) in enumerate(zip(rows, tok.batch_decode(strip_ids(ids[:, j], model), skip_special_tokens=True))):
                            if near[n][j] and " ".join(text.split()) == norm[i]:
                                found.add(i)
            exact = sum(" ".join(h.split()) == r for h, r in zip(hyps, norm)) / len(texts)
            label = "the beam (its best)" if margin is None else f"the encoder, margin {margin:g}"
            pool = "" if margin is None else f"{100 * len(found) / len(texts):.1f}%"
            print(f"| {k} | {label} | {corpus_bleu(hyps, refs):.1f} | {100 * exact:.1f}% | {pool} | "
                  f"{fluency(model, [h for h in hyps if h]):.2f} | {decoding:.0f} / {choosing:.0f} |", flush=True)


if __name__ == "__main__":
    main()
