import pytest
import torch

from rwkvlite.passes.gptq import Hessian, gptq, rtn
from rwkvlite.passes.grids import ScalarGrid


def plain_rtn(W, bits, group):
    """Round-to-nearest written directly: per row and group, min/max grid through zero, with
    the scale stored in float16."""
    out = torch.empty_like(W)
    for g in range(0, W.shape[1], group):
        w = W[:, g:g + group]
        lo, hi = w.min(1, keepdim=True).values.clamp(max=0), w.max(1, keepdim=True).values.clamp(min=0)
        scale = ((hi - lo) / (2**bits - 1)).half().double()
        zero = torch.round(-lo / scale)
        out[:, g:g + group] = scale * (torch.clamp(torch.round(w / scale) + zero, 0, 2**bits - 1) - zero)
    return out


def correlated_layer(rows=64, cols=128, n=2048, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(rows, cols, generator=g, dtype=torch.float64)
    mixing = torch.randn(cols, cols, generator=g, dtype=torch.float64) / cols**0.5
    X = torch.randn(n, cols, generator=g, dtype=torch.float64) @ (torch.eye(cols, dtype=torch.float64) + 2 * mixing)
    return W, X


@pytest.mark.parametrize("bits,group", [(4, 128), (3, 32), (2, 16)])
def test_identity_hessian_is_round_to_nearest(bits, group):
    W, _ = correlated_layer()
    result = gptq(W, torch.eye(W.shape[1], dtype=torch.float64), ScalarGrid(bits), group_size=group, percdamp=0.0)
    assert torch.equal(result.Q, plain_rtn(W, bits, group))
    fast = rtn(W, ScalarGrid(bits), group_size=group)
    assert torch.equal(fast.Q, result.Q) and torch.equal(fast.codes, result.codes)


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_beats_rtn_on_correlated_inputs(act_order):
    W, X = correlated_layer()
    h = Hessian(W.shape[1])
    for chunk in X.split(500):
        h.add_batch(chunk)
    assert torch.allclose(h.H, 2 * X.T @ X / len(X))
    grid = ScalarGrid(3)
    out_err = lambda Q: ((X @ (W - Q).T) ** 2).mean().item()  # noqa: E731
    e_rtn = out_err(rtn(W, grid, group_size=32).Q)
    e_gptq = out_err(gptq(W, h.H, grid, block_size=32, group_size=32, act_order=act_order).Q)
    assert e_gptq < 0.8 * e_rtn, (e_gptq, e_rtn)


def test_codes_decode_to_q():
    W, X = correlated_layer()
    grid = ScalarGrid(4, sym=True)
    r = gptq(W, 2 * X.T @ X / len(X), grid, group_size=32)
    assert r.codes.min() >= 0 and r.codes.max() <= 15 and torch.equal(r.codes, r.codes.round())
    for g, p in enumerate(r.params):
        cols = slice(32 * g, 32 * (g + 1))
        assert torch.allclose(p.scale * (r.codes[:, cols] - p.zero), r.Q[:, cols])


def test_bad_bits():
    with pytest.raises(ValueError, match="2 to 8 bits"):
        ScalarGrid(9)


def test_vector_grid_improves_with_more_centroids():
    from rwkvlite.passes.grids import VectorGrid

    W, X = correlated_layer()
    H = 2 * X.T @ X / len(X)
    errors = []
    for bits in (2, 3, 4, 6):
        Q = gptq(W, H, VectorGrid(bits, dim=2), block_size=32, group_size=128).Q
        errors.append(((X @ (W - Q).T) ** 2).mean().item())
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.3 * errors[0], errors


def test_vector_grid_with_feedback_beats_plain_assignment():
    from rwkvlite.passes.grids import VectorGrid

    W, X = correlated_layer()
    H = 2 * X.T @ X / len(X)
    grid = VectorGrid(4, dim=2)
    feedback = gptq(W, H, grid, block_size=32, group_size=128).Q
    plain = gptq(W, torch.eye(W.shape[1], dtype=torch.float64), grid, group_size=128, percdamp=0.0).Q
    out_err = lambda Q: ((X @ (W - Q).T) ** 2).mean().item()  # noqa: E731
    assert out_err(feedback) < 0.8 * out_err(plain)
