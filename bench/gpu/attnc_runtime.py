#!/usr/bin/env python3
"""ctypes binding of the light runtime's C API for PyTorch tensors.

runtime/include/attnc/Runtime/CApi.h, in libAttncRuntime.so (no compiler
needed: build it on the GPU machine with `cmake -S bench/gpu -B build-gpu`).

    from attnc_runtime import Kernel
    k = Kernel("ptx/causal_attention_bf16_d128.ptx")      # + .ptx.meta
    k(q, k_, v, o, lse=lse, q_offset=0, doc=doc_ids, cap=30.0)

Tensors are torch CUDA tensors: q/k/v/o of the kernel's dtype in
[B, H, N, D] (any strides with the innermost 1, 16-byte aligned rows),
lse float32 [B, Hq, Nq] or None, tensor parameters contiguous. The launch
goes on torch's current stream of the tensors' device. Errors raise
RuntimeError with the runtime's message.

Run as a script it checks itself against torch on the GPU:
    python3 attnc_runtime.py --lib build-gpu/lib/libAttncRuntime.so \
        --ptx ptx/full_attention_bf16_d128.ptx [--causal]
"""
import ctypes
import os

MAX_RANK = 8
C_API_VERSION = 1


class Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint64), ("dtype", ctypes.c_int32), ("rank", ctypes.c_int32),
                ("shape", ctypes.c_int64 * MAX_RANK), ("strides", ctypes.c_int64 * MAX_RANK)]


class Param(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("is_tensor", ctypes.c_int32),
                ("scalar", ctypes.c_double), ("tensor", Tensor)]


class LaunchDesc(ctypes.Structure):
    _fields_ = [("q", Tensor), ("k", Tensor), ("v", Tensor), ("o", Tensor), ("lse", Tensor),
                ("q_offset", ctypes.c_int64), ("device", ctypes.c_int32),
                ("num_params", ctypes.c_int32), ("params", ctypes.POINTER(Param)),
                ("stream", ctypes.c_void_p)]


class CacheLaunchDesc(ctypes.Structure):
    _fields_ = [("q", Tensor), ("o", Tensor), ("lse", Tensor), ("k_pool", Tensor),
                ("v_pool", Tensor), ("kv_pages", Tensor), ("kv_pos", Tensor), ("kv_len", Tensor),
                ("q_pos", Tensor), ("k_scale", Tensor), ("v_scale", Tensor),
                ("max_length", ctypes.c_int64), ("splits", ctypes.c_int64),
                ("workspace", ctypes.c_uint64), ("workspace_bytes", ctypes.c_uint64),
                ("device", ctypes.c_int32), ("num_params", ctypes.c_int32),
                ("params", ctypes.POINTER(Param)), ("stream", ctypes.c_void_p),
                ("mass", Tensor), ("mass_rows", ctypes.c_int64)]


class KernelInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("entry", ctypes.c_char_p),
                ("arch", ctypes.c_char_p), ("dtype", ctypes.c_char_p),
                ("head_dim", ctypes.c_int64), ("head_dim_v", ctypes.c_int64),
                ("block_q", ctypes.c_int64), ("threads", ctypes.c_int64),
                ("shared_bytes", ctypes.c_int64), ("align", ctypes.c_int64),
                ("num_params", ctypes.c_int32)]


_lib = None


