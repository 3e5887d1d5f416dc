#!/usr/bin/env python3
"""Copies KV-cache decode PTX with `.minnctapersm N` on the decode entry
(`attnc_<kernel>`, not its twins or the merge): ptxas then caps the
entry's registers at 65536 / (N x 128 threads), an occupancy experiment
without a compiler flag. The .meta files and the bf16 kernel (whose shared
memory allows two CTAs anyway) are copied unchanged, so decode.py
--compare-dir can time the copies beside the originals.

  bench/gpu/min_ctas.py 4 bench/gpu/ptx bench/gpu/ptx-c4
"""
import argparse
import os
import re
import shutil

KERNELS = ["int8_kv_attention", "int4_kv_attention", "int4_token_attention", "fp8_kv_attention"]


def with_min_ctas(ptx, entry, n):
    start = ptx.index(".visible .entry %s(" % entry)
    body = ptx.index("\n{", start)
    header = re.sub(r"\n\.minnctapersm \d+", "", ptx[start:body])
    return ptx[:start] + header + "\n.minnctapersm %d" % n + ptx[body:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ctas", type=int)
    ap.add_argument("src")
    ap.add_argument("dst")
    a = ap.parse_args()
    os.makedirs(a.dst, exist_ok=True)
    for k in KERNELS + ["paged_attention"]:
        name = "%s_bf16_d128_kv.ptx" % k
        ptx = open(os.path.join(a.src, name)).read()
        if k != "paged_attention":
            ptx = with_min_ctas(ptx, "attnc_" + k, a.ctas)
        open(os.path.join(a.dst, name), "w").write(ptx)
        shutil.copy(os.path.join(a.src, name + ".meta"), a.dst)
    print("PTX with .minnctapersm %d in %s" % (a.ctas, a.dst))


if __name__ == "__main__":
    main()
