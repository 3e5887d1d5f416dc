//===- CudaTestKernels.h - Hand-written PTX for the CUDA tests --*- C++ -*-===//
//
// A kernel with the attnc CUDA ABI (docs/cuda.md) whose results say what it
// was given, so that a test on a GPU checks argument packing, strides, the
// grid and parameter passing end to end. Checked with ptxas for sm_80 and
// sm_90a. The fake driver (FakeCuda.h) reads its parameter list.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_TESTS_RUNTIME_CUDATESTKERNELS_H
#define ATTNC_TESTS_RUNTIME_CUDATESTKERNELS_H

namespace attnc::test {

/// Metadata of kPatternPtx (shared_bytes may be replaced by tests).
inline const char *kPatternMeta = R"(attnc-cuda-kernel 1
kernel pattern
entry attnc_test_pattern
arch sm_80
dtype f16
head_dim 8
head_dim_v 8
block_q 4
threads 32
shared_bytes 0
align 2
param bias tensor f32 1 Hq
param scale scalar f32 2
param shift scalar i64 none
param echo tensor i64 1 40
)";

/// Number of 64-bit words the kernel writes to `echo`.
constexpr int kEchoWords = 32;

inline const char *kPatternPtx = R"(//
// The CUDA kernel ABI (docs/cuda.md) with a checkable body, for the runtime's
// tests. Kernel 'pattern': dtype f16, D = Dv = 8, block_q 4, parameters
// bias (f32[Hq]), scale (f32), shift (i64), echo (i64[40]).
//   O[b,h,n,d] = f16(Q[b,h,n,d] * scale + bias[h] + shift) for n < Nq
//   LSE[b,h,n] = q_offset + n                              if write_lse
//   echo[0..31] = every argument (block (0,0,0), thread 0), as 64-bit
//                 integers (pointers, sizes, strides, write_lse, bias and
//                 its extent, scale's bits, shift, echo and its extent)
//
.version 7.0
.target sm_80
.address_size 64

