// End to end on the cpu target (attn-to-cpu -> LLVM -> JIT) against the
// float64 reference, at lengths that are not multiples of the tiles
// (1, 17, 33), GQA, q_offset, and rows with no visible key.
//
// RUN: attnc run %S/Inputs/kernels.attn --kernel=dense --shape=1,1,1,1,1,32 --target=cpu --check | FileCheck %s
// RUN: attnc run %S/Inputs/kernels.attn --kernel=dense --shape=2,4,1,17,33,32 --target=cpu --check | FileCheck %s
// RUN: attnc run %S/Inputs/kernels.attn --kernel=causal_k --shape=1,4,4,33,17,32 --target=cpu --check | FileCheck %s
// RUN: attnc run %S/Inputs/kernels.attn --kernel=causal_k --shape=1,4,2,1,33,32 --q-offset=32 --target=cpu --check | FileCheck %s
// RUN: attnc run %S/Inputs/kernels.attn --kernel=window_k --shape=1,2,1,33,33,32,16 --q-offset=5 --param W=3 --target=cpu --check | FileCheck %s
// RUN: attnc run %S/Inputs/kernels.attn --kernel=doc_causal --shape=2,4,2,17,33,32 --q-offset=16 --target=cpu --check | FileCheck %s
// RUN: attnc run %S/Inputs/kernels.attn --kernel=sinks --shape=1,2,1,33,33,32 --target=cpu --check | FileCheck %s
// RUN: attnc run %S/Inputs/kernels.attn --kernel=softcap_k --shape=1,2,2,17,17,32 --q-offset=3 --target=cpu --check | FileCheck %s
// RUN: attnc run %S/Inputs/kernels.attn --kernel=alibi_k --shape=2,4,2,17,33,32 --q-offset=3 --target=cpu --check | FileCheck %s
// RUN: attnc run %S/Inputs/kernels.attn --kernel=sigmoid_k --shape=1,2,1,17,33,32 --target=cpu --check | FileCheck %s
// RUN: attnc run %S/Inputs/kernels.attn --kernel=scaled --shape=1,2,1,17,17,32 --target=cpu --check | FileCheck %s
// CHECK: target cpu
// CHECK: check vs float64 reference: {{.*}}: PASS

// Rows with no visible key: O = 0 and LSE = -inf, no NaN. Causal with more
// queries than keys at q_offset 0 has none; `none` masks everything; a
// window of 1 at q_offset 20 over 17 keys leaves rows 0..2 (positions 20..22,
// last key 16 at distance >= 4 > W) without keys.
// RUN: attnc run %S/Inputs/kernels.attn --kernel=masked_all --shape=1,2,1,17,33,32 --target=cpu --check | FileCheck %s --check-prefix=NONE
// NONE: fully masked rows: 34 of 34
// NONE: PASS
// RUN: attnc run %S/Inputs/kernels.attn --kernel=window_k --shape=1,1,1,17,17,32 --q-offset=20 --param W=4 --target=cpu --check | FileCheck %s --check-prefix=SOME
// SOME: fully masked rows: 17 of 17
// SOME: PASS

// Standard library kernels.
// RUN: attnc run %lib/gqa.attn --kernel=gqa_causal --shape=2,8,2,33,33,128 --dtype=bf16 --target=cpu --check | FileCheck %s
// RUN: attnc run %lib/gqa.attn --kernel=gqa_interleaved_causal --shape=1,8,2,17,33,128 --q-offset=16 --dtype=bf16 --target=cpu --check | FileCheck %s
// RUN: attnc run %lib/document.attn --kernel=document_causal_attention --shape=1,2,1,33,33,64 --target=cpu --check | FileCheck %s
// RUN: attnc run %lib/streaming.attn --kernel=streaming_llm --shape=1,2,1,17,33,64 --q-offset=16 --target=cpu --check | FileCheck %s
// RUN: attnc run %lib/alibi.attn --kernel=alibi_causal --shape=1,4,2,17,33,16 --q-offset=16 --target=cpu --check | FileCheck %s
// RUN: attnc run %lib/natten2d.attn --kernel=natten2d_attention --shape=1,2,1,33,33,64 --target=cpu --check | FileCheck %s
// RUN: attnc run %lib/gemma2.attn --kernel=gemma2_local --shape=1,4,2,17,33,256 --param W=8 --dtype=bf16 --target=cpu --check | FileCheck %s
