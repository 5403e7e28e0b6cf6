"""Model configuration, inferred from the weights' shapes (never from file names)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

VERSIONS = ("4", "5.0", "5.1", "5.2", "6", "7")


@dataclass(frozen=True)
class RWKVConfig:
    """Sizes of one RWKV model.

    version: "4", "5.0", "5.1", "5.2", "6" or "7".
    dim_att: width of r/k/v inside the time-mix (BlinkDL's `dim_att`, usually n_embd).
    head_size: channels per WKV head; 1 for RWKV-4, whose WKV is per channel.
    dim_ffn: hidden width of the channel-mix.
    The lora_* sizes are the inner widths of the small "LoRA-like" matrices
    (0 where the generation has none):
      v6: lora_mix = time_maa_w1's width / 5, lora_decay = time_decay_w1's width;
      v7: lora_decay = w1, lora_a = a1, lora_v = v1, lora_gate = g1 widths.
    ln_x_eps: epsilon of the per-head GroupNorm after the WKV.

    >>> RWKVConfig("7", n_layer=12, n_embd=768, vocab_size=65536, head_size=64).n_head
    12
    """

    version: str
    n_layer: int
    n_embd: int
    vocab_size: int
    head_size: int = 64
    dim_att: int = 0  # 0 means n_embd
    dim_ffn: int = 0  # 0 means the version's default (4x or 3.5x width)
    lora_mix: int = 0
    lora_decay: int = 0
    lora_a: int = 0
    lora_v: int = 0
    lora_gate: int = 0
    # GroupNorm epsilon of ln_x (v5-v7). BlinkDL trains with 1e-5 * 8**2; rwkv.cpp's
    # v5 graph uses 1e-5, so models read from rwkv.cpp v5 files carry that value.
    ln_x_eps: float = 64e-5

    def __post_init__(self):
        if self.version not in VERSIONS:
            raise ValueError(f"unknown RWKV version {self.version!r}; expected one of {VERSIONS}")
        if self.dim_att == 0:
            object.__setattr__(self, "dim_att", self.n_embd)
        if self.dim_ffn == 0:
            # v6 uses 3.5x rounded to a multiple of 32; the others 4x.
            ffn = int(self.n_embd * 3.5) // 32 * 32 if self.version == "6" else 4 * self.n_embd
            object.__setattr__(self, "dim_ffn", ffn)
        if self.version == "4":
            object.__setattr__(self, "head_size", 1)
        for name, size in self._default_lora().items():
            if getattr(self, name) == 0:
                object.__setattr__(self, name, size)
        if self.dim_att % self.head_size:
            raise ValueError(f"dim_att {self.dim_att} is not a multiple of head_size {self.head_size}")

    def _default_lora(self) -> dict:
        """BlinkDL's default LoRA widths for a new model of this width (used when not given)."""
        if self.version == "6":
            return {"lora_mix": 32, "lora_decay": 64}
        if self.version != "7":
            return {}
        c = self.n_embd
        width = lambda factor, power: max(32, int(round(factor * c**power / 32)) * 32)  # noqa: E731
        return {"lora_decay": width(1.8, 0.5), "lora_a": width(1.8, 0.5),
                "lora_v": width(1.3, 0.5), "lora_gate": width(0.6, 0.8)}

    @property
    def n_head(self) -> int:
        return self.dim_att // self.head_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RWKVConfig":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
