// RUN: attnc-opt %s -split-input-file -verify-diagnostics

// One case per verifier error of the attn dialect.

//===----------------------------------------------------------------------===//
// attn.mask / attn.score
//===----------------------------------------------------------------------===//

// expected-error @below {{must take the index arguments (b, h, q, k : i32) first, got 3 argument(s)}}
attn.mask @m(%b: i32, %h: i32, %q: i32) -> i1 {
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// expected-error @below {{index argument #2 (q) must be i32, got 'i64'}}
attn.mask @m(%b: i32, %h: i32, %q: i64, %k: i32) -> i1 {
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// expected-error @below {{parameter #4 must be an integer or float scalar or a ranked tensor of them, got 'memref<4xi32>'}}
attn.mask @m(%b: i32, %h: i32, %q: i32, %k: i32, %p: memref<4xi32>) -> i1 {
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// expected-error @below {{argument #4: unsupported attribute 'attn.dims'}}
attn.mask @m(%b: i32, %h: i32, %q: i32, %k: i32,
             %p: tensor<?xi32> {attn.dims = ["N"]}) -> i1 {
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// expected-error @below {{must return exactly one 'i1', got 1 result(s) starting with 'f32'}}
attn.mask @m(%b: i32, %h: i32, %q: i32, %k: i32) -> f32 {
  %t = arith.constant 1.0 : f32
  attn.yield %t : f32
}

// -----

// expected-error @below {{body must yield 'i1', got 'i32'}}
attn.mask @m(%b: i32, %h: i32, %q: i32, %k: i32) -> i1 {
  attn.yield %q : i32
}

// -----

// expected-error @below {{body must end with attn.yield}}
attn.mask @m(%b: i32, %h: i32, %q: i32, %k: i32) -> i1 {
  %0 = arith.cmpi sle, %k, %q : i32
}

// -----

// expected-error @below {{region #0 ('body') failed to verify constraint: region with 1 blocks}}
attn.mask @m(%b: i32, %h: i32, %q: i32, %k: i32) -> i1

// -----

// expected-error @below {{must take the score and index arguments (s : f32, b, h, q, k : i32) first, got 4 argument(s)}}
attn.score @s(%s: f32, %b: i32, %h: i32, %q: i32) -> f32 {
  attn.yield %s : f32
}

// -----

// expected-error @below {{score argument #0 (s) must be f32, got 'f16'}}
attn.score @s(%s: f16, %b: i32, %h: i32, %q: i32, %k: i32) -> f32 {
  %0 = arith.extf %s : f16 to f32
  attn.yield %0 : f32
}

// -----

// expected-error @below {{index argument #4 (k) must be i32, got 'f32'}}
attn.score @s(%s: f32, %b: i32, %h: i32, %q: i32, %k: f32) -> f32 {
  attn.yield %s : f32
}

// -----

// expected-error @below {{must return exactly one 'f32', got 0 result(s)}}
attn.score @s(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32) {
  attn.yield %s : f32
}

// -----

// expected-error @below {{body must yield 'f32', got 'i32'}}
attn.score @s(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32) -> f32 {
  attn.yield %q : i32
}

// -----

//===----------------------------------------------------------------------===//
// attn.call
//===----------------------------------------------------------------------===//

attn.mask @m(%b: i32, %h: i32, %q: i32, %k: i32) -> i1 {
  // expected-error @below {{'nowhere' does not reference an attn.mask or attn.score}}
  %0 = attn.call @nowhere(%b, %h, %q, %k) : (i32, i32, i32, i32) -> i1
  attn.yield %0 : i1
}

// -----

attn.kernel @kern() {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}
attn.mask @m(%b: i32, %h: i32, %q: i32, %k: i32) -> i1 {
  // expected-error @below {{'kern' does not reference an attn.mask or attn.score}}
  %0 = attn.call @kern(%b, %h, %q, %k) : (i32, i32, i32, i32) -> i1
  attn.yield %0 : i1
}

// -----

attn.mask @window(%b: i32, %h: i32, %q: i32, %k: i32, %w: i32) -> i1 {
  %0 = arith.cmpi slt, %q, %w : i32
  attn.yield %0 : i1
}
attn.mask @m(%b: i32, %h: i32, %q: i32, %k: i32) -> i1 {
  // expected-error @below {{passes 4 operand(s) but @window takes 5}}
  %0 = attn.call @window(%b, %h, %q, %k) : (i32, i32, i32, i32) -> i1
  attn.yield %0 : i1
}

// -----

attn.mask @window(%b: i32, %h: i32, %q: i32, %k: i32, %w: i32) -> i1 {
  %0 = arith.cmpi slt, %q, %w : i32
  attn.yield %0 : i1
}
attn.mask @m(%b: i32, %h: i32, %q: i32, %k: i32, %w: i64) -> i1 {
  // expected-error @below {{operand #4 has type 'i64' but @window expects 'i32'}}
  %0 = attn.call @window(%b, %h, %q, %k, %w) : (i32, i32, i32, i32, i64) -> i1
  attn.yield %0 : i1
}

// -----

attn.score @id(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32) -> f32 {
  attn.yield %s : f32
}
attn.score @s(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32) -> f32 {
  // expected-error @below {{result type 'f16' does not match @id result type 'f32'}}
  %0 = attn.call @id(%s, %b, %h, %q, %k) : (f32, i32, i32, i32, i32) -> f16
  attn.yield %s : f32
}

// -----

//===----------------------------------------------------------------------===//
// attn.load / attn.yield
//===----------------------------------------------------------------------===//

attn.score @s(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32,
              %t: tensor<4x4xf32>) -> f32 {
  // expected-error @below {{expects 2 index(es) for 'tensor<4x4xf32>', got 1}}
  %0 = attn.load %t[%q] : tensor<4x4xf32>
  attn.yield %0 : f32
}

// -----

func.func @f(%x: i1) {
  // expected-error @below {{expects parent op to be one of 'attn.mask, attn.score, attn.attention'}}
  attn.yield %x : i1
}

// -----

//===----------------------------------------------------------------------===//
// attn.kernel
//===----------------------------------------------------------------------===//

// expected-error @below {{must not return results}}
attn.kernel @k() -> i32 {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// expected-error @below {{parameter #0 must be an integer or float scalar or a ranked tensor of them, got 'index'}}
attn.kernel @k(%n: index {attn.name = "n"}) {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// expected-error @below {{parameter #1 needs a non-empty 'attn.name' string}}
attn.kernel @k(%w: i32 {attn.name = "w"}, %v: i32) {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// expected-error @below {{duplicate parameter name 'w'}}
attn.kernel @k(%w: i32 {attn.name = "w"}, %v: i32 {attn.name = "w"}) {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// expected-error @below {{parameter #0: 'attn.dims' only applies to tensors}}
attn.kernel @k(%w: i32 {attn.name = "w", attn.dims = ["N"]}) {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// expected-error @below {{parameter #0: 'attn.dims' must be an array}}
attn.kernel @k(%tab: tensor<?xi32> {attn.name = "tab", attn.dims = "N"}) {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// expected-error @below {{parameter #0: 'attn.dims' has 2 entries but 'tensor<?xi32>' has rank 1}}
attn.kernel @k(%tab: tensor<?xi32> {attn.name = "tab", attn.dims = ["N", "N"]}) {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// expected-error @below {{parameter #0: unknown dimension symbol 'L' in 'attn.dims'}}
attn.kernel @k(%tab: tensor<?xi32> {attn.name = "tab", attn.dims = ["L"]}) {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// expected-error @below {{parameter #0: 'attn.dims' entry #0 must be a string or an integer}}
attn.kernel @k(%tab: tensor<?xi32> {attn.name = "tab", attn.dims = [1.0]}) {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// expected-error @below {{parameter #0: 'attn.dims' entry #1 (8) does not match dimension 1 of 'tensor<16x9xf32>'}}
attn.kernel @k(%tab: tensor<16x9xf32> {attn.name = "tab", attn.dims = [16, 8]}) {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// expected-error @below {{parameter #0: 'attn.default' only applies to scalars}}
attn.kernel @k(%tab: tensor<4xf32> {attn.name = "tab", attn.default = dense<1.0> : tensor<4xf32>}) {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// expected-error @below {{parameter #0: 'attn.default' must be a 'f32' value}}
attn.kernel @k(%cap: f32 {attn.name = "cap", attn.default = 30 : i32}) {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// expected-error @below {{parameter #0: unknown attribute 'attn.shape'}}
attn.kernel @k(%tab: tensor<?xi32> {attn.name = "tab", attn.shape = ["N"]}) {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// expected-error @below {{dtypes must be float types, got i8}}
attn.kernel @k() attributes {dtypes = [bf16, i8]} {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// expected-error @below {{head_dims must be positive, got 0}}
attn.kernel @k() attributes {head_dims = array<i64: 64, 0>} {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

func.func private @effect()
attn.kernel @k() {
  // expected-error @below {{has side effects; an attn.kernel body may only hold attn.attention and side-effect-free ops}}
  func.call @effect() : () -> ()
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// expected-error @below {{body must hold exactly one attn.attention, found 0}}
attn.kernel @k() {
  %c = arith.constant 1.0 : f32
}

// -----

// expected-error @below {{body must hold exactly one attn.attention, found 2}}
attn.kernel @k() {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

//===----------------------------------------------------------------------===//
// attn.attention
//===----------------------------------------------------------------------===//

func.func @f() {
  // expected-error @below {{expects parent op 'attn.kernel'}}
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
  return
}

// -----

attn.kernel @k() {
  // expected-error @below {{mask region must take (b, h, q, k : i32), got (i32, i32, i32)}}
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

attn.kernel @k() {
  // expected-error @below {{score region must take (s : f32, b, h, q, k : i32), got (f16, i32, i32, i32, i32)}}
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f16, %b: i32, %h: i32, %q: i32, %k: i32):
    %0 = arith.extf %s : f16 to f32
    attn.yield %0 : f32
  }
}

// -----

attn.kernel @k() {
  // expected-error @below {{mask region must yield 'i1', got 'i32'}}
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %q : i32
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

attn.kernel @k() {
  // expected-error @below {{score region must yield 'f32', got 'i1'}}
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  }
}

// -----

attn.kernel @k(%x: i32 {attn.name = "x"}) {
  // expected-error @below {{operand #0 must be 32-bit float}}
  attn.attention normalizer = softmax heads = grouped scale(%x : i32) mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

attn.kernel @k() {
  // expected-error @below {{unknown normalizer 'relu'}}
  attn.attention normalizer = relu heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

//===----------------------------------------------------------------------===//
// Cache-policy attributes and ops
//===----------------------------------------------------------------------===//

// expected-error @below {{page size must be a power of two greater than 0, got 12}}
attn.cache_policy @p layout = #attn.layout<paged 12>
    retention = #attn.retention<all> storage = #attn.storage<bf16>

// -----

// expected-error @below {{page size must be a power of two greater than 0, got 0}}
attn.cache_policy @p layout = #attn.layout<paged 0>
    retention = #attn.retention<all> storage = #attn.storage<bf16>

// -----

// expected-error @below {{unknown layout 'strided'}}
attn.cache_policy @p layout = #attn.layout<strided>
    retention = #attn.retention<all> storage = #attn.storage<bf16>

// -----

// expected-error @+2 {{sink_window retention needs a window greater than 0}}
attn.cache_policy @p layout = #attn.layout<contiguous>
    retention = #attn.retention<sink_window sink 4 window 0>
    storage = #attn.storage<bf16>

// -----

// expected-error @+2 {{budget retention needs a budget greater than 0}}
attn.cache_policy @p layout = #attn.layout<contiguous>
    retention = #attn.retention<budget 0 evict h2o>
    storage = #attn.storage<bf16>

// -----

// expected-error @+2 {{budget retention needs an eviction score (h2o or snapkv)}}
attn.cache_policy @p layout = #attn.layout<contiguous>
    retention = #attn.retention<budget 64 evict none>
    storage = #attn.storage<bf16>

// -----

// expected-error @+2 {{unknown eviction score 'lru'}}
attn.cache_policy @p layout = #attn.layout<contiguous>
    retention = #attn.retention<budget 64 evict lru>
    storage = #attn.storage<bf16>

// -----

// expected-error @+2 {{unknown retention 'recent'}}
attn.cache_policy @p layout = #attn.layout<contiguous>
    retention = #attn.retention<recent 64>
    storage = #attn.storage<bf16>

// -----

// expected-error @+2 {{storage element type must be bf16, f16, f8E4M3FN, i8 or i4, got 'f32'}}
attn.cache_policy @p layout = #attn.layout<contiguous>
    retention = #attn.retention<all> storage = #attn.storage<f32>

// -----

// expected-error @+2 {{quantized storage 'i8' needs a scale granularity (per_token or per_group G)}}
attn.cache_policy @p layout = #attn.layout<contiguous>
    retention = #attn.retention<all> storage = #attn.storage<i8>

// -----

// expected-error @+2 {{float storage 'bf16' takes no scale}}
attn.cache_policy @p layout = #attn.layout<contiguous>
    retention = #attn.retention<all> storage = #attn.storage<bf16 per_token>

// -----

// expected-error @+2 {{per_group scale needs a group size greater than 0}}
attn.cache_policy @p layout = #attn.layout<contiguous>
    retention = #attn.retention<all> storage = #attn.storage<i4 per_group 0>

// -----

// expected-error @+2 {{scale type must be f16 (f32 is the default), got 'bf16'}}
attn.cache_policy @p layout = #attn.layout<contiguous>
    retention = #attn.retention<all> storage = #attn.storage<i4 per_group 32 scale bf16>

// -----

// expected-error @+2 {{f16 scales need per_group scales}}
attn.cache_policy @p layout = #attn.layout<contiguous>
    retention = #attn.retention<all> storage = #attn.storage<i8 per_token scale f16>

// -----

// expected-error @+2 {{unknown scale granularity 'per_tensor'}}
attn.cache_policy @p layout = #attn.layout<contiguous>
    retention = #attn.retention<all> storage = #attn.storage<i8 per_tensor>

// -----

// expected-error @below {{needs at least one cache policy}}
attn.head_policy @duo [] table "head_kind"

// -----

attn.cache_policy @full layout = #attn.layout<contiguous>
    retention = #attn.retention<all> storage = #attn.storage<bf16>
// expected-error @below {{needs a non-empty table parameter name}}
attn.head_policy @duo [@full] table ""

// -----

attn.cache_policy @full layout = #attn.layout<contiguous>
    retention = #attn.retention<all> storage = #attn.storage<bf16>
attn.mask @m(%b: i32, %h: i32, %q: i32, %k: i32) -> i1 {
  %t = arith.constant true
  attn.yield %t : i1
}
// expected-error @below {{'m' does not reference an attn.cache_policy}}
attn.head_policy @duo [@full, @m] table "head_kind"
