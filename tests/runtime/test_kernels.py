"""The C kernels against the format's own decoder, for every bit width and awkward shapes."""
import numpy as np
import pytest

from rwkvlite.format.encodings import decode, encode_dense, encode_sq, encode_vq
from rwkvlite.runtime.matrix import matrix
from rwkvlite.runtime.rwkv7 import time_mix
from rwkvlite.runtime.fast import round_x, rounds_x
from rwkvlite.runtime.native import Kernels, Settings, ptr

pytestmark = pytest.mark.skipif(Kernels().lib is None, reason="no C compiler")


def kernels(exact=False, threads=None):
    """The kernels with every threaded path taken however small the call (parallel_min 0)."""
    return Kernels(Settings(threads=threads, exact=exact, parallel_min=0))


def seen_x(k, entry, x):
    """x as a fast-mode product with this matrix sees it: rounded to int8 (runtime/fast.py) where it is."""
    return round_x(x) if k.int8_x and rounds_x(entry) else x


def sq_matrix(rng, rows, cols, bits, group):
    groups = -(-cols // group)
    codes = rng.integers(0, 2**bits, (rows, cols))
    scale = rng.uniform(0.5, 2, (rows, groups)) / 2**bits
    zero = rng.integers(0, 2**bits, (rows, groups))
    return encode_sq(codes, scale, zero, bits, group, [rows, cols])


def vq_matrix(rng, rows, cols, bits, dim, group):
    groups = -(-cols // group)  # the last may be shorter
    codes = rng.integers(0, 2**bits, (rows, cols // dim))
    book = rng.integers(-127, 128, (groups, 2**bits, dim))
    return encode_vq(codes, book, rng.uniform(0.005, 0.02, groups), bits, dim, group, [rows, cols])


CASES = [("sq", bits, cols, group) for bits in range(1, 9) for cols, group in ((256, 64), (160, 64), (384, 128), (100, 32), (96, 48), (90, 30))]
CASES += [("sq", bits, 1280, 64) for bits in (3, 4, 8)]  # more than 16 groups per row (set-up in chunks)
CASES += [("sq", bits, 1280, 128) for bits in (2, 3, 8)]  # 128-code groups: several pairs in their own loop
# short rows (LoRA-like factors, predictor MLPs, low-rank w2), multiplied 16 rows at a time
CASES += [("sq", bits, cols, 64) for bits in (1, 2, 3, 4, 8) for cols in (64, 96, 128)]
CASES += [("sq", bits, cols, group) for bits in (3, 8) for cols, group in ((128, 32), (128, 128), (192, 64))]
CASES += [("vq", 6, 256, 128), ("vq", 4, 100, 50), ("vq", 10, 256, 256), ("dense", 16, 100, None), ("dense", 16, 160, None),
          ("dense", 16, 1000, None)]  # fp16 rows longer than 256: axpy split by columns, 128 at a time
# a shorter last group (RWKV-6's FFN width 2688 in groups of 256): table, gather and float paths
CASES += [("vq", 6, 2688, 256), ("vq", 6, 672, 256), ("vq", 6, 264, 256)]
CASES += [("vq", bits, 512, 256) for bits in (3, 4, 5)]  # fewer than 6 bits: the 64-entry tables repeat the centroids


@pytest.fixture(params=["exact", "fast"])
def mode(request):
    return request.param


@pytest.fixture
def k(mode):
    """The kernels in this test's mode."""
    return kernels(exact=mode == "exact")


@pytest.mark.parametrize("kind,bits,cols,group", CASES)
def test_kernels_equal_the_decoded_matrix(kind, bits, cols, group, mode, k):
    rng = np.random.default_rng(bits * 1000 + cols)
    rows = 37
    if kind == "sq":
        entry, arrays = sq_matrix(rng, rows, cols, bits, group)
    elif kind == "vq":
        entry, arrays = vq_matrix(rng, rows, cols, bits, 2 if cols % 4 == 0 else 1, group)
    else:
        entry, arrays = encode_dense(rng.standard_normal((rows, cols)))
    W = decode(entry, arrays).astype(np.float64)
    m = matrix(entry, arrays, k)
    x = rng.standard_normal(cols).astype(np.float32)
    scale = np.abs(W).sum(1).max() * np.abs(x).max()
    # fast: x rounded to int8 per 32 columns (runtime/fast.py), which the product is exact for;
    # or to int16 per group, 2^-15 of its group's largest value
    xr = seen_x(k, entry, x)
    tol = 1e-5 if mode == "exact" or kind != "sq" or xr is not x else 1e-4
    np.testing.assert_allclose(m.mv(x), W @ xr, atol=tol * scale)
    rows_sub = np.array([36, 0, 5, 5, 17], np.int32)
    np.testing.assert_allclose(m.mv(x, rows_sub), W[rows_sub] @ xr, atol=tol * scale)
    # longer than the matrix: the last row first, every row once, then 20 repeats (16-row blocks and the rest)
    rows_long = np.concatenate([[rows - 1], rng.permutation(rows - 1), rng.integers(0, rows, 20)]).astype(np.int32)
    np.testing.assert_allclose(m.mv(x, rows_long), W[rows_long] @ xr, atol=tol * scale)
    a = rng.standard_normal(len(rows_sub)).astype(np.float32)
    y = rng.standard_normal(cols).astype(np.float32)
    expect = y + a @ W[rows_sub]
    m.axpy(a, y, rows_sub)
    np.testing.assert_allclose(y, expect, atol=1e-5 * np.abs(W).max() * np.abs(a).sum() * 4)


@pytest.mark.parametrize("bits,cols,group", [(b, 256, 64) for b in range(2, 9)] + [(6, 128, 64), (6, 256, 48)])
def test_fast_py_names_the_products_the_int8_tier_takes(bits, cols, group):
    """runtime/fast.rounds_x against what the kernels do: x with a block of tiny values and one huge
    value (whose column's weights are zero) in the same group. Rounded per 32 columns (the int8
    tier) the tiny block keeps its values; rounded per group to int16 it becomes zeros."""
    k = kernels()
    if not k.int8_x:
        pytest.skip("no int8 tier in this build")
    rng = np.random.default_rng(bits)
    codes, zero = rng.integers(0, 2**bits, (8, cols)), rng.integers(0, 2**bits, (8, -(-cols // group)))
    codes[:, 32] = zero[:, 0] = 0  # column 32 weighs nothing (and no zero term cancels its huge x)
    entry, arrays = encode_sq(codes, rng.uniform(0.5, 2, zero.shape), zero, bits, group, [8, cols])
    W = decode(entry, arrays).astype(np.float64)
    x = np.zeros(cols, np.float32)
    x[:32], x[32] = rng.uniform(1, 2, 32) * 1e-6, 1e3
    kept = np.abs(matrix(entry, arrays, k).mv(x) - W @ x).max() <= 1e-3 * np.abs(W @ x).max()
    assert kept == rounds_x(entry)


@pytest.mark.parametrize("group", [256, 4096])
def test_vq_group_sums_do_not_overflow(group, k):
    """Largest centroids times the largest inputs over a whole group (int32 lanes, int64 total)."""
    rows, cols = 4, 4096
    codes = np.zeros((rows, cols // 2), np.int64)
    book = np.full((cols // group, 64, 2), 127)
    entry, arrays = encode_vq(codes, book, np.full(cols // group, 0.01), 6, 2, group, [rows, cols])
    x = np.ones(cols, np.float32)
    np.testing.assert_allclose(matrix(entry, arrays, k).mv(x), decode(entry, arrays).astype(np.float64) @ x, rtol=1e-5)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("group", [64, 1024])
def test_sq_group_sums_do_not_overflow(bits, group, k):
    """Largest codes times the largest inputs over whole groups: the int16-x paths' int32 lanes
    (in the masked layout a 3-bit code is up to 7 * 2^7 before its scale), mv and axpy."""
    rows, cols = 64, 2048
    top = 2**bits - 1
    entry, arrays = encode_sq(np.full((rows, cols), top), np.full((rows, cols // group), 1.0 / top),
                              np.zeros((rows, cols // group), np.int64), bits, group, [rows, cols])
    m, W = matrix(entry, arrays, k), decode(entry, arrays).astype(np.float64)
    x = np.ones(cols, np.float32)
    np.testing.assert_allclose(m.mv(x), W @ x, rtol=1e-5)
    a, y = np.ones(rows, np.float32), np.zeros(cols, np.float32)
    m.axpy(a, y, np.arange(rows, dtype=np.int32))
    np.testing.assert_allclose(y, a @ W, rtol=1e-5)


def test_row_lists_longer_than_the_matrix_and_mismatched_coefficients():
    rng = np.random.default_rng(3)
    entry, arrays = sq_matrix(rng, 4, 64, 4, 32)
    k = kernels()
    m, W = matrix(entry, arrays, k), decode(entry, arrays).astype(np.float64)
    x = rng.standard_normal(64).astype(np.float32)
    rows = np.array([0, 1, 2, 3] * 3, np.int32)  # repeats: more results than the matrix has rows
    np.testing.assert_allclose(m.mv(x, rows), W[rows] @ seen_x(k, entry, x), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        m.rmv(np.ones(3, np.float32), rows)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_threads_split_the_work_without_changing_it(n_threads):
    k = kernels(threads=n_threads)  # (without OpenMP the kernels run on one thread, and must agree all the same)
    rng = np.random.default_rng(0)
    entry, arrays = sq_matrix(rng, 512, 512, 3, 64)  # large enough to run threaded
    m = matrix(entry, arrays, k)
    short_entry, short_arrays = sq_matrix(rng, 1000, 96, 3, 64)  # short rows, 16 at a time, threaded
    short = matrix(short_entry, short_arrays, k)
    lora_entry, lora_arrays = sq_matrix(rng, 1000, 64, 3, 64)  # a LoRA factor [in, r]: rows split by thread
    lora = matrix(lora_entry, lora_arrays, k)
    # fp16 rows of 1000 columns: each thread's share of the columns (the last one's not a multiple of 16)
    f16_entry, f16_arrays = encode_dense(rng.standard_normal((200, 1000)))
    f16 = matrix(f16_entry, f16_arrays, k)
    a = rng.standard_normal(1000).astype(np.float32)
    sub = np.sort(rng.choice(1000, 700, replace=False)).astype(np.int32)
    x = rng.standard_normal(512).astype(np.float32)
    got = m.mv(x).copy()
    got_short = short.mv(x[:96]).copy()
    got_lora, got_lora_sub = np.ones(64, np.float32), np.ones(64, np.float32)
    lora.axpy(a, got_lora)
    lora.axpy(a[:700], got_lora_sub, sub)
    y = np.zeros(512, np.float32)
    m.axpy(x, y)
    got_f16 = np.ones(1000, np.float32)
    f16.axpy(a[:200], got_f16)
    W = decode(entry, arrays).astype(np.float64)
    want = W @ seen_x(k, entry, x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    Ws = decode(short_entry, short_arrays).astype(np.float64)
    want = Ws @ seen_x(k, short_entry, x[:96])
    np.testing.assert_allclose(got_short, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    Wl = decode(lora_entry, lora_arrays).astype(np.float64)
    for got, want in ((got_lora, 1 + a @ Wl), (got_lora_sub, 1 + a[:700] @ Wl[sub])):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    np.testing.assert_allclose(y, x @ W, rtol=1e-4, atol=1e-4 * np.abs(x @ W).max())
    want = 1 + a[:200] @ decode(f16_entry, f16_arrays).astype(np.float64)
    np.testing.assert_allclose(got_f16, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_time_mix_kernel_equals_the_numpy_equations(monkeypatch):
    rng = np.random.default_rng(1)
    H, N = 3, 16

    class BlockVectors:  # what time_mix reads from a Block
        pass

    b = BlockVectors()
    b.H, b.N, b.eps = H, N, 64e-5
    b.k_k, b.k_a, b.r_k, *b.lnx = (rng.uniform(-1, 1, H * N).astype(np.float32) for _ in range(5))
    b.fixed_ptrs = tuple(ptr(t) for t in (b.k_k, b.k_a, b.r_k, *b.lnx))
    S = rng.standard_normal((H, N, N)).astype(np.float32)
    r, w_raw, k, v, a_raw, g = (rng.standard_normal(H * N).astype(np.float32) for _ in range(6))
    S0 = S.copy()
    T, y = time_mix(b, S, r, w_raw, k, v, a_raw, g, kernels(exact=True))
    np.testing.assert_array_equal(S, S0)  # the old state is left as it was
    monkeypatch.setenv("RWKVLITE_KERNELS", "numpy")
    numpy_only = Kernels()
    assert numpy_only.lib is None
    expect_T, expect_y = time_mix(b, S, r, w_raw, k, v, a_raw, g, numpy_only)
    np.testing.assert_allclose(T, expect_T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y, expect_y, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cols", [64, 96, 768, 40])
def test_sign_copies_equal_the_decoded_signs(cols, mode, k):
    """The predictors' 1-bit key copies (mv_bits in C): scale * (signs @ x), signs = +-1."""
    from rwkvlite.format.encodings import encode_int
    from rwkvlite.runtime.matrix import SignBits

    rng = np.random.default_rng(cols)
    signs = np.where(rng.standard_normal((50, cols)) >= 0, 1, -1)
    entry, arrays = encode_int(signs, step=2)
    scale = rng.uniform(0.5, 2.0, 50).astype(np.float32)
    m = SignBits(entry, arrays, scale, k)
    x = rng.standard_normal(cols).astype(np.float32)
    expect = scale * (signs @ x.astype(np.float64))
    tol = 1e-6 if mode == "exact" else 1e-4  # int16x: x rounded to 2^-15 of its largest value
    np.testing.assert_allclose(m.mv(x), expect, atol=tol * 2 * cols * np.abs(x).max())


@pytest.mark.parametrize("V", [16, 37, 1000])
def test_clustered_head_rows_and_logprobs_equal_numpy(V):
    """head_rows and head_logprobs (16 tokens a step with AVX-512, then a scalar tail) against
    the numpy they replace (runtime/head.py, Head), for vocabularies with and without a tail."""
    rng = np.random.default_rng(V)
    K = 7
    cluster = rng.integers(0, K, V).astype(np.int32)
    picked = (rng.random(K) < 0.5).astype(np.int32)
    picked[cluster[V // 2]] = 1  # at least one chosen token
    base = rng.standard_normal(K).astype(np.float32)
    k = kernels()
    rows = np.full(V, -1, np.int32)
    n = k.fn("head_rows")(ptr(picked), ptr(cluster), V, ptr(rows))
    want = np.flatnonzero(picked[cluster]).astype(np.int32)
    np.testing.assert_array_equal(rows[:n], want)
    logits = (3 * rng.standard_normal(n)).astype(np.float32)
    log_mass = -0.25
    out = np.empty(V, np.float32)
    k.fn("head_logprobs")(ptr(logits), n, ptr(picked), ptr(cluster), ptr(base), V, log_mass, ptr(out))
    ref = base[cluster].astype(np.float64)
    ref[want] = logits - logits.max() - np.log(np.exp(logits.astype(np.float64) - logits.max()).sum()) + log_mass
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind,args", [("sq", dict(bits=0)), ("sq", dict(bits=9)), ("sq", dict(group=0)),
                                       ("sq", dict(group=-64)), ("vq", dict(bits=31)), ("vq", dict(dim=0)),
                                       ("vq", dict(group=0)), ("vq", dict(dim=3))])
def test_kernels_refuse_sizes_they_were_not_written_for(kind, args):
    """Defence in depth behind the format's validation: a bit width, group or vector dimension out
    of range computes nothing (mv: zeros; axpy: y unchanged) instead of dividing by zero or reading
    a table that does not exist."""
    rng = np.random.default_rng(3)
    entry, arrays = sq_matrix(rng, 8, 64, 4, 32) if kind == "sq" else vq_matrix(rng, 8, 64, 4, 2, 32)
    m = matrix(entry, arrays, kernels())
    assert m._bound()  # the kernels' leading arguments, made on first use
    pre = dict(zip(("q", "stride", "qbytes", "scale", "zero", "zstride", "bits", "group", "cols") if kind == "sq"
                   else ("q", "stride", "qbytes", "zero", "scale", "bits", "dim", "group", "cols"), m._pre))
    pre.update(args)
    x, y = np.ones(64, np.float32), np.full(8, 7.0, np.float32)
    m.kernels.fn(f"mv_{kind}")(*pre.values(), ptr(x), ptr(y), None, 8)
    assert not y.any()
    a, out = np.ones(8, np.float32), np.full(64, 7.0, np.float32)
    m.kernels.fn(f"axpy_{kind}")(*pre.values(), ptr(a), ptr(out), None, 8)
    assert (out == 7.0).all()