def library(path=None):
    """Loads libAttncRuntime.so ($ATTNC_RUNTIME_LIB or `path`) once and checks
    that these structs match the library's."""
    global _lib
    if _lib is not None:
        return _lib
    path = path or os.environ.get("ATTNC_RUNTIME_LIB", "libAttncRuntime.so")
    lib = ctypes.CDLL(path)
    lib.attnc_c_api_version.restype = ctypes.c_int
    lib.attnc_c_struct_size.restype = ctypes.c_size_t
    lib.attnc_c_struct_size.argtypes = [ctypes.c_int]
    if lib.attnc_c_api_version() != C_API_VERSION:
        raise RuntimeError("attnc C API version %d, this binding knows %d"
                           % (lib.attnc_c_api_version(), C_API_VERSION))
    for which, struct in enumerate((Tensor, Param, LaunchDesc, KernelInfo, CacheLaunchDesc)):
        if lib.attnc_c_struct_size(which) != ctypes.sizeof(struct):
            raise RuntimeError("attnc C API: %s has %d bytes in the library, %d here"
                               % (struct.__name__, lib.attnc_c_struct_size(which),
                                  ctypes.sizeof(struct)))
    lib.attnc_cuda_available.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.attnc_cuda_kernel_load.restype = ctypes.c_void_p
    lib.attnc_cuda_kernel_load.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                           ctypes.c_char_p, ctypes.c_size_t]
    lib.attnc_cuda_kernel_free.argtypes = [ctypes.c_void_p]
    lib.attnc_cuda_kernel_info.argtypes = [ctypes.c_void_p, ctypes.POINTER(KernelInfo)]
    lib.attnc_cuda_kernel_param.argtypes = [
        ctypes.c_void_p, ctypes.c_int32, ctypes.POINTER(ctypes.c_char_p),
        ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_char_p)]
    lib.attnc_cuda_launch.argtypes = [ctypes.c_void_p, ctypes.POINTER(LaunchDesc),
                                      ctypes.c_char_p, ctypes.c_size_t]
    lib.attnc_cuda_decode_plan.argtypes = [
        ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
        ctypes.c_int64, ctypes.c_int32, ctypes.POINTER(ctypes.c_int64),
        ctypes.POINTER(ctypes.c_uint64), ctypes.c_char_p, ctypes.c_size_t]
    lib.attnc_cuda_prefill_splits.argtypes = [
        ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
        ctypes.c_int64, ctypes.c_int32, ctypes.POINTER(ctypes.c_int64), ctypes.c_char_p,
        ctypes.c_size_t]
    lib.attnc_cuda_cache_launch.argtypes = [ctypes.c_void_p, ctypes.POINTER(CacheLaunchDesc),
                                            ctypes.c_char_p, ctypes.c_size_t]
    _lib = lib
    return lib


def _dtype_code(dtype):
    import torch
    codes = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3,
             torch.int8: 4, torch.uint8: 4, torch.bool: 4, torch.int16: 5, torch.int32: 6,
             torch.int64: 7}
    if dtype not in codes:
        raise TypeError("attnc: no dtype code for %s" % dtype)
    return codes[dtype]


def _tensor(t):
    c = Tensor()
    if t is None:
        return c  # rank 0: not wanted
    if t.dim() > MAX_RANK:
        raise ValueError("attnc: rank %d > %d" % (t.dim(), MAX_RANK))
    c.data = t.data_ptr()
    c.dtype = _dtype_code(t.dtype)
    c.rank = t.dim()
    for i, (n, s) in enumerate(zip(t.shape, t.stride())):
        c.shape[i] = n
        c.strides[i] = s
    return c


def cache_retentions(meta):
    """The retention of each policy a KV-cache kernel's heads may follow, from
    its metadata text (`kv_cache` / `kv_head_policy` lines: NAME LAYOUT P
    RETENTION ...); empty for a kernel without a cache."""
    out = []
    for line in meta.splitlines():
        tok = line.split()
        if tok and tok[0] == "kv_cache" and len(tok) > 4 and tok[4] != "per_head":
            out.append(tok[4])
        elif tok and tok[0] == "kv_head_policy" and len(tok) > 5:
            out.append(tok[5])
    return out


