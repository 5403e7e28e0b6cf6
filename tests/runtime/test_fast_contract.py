"""The fast mode's statistical contract (issue #23; rwkvlite/runtime/contract.py): against the
exact mode on the same compressed file, mean KL(exact || fast) <= 1e-4 nats per token and top-1
agreement >= 0.99 over 512 tokens of real text, for rwkv.cpp's real tiny models and 0.1B-shaped
random models with the recipes the runtime's case lists give each generation
(contract_files.py). bench/fast_contract.py prints the same figures as a table."""
import pytest

from rwkvlite.runtime.contract import MEAN_KL, TOP1, agreement

from ..conftest import shared
from .contract_files import ALL, DECIDED, TIE, TOKENS, Sources
from .files import compressed, use_kernels, use_numpy

# A 0.1B-shaped case takes 10-20 s here (the exact mode's 65,536-row head, 1,024 times) and a
# 3-bit rwkvquant one minutes to compress: the test steps the fast path's commonest kinds at
# 0.1B shapes, and bench/fast_contract.py every case (bench/results/fast-contract.json).
WIDE = [("0.1b", "7", "int8"), ("0.1b", "7", "lite")]
CASES = [case for case in ALL if case[0] == "tiny"] + WIDE


@pytest.fixture(scope="session")
def contract(tmp_path_factory):
    return Sources(tmp_path_factory.mktemp("contract"), shared)


@pytest.mark.parametrize("model,version,recipe", CASES)
def test_fast_mode_keeps_the_contract(contract, model, version, recipe, monkeypatch):
    use_kernels("c", monkeypatch)  # the fast mode is the C kernels'; numpy runs exact
    monkeypatch.delenv("RWKVLITE_EXACT", raising=False)
    a = contract.measure(model, version, recipe)
    where = f"{model} RWKV-{version} {recipe}: {a}"
    assert not a.fast_is_exact, where
    assert a.tokens == TOKENS and a.mean_kl <= MEAN_KL, where
    # a random model's ties (contract_files.TIE) are left out of its top-1, but most tokens must count
    assert a.margin == (TIE if model == "0.1b" else 0.0) and a.decided >= DECIDED * a.tokens, where
    assert a.top1_decided >= TOP1, where


def test_agreement_of_a_runtime_with_itself_is_exact(sources, monkeypatch):
    """With the numpy kernels both runtimes run exact: KL 0 on every token, top-1 all equal,
    and the figures say the fast mode was not measured."""
    use_numpy(monkeypatch)
    a = agreement(compressed(sources("7"), "int8"), [1, 72, 101, 108, 108, 111] * 4, margin=0.5)
    assert a.fast_is_exact and a.tokens == 24 and a.mean_kl == a.max_kl == 0.0 and a.top1 == 1.0
    assert a.top1_decided == 1.0 and 0 <= a.decided <= 24 and a.margin == 0.5 and a.holds
    with pytest.raises(ValueError, match="at least one token"):
        agreement(compressed(sources("7"), "int8"), [])
