#!/usr/bin/env python3
"""Side-by-side GPU benchmark: attnc kernels vs FlexAttention and SDPA.

Runs on the GPU machine (torch, triton, cupy there). attnc kernels are AOT
PTX made on the development machine by bench/gpu/build-ptx.sh; they are loaded
through the CUDA driver (cupy.RawModule -> cuModuleLoadData) and launched
with the kernel ABI of compiler/include/attnc/Pipeline/CudaPipeline.h.

  python3 bench/gpu/bench.py --ptx bench/gpu/ptx [--check-only] [--cases a,b]

For every case: one set of random inputs; outputs of attnc, Flex and SDPA
(where it applies) are compared against a float32 reference on a slice of
heads (rel. L2 error), then each is timed with triton's do_bench (median,
CUDA events). TFLOP/s are effective: 4*B*Hq*Nq*Nk*D times the fraction of
(q, k) pairs the mask keeps.
"""
import argparse
import math
import os
import sys

import cupy
import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention
from triton.testing import do_bench

torch.backends.cuda.matmul.allow_tf32 = False
# Every case compiles Flex with its own mask/score closures; the default
# limit (8) silently falls back to eager (unfused, ~7 TFLOP/s) after that.
torch._dynamo.config.cache_size_limit = 256
torch._dynamo.config.accumulated_cache_size_limit = 1024


def parse_meta(path):
    meta = {"params": []}
    for line in open(path):
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "param":
            meta["params"].append(parts[1:])
        elif len(parts) >= 2:
            meta[parts[0]] = parts[1]
    return meta


