"""rwkvlite eval / bench / report end to end on a real tiny model."""
import json

from ..conftest import shared, run_cli


def test_eval_bench_report(tmp_path):
    model = shared("models", "rwkvcpp-tiny", "tiny-rwkv-5v2-730K-FP32.bin")
    quant = shared("models", "rwkvcpp-tiny", "tiny-rwkv-5v2-730K-Q5_0.bin")
    r = run_cli("eval", model, "--tasks", "wikitext", "lambada", "piqa", "--limit", "20", "--json", tmp_path / "fp32.json")
    assert r.returncode == 0, r.stderr
    records = json.load(open(tmp_path / "fp32.json"))
    assert [x["task"] for x in records] == ["wikitext", "lambada", "piqa"]
    assert records[0]["model_sha256"].startswith("e170606dbbe4b6bd") and records[0]["environment"]["torch"]
    assert 2.0 < records[0]["figures"]["bits_per_byte"] < 8.0
    r = run_cli("eval", quant, "--tasks", "wikitext", "fidelity", "--reference", model, "--limit", "300",
                "--json", tmp_path / "q5.json")
    assert r.returncode == 0, r.stderr
    fid = json.load(open(tmp_path / "q5.json"))[1]["figures"]
    assert 0 < fid["kl_mean"] < 0.1 and 0.8 < fid["top1_agreement"] < 1.0
    r = run_cli("bench", model, "--prompt-tokens", "64", "--gen-tokens", "8", "--json", tmp_path / "bench.json")
    assert r.returncode == 0, r.stderr
    b = json.load(open(tmp_path / "bench.json"))[0]["figures"]
    assert b["peak_rss_generate_mib"] > 0 and b["decode_tokens_per_s"] > 0 and b["peak_rss_load_mib"] >= b["rss_before_load_mib"]
    r = run_cli("report", tmp_path / "fp32.json", tmp_path / "q5.json", tmp_path / "bench.json", "-o", tmp_path / "rep")
    assert r.returncode == 0, r.stderr
    md = open(tmp_path / "rep" / "report.md").read()
    assert "tiny-rwkv-5v2-730K-Q5_0.bin" in md and "wikitext bits/byte" in md and "KL" in md
    assert open(tmp_path / "rep" / "quality_vs_size.png", "rb").read(4) == b"\x89PNG"


def test_eval_bad_data_is_one_line(tmp_path):
    model = shared("models", "rwkvcpp-tiny", "tiny-rwkv-5v2-730K-FP32.bin")
    r = run_cli("eval", model, "--tasks", "wikitext", "--text", tmp_path / "missing.txt")
    assert r.returncode == 2 and "no such data file" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "bad.jsonl").write_text("{}\n")
    r = run_cli("eval", model, "--tasks", "lambada", "--lambada", tmp_path / "bad.jsonl")
    assert r.returncode == 2 and "wrong checksum" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("report", tmp_path / "bad.jsonl", "-o", tmp_path / "rep")
    assert r.returncode == 2 and "records need" in r.stderr
