#!/usr/bin/env python3
"""Bit-level emulation of the CUDA decode kernel's quantized fragments.

V (DecodeKernel.cpp, `directV`): for one warp's 16 keys of raw int8 / int4 /
fp8 V rows, every lane builds its mma.m16n8k16 B registers as the kernel
does (unit loads, prmt interleave of two keys, the XOR bias, the f16
magic-number or e4m3 conversions), the MMAs are emulated with the PTX
fragment layouts, and the accumulators are stored with the combine's
column mapping. The result must equal P . V on the dequantized values.

K (`loadRawK`, `kColumn`; with `biasK` the fragments keep the f16 bias
1024 + u, Q's copy holds Q / 16 on int4's times-16 nibbles and the
accumulators start from the MMAs of Q with constant -bias fragments): the
scores of 16 rows and 16 keys must equal Q . K on the dequantized values.

The transposed step (check_transposed; not built yet, bench/NOTES.md
session 10): keys as the MMAs' M and up to 8 packed rows as N, from the
same raw-word and direct-V registers, P^T moved into P.V's B fragments by
movmatrix; O^T must equal P . V and S^T Q . K.

It checks the design's index and bit arithmetic here, without a GPU; the
kernel itself is checked on the GPU by decode.py --check. Pure Python.

    python3 bench/gpu/decode_fragments.py
"""
import random
import struct


def f16(bits):
    return struct.unpack("<e", struct.pack("<H", bits & 0xFFFF))[0]


def f16_bits(x):
    return struct.unpack("<H", struct.pack("<e", x))[0]


def halves(word):
    return f16(word), f16(word >> 16)


def pack_halves(lo, hi):
    return f16_bits(lo) | (f16_bits(hi) << 16)


def prmt(a, b, sel):
    """prmt.b32 (default mode): result byte i = byte (sel >> 4i) & 7 of
    b:a (bytes 0-3 from a, 4-7 from b)."""
    src = (a & 0xFFFFFFFF) | ((b & 0xFFFFFFFF) << 32)
    out = 0
    for i in range(4):
        s = (sel >> (4 * i)) & 0xF
        byte = (src >> (8 * (s & 7))) & 0xFF
        if s & 8:  # sign replicate (unused here)
            byte = 0xFF if byte & 0x80 else 0
        out |= byte << (8 * i)
    return out


def lop3(a, b, c, lut):
    """lop3.b32: result bit i = bit (a_i << 2 | b_i << 1 | c_i) of lut."""
    out = 0
    for i in range(32):
        sel = ((a >> i) & 1) << 2 | ((b >> i) & 1) << 1 | ((c >> i) & 1)
        out |= ((lut >> sel) & 1) << i
    return out


def sub_f16x2(a, b):
    (a0, a1), (b0, b1) = halves(a), halves(b)
    return pack_halves(a0 - b0, a1 - b1)


def fma_f16x2(a, b, c):
    (a0, a1), (b0, b1), (c0, c1) = halves(a), halves(b), halves(c)
    return pack_halves(a0 * b0 + c0, a1 * b1 + c1)


def byte_pair(biased, k, keep_bias=False):
    """DecodeKernel bytePair: bytes 2k, 2k+1 of `biased` as f16x2 - 1152
    (keep_bias: without the subtraction)."""
    t = prmt(biased, 0x64646464, 0x4140 if k == 0 else 0x4342)
    return t if keep_bias else sub_f16x2(t, 0x64806480)


def unpack_nibbles(word, keep_bias=False):
    """DecodeKernel unpackNibbles: four f16x2 (n0, n4), (n1, n5), (n2, n6),
    (n3, n7) of the signed values (keep_bias: 1024 + u and 1024 + 16u);
    the xor with 8 that biases each nibble is in the LOP3s (immLut 0x6a)."""
    m, h, k = 0x64086408, 0x2C002C00, 0xD480D480
    out = []
    for s in (word, word >> 8):
        a = lop3(s, 0x000F000F, 0x64086408, 0x6A)
        c = lop3(s, 0x00F000F0, 0x64806480, 0x6A)
        out += [a, c] if keep_bias else [sub_f16x2(a, m), fma_f16x2(c, h, k)]
    return [out[0], out[1], out[2], out[3]]


