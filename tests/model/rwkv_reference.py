"""Run BlinkDL's `rwkv` package on a .pth and save its logits (called in a subprocess by the tests).

usage: python rwkv_reference.py MODEL.pth TOKENS.pt OUT.pt
Saves {"sequence": [T, V] logits of one full-output call, "step": [T, V] of T one-token calls}.
The package picks its RWKV-7 code from RWKV_V7_ON at import time, hence a separate process.
"""
import sys

import torch

import os

path, tokens_path, out_path = sys.argv[1:4]
from rwkv.model import RWKV  # noqa: E402  (environment must be set first)

if os.environ.get("RWKV_V7_ON") == "1":  # the v7 class appends ".pth" itself
    model = RWKV(path[: -len(".pth")], "cpu fp32")
else:
    model = RWKV(path, "cpu fp32", verbose=False)
tokens = torch.load(tokens_path).tolist()
with torch.no_grad():
    seq, _ = model.forward(tokens, None, full_output=True)
    state, steps = None, []
    for t in tokens:
        logits, state = model.forward([t], state)
        steps.append(logits.clone())
torch.save({"sequence": seq.float(), "step": torch.stack(steps).float()}, out_path)
