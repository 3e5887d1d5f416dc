// RUN: attnc-opt %s -split-input-file -attn-to-cpu="head-dim=32 tile-q=8 tile-k=4" | FileCheck %s

// Causal: the KV loop stops after the last row's diagonal,
// kHi = min(Nk, q_offset + r0 + rows - 1 + 1); kLo = 0.
// CHECK-LABEL: func.func @causal_item(
// CHECK-SAME: memref<?x?x?x32xf32> {attn.name = "Q"}
// CHECK-SAME: i32 {attn.name = "q_offset"}, %{{.*}}: index, %{{.*}}: index, %{{.*}}: index)
// CHECK: memref.alloca() : memref<32x8xf32>
// CHECK: %[[QMIN:.*]] = arith.extsi %{{.*}} : i32 to i64
// CHECK: %[[QMAX:.*]] = arith.addi %[[QMIN]], %{{.*}} : i64
// CHECK: %[[HI:.*]] = arith.subi %[[QMAX]], %c-1_i64 : i64
// CHECK: %[[HIC:.*]] = arith.minsi %[[HI]], %{{.*}} : i64
// CHECK: %[[HIX:.*]] = arith.index_cast %[[HIC]] : i64 to index
// Full KV tiles first (no key clamps), then at most one partial tile up to
// max(kHi, kLo).
// CHECK: %[[HIM:.*]] = arith.maxsi %[[HIX]], %{{.*}} : index
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c4{{(_[0-9]+)?}} iter_args(%[[M:.*]] = %{{.*}}, %[[L:.*]] = %{{.*}}) -> (vector<8xf32>, vector<8xf32>)
// The mask region, cloned on vectors, for every key of the tile; a tile no
// row keeps is skipped.
// CHECK-COUNT-4: arith.cmpi sle, %{{.*}}, %{{.*}} : vector<8xi32>
// CHECK: %[[ANY:.*]] = vector.reduction <or>, %{{.*}} : vector<8xi1> into i1
// CHECK: scf.if %[[ANY]] -> (vector<8xf32>, vector<8xf32>)
// Q.K^T: one FMA per key, lanes = rows.
// CHECK: scf.for {{.*}} -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>)
// CHECK-COUNT-4: vector.fma {{.*}} : vector<8xf32>
// Online softmax: running max, rescale factor (polynomial exp), running sum.
// CHECK: arith.maximumf %[[M]], %{{.*}} : vector<8xf32>
// CHECK: math.floor
// CHECK: arith.mulf %{{.*}}, %[[L]] : vector<8xf32>
// P.V register-blocked: rows x 16-lane column vectors.
// CHECK: vector.fma {{.*}} : vector<16xf32>
// CHECK: } else {
// CHECK: scf.yield %[[M]], %[[L]]
// CHECK: } {attn.kv_range = "bounded"}
// The partial tile clamps key rows to Nk - 1.
// CHECK: scf.for %{{.*}} = %{{.*}} to %[[HIM]] step
// CHECK: arith.minsi
// CHECK: } {attn.kv_range = "bounded"}
// Rows that saw no key: O = 0, LSE = -inf.
// CHECK: arith.cmpf ogt
// CHECK: math.log
// CHECK-LABEL: func.func @causal(
// CHECK: arith.ceildivui
// CHECK: func.call @causal_item(
attn.kernel @causal() {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %0 = arith.cmpi sle, %k, %q : i32
    attn.yield %0 : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// Window q - k < W (W a runtime scalar): kLo = qmin - W + 1, and causal
// bounds kHi.
// CHECK-LABEL: func.func @window_item(
// CHECK-SAME: %[[W:[a-z0-9]+]]: i32 {attn.name = "w"}
// CHECK: %[[W64:.*]] = arith.extsi %[[W]] : i32 to i64
// CHECK: %[[G:.*]] = arith.subi %c0_i64{{(_[0-9]+)?}}, %[[W64]] : i64
// CHECK: %[[B:.*]] = arith.addi %{{.*}}, %[[G]] : i64
// CHECK: %[[LO:.*]] = arith.addi %[[B]], %c1_i64{{(_[0-9]+)?}} : i64
// CHECK: arith.maxsi %c0_i64{{(_[0-9]+)?}}, %[[LO]] : i64
// CHECK: } {attn.kv_range = "bounded"}
attn.kernel @window(%w: i32 {attn.name = "w"}) {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %0 = arith.cmpi sle, %k, %q : i32
    %d = arith.subi %q, %k : i32
    %1 = arith.cmpi slt, %d, %w : i32
    %2 = arith.andi %0, %1 : i1
    attn.yield %2 : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// A data-dependent mask (document ids): no bound; run-time classes per
// group of 8 tiles (32 keys). doc[q] does not depend on k: one masked
// gather on the rows' lanes per item, before the KV loops, and the rows'
// id range (one scalar pass). Per group: the keys' id range, then the
// mask's interval bounds: EMPTY groups are skipped, FULL groups run their
// tiles without the mask (no doc reads), PARTIAL ones evaluate it (doc[k]
// is the same on every lane: a scalar load in full tiles). The last,
// partial tile gathers, masked by lane validity.
// CHECK-LABEL: func.func @doc_item(
// CHECK-SAME: memref<?xi32> {attn.name = "doc"}
// CHECK: vector.gather %{{.*}}[%{{.*}}] [%{{.*}}], %{{.*}}, %{{.*}} : memref<?xi32>, vector<8xi32>, vector<8xi1>, vector<8xi32> into vector<8xi32>
// CHECK: scf.for {{.*}} -> (i64, i64) {
// CHECK-NEXT: memref.load %{{.*}}[%{{.*}}] : memref<?xi32>
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c32 iter_args
// CHECK: scf.for {{.*}} -> (i64, i64) {
// CHECK-NEXT: memref.load %{{.*}}[%{{.*}}] : memref<?xi32>
// CHECK: scf.if %{{.*}} -> (vector<8xf32>, vector<8xf32>) {
// CHECK-NEXT: scf.if %{{.*}} -> (vector<8xf32>, vector<8xf32>) {
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c4{{(_[0-9]+)?}} iter_args
// CHECK-NOT: memref.load %{{.*}}[%{{.*}}] : memref<?xi32>
// CHECK: } else {
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c4{{(_[0-9]+)?}} iter_args
// CHECK-NOT: vector.gather
// CHECK: memref.load %{{.*}}[%{{.*}}] : memref<?xi32>
// CHECK-NOT: vector.gather
// CHECK: } {attn.kv_range = "full", attn.tile_classes = 32 : i64}
// CHECK: scf.for
// CHECK: vector.gather %{{.*}}[%{{.*}}] [%{{.*}}], %{{.*}}, %{{.*}} : memref<?xi32>, vector<8xi32>, vector<8xi1>, vector<8xi32> into vector<8xi32>
// CHECK: } {attn.kv_range = "full"}
attn.kernel @doc(%doc: tensor<?xi32> {attn.name = "doc"}) {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %0 = attn.load %doc[%q] : tensor<?xi32>
    %1 = attn.load %doc[%k] : tensor<?xi32>
    %2 = arith.cmpi eq, %0, %1 : i32
    attn.yield %2 : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// Sinks + window under causal: `k < 4 || q - k < 64` is the hull of
// [0, 4) and [qmin - 63, ...): kLo = min(0, qmin - 63) = 0 in effect, but
// the causal conjunct still bounds kHi.
// CHECK-LABEL: func.func @sink_item(
// CHECK: arith.minsi
// CHECK: arith.maxsi
// CHECK: } {attn.kv_range = "bounded"}
attn.kernel @sink() {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %c4 = arith.constant 4 : i32
    %c64 = arith.constant 64 : i32
    %0 = arith.cmpi sle, %k, %q : i32
    %s = arith.cmpi slt, %k, %c4 : i32
    %d = arith.subi %q, %k : i32
    %w = arith.cmpi slt, %d, %c64 : i32
    %o = arith.ori %s, %w : i1
    %2 = arith.andi %0, %o : i1
    attn.yield %2 : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// A mask on b/h only is not understood: full range. A score region is
// vectorized (tanh on vector<8xf32>); sigmoid weighs keys without
// rescaling the accumulator.
// CHECK-LABEL: func.func @headmask_item(
// CHECK: math.tanh %{{.*}} : vector<8xf32>
// CHECK: arith.divf
// CHECK: } {attn.kv_range = "full"}
attn.kernel @headmask() {
  attn.attention normalizer = sigmoid heads = interleaved mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %c1 = arith.constant 1 : i32
    %0 = arith.cmpi sge, %h, %c1 : i32
    attn.yield %0 : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    %0 = math.tanh %s : f32
    attn.yield %0 : f32
  }
}

// -----

// Nothing is visible: the range is empty, the loop runs zero times.
// CHECK-LABEL: func.func @none_item(
// CHECK: arith.minsi %c0_i64{{(_[0-9]+)?}}, %{{.*}} : i64
// CHECK: } {attn.kv_range = "bounded"}
attn.kernel @none() {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %0 = arith.constant false
    attn.yield %0 : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

