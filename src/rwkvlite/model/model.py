"""The one RWKV model: embedding -> blocks of (time-mix, channel-mix) -> ln_out -> head.

Parameter names are BlinkDL's, so a real `.pth` loads with strict=True.
`model(tokens, state)` runs T tokens at once (chunked WKV) or, when T == 1, the
one-token recurrence; both carry the same `State`, so long texts can be fed in pieces.
"""
from __future__ import annotations

import torch
from torch import nn

from . import rwkv4, rwkv5, rwkv6, rwkv7
from .common import wide
from .config import RWKVConfig
from .state import State

GENERATIONS = {"4": rwkv4, "5.0": rwkv5, "5.1": rwkv5, "5.2": rwkv5, "6": rwkv6, "7": rwkv7}


class Block(nn.Module):
    def __init__(self, cfg: RWKVConfig, layer_id: int):
        super().__init__()
        gen = GENERATIONS[cfg.version]
        if layer_id == 0:
            self.ln0 = nn.LayerNorm(cfg.n_embd)  # normalises the embedding
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.att = gen.TimeMix(cfg, layer_id)
        self.ffn = gen.ChannelMix(cfg, layer_id)

    def forward(self, x, att_shift, wkv, ffn_shift, v_first):
        if hasattr(self, "ln0"):
            x = self.ln0(x)
        h, att_shift, wkv, v_first = self.att(self.ln1(x), att_shift, wkv, v_first)
        x = x + h
        h, ffn_shift = self.ffn(self.ln2(x), ffn_shift)
        return x + h, att_shift, wkv, ffn_shift, v_first


class RWKV(nn.Module):
    """An RWKV-4/5/6/7 language model.

    >>> model = RWKV(RWKVConfig("7", n_layer=2, n_embd=64, vocab_size=256, head_size=32))
    >>> logits, state = model(torch.tensor([[1, 2, 3]]))
    >>> logits.shape
    torch.Size([1, 3, 256])
    """

    def __init__(self, config: RWKVConfig):
        super().__init__()
        self.config = config
        self.emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_out = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)

    def zero_state(self, batch: int = 1) -> State:
        return State.zeros(self.config, batch, device=self.emb.weight.device, dtype=self.emb.weight.dtype)

    def forward(self, tokens: torch.Tensor, state: State | None = None, *, last_only: bool = False):
        """tokens [B, T] -> (logits [B, T, V] at least float32, or [B, 1, V] with last_only; new state).

        The incoming state is not modified.
        """
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [batch, time], got shape {tuple(tokens.shape)}")
        state = state if state is not None else self.zero_state(tokens.shape[0])
        x = self.emb(tokens)
        new = State([], [], [])
        v_first = None
        for i, block in enumerate(self.blocks):
            x, att_shift, wkv, ffn_shift, v_first = block(
                x, state.att_shift[i], state.wkv[i], state.ffn_shift[i], v_first)
            new.att_shift.append(att_shift)
            new.wkv.append(wkv)
            new.ffn_shift.append(ffn_shift)
        if last_only:
            x = x[:, -1:]
        return wide(self.head(self.ln_out(x))), new