E4M3 = {}
for code in range(256):
    s, e, m = code >> 7, (code >> 3) & 0xF, code & 7
    if e == 0xF and m == 7:
        v = float("nan")
    elif e == 0:
        v = m / 8 * 2.0 ** -6
    else:
        v = (1 + m / 8) * 2.0 ** (e - 7)
    E4M3[code] = -v if s else v


def cvt_e4m3x2(h16):  # cvt.rn.f16x2.e4m3x2: byte 0 -> low half
    return pack_halves(E4M3[h16 & 0xFF], E4M3[(h16 >> 8) & 0xFF])


def word_to_f16(kind, word, keep_bias=False):
    if kind == "f8":
        return [cvt_e4m3x2(word & 0xFFFF), cvt_e4m3x2(word >> 16)]
    if kind == "i4":
        return unpack_nibbles(word, keep_bias)
    biased = word ^ 0x80808080
    return [byte_pair(biased, 0, keep_bias), byte_pair(biased, 1, keep_bias)]


def key_pair_to_f16(kind, wa, wb):
    """DecodeKernel keyPairToF16."""
    if kind == "i4":
        return word_to_f16(kind, prmt(wa, wb, 0x5410))
    return word_to_f16(kind, prmt(wa, wb, 0x5140)) + word_to_f16(kind, prmt(wa, wb, 0x7362))


def random_rows(rnd, kind, cols):
    """16 rows of random codes (fp8 e4m3 without NaN, or int8 / int4) as
    their values and raw page bytes."""
    if kind == "f8":
        codes = [[rnd.choice([c for c in range(256) if c & 0x7F != 0x7F]) for _ in range(cols)]
                 for _ in range(16)]
        return [[E4M3[c] for c in row] for row in codes], [bytes(row) for row in codes]
    q, raw = random_int_rows(rnd, kind, cols)
    return [[float(x) for x in row] for row in q], raw


