#!/usr/bin/env python3
"""KV-cache decode on the GPU: attnc's split-KV decode kernels over a paged
cache, checked against float64 attention over exactly the retained slots,
then timed side by side with SDPA and FlexAttention decode.

The kernels are AOT PTX (bench/gpu/build-ptx.sh: *_kv*.ptx, compiled with
`attnc --kv-cache`) launched through the light runtime's C API
(attnc_runtime.py, libAttncRuntime.so). Pools and tables are built here in
torch with the layout of the runtime's KvCache (docs/kv-cache.md): a page
holds one KV head's P slots; table rows are (sequence b, KV head g) =
b * Hkv + g; pages are handed out in a random order, so every tile crosses
pages that are far apart in the pool.

    python3 bench/gpu/decode.py --check              # correctness only
    python3 bench/gpu/decode.py --bench [--no-flex]  # + the timing table
"""
import argparse
import contextlib
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attnc_runtime import Kernel  # noqa: E402

DT = {"bf16": torch.bfloat16, "f16": torch.float16}


class PagedCache:
    """K/V pools and the i32 tables of the kernel's ABI for B sequences.

    positions[b][g]: the logical positions held by (b, g)'s slots, in slot
    order (-1 for a dropped slot); slot j lives in page pages[j // P] at
    row j % P. Pool pages are assigned in a random order."""

    def __init__(self, B, Hkv, D, Dv, P, positions, dtype, gen, spare_pages=3, storage=None,
                 sequential=False, page_runs=1):
        rows = B * Hkv
        assert len(positions) == rows
        lens = [len(p) for p in positions]
        max_slots = max(1, max(lens))
        max_pages = max(1, (max_slots + P - 1) // P)
        need = sum((n + P - 1) // P for n in lens)
        num_pages = need + spare_pages
        # Pool pages in order, or runs of page_runs consecutive pages in
        # random order (1: every page anywhere).
        runs = [list(range(s, min(s + page_runs, num_pages)))
                for s in range(0, num_pages, page_runs)]
        order = list(range(num_pages)) if sequential else \
            [p for i in torch.randperm(len(runs), generator=gen).tolist() for p in runs[i]]
        k = torch.randn(num_pages, P, D, generator=gen).cuda()
        v = torch.randn(num_pages, P, Dv, generator=gen).cuda()
        # storage: None (dtype pages), ("i8", group or 0), ("i4", group) or
        # ("i4", group, "f16") (f16 scales):
        # symmetric quantization like KvCache's on append (scale = max|x| /
        # qmax per token or per group of the head dim; torch.round takes
        # halves to even, KvCache away from zero: the kernel reads whichever
        # values are stored).
        self.storage = storage
        self.k_scale = self.v_scale = None
        if storage is None:
            self.k_pool, self.v_pool = k.to(dtype), v.to(dtype)
            self.k_exact, self.v_exact = self.k_pool.float(), self.v_pool.float()
        else:
            self.k_pool, self.k_scale, self.k_exact = quantize(k, *storage)
            self.v_pool, self.v_scale, self.v_exact = quantize(v, *storage)
        self.k_orig, self.v_orig = k, v
        pages = torch.zeros(rows, max_pages, dtype=torch.int32)
        pos = torch.full((rows, max_slots), -1, dtype=torch.int32)
        used = 0
        for r, p in enumerate(positions):
            n = len(p)
            for j in range((n + P - 1) // P):
                pages[r, j] = order[used]
                used += 1
            if n:
                pos[r, :n] = torch.tensor(p, dtype=torch.int32)
        self.pages, self.pos = pages.cuda(), pos.cuda()
        self.len = torch.tensor(lens, dtype=torch.int32).cuda()
        self.P, self.max_length = P, max(lens)
        self.positions = positions

    def slots(self, r, original=False):
        """K and V rows [n, D] of table row r, in slot order (float32): the
        stored values (dequantized), or the values before quantization."""
        k, v = (self.k_orig, self.v_orig) if original else (self.k_exact, self.v_exact)
        n = len(self.positions[r])
        if n == 0:
            return (torch.zeros(0, k.shape[2], device="cuda"),
                    torch.zeros(0, v.shape[2], device="cuda"))
        j = torch.arange(n, device="cuda")
        page = self.pages[r].long()[j // self.P]
        return k[page, j % self.P], v[page, j % self.P]

    def decode_args(self, with_positions=True):
        """The cache's part of a decode call. with_positions=False: no kv_pos
        (the kernel takes slot j for position j; every row must hold 0, 1,
        ... in order, as a cache that retains all does)."""
        extra = {}
        if self.storage is not None:
            extra = {"k_scale": self.k_scale, "v_scale": self.v_scale}
        if not with_positions:
            assert all(p == list(range(len(p))) for p in self.positions), "positions not slots"
        return dict(k_pool=self.k_pool, v_pool=self.v_pool, kv_pages=self.pages,
                    kv_pos=self.pos if with_positions else None, kv_len=self.len, **extra)

    def bytes_per_slot(self):
        """Bytes a decode reads per slot of one KV head: K and V rows and
        their scales."""
        b = (self.k_pool.shape[2] + self.v_pool.shape[2]) * self.k_pool.element_size()
        if self.k_scale is not None:
            b += (self.k_scale.shape[2] + self.v_scale.shape[2]) * self.k_scale.element_size()
        return b


def quantize(x, kind, group, scale_type="f32"):
    """x [pages, P, D] float32 -> (pool, scales [pages, P, groups], exact
    dequantized values); int4 packs two values per byte, low nibble first.
    scale_type f16: the scales stored as f16 (at most 65504), and the
    values quantized by the stored scale, as the runtime's appends do."""
    D = x.shape[2]
    g = group or D
    qmax = {"i8": 127, "i4": 7, "f8": 448}[kind]
    xg = x.view(x.shape[0], x.shape[1], D // g, g)
    scale = xg.abs().amax(-1) / qmax
    stored = None
    if scale_type == "f16":
        stored = scale.clamp(max=65504.0).half()
        scale = stored.float()
    if kind == "f8":  # e4m3 bytes of x / scale (torch rounds to nearest even)
        f8 = torch.where(scale[..., None] > 0, xg / scale[..., None].clamp_min(1e-30),
                         torch.zeros_like(xg)).to(torch.float8_e4m3fn)
        exact = (f8.float() * scale[..., None]).view_as(x)
        return (f8.view(torch.int8).view_as(x).contiguous(),
                (stored if stored is not None else scale).contiguous(), exact)
    q = torch.where(scale[..., None] > 0, torch.round(xg / scale[..., None].clamp_min(1e-30)),
                    torch.zeros_like(xg)).clamp(-qmax, qmax)
    exact = (q * scale[..., None]).view_as(x)
    q = q.view_as(x).to(torch.int32)
    if kind == "i8":
        pool = q.to(torch.int8)
    else:
        lo, hi = q[..., 0::2] & 0xF, q[..., 1::2] & 0xF
        pool = (lo | (hi << 4)).to(torch.uint8).view(torch.int8)
    return pool.contiguous(), (stored if stored is not None else scale).contiguous(), exact


def reference(q, cache, q_pos, mask, heads="grouped", original=False):
    """float64 attention over each (sequence, head)'s retained slots (their
    stored values, or with `original` the values before quantization)."""
    B, Hq, Nq, D = q.shape
    Hkv = cache.len.shape[0] // B
    G = Hq // Hkv
    o = torch.zeros(B, Hq, Nq, cache.v_exact.shape[2], device="cuda", dtype=torch.float64)
    lse = torch.full((B, Hq, Nq), float("-inf"), device="cuda", dtype=torch.float64)
    for b in range(B):
        for h in range(Hq):
            g = h // G if heads == "grouped" else h % Hkv
            r = b * Hkv + g
            k, v = cache.slots(r, original)
            k, v = k.double(), v.double()
            kp = torch.tensor(cache.positions[r], device="cuda", dtype=torch.int64)
            for i in range(Nq):
                qp = q_pos[b] + i
                keep = (kp >= 0) & mask(qp, kp) if len(kp) else kp.bool()
                if not keep.any():
                    continue
                s = (k[keep] @ q[b, h, i].double()) / math.sqrt(D)
                o[b, h, i] = torch.softmax(s, 0) @ v[keep]
                lse[b, h, i] = torch.logsumexp(s, 0)
    return o, lse


def causal(qp, kp):
    return kp <= qp


def streaming(sink, window):
    # lib/streaming.attn: causal and (k < SINK or q - k < W).
    return lambda qp, kp: (kp <= qp) & ((kp < sink) | (qp - kp < window))


def retains_all(kern):
    """Whether the kernel's policy keeps every position (its metadata says),
    so that a cache of all positions may be read without kv_pos."""
    return kern.retains_all


def all_positions(length):
    return list(range(length))


def sink_window_positions(length, sink, window):
    """Slots of a sink + window cache after `length` tokens: sinks first,
    then the window as a ring (slot order is not position order once it
    wraps). The runtime KvCache's own layout is exercised by
    cuda-decode-check."""
    if length <= sink + window:
        return list(range(length))
    recent = list(range(length - window, length))
    # The ring starts at slot `sink`; token t sits at slot sink + (t - sink) % window.
    ring = [-1] * window
    for t in recent:
        ring[(t - sink) % window] = t
    return list(range(sink)) + ring


def check(kern, args, gen):
    dtype = DT[kern.dtype]
    D, Dv = kern.head_dim, kern.head_dim_v
    failures = 0
    for (B, Hq, Hkv, Nq, lengths, P, splits, label) in args["cases"]:
        storage = args.get("storage")
        positions = [args["positions"](n) for n in lengths]
        # One list per (b, g): the same length for every KV head of a sequence,
        # and one dropped slot in the middle of the second head (if any).
        # args["slot_positions"]: no dropped slot, and the call gives no
        # kv_pos (the kernel takes each slot's index for its position).
        slot_positions = args.get("slot_positions", False)
        rows = []
        for b in range(B):
            for g in range(Hkv):
                p = list(positions[b])
                if g == 1 and len(p) > 10 and not slot_positions:
                    p[len(p) // 2] = -1
                rows.append(p)
        cache = PagedCache(B, Hkv, D, Dv, P, rows, dtype, gen, storage=storage)
        q_pos = [max(0, (max([x for x in positions[b] if x >= 0], default=-1) + 1) - Nq)
                 for b in range(B)]
        q = torch.randn(B, Nq, Hq, D, generator=gen).to("cuda", dtype).transpose(1, 2)
        o = torch.full((B, Hq, Nq, Dv), float("nan"), device="cuda", dtype=dtype)
        lse = torch.full((B, Hq, Nq), float("nan"), device="cuda")
        qp = torch.tensor(q_pos, dtype=torch.int32, device="cuda")
        kern.decode(q, o, q_pos=qp, lse=lse, max_length=cache.max_length, splits=splits,
                    **cache.decode_args(not slot_positions), **args["params"])
        torch.cuda.synchronize()
        ro, rl = reference(q, cache, q_pos, args["mask"])
        err_o = ((o.double() - ro).abs().max() / ro.abs().max().clamp_min(1e-6)).item()
        fin = torch.isfinite(rl)
        err_l = (lse[fin] - rl[fin]).abs().max().item() if fin.any() else 0.0
        rl = rl.float()
        ok = (not o.isnan().any()) and err_o < 2e-2 and err_l < 1e-2 and \
            bool((lse[~fin] == float("-inf")).all()) and bool((o.float()[~fin] == 0).all())
        failures += not ok
        s_used, _ = kern.decode_plan(B, Hq, Hkv, Nq, cache.max_length, 0, splits)
        quant = ""
        if storage is not None:
            # What quantization costs: the output vs attention over the
            # values before quantization (relative Frobenius error).
            uo, _ = reference(q, cache, q_pos, args["mask"], original=True)
            quant = " vs unquantized: %.2e" % ((o.double() - uo).norm() / uo.norm()).item()
        if slot_positions:
            entry = kern.prefill_splits(B, Hq, Hkv, Nq, cache.max_length)
            label += ", no kv_pos" + (", prefill entry over %d key split(s)" % entry
                                      if entry else "")
        print("%s %s %s B=%d Hq=%d Hkv=%d Nq=%d lens=%s P=%d splits=%d: max|dO|/max|O|=%.2e "
              "max|dLSE|=%.2e empty rows=%d%s" % ("PASS" if ok else "FAIL", kern.name, label, B,
                                                   Hq, Hkv, Nq, lengths, P, s_used, err_o, err_l,
                                                   int((~fin).sum()), quant), flush=True)
    return failures


def decode_runs(kern, B, Hq, Hkv, L, P, positions_fn, gen, baselines=True, storage=None,
                sequential=False, splits=0, Nq=1, mass=False, flex=None, twins=(),
                page_runs=1):
    """The calls to time for one shape: {"attnc": ..., "sdpa_fa2": ...,
    "sdpa_cudnn": ..., "flex": ...} (baselines over dense [B, Hkv, n, D]
    K/V of the retained length n), and the shape's facts (n, splits, K/V
    bytes read). `twins`: (tag, kernel) pairs of the same ABI (another
    build) timed as "attnc<tag>" over the same cache, each with its own
    plan; kernel None: this kernel with kv_pos given. Caches of all
    positions (slot j holds position j) are read without kv_pos, as
    CudaKvStore launches them, unless the kernel scores slots (H2O)."""
    dtype = DT[kern.dtype]
    D, Dv = kern.head_dim, kern.head_dim_v
    pos = positions_fn(L)
    n = len(pos)
    cache = PagedCache(B, Hkv, D, Dv, P, [pos] * (B * Hkv), dtype, gen, storage=storage,
                       sequential=sequential, page_runs=page_runs)
    q = torch.randn(B, Hq, Nq, D, generator=gen).to("cuda", dtype)
    o = torch.empty(B, Hq, Nq, Dv, device="cuda", dtype=dtype)
    qp = torch.full((B,), L - Nq, dtype=torch.int32, device="cuda")
    planned = splits
    splits, _ = kern.decode_plan(B, Hq, Hkv, Nq, n, 0, splits)
    # mass: with the LSE and a mass table (budget kernels add to it; the
    # growing sums do not change the time).
    lse = torch.empty(B, Hq, Nq, device="cuda", dtype=torch.float32) if mass else None
    given = cache.decode_args()
    slot_positions = pos == list(range(n)) and retains_all(kern)
    args = cache.decode_args(with_positions=not slot_positions)
    mtab = (torch.zeros(B * Hkv, given["kv_pos"].shape[1], device="cuda", dtype=torch.float32)
            if mass and "h2o" in kern.name else None)

    def caller(kern, splits, args=args):
        splits, need = kern.decode_plan(B, Hq, Hkv, Nq, n, 0, splits)
        ws = torch.empty(max(need, 1), dtype=torch.uint8, device="cuda")
        return splits, lambda: kern.decode(q, o, q_pos=qp, max_length=n, workspace=ws,
                                           splits=splits, lse=lse, mass=mtab, **args)

    # name -> the call, or (the call, a context to run it in: SDPA's
    # backend, entered outside the timed loop).
    runs = {"attnc": caller(kern, planned)[1]}
    facts = {"n": n, "splits": splits, "kv_bytes": B * Hkv * n * cache.bytes_per_slot()}
    for tag, twin in twins:
        facts["splits" + tag], runs["attnc" + tag] = (caller(twin, planned) if twin else
                                                      caller(kern, planned, given))
    if not baselines:
        return runs, facts
    # Baselines over dense K/V of the retained length (they have no paging).
    k = torch.randn(B, Hkv, n, D, generator=gen).to("cuda", dtype)
    v = torch.randn(B, Hkv, n, Dv, generator=gen).to("cuda", dtype)
    add_sdpa_runs(runs, q, k, v, None, ["FLASH_ATTENTION", "CUDNN_ATTENTION"])
    if flex is not None:
        runs["flex"] = lambda: flex(q, k, v, enable_gqa=True)  # noqa
        runs["flex"]()
    return runs, facts


def add_sdpa_runs(runs, q, k, v, mask, backends):
    """runs["sdpa_<backend>"]: SDPA over q, k, v (GQA) with `mask`, in each
    of `backends` (SDPBackend names) that takes the call."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    short = {"FLASH_ATTENTION": "fa2", "CUDNN_ATTENTION": "cudnn", "EFFICIENT_ATTENTION": "eff"}
    try:  # which backend SDPA takes without a context (what a user gets)
        import torch
        if mask is not None and not isinstance(mask, torch.Tensor):
            raise ValueError("mask is a %s" % type(mask).__name__)
        chosen = torch._fused_sdp_choice(q, k, v, mask, 0.0, False, enable_gqa=True)
        print("  sdpa default backend: %s" % SDPBackend(chosen).name)
    except Exception as e:  # a private API: report, never fail the run
        print("  sdpa default backend: unknown (%s)" % str(e).splitlines()[0][:80])
    for b in backends:
        backend = getattr(SDPBackend, b)
        f = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask,  # noqa
                                                   enable_gqa=True)
        try:
            with sdpa_kernel(backend):
                f()
            runs["sdpa_" + short[b]] = (f, lambda backend=backend: sdpa_kernel(backend))
        except Exception as e:  # a backend may refuse the shape or the mask
            print("  sdpa_%s: %s" % (short[b], str(e).splitlines()[0][:120]))


# --graph: time replays of a CUDA graph of the calls instead of launches
# (what a serving loop that captures its decode step sees: no launch
# gaps; no L2 flush between calls, so only shapes past the 50 MB L2 mean
# DRAM rates).
GRAPH = False


def median_ms(f):
    """Median ms of one call of f (do_bench, or graph replays with --graph)."""
    from triton.testing import do_bench, do_bench_cudagraph
    # One call first: a module's first launch compiles its PTX (hundreds of
    # ms), which do_bench's estimate would take for the call's time and
    # then time a single call.
    f()
    torch.cuda.synchronize()
    if not GRAPH:
        return do_bench(f, warmup=25, rep=200, return_mode="median")
    try:
        return do_bench_cudagraph(f, rep=200, return_mode="median")
    except Exception as e:  # a call that cannot be captured
        print("  graph capture failed: %s" % str(e).splitlines()[0][:120])
        return float("nan")


def bench(kern, B, Hq, Hkv, L, P, positions_fn, flex, label, gen, baselines=True, **kw):
    """Median ms of attnc decode over a paged cache holding positions_fn(L)
    per (b, g), SDPA and Flex decode over dense [B, Hkv, n, D] K/V of the
    same retained length n."""
    runs, facts = decode_runs(kern, B, Hq, Hkv, L, P, positions_fn, gen, baselines=baselines,
                              flex=flex, **kw)
    row = {"label": label, "B": B, "L": L, "n": facts["n"], "splits": facts["splits"]}
    for name, f in runs.items():
        f, ctx = f if isinstance(f, tuple) else (f, contextlib.nullcontext)
        with ctx():
            row[name + "_ms"] = median_ms(f)
    row["attnc_gbs"] = facts["kv_bytes"] / row["attnc_ms"] / 1e6
    row["kv_bytes"] = facts["kv_bytes"]
    row.update({k: v for k, v in facts.items() if k.startswith("splits[")})
    return row


def twin_rows(row):
    """The rows of a bench() row's twins (attnc<tag>_ms), as their own rows."""
    out = []
    for key in sorted(k for k in row if k.startswith("attnc[") and k.endswith("_ms")):
        tag = key[len("attnc"):-len("_ms")]
        out.append({"label": row["label"] + " " + tag, "B": row["B"], "L": row["L"],
                    "n": row["n"], "splits": row["splits" + tag], "attnc_ms": row[key],
                    "attnc_gbs": row["kv_bytes"] / row[key] / 1e6})
    return out


def profile(kern, B, L, gen, label, iters=100, sequential=False, baselines=True):
    """Per-kernel device time of one call (torch.profiler, mean over
    `iters` calls) beside the call's do_bench median: what the launches
    and the gaps between them cost."""
    from torch.profiler import ProfilerActivity, profile as tprofile
    from triton.testing import do_bench
    runs, facts = decode_runs(kern, B, 32, 8, L, 16, all_positions, gen, baselines=baselines,
                              sequential=sequential)
    for name, f in runs.items():
        f, ctx = f if isinstance(f, tuple) else (f, contextlib.nullcontext)
        with ctx():
            ms = do_bench(f, warmup=25, rep=200, return_mode="median")
            torch.cuda.synchronize()
            with tprofile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(iters):
                    f()
                torch.cuda.synchronize()
        kernels = {}
        for e in prof.events():
            if e.device_type.name == "CUDA":
                kernels.setdefault(e.name, []).append(e.device_time_total if hasattr(
                    e, "device_time_total") else e.cuda_time_total)
        total = sum(sum(t) for t in kernels.values()) / iters / 1e3
        print("%s B=%d L=%d %s: do_bench %.4f ms, kernels %.4f ms, gaps %.4f ms (%.0f GB/s)"
              % (label, B, L, name, ms, total, ms - total, facts["kv_bytes"] / ms / 1e6))
        for k, t in sorted(kernels.items(), key=lambda kv: -sum(kv[1])):
            print("    %6.1f us x %.2f  %s" % (sum(t) / len(t), len(t) / iters, k[:90]))


def chunk_bench(kern, B, L, Nq, gen, flex_on, twins=()):
    """A prefill chunk over the cache: the last Nq of L positions attend
    causally to all L (attnc's kernel over a paged cache of L slots per
    (b, g), q_pos = L - Nq), against SDPA and Flex over dense K/V with the
    causal mask aligned to the bottom right. TFLOP/s count the work the
    mask leaves: 4 D (Nq L - Nq (Nq - 1) / 2) per (b, query head).
    `twins`: (tag, kernel) of other builds timed over the same cache (e.g.
    without the prefill-shaped entry: the decode kernel's packed rows)."""
    from torch.nn.attention.bias import causal_lower_right
    Hq, Hkv = 32, 8
    runs, facts = decode_runs(kern, B, Hq, Hkv, L, 16, all_positions, gen, baselines=False,
                              Nq=Nq, mass=True, twins=twins)
    dtype, D = DT[kern.dtype], kern.head_dim
    q = torch.randn(B, Hq, Nq, D, generator=gen).to("cuda", dtype)
    k = torch.randn(B, Hkv, L, D, generator=gen).to("cuda", dtype)
    v = torch.randn(B, Hkv, L, D, generator=gen).to("cuda", dtype)
    add_sdpa_runs(runs, q, k, v, causal_lower_right(Nq, L),
                  ["FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION"])
    if flex_on:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
        off = L - Nq
        bm = create_block_mask(lambda b, h, qi, ki: ki <= qi + off, None, None, Nq, L)
        fx = torch.compile(flex_attention, dynamic=False)
        try:  # Inductor may find no kernel for the shape
            fx(q, k, v, block_mask=bm, enable_gqa=True)
            runs["flex"] = lambda: fx(q, k, v, block_mask=bm, enable_gqa=True)  # noqa
        except Exception as e:
            print("  flex: %s" % str(e).splitlines()[0][:120])
    flops = 4.0 * B * Hq * D * (Nq * L - Nq * (Nq - 1) / 2)
    row = {"B": B, "L": L, "Nq": Nq, "splits": facts["splits"],
           "entry": kern.prefill_splits(B, Hq, Hkv, Nq, L)}
    for name, f in runs.items():
        f, ctx = f if isinstance(f, tuple) else (f, contextlib.nullcontext)
        with ctx():
            row[name] = median_ms(f)
    names = [n for n in row if n.startswith("attnc")] + [
        n for n in ["sdpa_fa2", "sdpa_cudnn", "sdpa_eff", "flex"] if n in row]
    # "entry splits": the key splits of the prefill-shaped entry attnc runs
    # (0: the decode kernel, with "splits").
    print("| B | KV length | Nq | splits | entry splits | " +
          " | ".join("%s ms (TFLOP/s)" % n for n in names) + " |")
    print("|---" * (5 + len(names)) + "|")
    print("| %d | %d | %d | %d | %d | " % (B, L, Nq, row["splits"], row["entry"]) + " | ".join(
        "%.4f (%.0f)" % (row[n], flops / row[n] / 1e9) for n in names) + " |", flush=True)


# The quantized kernels of bench/gpu/build-ptx.sh and their pools' storage
# (kind, scale group; 0: per token).
QUANTIZED = [("int8_kv_attention_bf16_d128_kv", ("i8", 0)),
             ("int4_kv_attention_bf16_d128_kv", ("i4", 32)),
             ("int4_f16s_kv_attention_bf16_d128_kv", ("i4", 32, "f16")),
             ("int4_token_attention_bf16_d128_kv", ("i4", 0)),
             ("fp8_kv_attention_bf16_d128_kv", ("f8", 0))]
QUANT_LABEL = {"int8_kv_attention_bf16_d128_kv": "int8/token",
               "int4_kv_attention_bf16_d128_kv": "int4/group32",
               "int4_f16s_kv_attention_bf16_d128_kv": "int4/group32, f16 scales",
               "int4_token_attention_bf16_d128_kv": "int4/token",
               "fp8_kv_attention_bf16_d128_kv": "fp8 e4m3/token"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ptx-dir", default=os.path.join(os.path.dirname(__file__), "ptx"))
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--no-flex", action="store_true")
    ap.add_argument("--nq-sweep", default="", help="--bench: only rows at these query "
                    "counts (speculative decoding): bf16, default kernel and --variants "
                    "(and the quantized kernels with --nq-quant)")
    ap.add_argument("--nq-quant", action="store_true", help="--nq-sweep: the quantized "
                    "kernels too, each beside its --compare-dir twins")
    ap.add_argument("--split-sweep", default="", help="--bench: only bf16 rows at these "
                    "split counts (e.g. 1,2,4,8,16)")
    ap.add_argument("--graph", action="store_true", help="--bench: time replays of a CUDA "
                    "graph of the calls (no launch gaps), every contender alike")
    ap.add_argument("--chunks-only", action="store_true", help="--check: only the prompt "
                    "chunk cases (Nq >= 64) of the bf16 kernels, with and without kv_pos")
    ap.add_argument("--quick", action="store_true", help="--check: two cases per kernel "
                    "(for compute-sanitizer)")
    ap.add_argument("--lengths", default="8192,65536")
    ap.add_argument("--budget", action="store_true", help="--bench: only the cost of H2O "
                    "scoring: paged_attention vs h2o_decode (decode + mass) over the same "
                    "tables, both with the LSE")
    ap.add_argument("--profile", action="store_true", help="kernel times and launch gaps "
                    "of one call (torch.profiler), attnc and SDPA, bf16 at every shape")
    ap.add_argument("--compare-dir", default="", help="--bench: the kernels of this PTX "
                    "directory (e.g. a build of the previous commit) timed beside each "
                    "quantized and bf16 row, same inputs, same run")
    ap.add_argument("--page-runs", default="", help="--bench: e.g. 16,512: bf16 rows with "
                    "pages in random runs of that many consecutive pool pages")
    ap.add_argument("--pos-compare", action="store_true", help="--bench: the caches of all "
                    "positions also read with kv_pos given (rows [kv_pos])")
    ap.add_argument("--bf16-only", action="store_true", help="--bench: the bf16 rows (and their "
                    "--compare-dir twins) without the quantized and sink + window rows, to spend "
                    "less device time")
    ap.add_argument("--chunks", default="", help="--bench: only prefill chunks over the "
                    "cache, B:L:Nq,... (e.g. 1:8192:2048), bf16 against SDPA / Flex with a "
                    "bottom-right causal mask")
    ap.add_argument("--variants", default="", help="e.g. _k128,_st2: paged_attention_bf16_d128_kv"
                    "<variant>.ptx timed beside the default at every length")
    a = ap.parse_args()
    global GRAPH
    GRAPH = a.graph
    gen = torch.Generator().manual_seed(0)
    failures = 0
    d = a.ptx_dir
    causal_kern = Kernel(os.path.join(d, "paged_attention_bf16_d128_kv.ptx"))
    if a.check or not a.bench:
        awkward = [
            (3, 8, 2, 1, [1, 100, 1000], 16, 0, "auto"),
            (3, 8, 2, 3, [5, 333, 2049], 16, 1, "one split"),
            (3, 8, 2, 8, [77, 700, 4097], 16, 3, "three splits"),
            (2, 32, 8, 1, [8192, 3000], 16, 0, "GQA 4"),
            (1, 4, 4, 2, [129], 16, 0, "MHA"),
            (2, 16, 2, 3, [640, 300], 16, 0, "two row tiles (G*Nq=24)"),
            (2, 6, 2, 3, [0, 50], 16, 0, "empty sequence"),
            # A prefill chunk over the cache: 100 queries x G = 4 heads = 25
            # row tiles, causal inside the chunk. Without kv_pos (the
            # slot_positions pass) chunks whose query tiles give half the
            # entry's resident CTAs one each run the prefill-shaped entry: a
            # tile and one row, a chunk that is a whole sequence, lengths
            # off the tiles, GQA 32/8.
            (2, 8, 2, 100, [700, 1500], 16, 0, "prefill chunk Nq=100"),
            (4, 32, 8, 129, [129, 700, 1500, 4097], 16, 0, "prefill chunk Nq=129"),
            (2, 32, 8, 300, [300, 2000], 16, 0, "prefill chunk Nq=300"),
            # Short chunks whose query tiles leave SMs idle: with
            # ATTNC_CUDA_PREFILL_SPLITS=1 the entry splits the keys (the
            # rule on an H100: 16 CTAs over 3000 keys 2 ways; over 5000 and
            # 200 keys 4 ways, the short sequence's last splits empty; 32
            # CTAs over 8192 keys 4 ways), then the merge kernel.
            (1, 8, 2, 200, [3000], 16, 0, "short chunk Nq=200"),
            (2, 4, 1, 130, [5000, 200], 16, 0, "short chunks Nq=130"),
            (1, 32, 8, 128, [8192], 16, 0, "short chunk Nq=128"),
        ]
        # Random batches: lengths, Nq and splits from the seed.
        for i in range(2):
            B = int(torch.randint(1, 5, (1,), generator=gen))
            lens = torch.randint(1, 6000, (B,), generator=gen).tolist()
            Nq = int(torch.randint(1, 9, (1,), generator=gen))
            awkward.append((B, 8, 2, Nq, lens, 16, 0, "random %d" % i))
        if a.quick:
            awkward = awkward[:2]
        if a.chunks_only:
            awkward = [c for c in awkward if c[3] >= 64]
        args = {"cases": awkward, "positions": all_positions, "mask": causal, "params": {}}
        failures += check(causal_kern, args, gen)
        failures += check(causal_kern, dict(args, slot_positions=True), gen)
        for name in ["paged_attention_bf16_d64_kv"]:
            k2 = Kernel(os.path.join(d, name + ".ptx"))
            failures += check(k2, {"cases": awkward[:3], "positions": all_positions,
                                   "mask": causal, "params": {}}, gen)
            failures += check(k2, {"cases": [c for c in awkward if c[3] >= 64],
                                   "positions": all_positions, "mask": causal, "params": {},
                                   "slot_positions": True}, gen)
        # The other caches and the refusals (not with --chunks-only).
        if not a.chunks_only:
            stream = Kernel(os.path.join(d, "streaming_llm_bf16_d128_kv.ptx"))
            sw = lambda n: sink_window_positions(n, 4, 1020)  # noqa
            failures += check(stream, {"cases": [(2, 8, 2, 1, [3000, 100000], 16, 0, "sink+window"),
                                                 (2, 8, 2, 4, [1024, 1500], 16, 2, "sink+window")],
                                       "positions": sw, "mask": streaming(4, 1020), "params": {}}, gen)
            for name, storage in QUANTIZED:
                kq = Kernel(os.path.join(d, name + ".ptx"))
                qargs = {"cases": awkward[:4] + ([] if a.quick else awkward[-2:]),
                         "positions": all_positions, "mask": causal, "params": {},
                         "storage": storage}
                failures += check(kq, qargs, gen)
                failures += check(kq, dict(qargs, cases=qargs["cases"][:3], slot_positions=True), gen)
            # Errors surface as exceptions with the runtime's message.
            cache = PagedCache(1, 2, 128, 128, 16, [[0, 1], [0, 1]], torch.bfloat16, gen)
            q = torch.randn(1, 8, 1, 128, device="cuda", dtype=torch.bfloat16)
            o = torch.empty(1, 8, 1, 128, device="cuda", dtype=torch.bfloat16)
            qp = torch.zeros(1, dtype=torch.int32, device="cuda")
            for what, kwargs in [
                ("f16 pools", dict(k_pool=cache.k_pool.half())),
                ("int64 page table", dict(kv_pages=cache.pages.long())),
                ("pages of 8 slots", dict(k_pool=cache.k_pool[:, :8], v_pool=cache.v_pool[:, :8])),
            ]:
                call = dict(cache.decode_args(), q_pos=qp)
                call.update(kwargs)
                try:
                    causal_kern.decode(q, o, **call)
                    print("FAIL %s accepted" % what)
                    failures += 1
                except RuntimeError as e:
                    print("PASS %s refused: %s" % (what, e))
            try:  # a sink + window policy's slots need not follow positions
                stream.decode(q, o, **dict(cache.decode_args(with_positions=False), q_pos=qp))
                print("FAIL sink + window without kv_pos accepted")
                failures += 1
            except RuntimeError as e:
                print("PASS sink + window without kv_pos refused: %s" % e)
        print("check: %d failed" % failures, flush=True)
    if a.bench:
        flex = None
        if not a.no_flex:
            from torch.nn.attention.flex_attention import flex_attention
            flex = torch.compile(flex_attention, dynamic=False)
        chunk_twins = [("[%s]" % os.path.basename(x.rstrip("/")),
                        Kernel(os.path.join(x, "paged_attention_bf16_d128_kv.ptx")))
                       for x in a.compare_dir.split(",") if x]
        for spec in [x for x in a.chunks.split(",") if x]:
            B, L, Nq = (int(x) for x in spec.split(":"))
            chunk_bench(causal_kern, B, L, Nq, gen, not a.no_flex, chunk_twins)
        if a.chunks:
            return 1 if failures else 0
        stream = Kernel(os.path.join(d, "streaming_llm_bf16_d128_kv.ptx"))
        rows = []
        nqs = [int(x) for x in a.nq_sweep.split(",") if x]
        # The kernels of each --compare-dir timed right after their
        # counterparts over the same cache: two builds side by side.
        others = [("[%s]" % os.path.basename(x.rstrip("/")), x)
                  for x in a.compare_dir.split(",") if x]
        for name, storage in QUANTIZED if nqs and a.nq_quant else []:
            kq = Kernel(os.path.join(d, name + ".ptx"))
            twins = [(tag, Kernel(os.path.join(x, name + ".ptx"))) for tag, x in others]
            for nq in nqs:
                for B, L in [(8, int(x)) for x in a.lengths.split(",")]:
                    r = bench(kq, B, 32, 8, L, 16, all_positions, None,
                              "%s, Nq=%d" % (QUANT_LABEL[name], nq), gen, baselines=False,
                              storage=storage, twins=twins, Nq=nq)
                    rows += [r] + twin_rows(r)
        for var in [""] + [v for v in a.variants.split(",") if v and nqs]:
            vk = Kernel(os.path.join(d, "paged_attention_bf16_d128_kv%s.ptx" % var))
            for nq in nqs:
                for B, L in [(8, int(x)) for x in a.lengths.split(",")]:
                    rows.append(bench(vk, B, 32, 8, L, 16, all_positions, None,
                                      "bf16 all%s, Nq=%d" % (" " + var if var else "", nq), gen,
                                      baselines=False, Nq=nq))
        if a.budget:
            hk = Kernel(os.path.join(d, "h2o_decode_bf16_d128_kv.ptx"))
            for B, L in [(8, int(x)) for x in a.lengths.split(",")] + [(1, 131072)]:
                for kern, label in [(causal_kern, "bf16 decode"), (hk, "bf16 decode + H2O mass")]:
                    rows.append(bench(kern, B, 32, 8, L, 16, all_positions, None, label, gen,
                                      baselines=False, mass=True))
        sweep = [int(x) for x in a.split_sweep.split(",") if x]
        only = bool(sweep or nqs or a.budget)  # a sweep alone: skip the standard rows
        shapes = [(8, int(x)) for x in a.lengths.split(",")] + [(1, 131072)]
        if a.profile:
            for var in [""] + [v for v in a.variants.split(",") if v]:
                vk = Kernel(os.path.join(d, "paged_attention_bf16_d128_kv%s.ptx" % var))
                for B, L in shapes:
                    profile(vk, B, L, gen, "bf16" + var, baselines=not var)
            for B, L in shapes:  # what the random page order costs
                profile(causal_kern, B, L, gen, "bf16 pages in order", sequential=True,
                        baselines=False)
            only = True
        for sp in sweep:
            for B, L in shapes:
                rows.append(bench(causal_kern, B, 32, 8, L, 16, all_positions, None,
                                  "bf16 all, %d splits" % sp, gen, baselines=False, splits=sp))
        for B, L in shapes if not only else []:
            rows.append(bench(causal_kern, B, 32, 8, L, 16, all_positions, flex, "bf16 all", gen))
        # The same with pages in pool order (what a fresh cache hands out):
        # how much the random page order costs.
        for B, L in shapes if not only else []:
            rows.append(bench(causal_kern, B, 32, 8, L, 16, all_positions, None,
                              "bf16 all, pages in order", gen, baselines=False, sequential=True))
        # Pages in random runs of R consecutive pool pages: where the cost
        # of the random order lies (a 2 MB GPU page holds 512 pages of 4 KB).
        for R in [int(x) for x in a.page_runs.split(",") if x]:
            for B, L in shapes:
                rows.append(bench(causal_kern, B, 32, 8, L, 16, all_positions, None,
                                  "bf16 all, runs of %d pages" % R, gen, baselines=False,
                                  page_runs=R))
        for var in [v for v in a.variants.split(",") if v and not only]:
            vk = Kernel(os.path.join(d, "paged_attention_bf16_d128_kv%s.ptx" % var))
            for B, L in shapes:
                rows.append(bench(vk, B, 32, 8, L, 16, all_positions, None, "bf16 all " + var,
                                  gen, baselines=False))
        # --pos-compare: each kernel again with kv_pos given ("[kv_pos]").
        pos_twin = [("[kv_pos]", None)] if a.pos_compare else []
        if (others or pos_twin) and not only:
            twins = [(tag, Kernel(os.path.join(x, "paged_attention_bf16_d128_kv.ptx")))
                     for tag, x in others] + pos_twin
            for B, L in shapes:
                r = bench(causal_kern, B, 32, 8, L, 16, all_positions, None, "bf16 all", gen,
                          baselines=False, twins=twins)
                rows += [r] + twin_rows(r)
        for name, storage in [] if only or a.bf16_only else QUANTIZED:
            kq = Kernel(os.path.join(d, name + ".ptx"))
            twins = [(tag, Kernel(os.path.join(x, name + ".ptx"))) for tag, x in others]
            twins += pos_twin
            for B, L in shapes:
                r = bench(kq, B, 32, 8, L, 16, all_positions, None, QUANT_LABEL[name], gen,
                          baselines=False, storage=storage, twins=twins)
                rows += [r] + twin_rows(r)
        for L in [] if only or a.bf16_only else [8192, 65536, 524288]:
            rows.append(bench(stream, 8, 32, 8, L, 16,
                              lambda n: sink_window_positions(n, 4, 1020), None,
                              "sink4+window1020", gen))
        # The device's copy bandwidth (bytes read + written by a 1 GiB
        # device-to-device copy), the yardstick for "% of bandwidth".
        # Always by launches: replays of a captured copy_ ran at 2449 GB/s
        # against 3017 by launches (H100, session 13; a graph's memcpy node
        # is likely a copy engine's work, not the copy kernel).
        src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
        dst = torch.empty_like(src)
        from triton.testing import do_bench
        dst.copy_(src)
        copy_ms = do_bench(lambda: dst.copy_(src), warmup=25, rep=200, return_mode="median")
        print("device copy bandwidth: %.0f GB/s (%s)" % (2 * src.numel() / copy_ms / 1e6,
                                                        torch.cuda.get_device_name()))
        del src, dst
        print("| cache | B | KV length | slots | splits | attnc ms | attnc GB/s | SDPA FA2 ms | "
              "SDPA cuDNN ms | Flex ms | vs FA2 | vs cuDNN | vs Flex |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            fa2, cud, fl = r.get("sdpa_fa2_ms", float("nan")), r.get("sdpa_cudnn_ms", float(
                "nan")), r.get("flex_ms", float("nan"))
            print("| %s | %d | %d | %d | %d | %.4f | %.0f | %.4f | %.4f | %.4f | %.2f | %.2f | %.2f |"
                  % (r["label"], r["B"], r["L"], r["n"], r["splits"], r["attnc_ms"],
                     r["attnc_gbs"], fa2, cud, fl, fa2 / r["attnc_ms"], cud / r["attnc_ms"],
                     fl / r["attnc_ms"]), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
