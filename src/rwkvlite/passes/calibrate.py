"""Block-by-block calibration, as GPTQ does it: capture block i's inputs, accumulate the
Hessian H = 2 X^T X of every linear layer in it, let the caller quantise the block, then
run the quantised block to produce block i+1's inputs. Only one block's activations (and
RWKV-7's v_first) are held at a time.

Calibration text: a file, or text the model writes itself from a short seed (data-free).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..errors import DataError
from ..eval.data import read_text_or_windows
from ..model.state import State
from ..tokenizer import tokenizer_for
from ..utils.paths import expand
from .gptq import Hessian

WHOLE_TEXT = 16 << 20  # bytes: a calibration text up to this size is read whole, a larger one in windows


def calibration_tokens(tokenizer, text: str, n_seq: int, seq_len: int) -> torch.Tensor:
    """n_seq windows of seq_len tokens from evenly spread places in text (deterministic)."""
    ids = tokenizer.encode(text)
    if len(ids) < seq_len + 1:
        raise ValueError(f"calibration text has {len(ids)} tokens, fewer than one window of {seq_len}")
    starts = torch.linspace(0, len(ids) - seq_len - 1, n_seq).long().tolist()
    return torch.tensor([ids[s:s + seq_len] for s in starts])


def window_tokens(tokenizer, pieces: list[str], seq_len: int) -> torch.Tensor:
    """seq_len tokens from each piece of a text (eval.data.read_windows), after the piece's
    first token, which may be the end of a word cut in two."""
    rows = []
    for piece in pieces:
        ids = tokenizer.encode(piece)[1:seq_len + 1]
        if len(ids) < seq_len:
            raise ValueError(f"a window of {len(piece.encode())} bytes has {len(ids)} tokens, fewer than {seq_len}")
        rows.append(ids)
    return torch.tensor(rows)


def calibration_text(path: str, n_seq: int, seq_len: int) -> str | list[str]:
    """What calibration reads of a text file: all of it, or from a file over WHOLE_TEXT bytes
    (a corpus) n_seq evenly spread windows of 16 bytes a token, not the whole file."""
    return read_text_or_windows(path, WHOLE_TEXT, n_seq, 16 * seq_len + 64)


def calibration_set(model, calibration: str, n_seq: int, seq_len: int, tokenizer=None, seed: int = 0,
                    text: str | list[str] | None = None) -> torch.Tensor:
    """Calibration tokens [n_seq, seq_len]: 'self' (text the model writes itself) or a text
    file (`text`: what calibration_text read of it, if already read): n_seq windows evenly
    spread over the text."""
    if calibration == "self":
        return self_generated_tokens(model, n_seq, seq_len, seed=seed)
    path = expand(calibration)
    tok = tokenizer or tokenizer_for(model.config)
    text = text if text is not None else calibration_text(path, n_seq, seq_len)
    try:
        return window_tokens(tok, text, seq_len) if isinstance(text, list) else calibration_tokens(tok, text, n_seq,
                                                                                                   seq_len)
    except ValueError as e:
        raise DataError(f"{path}: {e}") from None


@torch.no_grad()
def self_generated_tokens(model, n_seq: int, seq_len: int, seed: int = 0, temperature: float = 1.0) -> torch.Tensor:
    """Data-free calibration: the model samples n_seq sequences of its own, from token 0."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(n_seq, seq_len, dtype=torch.long)
    logits, state = model(tokens[:, :1])
    for t in range(1, seq_len):
        probs = torch.softmax(logits[:, -1].float() / temperature, -1)
        tokens[:, t] = torch.multinomial(probs, 1, generator=g)[:, 0]
        logits, state = model(tokens[:, t:t + 1], state)
    return tokens


@torch.no_grad()
def run_observed(model, tokens: torch.Tensor, hooks: list, batch: int = 8) -> None:
    """Run the model over tokens [N, T] in batches with temporary hooks: (module, fn, "pre")
    for forward pre-hooks fn(module, inputs), (module, fn, "post") for fn(module, inputs, output)."""
    handles = [m.register_forward_pre_hook(fn) if kind == "pre" else m.register_forward_hook(fn)
               for m, fn, kind in hooks]
    try:
        for s in range(0, tokens.shape[0], batch):
            model(tokens[s:s + batch])
    finally:
        for h in handles:
            h.remove()


def fit_samples(params, n: int, loss_of, steps: int, lr: float, batch: int, seed: int = 0) -> list[float]:
    """Adam on random minibatches of n precomputed samples; loss_of(indices) -> scalar loss.
    The small heads the passes train (predictor MLPs, cluster scorer) all fit this way."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    with torch.enable_grad():
        for _ in range(steps):
            loss = loss_of(torch.randint(n, (min(batch, n),), generator=g))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


def _run_block(block, config, x, v_first, batch):
    """Block over x [N, T, C] from an empty state, in batches; returns (outputs, v_first)."""
    outs, firsts = [], []
    for i in range(0, x.shape[0], batch):
        xb = x[i:i + batch]
        s = State.zeros(config, xb.shape[0], device=xb.device, dtype=xb.dtype)
        vb = None if v_first is None else v_first[i:i + batch]
        y, _, _, _, vb = block(xb, s.att_shift[0], s.wkv[0], s.ffn_shift[0], vb)
        outs.append(y)
        firsts.append(vb)
    return torch.cat(outs), (torch.cat(firsts) if firsts[0] is not None else None)


@torch.no_grad()
def quantize_blockwise(model, tokens: torch.Tensor, quantize_layer: Callable[[str, nn.Linear, torch.Tensor], dict],
                       select: Callable[[str], bool], batch: int = 8, progress=None) -> list[dict]:
    """Calibrate on `tokens` [N, T] and call quantize_layer(name, linear, H) for every nn.Linear
    of every block (then the head) whose weight's full name passes `select`; returns the
    reports in order."""
    model.eval()
    x = model.emb(tokens)
    v_first, reports = None, []
    for i, block in enumerate(model.blocks):
        linears = {f"blocks.{i}.{n}": m for n, m in block.named_modules() if isinstance(m, nn.Linear)
                   and select(f"blocks.{i}.{n}.weight")}
        hessians = {n: Hessian(m.in_features, device=x.device) for n, m in linears.items()}
        hooks = [m.register_forward_pre_hook(lambda mod, inp, n=n: hessians[n].add_batch(inp[0]))
                 for n, m in linears.items()]
        _run_block(block, model.config, x, v_first, batch)
        for h in hooks:
            h.remove()
        for name, linear in linears.items():
            reports.append(quantize_layer(name + ".weight", linear, hessians[name].H))
        x, v_first = _run_block(block, model.config, x, v_first, batch)  # inputs of the next block
        if progress:
            progress(i + 1, len(model.blocks))
    if select("head.weight"):  # the head sees ln_out of the last block's (quantised) outputs
        hessian = Hessian(model.head.in_features, device=x.device)
        hessian.add_batch(model.ln_out(x))
        reports.append(quantize_layer("head.weight", model.head, hessian.H))
    return reports
