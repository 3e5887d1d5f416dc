// The CPU stages printed by the driver.
// RUN: attnc %S/Inputs/kernels.attn --kernel=causal_k --emit=tiled --head-dim=64 | FileCheck %s --check-prefix=TILED
// RUN: attnc %S/Inputs/kernels.attn --kernel=causal_k --emit=llvm-dialect --head-dim=64 | FileCheck %s --check-prefix=DIALECT
// RUN: attnc %S/Inputs/kernels.attn --kernel=causal_k --emit=llvm --head-dim=64 | FileCheck %s --check-prefix=IR

// TILED: func.func @causal_k_item({{.*}}memref<?x?x?x64xf32>
// TILED: scf.for {{.*}} iter_args({{.*}}) -> (vector<16xf32>, vector<16xf32>)
// TILED: } {attn.kv_range = "bounded"}
// TILED: func.func @causal_k(
// TILED-NOT: attn.kernel

// DIALECT: llvm.func @causal_k_item(
// DIALECT: llvm.func @_mlir_ciface_causal_k(
// DIALECT-NOT: attn.name

// IR: define void @causal_k_item(
// IR: fmul
// IR: define void @_mlir_ciface_causal_k(ptr
