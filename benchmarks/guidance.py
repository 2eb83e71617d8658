"""Decoding-time levers on how loudly z speaks, teacher-forced: does pushing the decoder toward z make it name more of the
sentence's own tokens?

    python benchmarks/guidance.py --model vae-model --test ../shared/data/wordnet/valid.txt --limit 300 --weights 0,0.25,0.5,1,2

For each weight w, the share of target tokens (EOS counted) that are the argmax of
- "guided from z = 0": log p(.|z) + w (log p(.|z) - log p(.|0)), classifier-free guidance (Ho & Salimans 2022; Sanchez
  et al. 2023 for LMs) with the prior's mean as the unconditional;
- "guided from the LM alone": the same with the decoder LM's own log-probs (no z, adapters off) as the unconditional;
- "z scaled": the decoder given (1 + w) mu.
w = 0 is the token accuracy `vae evaluate` reports. All three rows see the true prefix; mu is encoded as `vae evaluate`
encodes it (bf16 autocast by --bf16's rule).
"""

from __future__ import annotations

from held_out import held_out_parser  # benchmarks/ is on sys.path when a benchmark runs as a script


def main() -> None:
    import torch
    from torch.nn import functional as F

    from vaecli.api import TextVAE
    from vaecli.files.text import read_lines
    from vaecli.modeling.adapters import adapters_off
    from vaecli.modeling.precision import use_bf16

    parser = held_out_parser(__doc__)
    parser.add_argument("--weights", default="0,0.25,0.5,1,2")
    args = parser.parse_args()
    vae = TextVAE.from_pretrained(args.model)
    vae.eval()
    weights = [float(w) for w in args.weights.split(",")]
    texts = read_lines(path=args.test).texts[: args.limit]
    rows = ("guided from z = 0", "guided from the LM alone", "z scaled")
    hits = {(r, w): 0 for r in rows for w in weights}
    tokens = 0

    def logp(state, dec_in):
        return F.log_softmax(vae.decoder_logits(state, dec_in).float(), dim=-1)

    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16("auto", vae.num_parameters()))
    with torch.inference_mode(), autocast:
        for start in range(0, len(texts), 32):
            batch = vae.tokenize_batch(texts[start : start + 32])
            y, y_mask = batch.get("target_ids", batch["input_ids"]), batch.get("target_mask", batch["attention_mask"])
            dec_in, labels = vae.targets(y, y_mask)
            real = labels != -100
            tokens += int(real.sum())
            mu = vae.posterior(batch["input_ids"], batch["attention_mask"])[0].float()
            given_z = logp(vae.decode_state(mu, cache=False), dec_in)
            given_0 = logp(vae.decode_state(torch.zeros_like(mu), cache=False), dec_in)
            with adapters_off(vae.backbone):
                alone = logp(vae.family.new_state(y.shape[0], None, None, None, vae.to_mu.weight, cache=False), dec_in)
            for w in weights:
                for row, guided in ((rows[0], given_z + w * (given_z - given_0)), (rows[1], given_z + w * (given_z - alone))):
                    hits[row, w] += int(((guided.argmax(-1) == labels) & real).sum())
                scaled = logp(vae.decode_state(mu * (1 + w), cache=False), dec_in)
                hits[rows[2], w] += int(((scaled.argmax(-1) == labels) & real).sum())
    print(f"{args.model}: {len(texts)} sentences of {args.test}, teacher-forced token accuracy from mu\n")
    print("| lever | " + " | ".join(f"w = {w:g}" for w in weights) + " |")
    print("| --- |" + " --- |" * len(weights))
    for row in rows:
        print(f"| {row} | " + " | ".join(f"{100 * hits[row, w] / tokens:.1f}%" for w in weights) + " |")


if __name__ == "__main__":
    main()
