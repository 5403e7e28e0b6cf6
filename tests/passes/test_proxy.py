import math

import torch

from rwkvlite.passes.proxy import choose, coarse_proxy, fine_proxy, thresholds_for_share


def test_evenly_spaced_weights_score_zero():
    w = torch.linspace(-1, 1, 257).reshape(1, -1)  # spacing 2^-7: exact in float16
    assert coarse_proxy(w) < 1e-9 and fine_proxy(w) < 1e-9


def test_worked_example():
    assert abs(coarse_proxy(torch.tensor([0.0, 1, 2, 30])) - (math.log(3) + (2 / 30) * math.log(1 / 30)
                                                               + (28 / 30) * math.log(28 / 30))) < 1e-9


def test_outlier_raises_both_proxies():
    w = torch.linspace(-1, 1, 257)
    base_c, base_f = coarse_proxy(w), fine_proxy(w)
    grown = []
    for outlier in (2.0, 8.0, 32.0):
        v = torch.cat([w, torch.tensor([outlier])])
        grown.append((coarse_proxy(v), fine_proxy(v)))
    assert all(c > base_c and f > base_f for c, f in grown)
    assert [c for c, _ in grown] == sorted(c for c, _ in grown)
    assert [f for _, f in grown] == sorted(f for _, f in grown)


def test_gaussian_vs_uniform_and_thresholds():
    g = torch.Generator().manual_seed(0)
    uniform = (torch.rand(64, 64, generator=g) * 2 - 1)
    heavy = torch.randn(64, 64, generator=g) ** 3  # heavy tails
    assert coarse_proxy(heavy) > coarse_proxy(uniform) and fine_proxy(heavy) > fine_proxy(uniform)
    proxies = [(coarse_proxy(m), fine_proxy(m)) for m in [uniform * s for s in (1, 2, 3)] + [heavy]]
    tau_c, tau_f = thresholds_for_share(proxies, sq_share=0.75)
    assert [choose(c, f, tau_c, tau_f) for c, f in proxies][-1] == "vq"
