"""WKV kernels: the recurrences at the heart of each RWKV generation.

Every kernel comes twice: `*_step` (one token, the recurrence as written in the
papers) and `*_sequence` (T tokens). For v5-v7 the sequence kernels are chunked:
inside a chunk of L tokens every pairwise interaction is a small matrix product,
and only one small state update per chunk runs in a Python loop. All math is
float32 whatever the weights' dtype. Shapes: B batch, T tokens, H heads, N head size.

Stability. Decays are handled in log space (logw = log w <= 0).
  * v5/v6 decays are unbounded (w = exp(-exp(x)) can be ~0), so the intra-chunk
    decay between positions i < t is formed explicitly as exp(A[t-1] - A[i]) <= 1,
    an [L, L, N] tensor per chunk; no exponent is ever positive.
  * v7 decays are bounded by construction, w >= exp(-exp(-0.5)) ~ 0.545, so
    factors exp(+-A) within a chunk of 16 stay below exp(0.61 * 16) ~ 1.6e4 and
    the factorised (matrix-product) form is exact in float32.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .common import wide

CHUNK = 16


def float32_math(fn):
    """Run a kernel outside autocast and in at least float32: its chunk factors need it."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.autocast(args[0].device.type, enabled=False):
            return fn(*(wide(a) if torch.is_tensor(a) else a for a in args), **kwargs)
    return wrapper


# ----------------------------------------------------------------------------- RWKV-4
@float32_math
def wkv4_step(k, v, w, u, state):
    """One token of RWKV-4's WKV, in the (aa, bb, pp) form of BlinkDL's inference code.

    wkv_t = (sum_{i<t} e^{(t-1-i)w + k_i} v_i + e^{u + k_t} v_t) / (same without v)
    aa/bb hold numerator/denominator scaled by e^{-pp}. k, v: [B, C]; w (< 0), u: [C];
    state: [B, 3, C]. Returns y [B, C] and the new state.
    """
    aa, bb, pp = state.unbind(1)
    ww = u + k
    p = torch.maximum(pp, ww)
    e1, e2 = torch.exp(pp - p), torch.exp(ww - p)
    y = (e1 * aa + e2 * v) / (e1 * bb + e2)
    ww = w + pp
    p = torch.maximum(ww, k)
    e1, e2 = torch.exp(ww - p), torch.exp(k - p)
    return y, torch.stack([e1 * aa + e2 * v, e1 * bb + e2, p], 1)


@float32_math
def wkv4_sequence(k, v, w, u, state):
    """RWKV-4 WKV over [B, T, C]: the step recurrence in a loop (the max-shift keeps it exact)."""
    ys = []
    for t in range(k.shape[1]):
        y, state = wkv4_step.__wrapped__(k[:, t], v[:, t], w, u, state)  # already float32
        ys.append(y)
    return torch.stack(ys, 1), state


