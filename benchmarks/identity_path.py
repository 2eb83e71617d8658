"""Does a trained model's vocabulary bias carry a sentence's rare words, and would a bag of its words do so if it did?

    python benchmarks/identity_path.py --model hour_vb --test ../shared/data/wordnet/valid.txt --limit 300 \\
        --train ../shared/data/wordnet/train.txt

Two measurements on the first `--limit` sentences of `--test`, each target token (the end token aside) split by how often
it occurs in `--train` (the decoder's tokens):

1. **The bias alone.** Where the sentence's own tokens rank among the decoder's whole vocabulary under `--vocab-bias`'s
   W (A mu) alone (0 = the top), for held-out sentences and for the first `--limit` training sentences; and, for the
   held-out ones, under the oracle bag `Wn b` below alone.
2. **An oracle bag.** The teacher-forced token accuracy from mu (as `vae evaluate`'s) when `s * Wn b` is added to the
   logits at every position: b the sum of the sentence's own tokens' unit-length output embeddings (Wn, W's rows
   scaled to length 1), for each `--scales` s. It is what a bag of the sentence's words could give at most to the model as
   it is: the words are given, not carried by z. s = 0 is the model itself.

bf16 autocast, as training runs on a CPU.
"""

from __future__ import annotations

import collections

from token_errors import model_arguments  # benchmarks/ is on sys.path when a benchmark runs as a script

BUCKETS = ((0, 0), (1, 9), (10, 99), (100, 999), (1000, None))


def bucket_name(lo: int, hi: int | None) -> str:
    return f"{lo}" if lo == hi else f"{lo}-{hi}" if hi else f"{lo}+"


def in_bucket(count: int, lo: int, hi: int | None) -> bool:
    return count >= lo and (hi is None or count <= hi)


def main() -> None:
    import torch

    from vaecli.api import TextVAE
    from vaecli.files.text import read_lines

    parser = model_arguments(__doc__)
    parser.add_argument("--scales", default="0,1,2,4,8")
    args = parser.parse_args()
    model = TextVAE.from_pretrained(args.model)
    model.eval()
    if model.to_vocab is None:
        raise SystemExit(f"{args.model} has no vocabulary bias (trained with --no-vocab-bias)")
    train = read_lines(path=args.train).texts
    freq = collections.Counter(t for row in model.family.target_ids(train, model.config.max_length) for t in row[:-1])
    table = model.family.output_embeddings().detach().float()
    unit = table / table.norm(dim=1, keepdim=True)
    scales = [float(s) for s in args.scales.split(",")]

    ranks: dict[str, list[tuple[int, int]]] = {"held-out": [], "training": [], "held-out, the oracle bag Wn b alone": []}
    hits: dict[float, list[tuple[int, bool]]] = {s: [] for s in scales}
    texts = read_lines(path=args.test).texts[: args.limit]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for name, sentences in (("held-out", texts), ("training", train[: args.limit])):
            for start in range(0, len(sentences), 32):
                batch = model.tokenize_batch(sentences[start:start + 32])
                mu = model.posterior(batch["input_ids"], batch["attention_mask"])[0].float()
                bias = model.vocab_bias(mu).float()
                _, labels, logits = model._token_nll(model.decode_state(mu, cache=False), batch["target_ids"], batch["target_mask"])
                words = [[t for t in row[row != -100].tolist() if t != model.eos_id] for row in labels]
                rank = bias.argsort(dim=1, descending=True).argsort(dim=1)  # rank[b, v]: where word v stands in row b's bias
                for r, tokens in enumerate(words):
                    ranks[name] += [(freq[t], int(rank[r, t])) for t in tokens]
                if name != "held-out":
                    continue
                bag = torch.stack([unit[tokens].sum(dim=0) for tokens in words])
                oracle = (bag @ unit.T).unsqueeze(1)
                bag_rank = oracle.squeeze(1).argsort(dim=1, descending=True).argsort(dim=1)
                for r, tokens in enumerate(words):
                    ranks["held-out, the oracle bag Wn b alone"] += [(freq[t], int(bag_rank[r, t])) for t in tokens]
                real = labels != -100
                for s in scales:
                    right = (logits.float() + s * oracle).argmax(dim=-1) == labels
                    for r in range(labels.shape[0]):
                        hits[s] += [(freq[int(t)] if int(t) != model.eos_id else -1, bool(h)) for t, h in zip(labels[r][real[r]], right[r][real[r]])]

    print(f"{args.model}: the first {args.limit} sentences of {args.test} (and of {args.train})\n")
    print("Where a sentence's own tokens rank in the vocabulary bias alone, W (A mu), and in the oracle bag alone (0 = the top):\n")
    print("| tokens seen in training | sentences, scores | tokens | median rank | in the top 10 | in the top 100 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for lo, hi in BUCKETS:
        for name, rows in ranks.items():
            rs = sorted(r for f, r in rows if in_bucket(f, lo, hi))
            if rs:
                print(f"| {bucket_name(lo, hi)} | {name} | {len(rs)} | {rs[len(rs) // 2]} | {100 * sum(r < 10 for r in rs) / len(rs):.0f}% "
                      f"| {100 * sum(r < 100 for r in rs) / len(rs):.0f}% |")
    print("\nTeacher-forced token accuracy from mu with an oracle bag of the sentence's own words, s * Wn b, added to the logits:\n")
    print("| s | every token | " + " | ".join(f"seen {bucket_name(lo, hi)}" for lo, hi in BUCKETS) + " |")
    print("| --- | --- |" + " --- |" * len(BUCKETS))
    for s, rows in hits.items():
        cells = [f"{100 * sum(h for _, h in rows) / len(rows):.1f}%"]
        for lo, hi in BUCKETS:
            hs = [h for f, h in rows if in_bucket(f, lo, hi)]
            cells.append(f"{100 * sum(hs) / max(len(hs), 1):.1f}%")
        label = f"{s:g} (the model)" if s == 0 else f"{s:g}"
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
