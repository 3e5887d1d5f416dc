// The CPU stages printed by the driver.
// RUN: attnc %S/Inputs/kernels.attn --kernel=causal_k --emit=tiled --head-dim=64 | FileCheck %s --check-prefix=TILED
// RUN: attnc %S/Inputs/kernels.attn --kernel=causal_k --emit=llvm-dialect --head-dim=64 | FileCheck %s --check-prefix=DIALECT
// RUN: attnc %S/Inputs/kernels.attn --kernel=causal_k --emit=llvm --head-dim=64 | FileCheck %s --check-prefix=IR
// RUN: attnc %S/Inputs/kernels.attn --kernel=causal_k --emit=tiled --head-dim=64 --cpu-tile-q=16 --cpu-tile-k=4 | FileCheck %s --check-prefix=TILES
// RUN: not attnc %S/Inputs/kernels.attn --kernel=causal_k --emit=tiled --cpu-tile-q=-1 2>&1 | FileCheck %s --check-prefix=NEGATIVE

// TILED: func.func @causal_k_item({{.*}}memref<?x?x?x64xf32>
// Default tiles: the pipeline's (32 query rows: running max and sum are
// vector<32xf32>).
// TILED: scf.for {{.*}} iter_args({{.*}}) -> (vector<32xf32>, vector<32xf32>)
// TILED: } {attn.kv_range = "bounded"}
// TILED: func.func @causal_k(
// TILED-NOT: attn.kernel

// DIALECT: llvm.func @causal_k_item(
// DIALECT: llvm.func @_mlir_ciface_causal_k(
// DIALECT-NOT: attn.name

// IR: define void @causal_k_item(
// IR: fmul
// IR: define void @_mlir_ciface_causal_k(ptr

// TILES: scf.for {{.*}} iter_args({{.*}}) -> (vector<16xf32>, vector<16xf32>)

// NEGATIVE: error: --cpu-tile-q and --cpu-tile-k must not be negative
