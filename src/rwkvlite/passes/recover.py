"""Recovery training (RWKV-Lite, arXiv 2412.10856, section 3.1): after the low-rank pass,
distil the model towards the original, KL(original || model) on text, training only the
low-rank factors (and diagonals) and ln_out (lowrank.RECOVERY_TRAINABLE)."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import DataError, RWKVLiteError
from ..train import TrainConfig
from ..train.data import TokenData
from ..train.trainer import distill
from ..utils.paths import expand
from .base import Context, PassConfig, PassResult, register
from .calibrate import WHOLE_TEXT
from .lowrank import RECOVERY_TRAINABLE


@dataclass(frozen=True)
class RecoverConfig(PassConfig):
    """steps, lr (cosine to lr / 10), ctx_len, batch_size of the distillation; files: the
    text it trains on (default: the driver's calibration file)."""

    steps: int = 150
    lr: float = 1e-3
    ctx_len: int = 256
    batch_size: int = 4
    files: tuple | list | None = None

    def __post_init__(self):
        super().__post_init__()
        for option in ("steps", "ctx_len", "batch_size"):
            self.require(getattr(self, option) >= 1, f"{option} must be at least 1, not {getattr(self, option)}")
        self.require(self.lr > 0, f"lr must be positive, not {self.lr}")
        self.require(self.files is None or (isinstance(self.files, (list, tuple)) and self.files
                                            and all(isinstance(f, str) for f in self.files)),
                     f"files must be a list of text file paths, not {self.files!r}")


@register("recover", RecoverConfig)
def recover(model, cfg: RecoverConfig, ctx: Context) -> PassResult:
    """Distil `model` towards ctx.original() on cfg.files (or the calibration file), in place."""
    files = list(cfg.files or ([ctx.calibration] if ctx.calibration != "self" else []))
    if not files:
        raise DataError("the recover pass trains on text: give --calibration FILE or recover.files in the recipe")
    if ctx.original is None or ctx.tokenizer is None:
        raise RWKVLiteError("the recover pass needs the original model and a tokenizer: run it through compress()")
    steps, lr = cfg.steps, cfg.lr
    train = TrainConfig(train_files=tuple(files), out_dir="", ctx_len=cfg.ctx_len, batch_size=cfg.batch_size,
                        max_steps=steps, lr=lr, lr_final=lr / 10, warmup_steps=min(20, steps // 5 + 1),
                        eval_interval=steps, eval_tokens=8192, weight_decay=0.0)
    # a large corpus is read as windows: at least 16 MiB, 64 bytes for each token the steps see
    data = TokenData([expand(f) for f in files], ctx.tokenizer(), train.val_fraction,
                     max_bytes=max(WHOLE_TEXT, 64 * steps * cfg.batch_size * cfg.ctx_len))
    history = distill(model, ctx.original(), data, RECOVERY_TRAINABLE, train, progress=ctx.show_training)
    return PassResult({"pass": "recover", "steps": steps, "lr": lr, "files": files,
                       "kl_start": history["train_loss"][0], "kl_end_train": history["train_loss"][-1],
                       "kl_val": history["val_loss"][-1]})
