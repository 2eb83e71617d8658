"""Decoding z into token ids: greedy, beam search and nucleus sampling, with a KV cache.

One loop serves all three injections: the model's `decode_state(z)` gives the memory and a
(possibly pre-filled) cache, and `decoder_logits` feeds one new token per step. The only Python
loop is over time steps; rows of a batch never interact (beam search reorders rows within each
sentence's own beams).
"""

from __future__ import annotations

import torch

from vaecli.modeling.vae import VAEModel


def _nucleus(logits: torch.Tensor, top_p: float, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    probs = torch.softmax(logits / max(temperature, 1e-6), dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest set whose mass reaches top_p (the first token always stays).
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


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
) -> list[list[int]]:
    """Token ids (without the start token, up to and excluding EOS) for each row of z; with
    no_repeat_ngram = n, no row repeats an n-token sequence of its own (a guard against loops)."""
    if beam > 1 and not sample:
        return _beam_search(model, z, max_new_tokens, beam, no_repeat_ngram)
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


def _beam_search(model: VAEModel, z: torch.Tensor, max_new_tokens: int, k: int, no_repeat_ngram: int = 0) -> list[list[int]]:
    """Beam search with length-normalised final scores (sum of log-probs / tokens)."""
    b, device = z.shape[0], z.device
    state = model.decode_state(z.repeat_interleave(k, dim=0))
    scores = torch.zeros(b, k, device=device)
    scores[:, 1:] = -torch.inf  # all beams start identical: expand only the first
    finished = torch.zeros(b * k, dtype=torch.bool, device=device)
    lengths = torch.zeros(b * k, device=device)
    seqs = torch.empty(b * k, 0, dtype=torch.long, device=device)
    last = torch.full((b * k, 1), model.start_id, dtype=torch.long, device=device)
    offsets = (torch.arange(b, device=device) * k).unsqueeze(1)
    for _ in range(max_new_tokens):
        logp = torch.log_softmax(model.decoder_logits(state, last)[:, -1].float(), dim=-1)
        logp = ban_repeats(logp, seqs, no_repeat_ngram)
        vocab = logp.shape[-1]
        # A finished beam continues only with padding, at no cost, so it keeps its score.
        logp = torch.where(finished.unsqueeze(1), torch.full_like(logp, -torch.inf), logp)
        logp[finished, model.pad_id] = 0.0
        candidates = (scores.view(-1, 1) + logp).view(b, k * vocab)
        scores, index = candidates.topk(k, dim=1)
        rows = (offsets + torch.div(index, vocab, rounding_mode="floor")).view(-1)
        token = (index % vocab).view(-1)
        seqs = torch.cat([seqs.index_select(0, rows), token.unsqueeze(1)], dim=1)
        was_finished = finished.index_select(0, rows)
        lengths = lengths.index_select(0, rows) + (~was_finished).float()
        finished = was_finished | (token == model.eos_id)
        state.select(rows)
        last = token.unsqueeze(1)
        if bool(finished.all()):
            break
    normalised = (scores.view(-1) / lengths.clamp(min=1)).view(b, k)
    best = (offsets.squeeze(1) + normalised.argmax(dim=1))
    return strip_ids(seqs.index_select(0, best), model)


def strip_ids(ids: torch.Tensor, model: VAEModel) -> list[list[int]]:
    """Rows of generated ids as lists, cut at the first EOS, padding dropped."""
    out = []
    for row in ids.tolist():
        if model.eos_id in row:
            row = row[: row.index(model.eos_id)]
        out.append([t for t in row if t != model.pad_id])
    return out
