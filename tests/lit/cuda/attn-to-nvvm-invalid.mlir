// RUN: attnc-opt %s -split-input-file -attn-to-nvvm -verify-diagnostics

// Region ops the GPU lowering does not know are diagnosed, not miscompiled.
attn.kernel @bad() {
  // expected-error @+4 {{attn-to-nvvm: cannot lower 'scf.if'}}
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %c = arith.cmpi sle, %k, %q : i32
    %0 = scf.if %c -> (i1) {
      scf.yield %c : i1
    } else {
      scf.yield %c : i1
    }
    attn.yield %0 : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// Math the backend has no instruction for.
attn.kernel @sine() {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    // expected-error @+1 {{attn-to-nvvm: unsupported math op 'math.sin'}}
    %0 = math.sin %s : f32
    attn.yield %0 : f32
  }
}

// -----

// Scalars other than i32, i64, f32 and f64 have no kernel ABI.
// expected-error @+1 {{attn-to-nvvm: unsupported parameter type 'i16'}}
attn.kernel @narrow(%x: i16 {attn.name = "x"}) {
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %t = arith.constant true
    attn.yield %t : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}