def random_int_rows(rnd, kind, cols):
    """16 rows of random int8 / int4 codes and their raw page bytes (int4:
    two per byte, the even column in the low nibble)."""
    qmax = 7 if kind == "i4" else 127
    q = [[rnd.randint(-qmax - (kind == "i4"), qmax) for _ in range(cols)] for _ in range(16)]
    if kind == "i4":
        raw = [bytes(((row[2 * i] & 0xF) | ((row[2 * i + 1] & 0xF) << 4))
                     for i in range(cols // 2)) for row in q]
    else:
        raw = [bytes(v & 0xFF for v in row) for row in q]
    return q, raw


def check(kind, Dv=128, group=0, seed=0):
    rnd = random.Random(seed)
    per_byte = 2 if kind == "i4" else 1
    # 16 keys of raw rows and their dequantized values (scales apply to P).
    vals, raw = random_rows(rnd, kind, Dv)
    groups = Dv // group if group else 1
    scale = [[rnd.uniform(0.5, 2.0) for _ in range(groups)] for _ in range(16)]
    P = [[rnd.uniform(0, 1) for _ in range(16)] for _ in range(16)]  # rows x keys

    def unit(key, m, grp):  # the lane's load: 4 columns 32m + 4grp .. + 3
        at = (32 * m + 4 * grp) // per_byte
        n = 4 // per_byte
        return int.from_bytes(raw[key][at:at + n], "little")

    # Accumulators: o[nb][lane][i], C fragment layout.
    nbO = Dv // 8
    o = [[[0.0] * 4 for _ in range(32)] for _ in range(nbO)]
    for m in range(Dv // 32):
        g = 32 * m * groups // Dv
        # B registers of every lane for n-blocks 4m .. 4m + 3.
        breg = {}
        for lane in range(32):
            grp, tig = lane // 4, lane % 4
            lo = key_pair_to_f16(kind, unit(2 * tig, m, grp), unit(2 * tig + 1, m, grp))
            hi = key_pair_to_f16(kind, unit(2 * tig + 8, m, grp), unit(2 * tig + 9, m, grp))
            breg[lane] = (lo, hi)
        for j in range(4):
            nb = 4 * m + j
            # The B operand as a matrix [k][n] from the lanes' registers.
            Bm = [[None] * 8 for _ in range(16)]
            for lane in range(32):
                grp, tig = lane // 4, lane % 4
                lo, hi = breg[lane]
                Bm[2 * tig][grp], Bm[2 * tig + 1][grp] = halves(lo[j])
                Bm[2 * tig + 8][grp], Bm[2 * tig + 9][grp] = halves(hi[j])
            # A = P times the keys' V scales of group g (the kernel's pa[g]).
            A = [[P[r][k] * scale[k][g] for k in range(16)] for r in range(16)]
            for lane in range(32):
                grp, tig = lane // 4, lane % 4
                for i in range(4):
                    r = grp + 8 * (i // 2)
                    c = 2 * tig + (i & 1)
                    o[nb][lane][i] += sum(A[r][k] * Bm[k][c] for k in range(16))
    # The combine's mapping: n-block n, register i -> column 32(n/4) + 4c + n%4.
    out = [[None] * Dv for _ in range(16)]
    for nb in range(nbO):
        for lane in range(32):
            grp, tig = lane // 4, lane % 4
            for i in range(4):
                r = grp + 8 * (i // 2)
                c = 2 * tig + (i & 1)
                d = 32 * (nb // 4) + 4 * c + nb % 4
                assert out[r][d] is None, "column written twice"
                out[r][d] = o[nb][lane][i]
    err = 0.0
    for r in range(16):
        for d in range(Dv):
            g = d * groups // Dv
            ref = sum(P[r][k] * scale[k][g] * vals[k][d] for k in range(16))
            err = max(err, abs(out[r][d] - ref) / max(1.0, abs(ref)))
    return err


def k_column(kind, p):
    """DecodeKernel kColumn: the Q.K^T k index of head-dim column p."""
    if kind != "i4":
        blk, q = divmod(p, 16)
        t, j = divmod(q, 4)
        return 16 * blk + 2 * t + j + (6 if j >= 2 else 0)
    blk, q = divmod(p, 32)
    t, j = divmod(q, 8)
    m, h = j % 4, j // 4
    return 16 * (2 * blk + m // 2) + (m % 2) * 8 + 2 * t + h


def check_k(kind, D=128, group=0, bias=False, seed=0):
    """Q.K^T of 16 rows and one warp's 16 keys from raw K rows, as the
    kernel builds it (two n8 blocks of keys, D / 16 k16 chunks)."""
    rnd = random.Random(seed)
    x, raw = random_int_rows(rnd, kind, D)
    groups = D // group if group else 1
    ks = [[rnd.uniform(0.5, 2.0) for _ in range(groups)] for _ in range(16)]
    # Q rounded to f16 once (the kernel's copy), then / 16 where bias puts
    # int4's times-16 nibbles (k 8..15 of a chunk); A[r][kpos].
    Q = [[f16(f16_bits(rnd.gauss(0, 1))) for _ in range(D)] for _ in range(16)]
    A = [[0.0] * D for _ in range(16)]
    for r in range(16):
        for p in range(D):
            kp = k_column(kind, p)
            A[r][kp] = Q[r][p] / 16 if bias and kind == "i4" and kp % 16 >= 8 else Q[r][p]

    def word(key, kk):  # loadRawK: 4 bytes at 16kk + 4tig (int4: 16(kk/2) + 4tig)
        return lambda tig: int.from_bytes(
            raw[key][(16 * (kk // 2) if kind == "i4" else 16 * kk) + 4 * tig:][:4], "little")

    sg = []  # per group: rows x keys
    for g in range(groups):
        # The start: the same MMAs over constant fragments of -bias.
        start = [[0.0] * 8 for _ in range(16)]
        if bias:
            lo = -1032.0 if kind == "i4" else -1152.0
            for kk in range(g * D // groups // 16, (g + 1) * D // groups // 16):
                for r in range(16):
                    for n in range(8):
                        start[r][n] += sum(A[r][16 * kk + k] * (lo if k < 8 else -1152.0)
                                           for k in range(16))
        sg.append([[start[r][n % 8] for n in range(16)] for r in range(16)])
    for kk in range(D // 16):
        g = kk * 16 * groups // D
        first = 2 * (kk % 2) if kind == "i4" else 0
        for nb in range(2):
            Bm = [[None] * 8 for _ in range(16)]
            for lane in range(32):
                grp, tig = lane // 4, lane % 4
                regs = word_to_f16(kind, word(nb * 8 + grp, kk)(tig), bias)
                Bm[2 * tig][grp], Bm[2 * tig + 1][grp] = halves(regs[first])
                Bm[2 * tig + 8][grp], Bm[2 * tig + 9][grp] = halves(regs[first + 1])
            for r in range(16):
                for n in range(8):
                    sg[g][r][nb * 8 + n] += sum(A[r][16 * kk + k] * Bm[k][n] for k in range(16))
    err = 0.0
    for r in range(16):
        for key in range(16):
            got = sum(sg[g][r][key] * ks[key][g] for g in range(groups))
            ref = sum(Q[r][p] * ks[key][p * groups // D] * x[key][p] for p in range(D))
            err = max(err, abs(got - ref) / max(1.0, abs(ref)))
    return err


def movmatrix_trans(regs):
    """movmatrix.sync.aligned.m8n8.trans.b16 over a warp: lane (grp, tig)
    holds M[grp][2tig], M[grp][2tig+1] as an f16x2 and gets the transpose's
    M[2tig][grp], M[2tig+1][grp]."""
    M = [[None] * 8 for _ in range(8)]
    for lane in range(32):
        grp, tig = lane // 4, lane % 4
        M[grp][2 * tig], M[grp][2 * tig + 1] = halves(regs[lane])
    return [pack_halves(M[2 * (lane % 4)][lane // 4], M[2 * (lane % 4) + 1][lane // 4])
            for lane in range(32)]


def mma_m16n8k16(a, b, c):
    """One warp's mma.m16n8k16 from the lanes' fragments (PTX layouts):
    a[lane] = 4 f16x2 (A rows grp / grp + 8, k 2tig.. / 2tig + 8..),
    b[lane] = 2 f16x2 (k 2tig.. / 2tig + 8.., column grp), c[lane] = 4 f32
    (rows grp / grp + 8, columns 2tig, 2tig + 1). Returns the new c."""
    A = [[None] * 16 for _ in range(16)]
    B = [[None] * 8 for _ in range(16)]
    for lane in range(32):
        grp, tig = lane // 4, lane % 4
        for i, (r, k) in enumerate([(grp, 2 * tig), (grp + 8, 2 * tig),
                                    (grp, 2 * tig + 8), (grp + 8, 2 * tig + 8)]):
            A[r][k], A[r][k + 1] = halves(a[lane][i])
        B[2 * tig][grp], B[2 * tig + 1][grp] = halves(b[lane][0])
        B[2 * tig + 8][grp], B[2 * tig + 9][grp] = halves(b[lane][1])
    out = []
    for lane in range(32):
        grp, tig = lane // 4, lane % 4
        out.append([c[lane][i] + sum(A[grp + 8 * (i // 2)][k] * B[k][2 * tig + (i & 1)]
                                     for k in range(16)) for i in range(4)])
    return out


def check_transposed(kind, D=128, group=0, rows=4, seed=0):
    """The transposed decode step (not built yet; bench/NOTES.md session 10):
    keys as the MMAs' M, the packed rows (G x Nq <= 8) as N. One warp's 16
    keys from raw K / V rows, with the registers the kernel builds today:
      S^T = K Q^T: A = K's raw-word fragments (loadRawK's pairs of keys grp
        and grp + 8), B = Q^T (ldmatrix of Q's f16 copy, rows = packed rows,
        columns in kColumn's order);
      P^T: S^T's C fragments (keys grp, grp + 8 x rows 2tig, 2tig + 1) times
        the keys' V scales, packed to f16x2 and transposed by movmatrix into
        P.V's B fragments (keys 2tig.., row grp);
      O^T = V^T P^T: A = directV's B registers of two n-blocks (4m + 2h,
        4m + 2h + 1: rows grp and grp + 8 of the m-tile), C = O^T, stored
        with the combine's column of each m-tile row.
    O must equal P . V and the scores Q . K on the dequantized values."""
    rnd = random.Random(seed)
    per_byte = 2 if kind == "i4" else 1
    xk, raw_k = random_rows(rnd, kind, D)
    xv, raw_v = random_rows(rnd, kind, D)
    groups = D // group if group else 1
    ks = [[rnd.uniform(0.5, 2.0) for _ in range(groups)] for _ in range(16)]
    vs = [[rnd.uniform(0.5, 2.0) for _ in range(groups)] for _ in range(16)]
    # Q's f16 copy, columns permuted by kColumn; rows past `rows` are padding.
    Q = [[f16(f16_bits(rnd.gauss(0, 1))) if r < rows else 0.0 for _ in range(D)]
         for r in range(8)]
    Qk = [[0.0] * D for _ in range(8)]
    for r in range(8):
        for p in range(D):
            Qk[r][k_column(kind, p)] = Q[r][p]

    def raw_word(key, kk, tig):  # loadRawK's word
        at = (16 * (kk // 2) if kind == "i4" else 16 * kk) + 4 * tig
        return int.from_bytes(raw_k[key][at:at + 4], "little")

    # S^T per K scale group: [lane][4] = keys grp / grp + 8 x rows 2tig, 2tig + 1.
    st = [[[0.0] * 4 for _ in range(32)] for _ in range(groups)]
    for kk in range(D // 16):
        g = kk * 16 * groups // D
        first = 2 * (kk % 2) if kind == "i4" else 0
        a, b = [], []
        for lane in range(32):
            grp, tig = lane // 4, lane % 4
            lo = word_to_f16(kind, raw_word(grp, kk, tig))
            hi = word_to_f16(kind, raw_word(grp + 8, kk, tig))
            a.append([lo[first], hi[first], lo[first + 1], hi[first + 1]])
            b.append([pack_halves(Qk[grp][16 * kk + 2 * tig], Qk[grp][16 * kk + 2 * tig + 1]),
                      pack_halves(Qk[grp][16 * kk + 2 * tig + 8],
                                  Qk[grp][16 * kk + 2 * tig + 9])])
        st[g] = mma_m16n8k16(a, b, st[g])
    err = 0.0
    scores = [[0.0] * 4 for _ in range(32)]
    for lane in range(32):
        grp, tig = lane // 4, lane % 4
        for i in range(4):
            key, r = grp + 8 * (i // 2), 2 * tig + (i & 1)
            scores[lane][i] = sum(st[g][lane][i] * ks[key][g] for g in range(groups))
            ref = sum(Q[r][p] * ks[key][p * groups // D] * xk[key][p] for p in range(D))
            err = max(err, abs(scores[lane][i] - ref) / max(1.0, abs(ref)))
    # P^T (any weights: the layout is what is checked), times V's scales.
    P = [[rnd.uniform(0, 1) if r < rows else 0.0 for _ in range(16)] for r in range(8)]

    def unit(key, m, grp):  # directV's load: 4 columns 32m + 4grp .. + 3
        at = (32 * m + 4 * grp) // per_byte
        return int.from_bytes(raw_v[key][at:at + 4 // per_byte], "little")

    out = [[None] * D for _ in range(8)]
    for m in range(D // 32):
        g = 32 * m * groups // D
        pb = []  # P^T's B fragments for group g
        for half in range(2):  # keys 0-7, 8-15
            regs = [pack_halves(P[2 * (ln % 4)][ln // 4 + 8 * half] * vs[ln // 4 + 8 * half][g],
                                P[2 * (ln % 4) + 1][ln // 4 + 8 * half] * vs[ln // 4 + 8 * half][g])
                    for ln in range(32)]
            pb.append(movmatrix_trans(regs))
        b = [[pb[0][ln], pb[1][ln]] for ln in range(32)]
        vreg = []
        for lane in range(32):
            grp, tig = lane // 4, lane % 4
            vreg.append((key_pair_to_f16(kind, unit(2 * tig, m, grp), unit(2 * tig + 1, m, grp)),
                         key_pair_to_f16(kind, unit(2 * tig + 8, m, grp),
                                         unit(2 * tig + 9, m, grp))))
        for h in range(2):
            j0, j1 = 2 * h, 2 * h + 1
            a = [[vreg[ln][0][j0], vreg[ln][0][j1], vreg[ln][1][j0], vreg[ln][1][j1]]
                 for ln in range(32)]
            c = mma_m16n8k16(a, b, [[0.0] * 4 for _ in range(32)])
            for lane in range(32):
                grp, tig = lane // 4, lane % 4
                for i in range(4):
                    mrow, r = grp + 8 * (i // 2), 2 * tig + (i & 1)
                    # m-tile row -> n-block 4m + 2h + mrow / 8, its column grp
                    # -> the combine's column 32m + 4 grp + n-block % 4.
                    d = 32 * m + 4 * (mrow % 8) + 2 * h + mrow // 8
                    assert out[r][d] is None, "column written twice"
                    out[r][d] = c[lane][i]
    for r in range(8):
        for d in range(D):
            g = d * groups // D
            # P' is rounded to f16 where the kernel packs it.
            ref = sum(f16(f16_bits(P[r][k] * vs[k][g])) * xv[k][d] for k in range(16))
            err = max(err, abs(out[r][d] - ref) / max(1.0, abs(ref)))
    return err


def main():
    failures = total = 0
    for kind, Dv, group in [("i8", 128, 0), ("i8", 128, 32), ("i8", 64, 64), ("i4", 128, 32),
                            ("i4", 128, 0), ("i4", 64, 64), ("f8", 128, 0), ("f8", 96, 32)]:
        err = check(kind, Dv, group)
        ok = err < 1e-9
        failures += not ok
        total += 1
        print("%s V %s Dv=%d group=%d: max rel err %.2e" % ("PASS" if ok else "FAIL", kind, Dv,
                                                            group, err))
    for kind, D, group in [("i8", 128, 0), ("i8", 128, 32), ("i8", 64, 0), ("i4", 128, 0),
                           ("i4", 128, 32), ("i4", 64, 64)]:
        for bias in (False, True):
            err = check_k(kind, D, group, bias)
            ok = err < 1e-9
            failures += not ok
            total += 1
            print("%s K %s D=%d group=%d%s: max rel err %.2e" % (
                "PASS" if ok else "FAIL", kind, D, group, " bias" if bias else "", err))
    for kind, D, group, rows in [("i8", 128, 0, 4), ("i8", 128, 32, 8), ("i4", 128, 0, 4),
                                 ("i4", 128, 32, 8), ("i4", 64, 64, 1), ("f8", 128, 0, 4)]:
        err = check_transposed(kind, D, group, rows)
        ok = err < 1e-9
        failures += not ok
        total += 1
        print("%s transposed %s D=%d group=%d rows=%d: max rel err %.2e" % (
            "PASS" if ok else "FAIL", kind, D, group, rows, err))
    print("%d passed, %d failed" % (total - failures, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