class Kernel:
    """A CUDA kernel made by attnc (PTX or cubin plus its metadata)."""

    def __init__(self, image_path, meta_path=None, lib=None):
        self.lib = library(lib)
        meta_path = meta_path or image_path + ".meta"
        with open(image_path, "rb") as f:
            image = f.read()
        with open(meta_path, "rb") as f:
            meta = f.read()
        err = ctypes.create_string_buffer(4096)
        self.handle = self.lib.attnc_cuda_kernel_load(image, len(image), meta, err, len(err))
        if not self.handle:
            raise RuntimeError(err.value.decode())
        info = KernelInfo()
        self.lib.attnc_cuda_kernel_info(self.handle, ctypes.byref(info))
        self.name = info.name.decode()
        # Whether every head keeps all positions (slot j = position j), so
        # that a cache of all positions may be launched without kv_pos.
        retentions = cache_retentions(meta.decode())
        self.retains_all = bool(retentions) and all(r == "all" for r in retentions)
        self.dtype = info.dtype.decode()
        self.head_dim, self.head_dim_v = info.head_dim, info.head_dim_v
        self.block_q, self.threads, self.shared_bytes = info.block_q, info.threads, info.shared_bytes
        self.params = []
        for i in range(info.num_params):
            name, kind, ty = ctypes.c_char_p(), ctypes.c_int32(), ctypes.c_char_p()
            self.lib.attnc_cuda_kernel_param(self.handle, i, ctypes.byref(name),
                                             ctypes.byref(kind), ctypes.byref(ty))
            self.params.append((name.value.decode(), bool(kind.value), ty.value.decode()))

    def __del__(self):
        if getattr(self, "handle", None):
            self.lib.attnc_cuda_kernel_free(self.handle)
            self.handle = None

    def _params(self, params):
        import torch
        items = (Param * max(1, len(params)))()
        names = []  # keeps the encoded names alive through the call
        for i, (name, value) in enumerate(params.items()):
            names.append(name.encode())
            items[i].name = names[-1]
            if isinstance(value, torch.Tensor):
                items[i].is_tensor = 1
                items[i].tensor = _tensor(value)
            else:
                items[i].scalar = float(value)
        return items, names

    def decode_plan(self, B, Hq, Hkv, Nq, max_length, device=0, splits=0):
        """(splits, workspace bytes) of a decode launch over a cache."""
        s, w = ctypes.c_int64(splits), ctypes.c_uint64()
        err = ctypes.create_string_buffer(4096)
        if self.lib.attnc_cuda_decode_plan(self.handle, B, Hq, Hkv, Nq, max_length, device,
                                           ctypes.byref(s), ctypes.byref(w), err, len(err)) != 0:
            raise RuntimeError(err.value.decode())
        return s.value, w.value

    def prefill_splits(self, B, Hq, Hkv, Nq, max_length, device=0):
        """Key splits of the prefill-shaped entry a launch of this shape
        without kv_pos runs (0: the decode kernel runs it)."""
        s = ctypes.c_int64()
        err = ctypes.create_string_buffer(4096)
        if self.lib.attnc_cuda_prefill_splits(self.handle, B, Hq, Hkv, Nq, max_length, device,
                                              ctypes.byref(s), err, len(err)) != 0:
            raise RuntimeError(err.value.decode())
        return s.value

    @staticmethod
    def _max_slots(kv_pos, kv_pages, k_pool):
        return kv_pos.shape[1] if kv_pos is not None else kv_pages.shape[1] * k_pool.shape[1]

    def decode(self, q, o, k_pool, v_pool, kv_pages, kv_pos, kv_len, q_pos, lse=None,
               max_length=0, splits=0, workspace=None, stream=None, k_scale=None, v_scale=None,
               mass=None, mass_rows=0, **params):
        """Decode over a device KV cache (a kernel compiled with --kv-cache):
        pools [pages, P, D] / [pages, P, Dv]; int32 tables kv_pages [B*Hkv,
        max_pages], kv_pos [B*Hkv, max_slots] (-1 dropped; None: slot j holds
        position j, for policies that retain all), kv_len [B*Hkv],
        q_pos [B]; int8/int4 pools (int4: two values per byte, low nibble
        first) with float32 (or the policy's float16) k_scale / v_scale [pages, P, groups]. `workspace`: a uint8 CUDA
        tensor of at least decode_plan's bytes (allocated here when None). Budget
        policies: `mass`, float32 [B*Hkv, max_slots], gets each slot's attention mass
        from the last `mass_rows` queries (0: all) added (needs `lse`)."""
        import torch
        dev = q.device.index if q.device.index is not None else 0
        if workspace is None:
            Hkv = kv_len.shape[0] // q.shape[0]
            splits, need = self.decode_plan(q.shape[0], q.shape[1], Hkv, q.shape[2],
                                            max_length or self._max_slots(kv_pos, kv_pages,
                                                                          k_pool), dev, splits)
            workspace = torch.empty(max(need, 1), dtype=torch.uint8, device=q.device)
        desc = CacheLaunchDesc()
        desc.q, desc.o, desc.lse = _tensor(q), _tensor(o), _tensor(lse)
        desc.k_pool, desc.v_pool = _tensor(k_pool), _tensor(v_pool)
        desc.kv_pages, desc.kv_pos = _tensor(kv_pages), _tensor(kv_pos)
        desc.kv_len, desc.q_pos = _tensor(kv_len), _tensor(q_pos)
        desc.k_scale, desc.v_scale = _tensor(k_scale), _tensor(v_scale)
        desc.mass, desc.mass_rows = _tensor(mass), mass_rows
        desc.max_length, desc.splits = max_length, splits
        desc.workspace, desc.workspace_bytes = workspace.data_ptr(), workspace.numel()
        desc.device = dev
        if stream is None:
            stream = torch.cuda.current_stream(q.device).cuda_stream
        desc.stream = stream
        items, names = self._params(params)
        desc.num_params, desc.params = len(params), items
        err = ctypes.create_string_buffer(4096)
        if self.lib.attnc_cuda_cache_launch(self.handle, ctypes.byref(desc), err, len(err)) != 0:
            raise RuntimeError(err.value.decode())

    def __call__(self, q, k, v, o, lse=None, q_offset=0, stream=None, **params):
        import torch
        desc = LaunchDesc()
        desc.q, desc.k, desc.v, desc.o, desc.lse = (_tensor(q), _tensor(k), _tensor(v),
                                                    _tensor(o), _tensor(lse))
        desc.q_offset = q_offset
        desc.device = q.device.index if q.device.index is not None else 0
        if stream is None and q.is_cuda:
            stream = torch.cuda.current_stream(q.device).cuda_stream
        desc.stream = stream
        items, names = self._params(params)
        desc.num_params = len(params)
        desc.params = items
        err = ctypes.create_string_buffer(4096)
        if self.lib.attnc_cuda_launch(self.handle, ctypes.byref(desc), err, len(err)) != 0:
            raise RuntimeError(err.value.decode())


