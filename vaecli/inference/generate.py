"""Decoding z into token ids: greedy, beam search and nucleus sampling, with a KV cache.

One loop serves all three injections: the model's `decode_state(z)` gives the memory and a
(possibly pre-filled) cache, and `decoder_logits` feeds one new token per step. The only Python
loop is over time steps; rows of a batch never interact (beam search reorders rows within each
sentence's own beams).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from vaecli.modeling.randomness import multinomial
from vaecli.modeling.vae import VAEModel


def _nucleus(logits: torch.Tensor, top_p: float, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    probs = torch.softmax(logits / max(temperature, 1e-6), dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest set whose mass reaches top_p (the first token always stays).
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return multinomial(probs, generator).squeeze(-1)


def ban_repeats(logits: torch.Tensor, history: torch.Tensor, n: int) -> torch.Tensor:
    """Logits with -inf on every token that would repeat an n-gram already in its own row of history
    (the rows' generated tokens so far); n < 1 bans nothing. Rows never see each other's history."""
    if n < 1 or history.shape[1] < n:  # no n-gram yet to repeat
        return logits
    if n == 1:
        return logits.scatter(1, history, -torch.inf)
    windows = history.unfold(1, n, 1)  # (rows, t - n + 1, n): every n-gram so far
    match = (windows[:, :, :-1] == history[:, -(n - 1):].unsqueeze(1)).all(dim=-1)
    rows, starts = match.nonzero(as_tuple=True)
    if rows.numel() == 0:
        return logits
    logits = logits.clone()
    logits[rows, windows[rows, starts, -1]] = -torch.inf
    return logits


@torch.inference_mode()
def generate(
    model: VAEModel,
    z: torch.Tensor,
    max_new_tokens: int,
    beam: int = 1,
    sample: bool = False,
    top_p: float = 1.0,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    no_repeat_ngram: int = 0,
    rerank: bool = False,
) -> list[list[int]]:
    """Token ids (without the start token, up to and excluding EOS) for each row of z; with
    no_repeat_ngram = n, no row repeats an n-token sequence of its own (a guard against loops); with `rerank` (beam
    search only), each row's hypothesis is chosen from its beam's pool by the encoder (inference.rerank)."""
    if beam > 1 and not sample:
        return _beam_search(model, z, max_new_tokens, beam, no_repeat_ngram, rerank)
    b = z.shape[0]
    state = model.decode_state(z)
    last = torch.full((b, 1), model.start_id, dtype=torch.long, device=z.device)
    done = torch.zeros(b, dtype=torch.bool, device=z.device)
    steps = []
    for _ in range(max_new_tokens):
        logits = model.decoder_logits(state, last)[:, -1].float()
        if no_repeat_ngram > 0 and steps:
            logits = ban_repeats(logits, torch.stack(steps, dim=1), no_repeat_ngram)
        if sample:
            token = _nucleus(logits, top_p, temperature, generator)
        else:
            token = logits.argmax(dim=-1)
        token = token.masked_fill(done, model.pad_id)
        steps.append(token)
        done |= token == model.eos_id
        if bool(done.all()):
            break
        last = token.unsqueeze(1)
    return strip_ids(torch.stack(steps, dim=1) if steps else last[:, :0], model)


def _beam_search(model: VAEModel, z: torch.Tensor, max_new_tokens: int, k: int, no_repeat_ngram: int = 0,
                 rerank: bool = False) -> list[list[int]]:
    """The best hypothesis of beam_search for each row, or with `rerank` the one rerank.choose picks from its pool."""
    ids, scores = beam_search(model, z, max_new_tokens, k, no_repeat_ngram, keep=k if rerank else 1)
    if rerank:
        from vaecli.inference.rerank import choose

        return choose(model, z, [strip_ids(ids[:, j], model) for j in range(k)], scores)
    return strip_ids(ids[:, 0], model)


def beam_search(model: VAEModel, z: torch.Tensor, max_new_tokens: int, k: int, no_repeat_ngram: int = 0,
                keep: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Beam search with length-normalised scores (sum of log-probs / tokens): (rows, keep, max_new_tokens) ids and (rows,
    keep) scores of each row's best `keep` hypotheses, best first (-inf where fewer were found).

    A hypothesis that ends leaves the beam for its row's pool, which keeps the best `keep` ended ones (a tie keeps the one
    that ended first), so the k beams always hold running hypotheses; and an ended one ranks above every one cut at
    `max_new_tokens`: a loop of likely tokens ("unfier and uncometly-A unfier and ...") has a high mean log-prob and would
    otherwise win. A row stops growing its pool once its best ended hypothesis scores at least its best running one (the
    running ones are all as long): from then on nothing changes its best, so no row depends on how long the others run.
    A row where none ended gets its best running hypothesis, cut at the limit, first (and -inf after it)."""
    b, device = z.shape[0], z.device
    state = model.decode_state(z.repeat_interleave(k, dim=0))
    scores = torch.zeros(b, k, device=device)
    scores[:, 1:] = -torch.inf  # all beams start identical: expand only the first
    seqs = torch.empty(b * k, 0, dtype=torch.long, device=device)
    last = torch.full((b * k, 1), model.start_id, dtype=torch.long, device=device)
    offsets = (torch.arange(b, device=device) * k).unsqueeze(1)
    done_score = torch.full((b, keep), -torch.inf, device=device)  # per row: the best ended hypotheses' mean log-probs
    done_seq = torch.full((b, keep, max_new_tokens), model.pad_id, dtype=torch.long, device=device)
    stopped = torch.zeros(b, dtype=torch.bool, device=device)
    for step in range(max_new_tokens):
        logp = torch.log_softmax(model.decoder_logits(state, last)[:, -1].float(), dim=-1)
        logp = ban_repeats(logp, seqs, no_repeat_ngram)
        vocab = logp.shape[-1]
        candidates = scores.view(-1, 1) + logp  # (b * k, vocab)
        ending = (candidates[:, model.eos_id] / (step + 1)).view(b, k).masked_fill(stopped.unsqueeze(1), -torch.inf)
        if bool((ending > done_score[:, -1:]).any()):
            ended = torch.cat([seqs, torch.full((b * k, 1), model.eos_id, device=device)], dim=1)
            ended = F.pad(ended, (0, max_new_tokens - ended.shape[1]), value=model.pad_id).view(b, k, max_new_tokens)
            pooled, order = torch.cat([done_score, ending], dim=1).sort(dim=1, descending=True, stable=True)
            done_score = pooled[:, :keep]
            done_seq = torch.cat([done_seq, ended], dim=1).gather(1, order[:, :keep, None].expand(-1, -1, max_new_tokens))
        candidates[:, model.eos_id] = -torch.inf  # ended hypotheses are in the pool, not the beam
        scores, index = candidates.view(b, k * vocab).topk(k, dim=1)
        rows = (offsets + torch.div(index, vocab, rounding_mode="floor")).view(-1)
        token = (index % vocab).view(-1)
        seqs = torch.cat([seqs.index_select(0, rows), token.unsqueeze(1)], dim=1)
        state.select(rows)
        last = token.unsqueeze(1)
        stopped |= done_score[:, 0] >= scores.max(dim=1).values / (step + 1)
        if bool(stopped.all()):
            break
    none = ~torch.isfinite(done_score[:, 0])
    if bool(none.any()):  # the best running one, cut at the limit, where none ended
        best = scores.max(dim=1)
        cut = F.pad(seqs.index_select(0, offsets.squeeze(1) + best.indices), (0, max_new_tokens - seqs.shape[1]), value=model.pad_id)
        done_seq[none, 0] = cut[none]
        done_score[none, 0] = best.values[none] / max(seqs.shape[1], 1)
    return done_seq, done_score


def strip_ids(ids: torch.Tensor, model: VAEModel) -> list[list[int]]:
    """Rows of generated ids as lists, cut at the first EOS, padding dropped."""
    out = []
    for row in ids.tolist():
        if model.eos_id in row:
            row = row[: row.index(model.eos_id)]
        out.append([t for t in row if t != model.pad_id])
    return out
