"""Training and distillation: one optimisation loop, two losses.

train(config)      next-token cross-entropy, from scratch (BlinkDL init) or from a checkpoint.
distill(...)       KL(teacher || student) on the same kind of batches, only chosen parameters
                   trainable: the recovery step after low-rank factorisation, and the training
                   of small added parts such as a cluster head.
The model is the same `RWKV` module inference uses. fp32 on CPU; bf16 autocast on CUDA
(the WKV kernels always compute in float32).
"""
from __future__ import annotations

import json
import math
import os
import re
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..eval.scoring import kl_divergence
from ..loaders import load_model, resolve_device, save_model
from ..model import RWKV, RWKVConfig
from ..tokenizer import load_tokenizer
from ..utils.io import atomic_path
from ..utils.paths import expand
from .config import TrainConfig
from .data import TokenData
from .init import reference_init


def build_model(cfg: TrainConfig) -> RWKV:
    if cfg.init_from:
        return load_model(expand(cfg.init_from)).train()
    config = RWKVConfig(cfg.version, n_layer=cfg.n_layer, n_embd=cfg.n_embd, vocab_size=cfg.vocab_size,
                        head_size=cfg.head_size, dim_ffn=cfg.dim_ffn)
    return reference_init(RWKV(config), cfg.seed).train()


