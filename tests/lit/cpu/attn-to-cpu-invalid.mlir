// RUN: attnc-opt %s -attn-to-cpu -verify-diagnostics

// Region ops that have no vector form are diagnosed, not miscompiled.
attn.kernel @bad() {
  // expected-error @+4 {{attn-to-cpu: cannot vectorize 'scf.if'}}
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
