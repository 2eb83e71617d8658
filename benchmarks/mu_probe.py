"""How much of a sentence's words the untrained z holds, for each way of starting z's head (`--mu-fit`): a linear probe.

    python benchmarks/mu_probe.py --sentences 1500

The default model (SmolLM2 reading its own sentences, 4 attention queries over the mean of its layers, nothing trained)
pools `--sentences` random WordNet training sentences (the first 80% fit, the rest are held out). For each z (256
dimensions, each standardised on the fitting sentences): a ridge regression from z to the sentence's bag of tokens (the
decoder's target tokens, the end token not counted), and its recall on the held-out sentences: the share of a
sentence's tokens among its k highest-scoring ones, k the number of tokens it has. Rows: all the pooled numbers (the
ceiling of any 256 of them), the random head of today's default, the top 256 principal directions of the pooled
states, `--mu-fit`'s reduced-rank directions (vaecli/training/mu_fit.py) fitted on the same sentences, and the same
toward each sentence's mean output embedding (the target `--vocab-fit` uses). Recall of the tokens' training frequency
alone is the floor.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "wordnet" / "train.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default=str(DATA))
    parser.add_argument("--sentences", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    from vaecli.config import TrainConfig
    from vaecli.modeling.backbones import build_causal_vae
    from vaecli.training.mu_fit import bags, reduced_rank_directions

    torch.manual_seed(42)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(train_file=args.train)
    model = build_causal_vae(cfg.encoder, cfg.decoder, cfg.vae_config()).eval()
    lines = [line.strip() for line in open(args.train, encoding="utf-8") if line.strip()]
    order = torch.randperm(len(lines), generator=torch.Generator().manual_seed(0))[: args.sentences].tolist()
    start = time.time()
    pooled, labels = [], []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for i in range(0, len(order), 32):
            batch = model.tokenize_batch([lines[j] for j in order[i : i + 32]])
            pooled.append(model.pooled(batch["input_ids"], batch["attention_mask"]).float())
            _, rows = model.targets(batch["target_ids"], batch["target_mask"])
            labels += list(rows)
    x = torch.cat(pooled).double()
    print(f"pooled {tuple(x.shape)} in {time.time() - start:.0f} s", flush=True)
    width = max(len(row) for row in labels)
    labels = torch.stack([torch.cat([row, row.new_full((width - len(row),), -100)]) for row in labels])
    y_all, vocab = bags(labels, model.eos_id)
    n, fit = len(x), int(len(x) * 0.8)
    seen = y_all[:fit].sum(dim=0) > 0  # the probe knows the tokens of the fitting sentences only
    y, vocab = y_all[:, seen], vocab[seen]
    held = [set(row[(row != -100) & (row != model.eos_id)].tolist()) for row in labels[fit:]]

    def recall(scores: torch.Tensor) -> float:
        hits = total = 0
        for row, words in zip(scores, held):
            if words:
                top = set(vocab[row.topk(len(words)).indices].tolist())
                hits, total = hits + len(top & words), total + len(words)
        return hits / total

    def standardised(z: torch.Tensor) -> torch.Tensor:
        return (z - z[:fit].mean(dim=0)) / z[:fit].std(dim=0).clamp(min=1e-9)

    def probe(z: torch.Tensor, ridge: float) -> float:
        zm, ym = z[:fit].mean(dim=0), y[:fit].mean(dim=0)
        zc = z[:fit] - zm
        gram = zc.T @ zc / fit
        coef = torch.linalg.solve(gram + ridge * float(gram.diagonal().mean()) * torch.eye(len(gram), dtype=gram.dtype),
                                  zc.T @ (y[:fit] - ym) / fit)
        return recall((z[fit:] - zm) @ coef + ym)

    d = model.config.latent_dim
    centred = x[:fit] - x[:fit].mean(dim=0)
    _, eigenvectors = torch.linalg.eigh(centred.T @ centred / fit)
    table = model.family.output_embeddings().detach().double()
    mean_embedding = torch.stack([table[list(words)].mean(dim=0) if words else table.new_zeros(table.shape[1])
                                  for words in (set(row[(row != -100) & (row != model.eos_id)].tolist()) for row in labels)])
    heads = {
        f"all {x.shape[1]} pooled numbers": x,
        "random head (the default)": standardised(x @ model.to_mu.weight.detach().double().T),
        f"top {d} principal directions": standardised(x @ eigenvectors[:, -d:]),
        "--mu-fit: reduced-rank, bag of tokens": standardised(x @ reduced_rank_directions(x[:fit], y[:fit], d).double().T),
        "reduced-rank, mean output embedding": standardised(x @ reduced_rank_directions(x[:fit], mean_embedding[:fit], d).double().T),
    }
    print(f"\nfrequency alone: recall {recall(y[:fit].mean(dim=0).expand(n - fit, -1)):.3f}\n")
    print("| z | ridge 0.01 | ridge 0.1 | ridge 1 |\n| --- | --- | --- | --- |")
    for name, z in heads.items():
        print(f"| {name} | " + " | ".join(f"{probe(z, ridge):.3f}" for ridge in (0.01, 0.1, 1.0)) + " |", flush=True)


if __name__ == "__main__":
    main()
