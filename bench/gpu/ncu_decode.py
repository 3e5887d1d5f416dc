#!/usr/bin/env python3
"""One bf16 decode step (B=8, Hq/Hkv 32/8, D 128, 64k slots) by attnc, SDPA
FA2 and cuDNN, twice each: a target for Nsight Compute, to compare the
kernels' memory and stall profiles side by side.

    ncu --set full -k regex:'attnc_paged_attention$|cudnn_generated|splitkv_kernel' \\
        python3 bench/gpu/ncu_decode.py [--in-order] [--variant _x]
"""
import argparse
import contextlib
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import decode  # noqa: E402
from attnc_runtime import Kernel  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--in-order", action="store_true", help="pages in pool order")
ap.add_argument("--variant", default="")
ap.add_argument("--length", type=int, default=65536)
a = ap.parse_args()
ptx = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ptx",
                   "paged_attention_bf16_d128_kv%s.ptx" % a.variant)
runs, _ = decode.decode_runs(Kernel(ptx), 8, 32, 8, a.length, 16, decode.all_positions,
                             torch.Generator().manual_seed(0), sequential=a.in_order)
for f in runs.values():
    f, ctx = f if isinstance(f, tuple) else (f, contextlib.nullcontext)
    with ctx():
        for _ in range(2):
            f()
torch.cuda.synchronize()