def make_optimizer(model, params, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only, decay offsets (v7 w0) at twice the rate (BlinkDL)."""
    names = {id(p): n for n, p in model.named_parameters()}
    decay = [p for p in params if p.dim() >= 2 and names[id(p)].endswith(".weight")]
    fast = [p for p in params if names[id(p)].endswith("att.w0")]
    rest = [p for p in params if all(p is not q for q in decay + fast)]
    groups = [{"params": rest, "weight_decay": 0.0, "lr_scale": 1.0},
              {"params": fast, "weight_decay": 0.0, "lr_scale": 2.0},
              {"params": decay, "weight_decay": cfg.weight_decay, "lr_scale": 1.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=cfg.betas, eps=1e-8)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine from lr to lr_final."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1 + math.cos(math.pi * min(1.0, progress)))


def cross_entropy(model, inputs, targets):
    logits, _ = model(inputs)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def kl_to(teacher):
    """Loss: mean over tokens of KL(teacher || student), teacher frozen."""
    def loss(student, inputs, targets):
        with torch.no_grad():
            ref = torch.log_softmax(teacher(inputs)[0].float(), -1)
        out = torch.log_softmax(student(inputs)[0].float(), -1)
        return kl_divergence(ref, out).mean()
    return loss


@torch.no_grad()
def evaluate(model, data: TokenData, cfg: TrainConfig, loss_fn, device) -> float:
    model.eval()
    total, count = 0.0, 0
    for inputs, targets in data.val_batches(cfg.ctx_len, cfg.eval_tokens, cfg.batch_size):
        with _autocast(device):
            total += loss_fn(model, inputs.to(device), targets.to(device)).item() * targets.numel()
        count += targets.numel()
    model.train()
    return total / count


def _autocast(device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def optimise(model, params, data: TokenData, cfg: TrainConfig, loss_fn, checkpoint: str | None = None,
             resume: bool = True, progress: bool = True) -> dict:
    """The loop both verbs share; returns the history. Resumes from `checkpoint` if it exists."""
    device = next(model.parameters()).device
    opt = make_optimizer(model, params, cfg)
    history = {"step": [], "train_loss": [], "lr": [], "val_step": [], "val_loss": [], "elapsed_s": 0.0}
    start = 0
    if checkpoint and resume and os.path.exists(checkpoint):
        saved = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        start, history = saved["step"], saved["history"]
    tokens_per_step = cfg.batch_size * cfg.grad_accum * cfg.ctx_len
    bar = tqdm(total=cfg.max_steps, initial=start, desc="train", unit="step", disable=not progress)
    clock = time.perf_counter() - history["elapsed_s"]
    session_start = time.perf_counter()
    for step in range(start, cfg.max_steps):
        lr = lr_at(step, cfg)
        for group in opt.param_groups:
            group["lr"] = lr * group["lr_scale"]
        loss_sum = 0.0
        for micro in range(cfg.grad_accum):
            inputs, targets = data.batch(cfg.seed, step, micro, cfg.batch_size, cfg.ctx_len)
            with _autocast(device):
                loss = loss_fn(model, inputs.to(device), targets.to(device)) / cfg.grad_accum
            loss.backward()
            loss_sum += loss.item()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        history["step"].append(step + 1)
        history["train_loss"].append(loss_sum)
        history["lr"].append(lr)
        last = step + 1 == cfg.max_steps
        if (step + 1) % cfg.eval_interval == 0 or last:
            history["val_step"].append(step + 1)
            history["val_loss"].append(evaluate(model, data, cfg, loss_fn, device))
        history["elapsed_s"] = time.perf_counter() - clock
        rate = (step + 1 - start) * tokens_per_step / max(1e-9, time.perf_counter() - session_start)
        bar.set_postfix(loss=f"{loss_sum:.3f}", val=f"{history['val_loss'][-1]:.3f}" if history["val_loss"] else "-",
                        tok_s=f"{rate:.0f}")
        bar.update(1)
        if checkpoint and ((step + 1) % cfg.checkpoint_interval == 0 or last):
            with atomic_path(checkpoint) as tmp:
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step + 1,
                            "history": history, "config": cfg.to_dict()}, tmp)
    bar.close()
    return history


def train(cfg: TrainConfig, resume: bool = True, progress: bool = True) -> dict:
    """Train a model as `cfg` says; writes checkpoint.pt, model.safetensors, log.json, loss.png in out_dir."""
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    tokenizer = load_tokenizer(expand(cfg.tokenizer))
    data = TokenData(cfg.train_files, tokenizer, cfg.val_fraction)
    model = build_model(cfg).to(device)
    os.makedirs(cfg.out_dir, exist_ok=True)
    history = optimise(model, list(model.parameters()), data, cfg, cross_entropy,
                       os.path.join(cfg.out_dir, "checkpoint.pt"), resume, progress)
    model.eval()
    save_model(model.to(getattr(torch, cfg.save_dtype)), os.path.join(cfg.out_dir, "model.safetensors"))
    log = {"config": cfg.to_dict(), "model": model.config.to_dict(),
           "parameters": sum(p.numel() for p in model.parameters()), "train_tokens": len(data.train),
           "val_tokens": len(data.val), "unigram_entropy": data.unigram_entropy(),
           "final_val_loss": history["val_loss"][-1], "train_seconds": history["elapsed_s"], "history": history}
    write_log(log, cfg.out_dir)
    return log


def distill(student, teacher, data: TokenData, trainable, cfg: TrainConfig, progress: bool = True) -> dict:
    """Fit `student` to `teacher` (KL per token), training only parameters whose names match
    one of the regexes in `trainable`; everything else is frozen. Returns the history."""
    flags = {name: p.requires_grad for name, p in student.named_parameters()}
    params = [p for name, p in student.named_parameters() if any(re.search(pat, name) for pat in trainable)]
    if not params:
        raise ValueError(f"no parameter matches {trainable}")
    student.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    teacher.eval().requires_grad_(False)
    student.train()
    try:
        return optimise(student, params, data, cfg, kl_to(teacher), progress=progress)
    finally:
        for name, p in student.named_parameters():
            p.requires_grad_(flags[name])
        student.eval()


def write_log(log: dict, out_dir: str) -> None:
    with atomic_path(os.path.join(out_dir, "log.json")) as tmp, open(tmp, "w") as f:
        json.dump(log, f, indent=1)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return  # the curve is optional; log.json holds the numbers
    h = log["history"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(h["step"], h["train_loss"], lw=0.8, label="train")
    ax.plot(h["val_step"], h["val_loss"], "o-", label="validation")
    ax.axhline(log["unigram_entropy"], ls="--", c="gray", label="unigram entropy")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.legend()
    fig.tight_layout()
    with atomic_path(os.path.join(out_dir, "loss.png")) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
