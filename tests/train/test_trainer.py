import json

import pytest
import torch

from rwkvlite.model import RWKV, RWKVConfig
from rwkvlite.tokenizer import ByteTokenizer
from rwkvlite.train import TokenData, TrainConfig, distill, reference_init, train
from rwkvlite.train.trainer import evaluate, kl_to

from ..conftest import shared


def tiny_config(tmp_path, **kw):
    text = open(shared("data", "tinyshakespeare", "input.txt"), encoding="utf-8").read()[:60_000]
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "text.txt").write_text(text)
    base = dict(train_files=(str(tmp_path / "text.txt"),), out_dir=str(tmp_path / "run"), version="7", n_layer=2,
                n_embd=64, head_size=32, ctx_len=64, batch_size=8, max_steps=300, lr=3e-3, lr_final=3e-4,
                warmup_steps=20, eval_interval=100, eval_tokens=4096, checkpoint_interval=100, val_fraction=0.05)
    base.update(kw)
    return TrainConfig(**base)


def test_training_beats_unigram_entropy(tmp_path):
    log = train(tiny_config(tmp_path), progress=False)
    entropy, val = log["unigram_entropy"], log["final_val_loss"]
    assert val < 0.8 * entropy, f"validation loss {val:.3f} not well below unigram entropy {entropy:.3f}"
    assert log["history"]["val_loss"][0] > val  # it kept improving
    saved = json.load(open(tmp_path / "run" / "log.json"))
    assert saved["final_val_loss"] == val and (tmp_path / "run" / "loss.png").exists()
    assert (tmp_path / "run" / "model.safetensors").exists()


def test_resume_reproduces_uninterrupted_run(tmp_path):
    whole = train(tiny_config(tmp_path / "a", max_steps=30, checkpoint_interval=10, eval_interval=10), progress=False)
    cfg = tiny_config(tmp_path / "b", max_steps=30, checkpoint_interval=10, eval_interval=10)
    first = TrainConfig(**{**cfg.to_dict(), "max_steps": 20})
    train(first, progress=False)  # stops after 20 steps with a checkpoint
    resumed = train(cfg, progress=False)  # picks up at step 20
    assert resumed["history"]["train_loss"] == whole["history"]["train_loss"]
    assert resumed["history"]["val_loss"] == whole["history"]["val_loss"]


def test_distillation_moves_only_chosen_parameters(tmp_path):
    cfg = tiny_config(tmp_path, max_steps=60, lr=3e-3, warmup_steps=5, eval_interval=20)
    config = RWKVConfig("7", n_layer=2, n_embd=64, vocab_size=256, head_size=32)
    teacher = reference_init(RWKV(config), seed=1)
    with torch.no_grad():  # make the teacher non-trivial: random output projections
        for block in teacher.blocks:
            block.att.output.weight.normal_(0, 0.05)
            block.ffn.value.weight.normal_(0, 0.05)
    student = RWKV(config)
    student.load_state_dict(teacher.state_dict())
    with torch.no_grad():
        for block in student.blocks:
            block.att.receptance.weight.add_(0.3 * torch.randn_like(block.att.receptance.weight))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    data = TokenData(cfg.train_files, ByteTokenizer(), cfg.val_fraction)
    kl_before = evaluate(student, data, cfg, kl_to(teacher), torch.device("cpu"))
    history = distill(student, teacher, data, [r"att\.receptance"], cfg, progress=False)
    assert history["val_loss"][-1] < 0.5 * kl_before, (kl_before, history["val_loss"])
    assert all(p.requires_grad for p in student.parameters())  # flags restored
    for name, value in student.state_dict().items():
        changed = not torch.equal(value, before[name])
        assert changed == ("att.receptance" in name), name


@pytest.mark.parametrize("version", ["4", "5.2", "6", "7"])
def test_gradients_match_finite_differences(version):
    torch.manual_seed(0)
    config = RWKVConfig(version, n_layer=2, n_embd=16, vocab_size=32, head_size=8, lora_mix=4, lora_decay=4,
                        lora_a=4, lora_v=4, lora_gate=4)
    from rwkvlite.model.init import random_init

    model = random_init(RWKV(config), seed=2).double()
    tokens = torch.randint(0, 32, (2, 21))  # 21 tokens: crosses the 16-token WKV chunk
    weights = torch.randn(2, 21, 32, dtype=torch.float64)
    loss_of = lambda: (model(tokens)[0] * weights).sum()  # noqa: E731
    loss_of().backward()
    g = torch.Generator().manual_seed(0)
    for name, p in model.named_parameters():
        for _ in range(2):
            i = int(torch.randint(0, p.numel(), (1,), generator=g))
            flat = p.data.view(-1)
            old = flat[i].item()
            with torch.no_grad():
                flat[i] = old + 1e-6
                up = loss_of().item()
                flat[i] = old - 1e-6
                down = loss_of().item()
                flat[i] = old
            numeric = (up - down) / 2e-6
            analytic = p.grad.view(-1)[i].item()
            assert abs(numeric - analytic) <= 1e-5 * max(1.0, abs(numeric)), (name, i, numeric, analytic)


@pytest.mark.parametrize("version", ["5.2", "6", "7"])
def test_reference_init_starts_at_uniform_loss(version):
    """BlinkDL's init makes the first prediction nearly uniform: loss ~ ln V, head rows of norm 0.5."""
    import math

    model = reference_init(RWKV(RWKVConfig(version, n_layer=2, n_embd=64, vocab_size=4096, head_size=32)), seed=0)
    tokens = torch.randint(0, 4096, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, _ = model(tokens)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.roll(-1, 1).flatten()).item()
    assert abs(loss - math.log(4096)) < 0.3, loss
    assert abs(model.head.weight.norm(dim=1).mean().item() - 0.5) < 0.01


def test_token_data_reads_a_file_over_max_bytes_in_windows(tmp_path, monkeypatch):
    """The recover pass's data from a corpus: a file over max_bytes is read as WINDOWS pieces
    of max_bytes in all, each run between separators a piece of the file; without max_bytes
    (training) the whole file, as before."""
    from rwkvlite.eval import data as eval_data
    from rwkvlite.train import data as td

    text = "".join(f"{i:05d} abcdefghij klmnopqrst\n" for i in range(80_000))  # ~2 MB
    path = tmp_path / "big.txt"
    path.write_text(text)
    monkeypatch.setattr(eval_data, "read_text", lambda p: pytest.fail("read the whole file"))
    d = td.TokenData([str(path)], ByteTokenizer(), 0.1, max_bytes=256_000)
    ids = d.train[1:].tolist() + d.val[1:].tolist()
    pieces = bytes(b if b != td.SEPARATOR else 0 for b in ids).split(b"\0")
    assert len(pieces) == td.WINDOWS and all(len(p) > 900 and p.decode() in text for p in pieces)
    assert 0.95 * 256_000 < len(ids) < 1.01 * 256_000
    monkeypatch.undo()
    whole = td.TokenData([str(path)], ByteTokenizer(), 0.1)
    assert len(whole.train) + len(whole.val) == len(text.encode()) + 2
