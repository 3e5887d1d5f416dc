#!/usr/bin/env python3
"""The static instruction mix of a kernel's main loop, from its SASS: the
longest backward branch of each entry function (the KV loop of the decode
and flash kernels), its instruction count and the most frequent opcodes.
A count of what one loop step issues per warp, taken here without a GPU
(bench/NOTES.md: the quantized decode is issue-bound).

    python3 bench/gpu/sass_loop.py bench/gpu/ptx/int4_token_attention_bf16_d128_kv.ptx \\
        bench/gpu/ptx-biask/int4_token_attention_bf16_d128_kv.ptx [--kernel REGEX]

Needs ptxas (the CUDA toolkit) and cuobjdump + nvdisasm; where the toolkit
lacks them, the PyPI wheels nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm
hold both (unzip, chmod +x, and put their bin/ on PATH). Conditional
blocks inside the loop (the lazy rescale's O *= alpha) count as if taken.
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile


def functions(sass):
    """{function name: [(address, instruction text)]} of a cuobjdump listing."""
    funcs, cur = collections.OrderedDict(), None
    for line in sass.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            cur = funcs.setdefault(m.group(1), [])
            continue
        m = re.match(r"\s+/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
        if m and cur is not None:
            cur.append((int(m.group(1), 16), m.group(2).strip()))
    return funcs


def main_loop(instructions):
    """The instructions of the longest backward branch's range."""
    best = None
    for addr, text in instructions:
        m = re.search(r"BRA (0x[0-9a-f]+)", text)
        if m and int(m.group(1), 16) < addr:
            target = int(m.group(1), 16)
            if best is None or addr - target > best[1] - best[0]:
                best = (target, addr)
    if best is None:
        return []
    return [t for a, t in instructions if best[0] <= a <= best[1]]


def opcode(text):
    return re.sub(r"^@!?U?P\w+\s+", "", text).split()[0].split(".")[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ptx", nargs="+")
    ap.add_argument("--arch", default="sm_90a")
    ap.add_argument("--kernel", default=r"^attnc_\w+?(?<!_merge)(?<!_append)(?<!_move)$",
                    help="entry functions to report (regex)")
    ap.add_argument("--top", type=int, default=14)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for path in a.ptx:
            cubin = os.path.join(tmp, "k.cubin")
            subprocess.run(["ptxas", "-arch=" + a.arch, path, "-o", cubin], check=True)
            sass = subprocess.run(["cuobjdump", "-sass", cubin], check=True,
                                  capture_output=True, text=True).stdout
            for name, ins in functions(sass).items():
                if not re.search(a.kernel, name):
                    continue
                body = main_loop(ins)
                mix = collections.Counter(opcode(t) for t in body)
                top = ", ".join("%s %d" % kv for kv in mix.most_common(a.top))
                print("%s %s: loop %d: %s" % (path, name, len(body), top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
