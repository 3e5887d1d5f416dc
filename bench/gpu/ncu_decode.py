#!/usr/bin/env python3
"""One bf16 decode step (B=8, Hq/Hkv 32/8, D 128, 64k slots) by attnc, SDPA
FA2 and cuDNN, twice each: a target for Nsight Compute, to compare the
kernels' memory and stall profiles side by side.

    ncu --set full -k regex:'attnc_paged_attention$|cudnn_generated|splitkv_kernel' \\
        python3 bench/gpu/ncu_decode.py [--in-order] [--variant _x]

--kernel int4_token_attention_bf16_d128_kv (any of decode.QUANTIZED): that
quantized kernel alone over its storage.
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
ap.add_argument("--kernel", default="paged_attention_bf16_d128_kv",
                help="a kernel of decode.QUANTIZED times attnc alone over its storage")
ap.add_argument("--ptx-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "ptx"))
a = ap.parse_args()
ptx = os.path.join(a.ptx_dir, "%s%s.ptx" % (a.kernel, a.variant))
storage = dict(decode.QUANTIZED).get(a.kernel)
runs, _ = decode.decode_runs(Kernel(ptx), 8, 32, 8, a.length, 16, decode.all_positions,
                             torch.Generator().manual_seed(0), sequential=a.in_order,
                             baselines=storage is None, storage=storage)
for f in runs.values():
    f, ctx = f if isinstance(f, tuple) else (f, contextlib.nullcontext)
    with ctx():
        for _ in range(2):
            f()
torch.cuda.synchronize()
