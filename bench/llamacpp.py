"""rwkvlite's lean runtime against llama.cpp on the same random RWKV-7 checkpoint, in one run.

The issue's speed target for the lite stack, 6 ms/token, is "twice rwkv.cpp Q5_1's speed" on
this kind of machine; this machine's speed drifts by up to 2x between minutes, so a figure
in ms is only as good as the minute it was taken in. This script measures the ratio itself:
llama.cpp (ggml, the engine rwkv.cpp is built on, which runs RWKV-7 in its CPU backend; rwkv.cpp
itself has no package to install) and rwkvlite take turns on the same checkpoint.

Steps (the files are made once and kept in --keep):
  1. the BlinkDL checkpoint (bench/runtime.py's random 0.1B one by default) is written in the
     Hugging Face layout llama.cpp's converter reads (RWKV's own naming; rwkv_vocab_v20230424.txt
     from --vocab beside it), converted to GGUF F16 by llama.cpp's convert_hf_to_gguf.py
     (--llama-src: a llama.cpp source tree, e.g. vendor/llama.cpp of llama-cpp-python's sdist;
     the converter needs `transformers`), and quantized to Q5_1 by llama.cpp's quantizer;
  2. a check that the two engines run the same model: llama.cpp's F16 logits against rwkvlite's
     fp16 file's over a random prompt (the run stops if they disagree);
  3. --rounds rounds, each a fresh process per engine and file in turn (the order rotating):
     --prompt random tokens, then --tokens greedy tokens, decode ms/token = the median of the
     per-token times (the argmax outside the timing, as in `rwkvlite bench`), and peak RSS.
Reported: each one's median ms/token and largest peak RSS; the weight bytes a token reads
(rwkvlite's own count; for llama.cpp every GGUF tensor but the embedding, plus one embedding
row) and the time over the bandwidth bound (bench/runtime.py's read bandwidth, measured before
each run); and per round the speed of each one over llama.cpp Q5_1 (median and range of the
per-round ratios of Q5_1's time to its time).

needs: pip install llama-cpp-python transformers (neither is a dependency of rwkvlite)
usage: python bench/llamacpp.py --llama-src DIR [--checkpoint rwkv7-0.1b.pth] [--files A.rwkvlite ...]
                                [--keep runs/rtb] [--rounds 5] [--threads N] [--json out.json] [--save [NAME]]
   or: python bench/llamacpp.py --worker FILE.gguf [--tokens 128] [--threads N]   (one engine run)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from rwkvlite.utils.io import atomic_path
from rwkvlite.utils.paths import shared_path

import results  # bench/results.py

HERE = os.path.dirname(os.path.abspath(__file__))

# BlinkDL names -> the names of RWKV's own Hugging Face export of RWKV-7, which llama.cpp's
# converter maps (gguf-py/gguf/tensor_mapping.py, "# rwkv7"); it stacks x_r..x_g itself and
# takes the LoRA factors in BlinkDL's [in, r] layout.
HF_NAMES = [
    (r"emb\.weight", "model.embeddings.weight"),
    (r"blocks\.0\.ln0\.(weight|bias)", r"model.layers.0.pre_norm.\1"),
    (r"blocks\.(\d+)\.(ln[12])\.(weight|bias)", r"model.layers.\1.\2.\3"),
    (r"blocks\.(\d+)\.att\.(.+)", r"model.layers.\1.attention.\2"),
    (r"blocks\.(\d+)\.ffn\.(.+)", r"model.layers.\1.feed_forward.\2"),
    (r"ln_out\.(weight|bias)", r"model.ln_out.\1"),
    (r"head\.weight", "lm_head.weight"),
]


def write_hf(checkpoint: str, folder: str, vocab_txt: str) -> None:
    """The checkpoint as config.json + model.safetensors + the World vocabulary, in folder."""
    import torch
    from safetensors.torch import save_file

    sd = torch.load(checkpoint, map_location="cpu", weights_only=True)
    out = {}
    for name, t in sd.items():
        for pattern, template in HF_NAMES:
            m = re.fullmatch(pattern, name)
            if m:
                out[m.expand(template)] = t.contiguous()
                break
        else:
            sys.exit(f"{checkpoint}: no Hugging Face name for {name}")
    if "blocks.0.att.r_k" not in sd or "blocks.1.att.v1" not in sd:
        sys.exit(f"{checkpoint}: not an RWKV-7 checkpoint of two or more layers")
    att = lambda k: sd[f"blocks.{1 if k == 'v1' else 0}.att.{k}"]  # noqa: E731 (layer 0 has no v LoRA)
    config = {"architectures": ["Rwkv7ForCausalLM"], "hidden_size": sd["emb.weight"].shape[1],
              "num_hidden_layers": 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks.")),
              "head_size": att("r_k").shape[1], "layer_norm_epsilon": 1e-5,
              "intermediate_size": sd["blocks.0.ffn.key.weight"].shape[0], "vocab_size": sd["emb.weight"].shape[0],
              "lora_rank_decay": att("w1").shape[1], "lora_rank_iclr": att("a1").shape[1],
              "lora_rank_value_residual_mix": att("v1").shape[1], "lora_rank_gate": att("g1").shape[1]}
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    save_file(out, os.path.join(folder, "model.safetensors"))
    shutil.copy(vocab_txt, os.path.join(folder, "rwkv_vocab_v20230424.txt"))


def make_ggufs(checkpoint: str, keep: str, llama_src: str, vocab_txt: str, threads: int) -> dict[str, str]:
    """{"llama.cpp F16": path, "llama.cpp Q5_1": path}, made unless they exist (written atomically)."""
    stem = os.path.join(keep, os.path.splitext(os.path.basename(checkpoint))[0])
    f16, q5 = stem + "-f16.gguf", stem + "-q5_1.gguf"
    if not os.path.exists(f16):
        converter = os.path.join(llama_src, "convert_hf_to_gguf.py")
        if not os.path.isfile(converter):
            sys.exit(f"--llama-src {llama_src}: no convert_hf_to_gguf.py there")
        with tempfile.TemporaryDirectory(dir=keep) as tmp:
            write_hf(checkpoint, tmp, vocab_txt)
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(llama_src, "gguf-py"),
                                                               os.environ.get("PYTHONPATH", "")]))
            r = subprocess.run([sys.executable, converter, tmp, "--outfile", os.path.join(tmp, "m.gguf"),
                                "--outtype", "f16"], env=env, capture_output=True, text=True)
            if r.returncode:
                sys.exit(f"llama.cpp's converter failed:\n{r.stderr[-3000:]}")
            os.replace(os.path.join(tmp, "m.gguf"), f16)
        print(f"converted {checkpoint} to GGUF F16: {f16}", flush=True)
    if not os.path.exists(q5):
        import ctypes

        import llama_cpp

        quiet(llama_cpp)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype, params.nthread = llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_1, threads
        with atomic_path(q5) as tmp:
            if llama_cpp.llama_model_quantize(f16.encode(), tmp.encode(), ctypes.byref(params)):
                raise SystemExit(f"llama.cpp's quantizer failed on {f16}")
        print(f"quantized {f16} to Q5_1: {q5}", flush=True)
    return {"llama.cpp F16": f16, "llama.cpp Q5_1": q5}


_QUIET = []


def quiet(llama_cpp) -> None:
    """llama.cpp's log (a line per tensor while loading or quantizing) silenced."""
    if not _QUIET:  # the callback kept alive: llama.cpp calls it for every line
        _QUIET.append(llama_cpp.llama_log_callback(lambda *a: None))
        llama_cpp.llama_log_set(_QUIET[0], None)