.visible .entry attnc_test_pattern(
	.param .u64 p_q,
	.param .u64 p_k,
	.param .u64 p_v,
	.param .u64 p_o,
	.param .u64 p_lse,
	.param .u32 p_B,
	.param .u32 p_Hq,
	.param .u32 p_Hkv,
	.param .u32 p_Nq,
	.param .u32 p_Nk,
	.param .u32 p_qoff,
	.param .u64 p_q_sb,
	.param .u64 p_q_sh,
	.param .u64 p_q_sn,
	.param .u64 p_k_sb,
	.param .u64 p_k_sh,
	.param .u64 p_k_sn,
	.param .u64 p_v_sb,
	.param .u64 p_v_sh,
	.param .u64 p_v_sn,
	.param .u64 p_o_sb,
	.param .u64 p_o_sh,
	.param .u64 p_o_sn,
	.param .u64 p_lse_sb,
	.param .u64 p_lse_sh,
	.param .u32 p_write_lse,
	.param .u64 p_bias,
	.param .u32 p_bias_n,
	.param .f32 p_scale,
	.param .u64 p_shift,
	.param .u64 p_echo,
	.param .u32 p_echo_n
)
{
	.reg .pred %p<8>;
	.reg .b16 %h<4>;
	.reg .b32 %r<32>;
	.reg .f32 %f<8>;
	.reg .b64 %rd<64>;

	ld.param.u64 %rd1, [p_q];
	ld.param.u64 %rd2, [p_k];
	ld.param.u64 %rd3, [p_v];
	ld.param.u64 %rd4, [p_o];
	ld.param.u64 %rd5, [p_lse];
	ld.param.u32 %r1, [p_B];
	ld.param.u32 %r2, [p_Hq];
	ld.param.u32 %r3, [p_Hkv];
	ld.param.u32 %r4, [p_Nq];
	ld.param.u32 %r5, [p_Nk];
	ld.param.u32 %r6, [p_qoff];
	ld.param.u64 %rd6, [p_q_sb];
	ld.param.u64 %rd7, [p_q_sh];
	ld.param.u64 %rd8, [p_q_sn];
	ld.param.u64 %rd9, [p_k_sb];
	ld.param.u64 %rd10, [p_k_sh];
	ld.param.u64 %rd11, [p_k_sn];
	ld.param.u64 %rd12, [p_v_sb];
	ld.param.u64 %rd13, [p_v_sh];
	ld.param.u64 %rd14, [p_v_sn];
	ld.param.u64 %rd15, [p_o_sb];
	ld.param.u64 %rd16, [p_o_sh];
	ld.param.u64 %rd17, [p_o_sn];
	ld.param.u64 %rd18, [p_lse_sb];
	ld.param.u64 %rd19, [p_lse_sh];
	ld.param.u32 %r7, [p_write_lse];
	ld.param.u64 %rd20, [p_bias];
	ld.param.u32 %r8, [p_bias_n];
	ld.param.f32 %f1, [p_scale];
	ld.param.u64 %rd21, [p_shift];
	ld.param.u64 %rd22, [p_echo];
	ld.param.u32 %r9, [p_echo_n];

	mov.u32 %r10, %tid.x;
	mov.u32 %r11, %ntid.x;
	mov.u32 %r12, %ctaid.x;
	mov.u32 %r13, %ctaid.y;
	mov.u32 %r14, %ctaid.z;
	cvt.u64.u32 %rd23, %r14;          // b
	cvt.u64.u32 %rd24, %r13;          // h
	// bias[h] + shift
	mul.wide.u32 %rd25, %r13, 4;
	add.s64 %rd25, %rd20, %rd25;
	ld.global.f32 %f2, [%rd25];
	cvt.rn.f32.s64 %f3, %rd21;
	add.f32 %f2, %f2, %f3;
	// Row bases: q and o at (b, h)
	mul.lo.s64 %rd26, %rd23, %rd6;
	mad.lo.s64 %rd26, %rd24, %rd7, %rd26;
	mul.lo.s64 %rd27, %rd23, %rd15;
	mad.lo.s64 %rd27, %rd24, %rd16, %rd27;

	mov.u32 %r15, %r10;               // i = tid
LOOP:
	setp.ge.u32 %p1, %r15, 32;        // block_q * Dv
	@%p1 bra DONE_O;
	shr.u32 %r16, %r15, 3;            // row
	and.b32 %r17, %r15, 7;            // d
	shl.b32 %r18, %r12, 2;
	add.u32 %r18, %r18, %r16;         // n
	setp.ge.u32 %p2, %r18, %r4;
	@%p2 bra NEXT;
	cvt.u64.u32 %rd28, %r18;
	cvt.u64.u32 %rd29, %r17;
	mad.lo.s64 %rd30, %rd28, %rd8, %rd26;
	add.s64 %rd30, %rd30, %rd29;
	shl.b64 %rd30, %rd30, 1;
	add.s64 %rd30, %rd1, %rd30;
	ld.global.b16 %h1, [%rd30];
	cvt.f32.f16 %f4, %h1;
	fma.rn.f32 %f5, %f4, %f1, %f2;
	cvt.rn.f16.f32 %h2, %f5;
	mad.lo.s64 %rd31, %rd28, %rd17, %rd27;
	add.s64 %rd31, %rd31, %rd29;
	shl.b64 %rd31, %rd31, 1;
	add.s64 %rd31, %rd4, %rd31;
	st.global.b16 [%rd31], %h2;
NEXT:
	add.u32 %r15, %r15, %r11;
	bra LOOP;

DONE_O:
	setp.eq.u32 %p3, %r7, 0;
	@%p3 bra ECHO;
	setp.ge.u32 %p4, %r10, 4;         // thread t writes row t of the tile
	@%p4 bra ECHO;
	shl.b32 %r19, %r12, 2;
	add.u32 %r19, %r19, %r10;         // n
	setp.ge.u32 %p5, %r19, %r4;
	@%p5 bra ECHO;
	add.u32 %r20, %r19, %r6;
	cvt.rn.f32.u32 %f6, %r20;
	cvt.u64.u32 %rd32, %r19;
	mul.lo.s64 %rd33, %rd23, %rd18;
	mad.lo.s64 %rd33, %rd24, %rd19, %rd33;
	add.s64 %rd33, %rd33, %rd32;
	shl.b64 %rd33, %rd33, 2;
	add.s64 %rd33, %rd5, %rd33;
	st.global.f32 [%rd33], %f6;

ECHO:
	or.b32 %r21, %r10, %r12;
	or.b32 %r21, %r21, %r13;
	or.b32 %r21, %r21, %r14;
	setp.ne.u32 %p6, %r21, 0;
	@%p6 bra END;
	st.global.u64 [%rd22+0], %rd1;
	st.global.u64 [%rd22+8], %rd2;
	st.global.u64 [%rd22+16], %rd3;
	st.global.u64 [%rd22+24], %rd4;
	st.global.u64 [%rd22+32], %rd5;
	cvt.u64.u32 %rd40, %r1;
	st.global.u64 [%rd22+40], %rd40;
	cvt.u64.u32 %rd40, %r2;
	st.global.u64 [%rd22+48], %rd40;
	cvt.u64.u32 %rd40, %r3;
	st.global.u64 [%rd22+56], %rd40;
	cvt.u64.u32 %rd40, %r4;
	st.global.u64 [%rd22+64], %rd40;
	cvt.u64.u32 %rd40, %r5;
	st.global.u64 [%rd22+72], %rd40;
	cvt.u64.u32 %rd40, %r6;
	st.global.u64 [%rd22+80], %rd40;
	st.global.u64 [%rd22+88], %rd6;
	st.global.u64 [%rd22+96], %rd7;
	st.global.u64 [%rd22+104], %rd8;
	st.global.u64 [%rd22+112], %rd9;
	st.global.u64 [%rd22+120], %rd10;
	st.global.u64 [%rd22+128], %rd11;
	st.global.u64 [%rd22+136], %rd12;
	st.global.u64 [%rd22+144], %rd13;
	st.global.u64 [%rd22+152], %rd14;
	st.global.u64 [%rd22+160], %rd15;
	st.global.u64 [%rd22+168], %rd16;
	st.global.u64 [%rd22+176], %rd17;
	st.global.u64 [%rd22+184], %rd18;
	st.global.u64 [%rd22+192], %rd19;
	cvt.u64.u32 %rd40, %r7;
	st.global.u64 [%rd22+200], %rd40;
	st.global.u64 [%rd22+208], %rd20;
	cvt.u64.u32 %rd40, %r8;
	st.global.u64 [%rd22+216], %rd40;
	mov.b32 %r22, %f1;
	cvt.u64.u32 %rd40, %r22;
	st.global.u64 [%rd22+224], %rd40;
	st.global.u64 [%rd22+232], %rd21;
	st.global.u64 [%rd22+240], %rd22;
	cvt.u64.u32 %rd40, %r9;
	st.global.u64 [%rd22+248], %rd40;
END:
	ret;
}
)";

} // namespace attnc::test

#endif // ATTNC_TESTS_RUNTIME_CUDATESTKERNELS_H
