// RUN: attnc-opt %s -attn-test-builders -verify-diagnostics | FileCheck %s
// RUN: attnc-opt %s -attn-test-builders -verify-diagnostics \
// RUN:   | attnc-opt -attn-inline-definitions -canonicalize | FileCheck %s --check-prefix=FLAT

// The C++ builders a front end uses produce IR that verifies and prints as
// documented (the ops come from the -attn-test-builders pass in attnc-opt).

// CHECK-LABEL: attn.mask @same_doc(%b: i32, %h: i32, %q: i32, %k: i32, %{{.*}}: tensor<?xi32>) -> i1
// CHECK: attn.load %{{.*}}[%q] : tensor<?xi32>
// CHECK-LABEL: attn.score @scaled(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32, %{{.*}}: f32) -> f32
// CHECK-LABEL: attn.kernel @built(%doc: tensor<?xi32> {attn.dims = ["N"], attn.name = "doc"}, %cap: f32 {attn.default = 3.000000e+01 : f32, attn.name = "cap"})
// CHECK-SAME: attributes {dtypes = [bf16], head_dims = array<i64: 64, 128>}
// CHECK: %[[SCALE:.*]] = arith.constant 1.250000e-01 : f32
// CHECK: attn.attention normalizer = softmax heads = interleaved scale(%[[SCALE]] : f32) mask {
// CHECK: attn.call @same_doc(%b, %h, %q, %k, %doc) : (i32, i32, i32, i32, tensor<?xi32>) -> i1
// CHECK: attn.call @scaled(%s, %b, %h, %q, %k, %cap) : (f32, i32, i32, i32, i32, f32) -> f32
// CHECK-LABEL: attn.kernel @plain()
// CHECK: attn.attention normalizer = softmax heads = grouped mask {
// CHECK: attn.cache_policy @streaming layout = #attn.layout<paged 16> retention = #attn.retention<sink_window sink 4 window 1020> storage = #attn.storage<i8 per_token>
// CHECK: attn.cache_policy @full layout = #attn.layout<contiguous> retention = #attn.retention<all> storage = #attn.storage<bf16>
// CHECK: attn.cache_policy @budget layout = #attn.layout<contiguous> retention = #attn.retention<budget 2048 evict snapkv> storage = #attn.storage<i4 per_group 32>
// CHECK: attn.head_policy @duo [@full, @streaming] table "head_kind"

// FLAT-NOT: attn.mask
// FLAT-LABEL: attn.kernel @built
// FLAT: attn.load %doc[%q]
// FLAT: attn.load %doc[%k]
// FLAT: arith.mulf %s, %cap
// FLAT-NOT: attn.call

// expected-remark @below {{rejected: page size must be a power of two greater than 0, got 12}}
// expected-remark @below {{rejected: quantized storage 'i8' needs a scale granularity (per_token or per_group G)}}
module {}
