"""The recurrent state carried between calls, for every generation.

Per layer:
  att_shift [B, C]  the last token's ln1 output (token shift of the time-mix)
  wkv               the WKV memory:
                      v4      [B, 3, C]     (aa, bb, pp): numerator, denominator, shared exponent
                      v5, v6  [B, H, N, N]  sum of k^T v, indexed [key, value]
                      v7      [B, H, N, N]  indexed [value, key] as in BlinkDL's code
  ffn_shift [B, C]  the last token's ln2 output (token shift of the channel-mix)
The WKV memory is float32 (float64 for a float64 model); the shifts have the model's dtype.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class State:
    att_shift: list[torch.Tensor]
    wkv: list[torch.Tensor]
    ffn_shift: list[torch.Tensor]

    @classmethod
    def zeros(cls, config, batch: int, device=None, dtype=torch.float32) -> "State":
        c, n_layer = config.n_embd, config.n_layer
        wkv_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        shift = lambda: torch.zeros(batch, c, device=device, dtype=dtype)  # noqa: E731
        if config.version == "4":
            wkv = []
            for _ in range(n_layer):
                s = torch.zeros(batch, 3, config.dim_att, device=device, dtype=wkv_dtype)
                s[:, 2] = -1e38  # pp: log-scale of an empty sum
                wkv.append(s)
        else:
            h, n = config.n_head, config.head_size
            wkv = [torch.zeros(batch, h, n, n, device=device, dtype=wkv_dtype) for _ in range(n_layer)]
        return cls([shift() for _ in range(n_layer)], wkv, [shift() for _ in range(n_layer)])

    @property
    def batch_size(self) -> int:
        return self.att_shift[0].shape[0]

    def clone(self) -> "State":
        return State(*([t.clone() for t in part] for part in (self.att_shift, self.wkv, self.ffn_shift)))

    def detach(self) -> "State":
        return State(*([t.detach() for t in part] for part in (self.att_shift, self.wkv, self.ffn_shift)))

    def tensors(self) -> list[torch.Tensor]:
        return [*self.att_shift, *self.wkv, *self.ffn_shift]