# ----------------------------------------------------------------------------- helpers
def _chunks(tensors, chunk):
    """[B, T, H, N] -> [B, H, T/L, L, N], zero-padding T up to a multiple of L.

    Zero padding is neutral: k = v = 0 adds nothing and logw = 0 means no decay.
    """
    T = tensors[0].shape[1]
    pad = (-T) % chunk
    out = []
    for t in tensors:
        if pad:
            t = F.pad(t, (0, 0, 0, 0, 0, pad))
        B, Tp, H, N = t.shape
        out.append(t.view(B, Tp // chunk, chunk, H, N).permute(0, 3, 1, 2, 4))
    return out


def _unchunk(y, T):
    """[B, H, C, L, N] -> [B, T, H, N]."""
    B, H, nc, L, N = y.shape
    return y.permute(0, 2, 3, 1, 4).reshape(B, nc * L, H, N)[:, :T]


def _scan(state, decay, update):
    """Chunk-to-chunk recurrence S <- decay(S) + update; returns the state entering each chunk."""
    starts = []
    for c in range(update.shape[2]):
        starts.append(state)
        state = decay(state, c) + update[:, :, c]
    return torch.stack(starts, 2), state


# ----------------------------------------------------------------------------- RWKV-5 / 6
@float32_math
def wkv5_step(r, k, v, logw, u, state):
    """One token of RWKV-5/6: y = r (S + diag(u) k^T v);  S <- diag(w) S + k^T v.

    r, k, v, logw: [B, H, N]; u: [H, N]; state S: [B, H, N(key), N(value)].
    """
    kv = k.unsqueeze(-1) * v.unsqueeze(-2)
    y = (r.unsqueeze(-2) @ (state + u.unsqueeze(-1) * kv)).squeeze(-2)
    return y, torch.exp(logw).unsqueeze(-1) * state + kv


@float32_math
def wkv5_sequence(r, k, v, logw, u, state, chunk=CHUNK):
    """RWKV-5/6 WKV over [B, T, H, N] (logw may broadcast, e.g. [H, N] for v5).

    Inside a chunk, with A[t] = sum_{s<=t} logw_s:
      y_t = (r_t * e^{A[t-1]}) S_0 + sum_{i<t} (sum_c r_tc k_ic e^{A[t-1]_c - A[i]_c}) v_i
            + (r_t . u * k_t) v_t
      S_L = e^{A[L]} S_0 + sum_i (k_i * e^{A[L] - A[i]})^T v_i
    """
    B, T, H, N = r.shape
    # A decay of exactly 0 (log -inf, e.g. an underflowed rwkv.cpp exp(-exp(w))) would make
    # -inf - -inf below; e^-60 per step is already 0 to float32 after two steps.
    logw = logw.clamp_min(-60.0)
    r, k, v, logw = _chunks([r, k, v, logw.expand(B, T, H, N)], chunk)
    A = logw.cumsum(-2)  # [B,H,C,L,N] log decay from chunk start through t
    A_prev = A - logw  # ... through t-1
    A_last = A[..., -1:, :]
    strict = torch.ones(chunk, chunk, dtype=torch.bool, device=r.device).tril(-1)
    # decay[t, i, c] = exp(A[t-1]_c - A[i]_c) for i < t, else 0: [B,H,C,L,L,N]
    gap = (A_prev.unsqueeze(-2) - A.unsqueeze(-3)).masked_fill(~strict.unsqueeze(-1), float("-inf"))
    scores = torch.einsum("bhctn,bhcin,bhctin->bhcti", r, k, torch.exp(gap))
    bonus = (r * u[:, None, None, :] * k).sum(-1)  # u [H, N] -> [H, 1, 1, N]
    scores = scores + torch.diag_embed(bonus)  # the bonus term sits on the diagonal
    y = scores @ v
    update = (k * torch.exp(A_last - A)).transpose(-1, -2) @ v  # [B,H,C,N,N]
    decay = torch.exp(A_last).squeeze(-2).unsqueeze(-1)  # [B,H,C,N,1]
    starts, state = _scan(state, lambda s, c: decay[:, :, c] * s, update)
    y = y + (r * torch.exp(A_prev)) @ starts
    return _unchunk(y, T), state


# ----------------------------------------------------------------------------- RWKV-7
@float32_math
def wkv7_step(r, logw, k, v, z, b, state):
    """One token of RWKV-7's generalised delta rule (z = -kk, b = kk * a in BlinkDL's code):

      S <- S (diag(w) + z b^T) + v k^T ;   y = S r
    All inputs [B, H, N]; state S: [B, H, N(value), N(key)].
    """
    state = (state * torch.exp(logw).unsqueeze(-2)
             + (state @ z.unsqueeze(-1)) @ b.unsqueeze(-2)
             + v.unsqueeze(-1) @ k.unsqueeze(-2))
    return (state @ r.unsqueeze(-1)).squeeze(-1), state


@float32_math
def wkv7_sequence(r, logw, k, v, z, b, state, chunk=CHUNK):
    """RWKV-7 WKV over [B, T, H, N], chunked (a WY-style form of the delta rule).

    With g_t = exp(A[t]) the decay since the chunk start, write S_t = S^_t diag(g_t).
    Then S^_t = S^_{t-1} + u_t b^_t^T + v_t k^_t^T with u_t = S^_{t-1} z^_t and
    z^ = z g_{t-1}, b^ = b / g_t, k^ = k / g_t, r^ = r g_t. Collecting rows:
      U = Z^ S_0^T + tril_(Z^ B^^T) U + tril_(Z^ K^^T) V   (strictly lower: i < t)
    so U = P S_0^T + Q with P = (I - A_bz)^-1 Z^, Q = (I - A_bz)^-1 A_kz V, and
      Y   = (R^ + B_r P) S_0^T + B_r Q + K_r V        (B_r, K_r: i <= t)
      S_L = S_0 (diag(g_L) + P^T B~) + Q^T B~ + V^T K~  (B~ = b g_L/g_i, K~ = k g_L/g_i)
    """
    B, T, H, N = r.shape
    r, logw, k, v, z, b = _chunks([r, logw, k, v, z, b], chunk)
    A = logw.cumsum(-2)
    A_prev, A_last = A - logw, A[..., -1:, :]
    r_hat, z_hat = r * torch.exp(A), z * torch.exp(A_prev)
    k_hat, b_hat = k * torch.exp(-A), b * torch.exp(-A)
    ones = torch.ones(chunk, chunk, device=r.device)
    strict, incl = ones.tril(-1), ones.tril(0)
    a_bz = (z_hat @ b_hat.transpose(-1, -2)) * strict  # [B,H,C,L,L]
    a_kz = (z_hat @ k_hat.transpose(-1, -2)) * strict
    b_r = (r_hat @ b_hat.transpose(-1, -2)) * incl
    k_r = (r_hat @ k_hat.transpose(-1, -2)) * incl
    lower = torch.eye(chunk, device=r.device) - a_bz
    P = torch.linalg.solve_triangular(lower, z_hat, upper=False, unitriangular=True)
    Q = torch.linalg.solve_triangular(lower, a_kz @ v, upper=False, unitriangular=True)
    b_tail, k_tail = b * torch.exp(A_last - A), k * torch.exp(A_last - A)
    M = torch.diag_embed(torch.exp(A_last).squeeze(-2)) + P.transpose(-1, -2) @ b_tail
    update = Q.transpose(-1, -2) @ b_tail + v.transpose(-1, -2) @ k_tail  # [B,H,C,N,N]
    starts, state = _scan(state, lambda s, c: s @ M[:, :, c], update)
    y = (r_hat + b_r @ P) @ starts.transpose(-1, -2) + b_r @ Q + k_r @ v
    return _unchunk(y, T), state