class AttncKernel:
    """A PTX kernel + its metadata, launched on torch tensors."""

    def __init__(self, ptx_path):
        self.meta = parse_meta(ptx_path + ".meta")
        self.module = cupy.RawModule(path=ptx_path)
        self.fn = self.module.get_function(self.meta["entry"])
        self.shared = int(self.meta["shared_bytes"])
        self.threads = int(self.meta["threads"])
        self.block_q = int(self.meta["block_q"])
        if self.shared > 48 * 1024:
            self.fn.max_dynamic_shared_size_bytes = self.shared

    def __call__(self, q, k, v, o, lse=None, q_offset=0, params=None):
        params = params or {}
        B, Hq, Nq, D = q.shape
        Hkv, Nk = k.shape[1], k.shape[2]
        args = [np.uint64(t.data_ptr()) for t in (q, k, v, o)]
        args.append(np.uint64(lse.data_ptr() if lse is not None else 0))
        args += [np.int32(x) for x in (B, Hq, Hkv, Nq, Nk, q_offset)]
        for t in (q, k, v, o):
            assert t.stride(3) == 1
            args += [np.int64(t.stride(0)), np.int64(t.stride(1)), np.int64(t.stride(2))]
        if lse is not None:
            args += [np.int64(lse.stride(0)), np.int64(lse.stride(1))]
        else:
            args += [np.int64(0), np.int64(0)]
        args.append(np.int32(1 if lse is not None else 0))
        for p in self.meta["params"]:
            name, kind, ty = p[0], p[1], p[2]
            val = params.get(name)
            if kind == "tensor":
                assert val is not None and val.is_contiguous(), name
                args.append(np.uint64(val.data_ptr()))
                args += [np.int32(s) for s in val.shape]
            else:
                if val is None:
                    assert p[3] != "none", f"missing scalar {name}"
                    val = float(p[3])
                cast = {"i32": np.int32, "i64": np.int64, "f32": np.float32, "f64": np.float64}[ty]
                args.append(cast(val))
        if Nq == 0 or Nk == 0:
            raise ValueError("empty problem: handled by the runtime, not the kernel")
        grid = ((Nq + self.block_q - 1) // self.block_q, Hq, B)
        stream = cupy.cuda.ExternalStream(torch.cuda.current_stream().cuda_stream)
        with stream:
            self.fn(grid, (self.threads, 1, 1), tuple(args), shared_mem=self.shared)


# ---- cases ------------------------------------------------------------------

def doc_ids(n, ndocs, gen):
    ndocs = max(1, min(ndocs, n))
    cuts = torch.sort(torch.randperm(n - 1, generator=gen)[: ndocs - 1] + 1).values
    ids = torch.zeros(n, dtype=torch.int32)
    for c in cuts.tolist():
        ids[c:] += 1
    return ids.cuda()


def alibi_slopes(h):
    return torch.tensor([2.0 ** (-8.0 * (i + 1) / h) for i in range(h)], dtype=torch.float32).cuda()


def make_case(name, B, Hq, Hkv, N, D, gen):
    """Returns dict(kernel file stem, mask_mod, score_mod, dense mask fn, params, sdpa)."""
    # mask_bh: the mask depends on (b, h) as well, so Flex's BlockMask must be
    # built per batch / head (create_block_mask(B, H)), not broadcast.
    c = dict(ptx=None, mask=None, score=None, params={}, sdpa=None, gqa=Hq != Hkv,
             mask_bh=(None, None))
    if name == "full":
        c.update(ptx="full_attention", sdpa=dict(is_causal=False))
    elif name == "causal":
        c.update(ptx="causal_attention", mask=lambda b, h, q, k: q >= k, sdpa=dict(is_causal=True))
    elif name == "swa1024":
        c.update(ptx="sliding_window_attention",
                 mask=lambda b, h, q, k: (q >= k) & (q - k < 1024))
    elif name in ("doc8", "doc64"):
        ids = doc_ids(N, int(name[3:]), gen)
        c.update(ptx="document_attention", mask=lambda b, h, q, k: ids[q] == ids[k],
                 params={"doc": ids})
    elif name == "prefix_lm":
        # A prefix of N/8 .. N/2 tokens per sequence sees itself bidirectionally.
        plen = torch.randint(N // 8, N // 2 + 1, (B,), generator=gen, dtype=torch.int32).cuda()
        c.update(ptx="prefix_lm_attention", mask=lambda b, h, q, k: (q >= k) | (k < plen[b]),
                 params={"prefix_len": plen}, mask_bh=(B, None))
    elif name == "longformer":
        # Local window R = 256 (the kernel's default: 512 keys around the
        # query) plus 64 random global tokens.
        g = torch.zeros(N, dtype=torch.int32)
        g[torch.randperm(N, generator=gen)[:64]] = 1
        g = g.cuda()
        c.update(ptx="longformer_attention",
                 mask=lambda b, h, q, k: ((q - k).abs() <= 256) | (g[q] != 0) | (g[k] != 0),
                 params={"is_global": g})
    elif name.startswith("topk"):
        # A top-k block selection (HiP / FlexPrefill style) inside the causal
        # mask: per (b, h, query block of 128), the diagonal block and k-1
        # random earlier blocks, given as a runtime block mask
        # (lib/block_sparse.attn); every head keeps the same number of pairs.
        kb = int(name[4:])
        nb = (N + 127) // 128
        r = torch.rand(B, Hq, nb, nb, generator=gen)
        below = torch.tril(torch.ones(nb, nb, dtype=torch.bool), -1)
        r = r.masked_fill(~below, -1.0)
        pick = r.topk(min(kb - 1, nb), dim=-1).indices
        sel = torch.zeros(B, Hq, nb, nb, dtype=torch.int32)
        sel.scatter_(-1, pick, 1)
        full_sel = sel * below
        sel = (full_sel + torch.eye(nb, dtype=torch.int32)).contiguous().cuda()
        full_sel = full_sel.cuda()
        mask = lambda b, h, q, k: (q >= k) & (sel[b, h, q // 128, k // 128] != 0)

        def flex_block_mask():
            # What a top-k method hands Flex: the selection as block lists
            # (the diagonal block partial, the others full), not a dense
            # evaluation (create_block_mask per head needs B*H*N*N bytes).
            diag = torch.arange(nb, device="cuda", dtype=torch.int32)
            kv_num = torch.ones(B, Hq, nb, device="cuda", dtype=torch.int32)
            kv_idx = torch.zeros(B, Hq, nb, nb, device="cuda", dtype=torch.int32)
            kv_idx[..., 0] = diag
            full_num = full_sel.sum(-1, dtype=torch.int32)
            full_idx = torch.argsort(full_sel, dim=-1, descending=True, stable=True).to(torch.int32)
            return BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=128,
                                            mask_mod=mask)

        c.update(ptx="block_sparse_causal_attention", mask=mask, params={"blocks": sel},
                 mask_bh=(B, Hq), flex_block_mask=flex_block_mask)
    elif name == "natten2d":
        # A 2-D neighborhood (13 x 13) on a ROWS x COLS image of N tokens;
        # the PTX is built for these constants (build-ptx.sh).
        cols = 128 if N <= 8192 else 256
        rows, kr, kc = N // cols, 13, 13

        def natten1d(qq, kk, K, L):
            start = (qq - K // 2).clamp(min=0, max=L - K)
            return (kk >= start) & (kk < start + K)

        c.update(ptx=f"natten2d_n{N}",
                 mask=lambda b, h, q, k: natten1d(q // cols, k // cols, kr, rows)
                 & natten1d(q % cols, k % cols, kc, cols))
    elif name == "alibi_causal":
        sl = alibi_slopes(Hq)
        c.update(ptx="alibi_causal", mask=lambda b, h, q, k: q >= k,
                 score=lambda s, b, h, q, k: s - sl[h] * (q - k).to(torch.float32),
                 params={"slopes": sl})
    elif name == "softcap_causal":
        c.update(ptx="softcap_causal", mask=lambda b, h, q, k: q >= k,
                 score=lambda s, b, h, q, k: 30.0 * torch.tanh(s / 30.0), params={"cap": 30.0})
    elif name == "gqa_causal":
        c.update(ptx="gqa_causal", mask=lambda b, h, q, k: q >= k, sdpa=dict(is_causal=True))
    else:
        raise ValueError(name)
    return c


def reference(q, k, v, case, q_offset=0, heads=None):
    """float32 math on a slice of query heads (dense scores)."""
    B, Hq, Nq, D = q.shape
    Hkv, Nk = k.shape[1], k.shape[2]
    heads = heads if heads is not None else list(range(Hq))
    out = []
    qi = torch.arange(Nq, device=q.device)[:, None] + q_offset
    ki = torch.arange(Nk, device=q.device)[None, :]
    for h in heads:
        kh = h // (Hq // Hkv)
        s = (q[:, h].float() @ k[:, kh].float().transpose(-1, -2)) / math.sqrt(D)
        bb = torch.zeros(1, dtype=torch.long, device=q.device)
        hh = torch.full((1,), h, dtype=torch.long, device=q.device)
        if case["score"] is not None:
            s = case["score"](s, bb, hh, qi, ki)
        if case["mask"] is not None:
            m = case["mask"](bb, hh, qi, ki)
            s = s.masked_fill(~m, float("-inf"))
        p = torch.softmax(s, dim=-1)
        p = torch.nan_to_num(p, nan=0.0)
        out.append(p @ v[:, kh].float())
    return torch.stack(out, dim=1)


def rel_err(x, ref):
    x = x.float()
    if torch.isnan(x).any():
        return float("nan")
    return (torch.linalg.vector_norm(x - ref) / torch.linalg.vector_norm(ref)).item()


def keep_fraction(case, N, q_offset=0):
    if case["mask"] is None:
        return 1.0
    total, kept = 0, 0
    for q0 in range(0, N, 1024):
        qi = torch.arange(q0, min(q0 + 1024, N), device="cuda")[:, None] + q_offset
        ki = torch.arange(N, device="cuda")[None, :]
        z = torch.zeros(1, dtype=torch.long, device="cuda")
        m = case["mask"](z, z, qi, ki)
        kept += m.sum().item()
        total += m.numel()
    return kept / total


def run_case(name, B, Hq, Hkv, N, D, dtype, ptx_dir, check_only, flex_compiled, variant="",
             baselines=True):
    use_flex = flex_compiled is not None
    gen = torch.Generator().manual_seed(0)
    case = make_case(name, B, Hq, Hkv, N, D, gen)
    dt = {"bf16": torch.bfloat16, "f16": torch.float16}[dtype]
    q = torch.randn(B, Hq, N, D, generator=gen).to(dt).cuda()
    k = torch.randn(B, Hkv, N, D, generator=gen).to(dt).cuda()
    v = torch.randn(B, Hkv, N, D, generator=gen).to(dt).cuda()
    kern = AttncKernel(os.path.join(ptx_dir, f"{case['ptx']}_{dtype}_d{D}{variant}.ptx"))
    o = torch.full_like(q, float("nan"))
    lse = torch.full((B, Hq, N), float("nan"), device="cuda")
    kern(q, k, v, o, lse, params=case["params"])
    torch.cuda.synchronize()
    heads = [0, Hq - 1]
    ref = reference(q[:1], k[:1], v[:1], case, heads=heads)
    row = dict(case=name + variant, shape=f"{B}x{Hq}/{Hkv}x{N}x{D}")
    row["err_attnc"] = rel_err(o[:1, heads], ref)
    row["unwritten"] = int(torch.isnan(o).sum().item())

    # FlexAttention (compiled), its BlockMask build time separately.
    mask_mod = case["mask"]
    score_mod = None
    if case["score"] is not None:
        sfn = case["score"]
        score_mod = lambda s, b, h, q_, k_: sfn(s, b, h, q_, k_)
    bm = None
    if use_flex:
        if mask_mod is not None:
            bm = (case["flex_block_mask"]() if "flex_block_mask" in case else
                  create_block_mask(mask_mod, *case["mask_bh"], N, N, device="cuda"))
        of = flex_compiled(q, k, v, score_mod=score_mod, block_mask=bm, enable_gqa=case["gqa"])
        row["err_flex"] = rel_err(of[:1, heads], ref)
    o_sdpa = {}
    if case["sdpa"] is not None and baselines:
        for label, backend in (("fa2", SDPBackend.FLASH_ATTENTION),
                               ("cudnn", SDPBackend.CUDNN_ATTENTION)):
            try:
                with sdpa_kernel(backend):
                    o_sdpa[label] = F.scaled_dot_product_attention(
                        q, k, v, enable_gqa=case["gqa"], **case["sdpa"])
                row["err_" + label] = rel_err(o_sdpa[label][:1, heads], ref)
            except Exception as e:  # backend refuses the case
                row["err_" + label] = f"n/a ({type(e).__name__})"
    if check_only:
        return row

    frac = keep_fraction(case, N)
    flops = 4.0 * B * Hq * N * N * D * frac
    tf = lambda ms: flops / (ms * 1e-3) / 1e12
    ms = do_bench(lambda: kern(q, k, v, o, None, params=case["params"]), warmup=50, rep=200,
                  return_mode="median")
    row["attnc_tflops"] = tf(ms)
    row["attnc_ms"] = ms
    if use_flex:
        msf = do_bench(lambda: flex_compiled(q, k, v, score_mod=score_mod, block_mask=bm,
                                             enable_gqa=case["gqa"]),
                       warmup=50, rep=200, return_mode="median")
        row["flex_tflops"] = tf(msf)
        row["flex_ms"] = msf
    if use_flex and mask_mod is not None:
        row["blockmask_ms"] = do_bench(
            case.get("flex_block_mask",
                     lambda: create_block_mask(mask_mod, *case["mask_bh"], N, N, device="cuda")),
            warmup=2,
            rep=20, return_mode="median")
    for label, backend in (("fa2", SDPBackend.FLASH_ATTENTION),
                           ("cudnn", SDPBackend.CUDNN_ATTENTION)):
        if label in o_sdpa:
            def f(backend=backend):
                with sdpa_kernel(backend):
                    F.scaled_dot_product_attention(q, k, v, enable_gqa=case["gqa"],
                                                   **case["sdpa"])
            row[label + "_tflops"] = tf(do_bench(f, warmup=50, rep=200, return_mode="median"))
    if use_flex:
        row["vs_flex"] = row["attnc_tflops"] / row["flex_tflops"]
        # Attention + mask set-up: Flex builds its BlockMask per mask; attnc
        # classifies inside the kernel (nothing to build).
        row["vs_flex_setup"] = (row["flex_ms"] + row.get("blockmask_ms", 0.0)) / ms
    if "fa2_tflops" in row:
        row["vs_fa2"] = row["attnc_tflops"] / row["fa2_tflops"]
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ptx", default="bench/gpu/ptx")
    ap.add_argument("--cases", default="full,causal,swa1024,doc8,alibi_causal,softcap_causal,gqa_causal")
    ap.add_argument("--shapes", default="2x16x8192,8x16x2048")
    ap.add_argument("--check-only", action="store_true")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--variants", default="", help="comma list of PTX name suffixes, e.g. ,_bq128")
    ap.add_argument("--no-flex", action="store_true", help="skip FlexAttention (compiles slowly)")
    args = ap.parse_args()
    print(torch.cuda.get_device_name(), "torch", torch.__version__, flush=True)
    flex_compiled = None if args.no_flex else torch.compile(flex_attention, dynamic=False)
    rows = []
    for shp in args.shapes.split(","):
        B, H, N = (int(x) for x in shp.split("x"))
        for name in args.cases.split(","):
            Hq, Hkv = (32, 8) if name == "gqa_causal" else (H, H)
            for vi, variant in enumerate(args.variants.split(",")):
                try:
                    # Flex and SDPA once per case (first variant).
                    row = run_case(name, B, Hq, Hkv, N, 128, args.dtype, args.ptx,
                                   args.check_only, flex_compiled if vi == 0 else None, variant,
                                   baselines=vi == 0)
                except Exception as e:
                    row = dict(case=name + variant, shape=shp, error=f"{type(e).__name__}: {e}")
                rows.append(row)
                torch.cuda.empty_cache()
                print(row, flush=True)
    print()
    cols = ["case", "shape", "attnc_tflops", "flex_tflops", "fa2_tflops", "cudnn_tflops",
            "vs_flex", "vs_fa2", "blockmask_ms", "vs_flex_setup", "err_attnc", "err_flex", "unwritten"]
    print(" | ".join(cols))
    for r in rows:
        out = []
        for c in cols:
            x = r.get(c, "")
            out.append(f"{x:.4g}" if isinstance(x, float) else str(x))
        print(" | ".join(out))


if __name__ == "__main__":
    main()