def _self_test():
    import argparse
    import math

    import torch
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", required=True)
    ap.add_argument("--ptx", required=True, help="a full_attention or causal_attention PTX")
    ap.add_argument("--causal", action="store_true")
    a = ap.parse_args()
    kern = Kernel(a.ptx, lib=a.lib)
    dt = {"bf16": torch.bfloat16, "f16": torch.float16}[kern.dtype]
    D = kern.head_dim
    print("loaded %s (%s, D=%d, block_q=%d, %d threads, %d B shared)"
          % (kern.name, kern.dtype, D, kern.block_q, kern.threads, kern.shared_bytes))
    failures = 0
    torch.manual_seed(0)
    for B, Hq, Hkv, Nq, Nk in [(1, 2, 1, 1, 1), (2, 4, 2, 77, 77), (1, 8, 8, 300, 300)]:
        # Q and O in [B, N, H, D] storage viewed as [B, H, N, D].
        q = torch.randn(B, Nq, Hq, D, device="cuda", dtype=dt).transpose(1, 2)
        k = torch.randn(B, Hkv, Nk, D, device="cuda", dtype=dt)
        v = torch.randn(B, Hkv, Nk, D, device="cuda", dtype=dt)
        o = torch.full((B, Nq, Hq, D), float("nan"), device="cuda", dtype=dt).transpose(1, 2)
        lse = torch.full((B, Hq, Nq), float("nan"), device="cuda", dtype=torch.float32)
        kern(q, k, v, o, lse=lse)
        rep = Hq // Hkv
        kf = k.float().repeat_interleave(rep, dim=1)
        vf = v.float().repeat_interleave(rep, dim=1)
        s = q.float() @ kf.transpose(-1, -2) / math.sqrt(D)
        if a.causal:
            s = s.masked_fill(torch.ones(Nq, Nk, device="cuda").tril(Nk - Nq) == 0, float("-inf"))
        ref_o = torch.softmax(s, dim=-1) @ vf
        ref_lse = torch.logsumexp(s, dim=-1)
        err_o = ((o.float() - ref_o).norm() / ref_o.norm()).item()
        err_l = ((lse - ref_lse).norm() / ref_lse.norm()).item()
        ok = err_o < 1e-2 and err_l < 1e-2 and not o.isnan().any() and not lse.isnan().any()
        failures += not ok
        print("%s B=%d Hq=%d Hkv=%d Nq=%d Nk=%d: o_err=%.2e lse_err=%.2e"
              % ("PASS" if ok else "FAIL", B, Hq, Hkv, Nq, Nk, err_o, err_l))
    # Errors are exceptions with the runtime's message.
    try:
        kern(q.cpu(), k, v, o)
        print("FAIL a host tensor was accepted")
        failures += 1
    except RuntimeError as e:
        print("PASS host tensor refused: %s" % e)
    try:
        kern(q, k, v, o.float())
        print("FAIL a float32 O was accepted")
        failures += 1
    except RuntimeError as e:
        print("PASS float32 O refused: %s" % e)
    print("%d passed, %d failed" % (5 - failures, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(_self_test())
