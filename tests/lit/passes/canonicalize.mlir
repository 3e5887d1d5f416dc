// RUN: attnc-opt %s -split-input-file \
// RUN:   --pass-pipeline='builtin.module(attn-inline-definitions,canonicalize)' \
// RUN:   | FileCheck %s

// `k <= q && true` from a library definition becomes a single cmpi.

attn.mask @causal(%b: i32, %h: i32, %q: i32, %k: i32) -> i1 {
  %0 = arith.cmpi sle, %k, %q : i32
  %t = arith.constant true
  %1 = arith.andi %0, %t : i1
  attn.yield %1 : i1
}

// CHECK-LABEL: attn.kernel @causal_kernel
// CHECK: mask {
// CHECK-NEXT: ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
// CHECK-NEXT: %[[M:.*]] = arith.cmpi sle, %k, %q : i32
// CHECK-NEXT: attn.yield %[[M]] : i1
// CHECK-NEXT: } score {
attn.kernel @causal_kernel() {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %0 = attn.call @causal(%b, %h, %q, %k) : (i32, i32, i32, i32) -> i1
    attn.yield %0 : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// A mask that is true everywhere folds to a constant, which stays inside the
// mask region rather than moving to the kernel body.

// CHECK-LABEL: attn.kernel @full
// CHECK-NEXT: attn.attention
// CHECK-NEXT: ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
// CHECK-NEXT: %[[T:.*]] = arith.constant true
// CHECK-NEXT: attn.yield %[[T]] : i1
attn.kernel @full() {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %0 = arith.cmpi sle, %q, %q : i32
    %1 = arith.cmpi eq, %k, %k : i32
    %2 = arith.andi %0, %1 : i1
    attn.yield %2 : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// attn.load folds on constant tables: any index of a splat, constant indices
// in range of a dense table; out-of-range and dynamic indices stay.

// CHECK-LABEL: attn.kernel @tables
// CHECK-NOT: arith.constant
// CHECK: mask {
// CHECK-NEXT: ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
// CHECK-DAG: %[[C7:.*]] = arith.constant 7 : i32
// CHECK-DAG: %[[TABLE:.*]] = arith.constant dense<[3, 5, 7, 9]> : tensor<4xi32>
// CHECK-DAG: %[[OOB:.*]] = arith.constant 4 : i32
// CHECK: %[[DYN:.*]] = attn.load %[[TABLE]][%q] : tensor<4xi32>
// CHECK: %[[BAD:.*]] = attn.load %[[TABLE]][%[[OOB]]] : tensor<4xi32>
// CHECK: arith.addi %[[DYN]], %[[BAD]]
// CHECK: arith.cmpi slt, %k, %[[C7]]
// CHECK: score {
// CHECK-NEXT: ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
// CHECK-NEXT: %[[HALF:.*]] = arith.constant 5.000000e-01 : f32
// CHECK-NEXT: %[[R:.*]] = arith.mulf %s, %[[HALF]] : f32
// CHECK-NEXT: attn.yield %[[R]] : f32
attn.kernel @tables() {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %table = arith.constant dense<[3, 5, 7, 9]> : tensor<4xi32>
    %c2 = arith.constant 2 : i32
    %c4 = arith.constant 4 : i32
    %0 = attn.load %table[%c2] : tensor<4xi32>
    %1 = attn.load %table[%q] : tensor<4xi32>
    %2 = attn.load %table[%c4] : tensor<4xi32>
    %3 = arith.addi %1, %2 : i32
    %4 = arith.cmpi slt, %k, %0 : i32
    %5 = arith.cmpi slt, %q, %3 : i32
    %6 = arith.andi %4, %5 : i1
    attn.yield %6 : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    %slopes = arith.constant dense<0.5> : tensor<8xf32>
    %m = attn.load %slopes[%h] : tensor<8xf32>
    %0 = arith.mulf %s, %m : f32
    attn.yield %0 : f32
  }
}
