"""Where a trained model's held-out token errors are: teacher-forced token accuracy from mu, by the token's kind.

    python benchmarks/token_errors.py --model hour_fs --test ../shared/data/wordnet/valid.txt --limit 300 \\
        --train ../shared/data/wordnet/train.txt

The same accuracy as `vae evaluate`'s (the share of target tokens that are the decoder's argmax given mu and the true
prefix, the end token counted), split by the target token's position, by whether it starts a word, and by how often it
occurs in `--train` (the decoder's tokens of the training sentences). bf16 autocast where `--bf16 auto` would use it.
A second table says what the decoder put in a wrong token's place, for tokens seen fewer than 100 times in `--train` and
for the rest: a word the sentence has later (it skipped ahead), one it had earlier, the end token, or another token, and
how often the right token was second.
"""

from __future__ import annotations

import argparse
import collections

from held_out import held_out_parser  # benchmarks/ is on sys.path when a benchmark runs as a script


def model_arguments(doc: str) -> argparse.ArgumentParser:
    """The options of a benchmark that looks into a trained model's tokens (this one, `identity_path.py`)."""
    parser = held_out_parser(doc)
    parser.add_argument("--train", required=True, help="the training sentences, for the tokens' frequencies")
    return parser


def main() -> None:
    import torch

    from vaecli.api import TextVAE
    from vaecli.files.text import read_lines
    from vaecli.modeling.precision import use_bf16

    args = model_arguments(__doc__).parse_args()
    vae = TextVAE.from_pretrained(args.model)
    model = vae
    model.eval()
    freq = collections.Counter(t for row in model.family.target_ids(read_lines(path=args.train).texts, model.config.max_length) for t in row[:-1])
    texts = read_lines(path=args.test).texts[: args.limit]
    rows = []  # (position, is the end token, starts a word, training frequency, hit)
    misses = []  # (training frequency, what the argmax was instead: later / earlier / end / other, the right token came second)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16("auto", vae.num_parameters())):
        for start in range(0, len(texts), 32):
            chunk = texts[start:start + 32]
            batch = model.tokenize_batch(chunk)
            mu = model.posterior(batch["input_ids"], batch["attention_mask"])[0].float()
            _, labels, logits = model._token_nll(model.decode_state(mu, cache=False), batch.get("target_ids", batch["input_ids"]),
                                                 batch.get("target_mask", batch["attention_mask"]))
            hits = logits.argmax(dim=-1) == labels
            second = logits.float().topk(2, dim=-1).indices[..., 1] == labels
            for r in range(labels.shape[0]):
                sentence = labels[r, : int((labels[r] != -100).sum())].tolist()
                for p in range(len(sentence)):
                    t = int(labels[r, p])
                    if t != model.eos_id and not hits[r, p]:
                        q = int(logits[r, p].argmax())
                        kind = "end" if q == model.eos_id else "later" if q in sentence[p + 1:] else "earlier" if q in sentence[:p] else "other"
                        misses.append((freq[t], kind, bool(second[r, p])))
                    piece = model.decoder_tokenizer.convert_ids_to_tokens(t)
                    rows.append((p, t == model.eos_id, p == 0 or piece.startswith(("Ġ", "▁")), freq[t], bool(hits[r, p])))

    words = [r for r in rows if not r[1]]
    errors = sum(not r[4] for r in words)
    buckets = {
        "every target token": rows,
        "the end token": [r for r in rows if r[1]],
        "first token of the sentence": [r for r in words if r[0] == 0],
        "tokens 2-4": [r for r in words if 1 <= r[0] <= 3],
        "tokens 5 and later": [r for r in words if r[0] >= 4],
        "a word's first token": [r for r in words if r[2]],
        "a word's later tokens": [r for r in words if not r[2]],
    }
    for lo, hi in ((0, 0), (1, 9), (10, 99), (100, 999), (1000, None)):
        name = f"seen {lo} times in training" if lo == hi else f"seen {lo}-{hi} times in training" if hi else f"seen {lo}+ times in training"
        buckets[name] = [r for r in words if r[3] >= lo and (hi is None or r[3] <= hi)]
    print(f"{args.model}: {len(texts)} sentences of {args.test}, teacher-forced from mu\n")
    print("| target tokens | count | token accuracy | share of the errors (end token excluded) |")
    print("| --- | --- | --- | --- |")
    for name, rs in buckets.items():
        wrong = sum(not r[4] for r in rs if not r[1])
        share = f"{100 * wrong / max(errors, 1):.0f}%" if name not in ("every target token", "the end token") else ""
        print(f"| {name} | {len(rs)} | {100 * sum(r[4] for r in rs) / max(len(rs), 1):.1f}% | {share} |")
    print("\n| wrong tokens | count | the argmax was a later word of the sentence | an earlier one | the end token | another token "
          "| the right token was second |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, ms in (("seen under 100 times", [m for m in misses if m[0] < 100]), ("seen 100+ times", [m for m in misses if m[0] >= 100])):
        shares = [f"{100 * sum(m[1] == kind for m in ms) / max(len(ms), 1):.0f}%" for kind in ("later", "earlier", "end", "other")]
        print(f"| {name} | {len(ms)} | " + " | ".join(shares) + f" | {100 * sum(m[2] for m in ms) / max(len(ms), 1):.0f}% |")


if __name__ == "__main__":
    main()