def gguf_bytes_per_token(path: str, llama_src: str) -> float:
    """Weight bytes a llama.cpp token reads: every tensor but the embedding, plus one embedding
    row (layer 0's placeholder v-LoRA, 0.2 MB at 0.1B, counted though it may go unread)."""
    sys.path.insert(0, os.path.join(llama_src, "gguf-py"))
    import gguf

    total = 0.0
    for t in gguf.GGUFReader(path).tensors:
        rows = int(np.prod(t.shape[1:])) if t.name == "token_embd.weight" else 1  # ggml order: [C, vocab]
        total += int(t.n_bytes) / rows
    return total


def prompt_tokens(n: int, vocab: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)  # as `rwkvlite bench` draws its prompt
    return [rng.randrange(1, vocab) for _ in range(n)]


def worker(path: str, prompt: int, tokens: int, threads: int, dump: str | None) -> dict:
    """One llama.cpp run in this process: figures as `rwkvlite bench` names them."""
    import llama_cpp

    from rwkvlite.utils.memory import peak_mib, reset_peak

    quiet(llama_cpp)
    llama_cpp.llama_backend_init()
    model = llama_cpp.llama_model_load_from_file(path.encode(), llama_cpp.llama_model_default_params())
    if not model:
        sys.exit(f"{path}: llama.cpp could not load it")
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_threads, cp.n_threads_batch = 512, 1, 1, threads, threads
    ctx = llama_cpp.llama_init_from_model(model, cp)
    vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
    one = (llama_cpp.llama_token * 1)()

    def step(token: int) -> np.ndarray:
        one[0] = token
        if llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(one, 1)):
            sys.exit(f"{path}: llama_decode failed")
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(vocab,))

    reset_peak()
    seen = [step(t).copy() for t in prompt_tokens(prompt, vocab)]
    if dump:
        np.save(dump, np.stack(seen))
    logits, times = seen[-1], []
    for _ in range(tokens):
        token = int(np.argmax(logits))
        t = time.perf_counter()
        logits = step(token)
        times.append(time.perf_counter() - t)
    return {"decode_ms_per_token_median": 1e3 * float(np.median(times)), "decode_ms_per_token": 1e3 * float(np.mean(times)),
            "peak_rss_generate_mib": peak_mib(), "file_bytes": os.path.getsize(path), "threads": threads}


