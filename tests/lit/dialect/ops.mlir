// RUN: attnc-opt %s | attnc-opt | FileCheck %s
// RUN: attnc-opt %s --mlir-print-op-generic | attnc-opt | FileCheck %s

// Round trip of every attn op and attribute.

// CHECK-LABEL: attn.mask @sliding_window
// CHECK-SAME: (%b: i32, %h: i32, %q: i32, %k: i32, %w: i32 {attn.name = "w"}) -> i1
// CHECK: %[[D:.*]] = arith.subi %q, %k : i32
// CHECK: %[[M:.*]] = arith.cmpi slt, %[[D]], %w : i32
// CHECK: attn.yield %[[M]] : i1
attn.mask @sliding_window(%b: i32, %h: i32, %q: i32, %k: i32,
                          %w: i32 {attn.name = "w"}) -> i1 {
  %d = arith.subi %q, %k : i32
  %0 = arith.cmpi slt, %d, %w : i32
  attn.yield %0 : i1
}

// CHECK-LABEL: attn.mask @document
// CHECK: attn.load %{{.*}}[%q] : tensor<?xi32>
// CHECK: attn.load %{{.*}}[%k] : tensor<?xi32>
attn.mask @document(%b: i32, %h: i32, %q: i32, %k: i32,
                    %doc: tensor<?xi32>) -> i1 {
  %0 = attn.load %doc[%q] : tensor<?xi32>
  %1 = attn.load %doc[%k] : tensor<?xi32>
  %2 = arith.cmpi eq, %0, %1 : i32
  attn.yield %2 : i1
}

// CHECK-LABEL: attn.score private @alibi
// CHECK-SAME: (%s: f32, %b: i32, %h: i32, %q: i32, %k: i32, %{{.*}}: tensor<?xf32>) -> f32
// CHECK: attn.load %{{.*}}[%h] : tensor<?xf32>
// CHECK: attn.yield %{{.*}} : f32
attn.score private @alibi(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32,
                          %slopes: tensor<?xf32>) -> f32 {
  %m = attn.load %slopes[%h] : tensor<?xf32>
  %d = arith.subi %k, %q : i32
  %f = arith.sitofp %d : i32 to f32
  %p = arith.mulf %m, %f : f32
  %r = arith.addf %s, %p : f32
  attn.yield %r : f32
}

// CHECK-LABEL: attn.score @bias
// CHECK: attn.load %{{.*}}[%q, %k] : tensor<16x9xf32>
attn.score @bias(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32,
                 %table: tensor<16x9xf32>) -> f32 {
  %0 = attn.load %table[%q, %k] : tensor<16x9xf32>
  %1 = arith.addf %s, %0 : f32
  attn.yield %1 : f32
}

