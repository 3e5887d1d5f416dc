// RUN: attnc-opt %s -split-input-file -attn-inline-definitions | FileCheck %s
// RUN: attnc-opt %s -split-input-file \
// RUN:   --pass-pipeline='builtin.module(attn-inline-definitions{drop-unused=false})' \
// RUN:   | FileCheck %s --check-prefix=KEEP
// RUN: attnc-opt %s -split-input-file -inline | FileCheck %s --check-prefix=GENERIC

// The generic inliner also inlines attn.call through the dialect's inliner
// interface (it keeps the public definitions).
// GENERIC-LABEL: attn.kernel @k
// GENERIC-NOT: attn.call
// GENERIC: arith.cmpi sle, %k, %q
// GENERIC: math.tanh
// GENERIC-LABEL: attn.kernel @twice
// GENERIC-NOT: attn.call

// Transitive inlining into both regions; used definitions are dropped.

attn.mask @causal(%b: i32, %h: i32, %q: i32, %k: i32) -> i1 {
  %0 = arith.cmpi sle, %k, %q : i32
  attn.yield %0 : i1
}
attn.mask @causal_window(%b: i32, %h: i32, %q: i32, %k: i32, %w: i32) -> i1 {
  %0 = attn.call @causal(%b, %h, %q, %k) : (i32, i32, i32, i32) -> i1
  %d = arith.subi %q, %k : i32
  %1 = arith.cmpi slt, %d, %w : i32
  %2 = arith.andi %0, %1 : i1
  attn.yield %2 : i1
}
attn.score @softcap(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32, %cap: f32) -> f32 {
  %0 = arith.divf %s, %cap : f32
  %1 = math.tanh %0 : f32
  %2 = arith.mulf %1, %cap : f32
  attn.yield %2 : f32
}
attn.score @unused(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32) -> f32 {
  attn.yield %s : f32
}

// CHECK-NOT: attn.mask
// CHECK-NOT: attn.score
// CHECK-LABEL: attn.kernel @k
// CHECK: mask {
// CHECK-NEXT: ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
// CHECK-NEXT: %[[C:.*]] = arith.cmpi sle, %k, %q : i32
// CHECK-NEXT: %[[D:.*]] = arith.subi %q, %k : i32
// CHECK-NEXT: %[[W:.*]] = arith.cmpi slt, %[[D]], %w : i32
// CHECK-NEXT: %[[M:.*]] = arith.andi %[[C]], %[[W]] : i1
// CHECK-NEXT: attn.yield %[[M]] : i1
// CHECK: score {
// CHECK-NEXT: ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
// CHECK-NEXT: %[[X:.*]] = arith.divf %s, %cap : f32
// CHECK-NEXT: %[[T:.*]] = math.tanh %[[X]] : f32
// CHECK-NEXT: %[[S:.*]] = arith.mulf %[[T]], %cap : f32
// CHECK-NEXT: attn.yield %[[S]] : f32
// CHECK-NOT: attn.call

// Without drop-unused the definitions stay, themselves inlined.
// KEEP-LABEL: attn.mask @causal(
// KEEP-LABEL: attn.mask @causal_window(
// KEEP-NOT: attn.call
// KEEP: arith.cmpi sle, %k, %q
// KEEP-LABEL: attn.score @softcap(
// KEEP-LABEL: attn.score @unused(
// KEEP-LABEL: attn.kernel @k
// KEEP-NOT: attn.call
attn.kernel @k(%w: i32 {attn.name = "w"}, %cap: f32 {attn.name = "cap"}) {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %0 = attn.call @causal_window(%b, %h, %q, %k, %w)
        : (i32, i32, i32, i32, i32) -> i1
    attn.yield %0 : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    %0 = attn.call @softcap(%s, %b, %h, %q, %k, %cap)
        : (f32, i32, i32, i32, i32, f32) -> f32
    attn.yield %0 : f32
  }
}

// -----

// A definition called twice is cloned at each call; loads of tensor
// parameters are inlined with their operands remapped.

attn.mask @document(%b: i32, %h: i32, %q: i32, %k: i32, %doc: tensor<?xi32>) -> i1 {
  %0 = attn.load %doc[%q] : tensor<?xi32>
  %1 = attn.load %doc[%k] : tensor<?xi32>
  %2 = arith.cmpi eq, %0, %1 : i32
  attn.yield %2 : i1
}

// CHECK-LABEL: attn.kernel @twice
// CHECK: attn.load %doc[%q] : tensor<?xi32>
// CHECK: attn.load %doc[%k] : tensor<?xi32>
// CHECK: attn.load %doc[%k] : tensor<?xi32>
// CHECK: attn.load %doc[%q] : tensor<?xi32>
// CHECK-NOT: attn.call
// KEEP-LABEL: attn.mask @document(
// KEEP-LABEL: attn.kernel @twice
attn.kernel @twice(%doc: tensor<?xi32> {attn.name = "doc"}) {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %0 = attn.call @document(%b, %h, %q, %k, %doc)
        : (i32, i32, i32, i32, tensor<?xi32>) -> i1
    %1 = attn.call @document(%b, %h, %k, %q, %doc)
        : (i32, i32, i32, i32, tensor<?xi32>) -> i1
    %2 = arith.andi %0, %1 : i1
    attn.yield %2 : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}