def run_worker(path: str, prompt: int, tokens: int, threads: int, dump: str | None = None) -> dict:
    """worker() in a fresh process: its figures."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", path, "--prompt", str(prompt), "--tokens", str(tokens),
           "--threads", str(threads)] + (["--dump", dump] if dump else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"llama.cpp run of {path} failed: {r.stderr.strip()[-2000:]}")
    return json.loads(r.stdout.splitlines()[-1])


def same_model(gguf_f16: str, fp16_file: str, args, folder: str) -> float:
    """Largest logit difference between llama.cpp's F16 GGUF and rwkvlite's fp16 file over the
    prompt, relative to the logits' spread; stops the run above 1e-2."""
    from rwkvlite.runtime import Runtime

    dump = os.path.join(folder, "llamacpp-logits.npy")
    run_worker(gguf_f16, args.prompt, 1, args.threads, dump)
    theirs = np.load(dump)
    rt = Runtime(fp16_file)
    state, ours = None, []
    for t in prompt_tokens(args.prompt, rt.config["vocab_size"]):
        logits, state = rt.step(t, state)
        ours.append(logits)
    ours = np.stack(ours)
    diff = float(np.abs(ours - theirs).max() / ours.std())
    agree = float((ours.argmax(1) == theirs.argmax(1)).mean())
    print(f"same model: llama.cpp F16 vs rwkvlite fp16 logits over {args.prompt} tokens: max |diff| = {diff:.2e} "
          f"of their spread (std), argmax agrees on {agree:.0%} of positions", flush=True)
    if diff > 1e-2:
        sys.exit("the GGUF does not compute the same model as the rwkvlite file: no comparison made")
    return diff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-src", help="llama.cpp source tree (its convert_hf_to_gguf.py and gguf-py)")
    ap.add_argument("--keep", default="runs/rtb", help="folder of the checkpoint and files (bench/runtime.py --keep)")
    ap.add_argument("--checkpoint", default=None, help="BlinkDL RWKV-7 checkpoint (default KEEP/rwkv7-0.1b.pth)")
    ap.add_argument("--files", nargs="+", default=None,
                    help="rwkvlite files (default KEEP/rwkv7-0.1b-{fp16,int8,rwkvquant,lite-3bit}.rwkvlite)")
    ap.add_argument("--vocab", default=shared_path("tokenizers", "rwkv_vocab_v20230424.txt"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", default=None)
    results.add_argument(ap, "llamacpp")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--dump", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.prompt, args.tokens, args.threads, args.dump)))
        return
    sys.path.insert(0, HERE)
    from runtime import bench_file, read_bandwidth_gbs, x_bound  # bench/runtime.py's

    if not args.llama_src:
        ap.error("--llama-src is required (a llama.cpp source tree)")
    checkpoint = args.checkpoint or os.path.join(args.keep, "rwkv7-0.1b.pth")
    files = args.files or [os.path.join(args.keep, f"rwkv7-0.1b-{r}.rwkvlite")
                           for r in ("fp16", "int8", "rwkvquant", "lite-3bit")]
    for path in [checkpoint, args.vocab, *files]:
        if not os.path.isfile(path):
            sys.exit(f"{path}: no such file (make the bench files with python bench/runtime.py --keep {args.keep})")
    engines = make_ggufs(checkpoint, args.keep, args.llama_src, args.vocab, args.threads)
    fp16 = [f for f in files if f.endswith("-fp16.rwkvlite")]
    if fp16:
        same_model(engines["llama.cpp F16"], fp16[0], args, args.keep)
    reads = {name: gguf_bytes_per_token(path, args.llama_src) for name, path in engines.items()}
    engines.update({"rwkvlite " + os.path.basename(f).removesuffix(".rwkvlite"): f for f in files})
    names, runs = list(engines), {name: [] for name in engines}
    result = os.path.join(args.keep, "llamacpp-bench.json")
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]  # rotating, so no one always goes first
        for name in order:
            path, gbs = engines[name], read_bandwidth_gbs(args.threads)  # each run against its own reading
            f = (run_worker(path, args.prompt, args.tokens, args.threads) if path.endswith(".gguf")
                 else bench_file(path, result, args.tokens, args.threads))
            f["bytes_read_per_token"] = reads.get(name, f.get("bytes_read_per_token"))
            f["x_bound"] = x_bound(f, gbs)
            runs[name].append(f)
            print(f"round {r + 1}/{args.rounds} {name}: {f['decode_ms_per_token_median']:.2f} ms/token, "
                  f"peak RSS {f['peak_rss_generate_mib']:.0f} MiB, read bandwidth {gbs:.1f} GB/s, "
                  f"{f['x_bound']:.2f} x bound", flush=True)
    rows = summarise(names, engines, runs)
    results.write(args, rows, [table_row(r) for r in rows])


def summarise(names: list[str], engines: dict, runs: dict) -> list[dict]:
    """Per engine and file: medians over the rounds, and speed against llama.cpp Q5_1 round by round."""
    base = [f["decode_ms_per_token_median"] for f in runs["llama.cpp Q5_1"]]
    rows = []
    print(f"{'engine and file':<30} {'file MB':>8} {'peak RSS MiB':>12} {'MB read/tok':>11} {'x bound':>7} "
          f"{'ms/token':>9} {'speed vs llama.cpp Q5_1':>24}")
    for name in names:
        ms = [f["decode_ms_per_token_median"] for f in runs[name]]
        speed = [b / m for b, m in zip(base, ms)]  # per round: Q5_1's time over this one's
        row = {"name": name, "file": engines[name], "file_bytes": runs[name][0]["file_bytes"], "ms_runs": ms,
               "ms_per_token": float(np.median(ms)), "peak_rss_max_mib": max(f["peak_rss_generate_mib"] for f in runs[name]),
               "speed_vs_q5_1_runs": speed, "speed_vs_q5_1": float(np.median(speed)),
               "bytes_read_per_token": runs[name][0]["bytes_read_per_token"],
               "x_bound": float(np.median([f["x_bound"] for f in runs[name]]))}
        rows.append(row)
        print(f"{name:<30} {row['file_bytes'] / 1e6:>8.1f} {row['peak_rss_max_mib']:>12.0f} "
              f"{row['bytes_read_per_token'] / 1e6:>11.1f} {row['x_bound']:>7.2f} {row['ms_per_token']:>9.2f} "
              f"{row['speed_vs_q5_1']:>10.2f}x ({min(speed):.2f}-{max(speed):.2f})", flush=True)
    return rows


def table_row(r: dict) -> dict:
    """The printed table's figures of one engine and file (bench/results/NAME.json)."""
    return {"name": r["name"], "file_mb": r["file_bytes"] / 1e6, "peak_rss_mib": r["peak_rss_max_mib"],
            "read_mb_per_token": r["bytes_read_per_token"] / 1e6, "ms_per_token": r["ms_per_token"],
            "x_bound": r["x_bound"], "speed_vs_q5_1": r["speed_vs_q5_1"],
            "speed_min": min(r["speed_vs_q5_1_runs"]), "speed_max": max(r["speed_vs_q5_1_runs"])}


if __name__ == "__main__":
    main()