// Kernel parameters print under their attn.name; region arguments as
// b, h, q, k (and s).
// CHECK-LABEL: attn.kernel @doc_causal
// CHECK-SAME: (%doc: tensor<?xi32> {attn.dims = ["N"], attn.name = "doc"},
// CHECK-SAME: %cap: f32 {attn.default = 3.000000e+01 : f32, attn.name = "cap"})
// CHECK-SAME: attributes {dtypes = [bf16, f32], head_dims = array<i64: 64, 128>}
// CHECK: attn.attention normalizer = softmax heads = grouped mask {
// CHECK-NEXT: ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
// CHECK-NEXT: attn.call @document(%b, %h, %q, %k, %doc) : (i32, i32, i32, i32, tensor<?xi32>) -> i1
// CHECK: } score {
// CHECK-NEXT: ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
// CHECK-NEXT: attn.yield %s : f32
attn.kernel @doc_causal(
    %doc: tensor<?xi32> {attn.name = "doc", attn.dims = ["N"]},
    %cap: f32 {attn.name = "cap", attn.default = 3.0e1 : f32})
    attributes {dtypes = [bf16, f32], head_dims = array<i64: 64, 128>} {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %0 = attn.call @document(%b, %h, %q, %k, %doc)
        : (i32, i32, i32, i32, tensor<?xi32>) -> i1
    attn.yield %0 : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// A scale computed in the kernel body, the other enum cases, extra
// attributes, and attn.dims with literals.
// CHECK-LABEL: attn.kernel @scaled
// CHECK-SAME: %table: tensor<16x9xf32> {attn.dims = [16, 9], attn.name = "table"}
// CHECK-SAME: %pos: tensor<?x2xi32> {attn.dims = ["Nk", 2], attn.name = "pos"}
// CHECK: %[[C:.*]] = arith.constant 1.250000e-01 : f32
// CHECK: attn.attention normalizer = sigmoid heads = interleaved scale(%[[C]] : f32)
// CHECK-SAME: attributes {note = "x"} mask {
attn.kernel @scaled(
    %table: tensor<16x9xf32> {attn.name = "table", attn.dims = [16, 9]},
    %pos: tensor<?x2xi32> {attn.name = "pos", attn.dims = ["Nk", 2]}) {
  %c = arith.constant 0.125 : f32
  attn.attention normalizer = sigmoid heads = interleaved scale(%c : f32)
      attributes {note = "x"} mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    %0 = attn.call @bias(%s, %b, %h, %q, %k, %table)
        : (f32, i32, i32, i32, i32, tensor<16x9xf32>) -> f32
    attn.yield %0 : f32
  }
}

// CHECK-LABEL: attn.cache_policy @streaming
// CHECK-SAME: layout = #attn.layout<paged 16>
// CHECK-SAME: retention = #attn.retention<sink_window sink 4 window 1020>
// CHECK-SAME: storage = #attn.storage<i8 per_token>
attn.cache_policy @streaming layout = #attn.layout<paged 16>
    retention = #attn.retention<sink_window sink 4 window 1020>
    storage = #attn.storage<i8 per_token>

// CHECK-LABEL: attn.cache_policy @full
// CHECK-SAME: layout = #attn.layout<contiguous> retention = #attn.retention<all>
// CHECK-SAME: storage = #attn.storage<bf16>
attn.cache_policy @full layout = #attn.layout<contiguous>
    retention = #attn.retention<all> storage = #attn.storage<bf16>

// CHECK-LABEL: attn.cache_policy @heavy_hitters
// CHECK-SAME: retention = #attn.retention<budget 2048 evict h2o>
// CHECK-SAME: storage = #attn.storage<i4 per_group 32>
attn.cache_policy @heavy_hitters layout = #attn.layout<paged 64>
    retention = #attn.retention<budget 2048 evict h2o>
    storage = #attn.storage<i4 per_group 32>

// f16 scales (per group): printed after the group size.
// CHECK-LABEL: attn.cache_policy @kv4_f16_scales
// CHECK-SAME: storage = #attn.storage<i4 per_group 32 scale f16>
attn.cache_policy @kv4_f16_scales layout = #attn.layout<paged 16>
    retention = #attn.retention<all>
    storage = #attn.storage<i4 per_group 32 scale f16>

// CHECK-LABEL: attn.cache_policy @snap
// CHECK-SAME: retention = #attn.retention<budget 512 evict snapkv>
// CHECK-SAME: storage = #attn.storage<f8E4M3FN per_token>
attn.cache_policy @snap layout = #attn.layout<contiguous>
    retention = #attn.retention<budget 512 evict snapkv>
    storage = #attn.storage<f8E4M3FN per_token>

// CHECK-LABEL: attn.cache_policy @half
// CHECK-SAME: retention = #attn.retention<sink_window sink 0 window 256>
// CHECK-SAME: storage = #attn.storage<f16>
attn.cache_policy @half layout = #attn.layout<contiguous>
    retention = #attn.retention<sink_window sink 0 window 256>
    storage = #attn.storage<f16>

// CHECK-LABEL: attn.head_policy @duo [@full, @streaming] table "head_kind"
attn.head_policy @duo [@full, @streaming] table "head_kind"
