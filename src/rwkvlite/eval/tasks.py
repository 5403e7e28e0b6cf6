"""Quality tasks: perplexity and bits per byte, LAMBADA, PIQA, and fidelity to a reference model.

Each returns a dict of figures plus the settings that produced them.
"""
from __future__ import annotations

import math

import torch
from tqdm import tqdm

from ..tokenizer import DOC_SEPARATOR as BOS
from .scoring import chunk_logprobs, continuation, kl_divergence


def perplexity(model, tokenizer, text: str, ctx: int = 512, stateful: bool = True, limit: int | None = None,
               progress: bool = True) -> dict:
    """Token perplexity and bits per byte of `text`, every token scored after a leading token 0.

    bits/byte = sum of NLL (nats) / ln 2 / UTF-8 bytes of the scored text, so byte-level and
    BPE models compare. limit: score only the first `limit` tokens.
    """
    tokens = tokenizer.encode(text)
    if limit:
        tokens = tokens[:limit]
    n_bytes = len(tokenizer.decode_bytes(tokens))
    tokens = [BOS] + tokens
    nll, count = 0.0, 0
    bar = tqdm(total=len(tokens) - 1, desc="perplexity", unit="tok", disable=not progress, leave=False)
    for logp, targets in chunk_logprobs(model, tokens, ctx, stateful):
        nll -= logp.gather(1, targets[:, None]).double().sum().item()
        count += len(targets)
        bar.update(len(targets))
    bar.close()
    return {"tokens": count, "bytes": n_bytes, "nll": nll / count, "ppl": math.exp(nll / count),
            "bits_per_byte": nll / math.log(2) / n_bytes, "ctx": ctx, "stateful": stateful}


def lambada(model, tokenizer, items, limit: int | None = None, progress: bool = True) -> dict:
    """BlinkDL's LAMBADA protocol: score " " + last word after [0] + context.

    ppl = exp(-mean over items of log p(word tokens)); an item is correct only if every word
    token is the greedy choice. lm-evaluation-harness's lambada_openai splits and scores the
    same way (context and " " + word tokenised separately, greedy on all tokens, ppl over
    items); it differs in not putting token 0 before the context.
    """
    items = items[:limit] if limit else items
    total_logp, correct = 0.0, 0
    for context, word in tqdm(items, desc="lambada", disable=not progress, leave=False):
        logp, greedy = continuation(model, [BOS] + tokenizer.encode(context), tokenizer.encode(" " + word))
        total_logp += logp
        correct += greedy
    return {"items": len(items), "ppl": math.exp(-total_logp / len(items)), "accuracy": correct / len(items)}


def piqa(model, tokenizer, items, limit: int | None = None, progress: bool = True) -> dict:
    """Zero-shot PIQA: pick the solution with the higher log-likelihood per byte (acc_norm)."""
    items = items[:limit] if limit else items
    correct = correct_raw = 0
    for goal, solutions, label in tqdm(items, desc="piqa", disable=not progress, leave=False):
        context = [BOS] + tokenizer.encode(f"Question: {goal}\nAnswer:")
        scores, raw = [], []
        for sol in solutions:
            logp, _ = continuation(model, context, tokenizer.encode(" " + sol))
            raw.append(logp)
            scores.append(logp / max(1, len((" " + sol).encode("utf-8"))))
        correct += int(max(range(2), key=scores.__getitem__) == label)
        correct_raw += int(max(range(2), key=raw.__getitem__) == label)
    return {"items": len(items), "accuracy_norm": correct / len(items), "accuracy": correct_raw / len(items)}


@torch.no_grad()
def fidelity(reference, candidate, tokenizer, text: str, ctx: int = 512, limit: int | None = None,
             progress: bool = True) -> dict:
    """How closely `candidate` follows `reference` on the same text (both stateful).

    mean KL(reference || candidate) per token in nats, top-1 agreement, and the ratio of
    perplexities (candidate / reference): the figures llama.cpp's KL-divergence tool reports.
    """
    tokens = [BOS] + tokenizer.encode(text)[: limit or None]
    kl = agree = nll_ref = nll_cand = 0.0
    count = 0
    pairs = zip(chunk_logprobs(reference, tokens, ctx), chunk_logprobs(candidate, tokens, ctx))
    bar = tqdm(total=len(tokens) - 1, desc="fidelity", unit="tok", disable=not progress, leave=False)
    for (lp_ref, targets), (lp_cand, _) in pairs:
        kl += kl_divergence(lp_ref, lp_cand).clamp_min(0).double().sum().item()
        agree += (lp_ref.argmax(-1) == lp_cand.argmax(-1)).sum().item()
        nll_ref -= lp_ref.gather(1, targets[:, None]).double().sum().item()
        nll_cand -= lp_cand.gather(1, targets[:, None]).double().sum().item()
        count += len(targets)
        bar.update(len(targets))
    bar.close()
    return {"tokens": count, "kl_mean": kl / count, "top1_agreement": agree / count,
            "ppl_ratio": math.exp((nll_cand - nll_ref) / count)}
