"""`vae evaluate`: the field's metrics on a test file, and the ones that show whether z is used.

Definitions (all per sentence unless said; nats):

- Rec:   -log p(x|z) with one z ~ q(z|x) per sentence (seeded).
- KL:    KL(q(z|x) || N(0, I)), closed form, summed over dimensions.
- -ELBO: Rec + KL.
- NLL:   importance-weighted, K samples: -(logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K).
         A tighter bound than -ELBO, and tighter as K grows.
- PPL:   exp(total NLL / total tokens). Tokens are the backbone's subword tokens of the target, the
         end-of-sentence token counted, the start token not. PPL per word divides by
         whitespace-separated words instead (end of sentence not counted).
- MI:    I(x; z) with the aggregate posterior over the whole test set (metrics.mutual_information).
         MI, AU and the shuffle gap need two sentences at least: with one they are None (not computable).
- AU:    dimensions with Cov_x(mu_d) >= 0.01.
- Shuffle gap: Rec with another sentence's z (a random derangement over the whole set) minus Rec
         with its own z. Near 0: the decoder ignores z.
- Token accuracy: teacher-forced from mu, the share of target tokens (end token included) that are the
         decoder's argmax given z = mu and the true prefix. It moves where BLEU is still near 0.
         Token accuracy refined: the same from the encoding `vae encode` gives, mu moved by `refine` gradient steps
         toward a z that gives the sentence back (inference.refine; None with refine = 0).
- BLEU, exact match: decode the encoding `vae encode` gives (mu, refined by `refine` steps; beam search of width `beam`,
         DECODE_BEAM by default as `vae decode`; 1: greedy)
         against the input as the tokenizer normalises it
         (e.g. lower-cased for an uncased tokenizer); corpus BLEU-4 by sacrebleu, its defaults (13a
         tokenisation, brevity penalty, exponential smoothing).
- Fluency (evaluation.fluency): NLL per token under the decoder alone, of the inputs, of their
         reconstructions (as decoded for BLEU), of `samples` greedy decodes of prior draws (as `vae sample` makes them) and of the
         midpoints between random pairs of inputs' encodings; with the share that never ended, mean words and distinct-2.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from vaecli.config import DECODE_BEAM, DECODE_RERANK, ENCODE_REFINE, SAMPLE_NO_REPEAT_NGRAM
from vaecli.evaluation.fluency import fluency
from vaecli.evaluation.metrics import active_units, mutual_information
from vaecli.inference.generate import generate
from vaecli.inference.refine import refine_rows
from vaecli.modeling.gaussian import kl_per_dim, log_normal
from vaecli.modeling.randomness import randn
from vaecli.modeling.tokens import length_batches, pad_batch
from vaecli.modeling.vae import VAEModel


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU-4 in [0, 100], one reference per hypothesis, by sacrebleu (the field's reference
    implementation) with its defaults: 13a tokenisation, brevity penalty, exponential smoothing."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def derangement(n: int, generator: torch.Generator) -> torch.Tensor:
    """A random permutation with no fixed point (each sentence gets another's z)."""
    if n < 2:
        return torch.arange(n)
    order = torch.randperm(n, generator=generator)
    target = torch.empty(n, dtype=torch.long)
    target[order] = order.roll(1)
    return target


MAX_ROWS = 2048  # rows (sentence x importance sample) per decoder pass
LOGITS_BUDGET = 2**27  # logits per decoder pass (512 MB in float32): bounds memory for large vocabularies
DECODE_BATCH = 256  # decoder rows (sentences x beam) per generate call: per-step overhead dominates small batches
Progress = Callable[[str, int, int], None]  # (stage, sentences done, sentences in all)


def rows_per_pass(seq_len: int, vocab: int) -> int:
    """Decoder rows per pass for sentences of `seq_len` tokens: large, but bounded by the logits' memory."""
    return max(1, min(MAX_ROWS, LOGITS_BUDGET // max(1, seq_len * vocab)))


@torch.inference_mode()
def evaluate(
    model: VAEModel, texts: Sequence[str], iw_samples: int = 100, batch_size: int = 32, seed: int = 0, bleu: bool = True,
    bf16: str = "auto", progress: Progress | None = None, samples: int = 0, beam: int = DECODE_BEAM, rerank: bool = DECODE_RERANK,
    refine: int = ENCODE_REFINE,
) -> dict[str, float]:
    """All metrics above over `texts`; returns a flat dict (see module docstring for units).

    `bf16` follows `vae finetune --bf16` (auto: models of 10M+ parameters where the hardware has bf16).
    `progress(stage, done, total)` is called after each batch; nothing here prints. `samples` > 0 adds the
    quality of that many prior samples (from the model's aggregate prior when it has one) and as many midpoints.
    The reconstructions (BLEU, exact match) decode the encoding (mu refined by `refine` steps) by beam search of width `beam` (1: greedy), chosen by the encoder
    among the beam's hypotheses with `rerank`, as `vae decode` does.
    """
    from vaecli.modeling.precision import use_bf16
    from vaecli.modeling.tokens import tokenize

    model.eval()
    report = progress or (lambda stage, done, total: None)
    autocast = torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=use_bf16(bf16, model.num_parameters()))
    generator = torch.Generator().manual_seed(seed)
    ids, truncated = tokenize(model.tokenizer, list(texts), model.config.max_length)
    targets = model.family.target_ids(list(texts), model.config.max_length) or ids
    n = len(ids)
    batches = length_batches([len(r) for r in ids], batch_size, 0, 0, shuffle=False)
    mu = torch.zeros(n, model.config.latent_dim)
    logvar = torch.zeros(n, model.config.latent_dim)
    z = torch.zeros(n, model.config.latent_dim)
    rec = torch.zeros(n)
    iw_nll = torch.zeros(n)
    tokens = done = hits = 0
    for rows in batches:
        x, mask = _padded(ids, rows, model.input_pad_id, model.device)
        y, y_mask = _padded(targets, rows, model.pad_id, model.device)
        with autocast:
            m, lv = model.posterior(x, mask)
            m, lv = m.float(), lv.float()
            zb = model.reparameterize(m, lv, generator)
            rec[rows] = model.reconstruction_nll(zb, y, y_mask)[0].float().cpu()
            iw_nll[rows] = importance_weighted_nll(model, m, lv, y, y_mask, iw_samples, generator).cpu()
            hits += int(model.token_hits(m, y, y_mask)[0].sum())
        mu[rows], logvar[rows], z[rows] = m.cpu(), lv.cpu(), zb.cpu()
        tokens += int((model.targets(y, y_mask)[1] != -100).sum())
        done += len(rows)
        report("importance samples", done, n)
    kl = kl_per_dim(mu, logvar).sum(dim=1)
    shuffled = torch.zeros(n)
    other = derangement(n, generator)
    done = 0
    for rows in batches:
        y, y_mask = _padded(targets, rows, model.pad_id, model.device)
        with autocast:
            shuffled[rows] = model.reconstruction_nll(z[other[rows]].to(model.device), y, y_mask)[0].float().cpu()
        done += len(rows)
        report("shuffle gap", done, n)
    words = sum(len(t.split()) for t in texts)
    result = {
        "sentences": n,
        "truncated": truncated,
        "rec": float(rec.mean()),
        "kl": float(kl.mean()),
        "elbo": float((rec + kl).mean()),
        "nll": float(iw_nll.mean()),
        "iw_samples": iw_samples,
        "ppl": math.exp(float(iw_nll.sum()) / max(tokens, 1)),
        "ppl_word": math.exp(float(iw_nll.sum()) / max(words, 1)),
        "tokens": tokens,
        "token_unit": token_unit(model),
        "words": words,
        # MI, AU and the shuffle gap compare sentences: with one they are not computable (None), never 0.
        "mi": mutual_information(mu, logvar, generator) if n >= 2 else None,
        "au": active_units(mu) if n >= 2 else None,
        "latent_dim": model.config.latent_dim,
        "shuffle_gap": float((shuffled - rec).mean()) if n >= 2 else None,
        "token_accuracy": hits / max(tokens, 1),
        "refine": refine,
        "token_accuracy_refined": None,
    }
    encoding = mu
    if refine > 0 and n:
        encoding = torch.from_numpy(refine_rows(model, mu.numpy(), targets, refine, batch_size,
                                                progress=lambda done, total: report("refined encodings", done, total)))
        refined_hits = 0
        for rows in batches:
            y, y_mask = _padded(targets, rows, model.pad_id, model.device)
            with autocast:
                refined_hits += int(model.token_hits(encoding[rows].to(model.device), y, y_mask)[0].sum())
        result["token_accuracy_refined"] = refined_hits / max(tokens, 1)
    # No autocast below: greedy steps are small, and casting cost more than bf16 saved (measured).
    if bleu or samples > 0:
        result.update(fluency_inputs=fluency(model, texts), words_inputs=words / max(n, 1))
    if bleu:
        result.update(reconstruction(model, targets, encoding, report, beam, rerank), beam=beam, rerank=rerank and beam > 1)
    if samples > 0:
        result.update(generation_quality(model, encoding.numpy(), samples, seed))
        report("prior samples and midpoints", 2 * samples, 2 * samples)
    # What cannot be computed (the fluency of no text at all) is None (null in JSON, n/a in the table), never a number.
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in result.items()}


def generation_quality(model: VAEModel, mu: np.ndarray, n: int, seed: int) -> dict[str, float | str | None]:
    """The quality of n prior samples and of n midpoints between the rows of mu (evaluation.fluency), flat."""
    from vaecli.evaluation.fluency import generated_quality, midpoints
    from vaecli.inference.latent import prior

    aggregate = getattr(model, "aggregate_prior", None)
    draws = aggregate.draw(n, seed=seed) if aggregate is not None else prior(model, n, seed=seed)
    result: dict[str, float | str | None] = {"prior": "aggregate" if aggregate is not None else "standard"}
    _, quality = generated_quality(model, draws, no_repeat_ngram=SAMPLE_NO_REPEAT_NGRAM)
    result.update({f"sample_{k}": v for k, v in quality.items()})
    if len(mu) >= 2:
        _, quality = generated_quality(model, midpoints(mu, n, seed))
        result.update({f"midpoint_{k}": v for k, v in quality.items()})
    else:  # a midpoint needs two sentences: not computable, null as MI, AU and the gap are (never a missing key)
        result.update({f"midpoint_{k}": None for k in quality})
    return result


def token_unit(model: VAEModel) -> str:
    """What PPL's tokens are: the decoder tokenizer's subwords (its vocabulary size names it)."""
    return f"per subword token of the decoder's {len(model.decoder_tokenizer):,}-piece vocabulary, EOS counted"


def _padded(ids: list[list[int]], rows: list[int], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    batch = pad_batch([ids[i] for i in rows], pad_id)
    return batch["input_ids"].to(device), batch["attention_mask"].to(device)


def importance_weighted_nll(
    model: VAEModel, mu: torch.Tensor, logvar: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, k: int, generator: torch.Generator
) -> torch.Tensor:
    """-log p(x) estimated with k importance samples from q(z|x), per sentence.

    All k x b draws are made at once, so the estimate does not depend on how many rows a pass holds;
    each decoder pass holds as many samples as rows_per_pass allows.
    """
    b = mu.shape[0]
    log_w = torch.empty(b, k, device=mu.device)
    eps = randn((k, b, mu.shape[1]), generator, mu.device)
    vocab = len(model.decoder_tokenizer)  # ~ the logits' width: a memory estimate is all it needs
    chunk = max(1, rows_per_pass(x.shape[1], vocab) // max(b, 1))  # samples per decoder pass
    for start in range(0, k, chunk):
        c = min(chunk, k - start)
        zs = mu.unsqueeze(0) + torch.exp(0.5 * logvar).unsqueeze(0) * eps[start : start + c]  # (c, b, d)
        flat = zs.reshape(c * b, -1)
        rec, _ = model.reconstruction_nll(flat, x.repeat(c, 1), mask.repeat(c, 1))
        log_pz = log_normal(flat, torch.zeros_like(flat), torch.zeros_like(flat))
        log_qz = log_normal(flat, mu.repeat(c, 1), logvar.repeat(c, 1))
        log_w[:, start : start + c] = (-rec.float() + log_pz - log_qz).view(c, b).t()
    return -(torch.logsumexp(log_w, dim=1) - math.log(k))


def reconstruction(model: VAEModel, ids: list[list[int]], mu: torch.Tensor, progress: Progress | None = None,
                   beam: int = DECODE_BEAM, rerank: bool = DECODE_RERANK) -> dict[str, float]:
    """Decode mu (beam search of width `beam`, 1: greedy; with `rerank`, chosen by the encoder): corpus BLEU and exact match against the input as the decoder's
    tokenizer normalises it."""
    tok = model.decoder_tokenizer
    refs = [t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True)]
    hyps = [""] * len(ids)
    done = 0
    for rows in length_batches([len(r) for r in ids], max(1, DECODE_BATCH // beam), 0, 0, shuffle=False):
        # Similar lengths together: a batch stops as soon as its longest reconstruction ends. The decoder runs
        # DECODE_BATCH rows at a time whatever the beam (memory for the logits stays bounded).
        out = generate(model, mu[rows].to(model.device), model.config.max_length, beam=beam, rerank=rerank)
        for i, text in zip(rows, tok.batch_decode(out, skip_special_tokens=True)):
            hyps[i] = text.strip()
        done += len(rows)
        if progress is not None:
            progress("reconstructions", done, len(ids))
    exact = sum(" ".join(h.split()) == " ".join(r.split()) for h, r in zip(hyps, refs))
    return {"bleu": corpus_bleu(hyps, refs), "exact_match": exact / max(len(ids), 1), "fluency_reconstructions": fluency(model, [h for h in hyps if h])}
