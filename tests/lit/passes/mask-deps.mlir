// RUN: attnc-opt %s -split-input-file -attn-print-mask-deps -verify-diagnostics | FileCheck %s

// A mask that is true everywhere.
// CHECK-LABEL: attn.kernel @full
// CHECK: attn.mask_deps = {class = "constant", index_vars = [], params = [], value = true}
attn.kernel @full() {
  // expected-remark @below {{mask deps: index vars [], params [], class constant (always true)}}
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

// Index arithmetic only; unused block arguments do not count.
// CHECK-LABEL: attn.kernel @causal
// CHECK: attn.mask_deps = {class = "index-only", index_vars = ["q", "k"], params = []}
attn.kernel @causal() {
  // expected-remark @below {{mask deps: index vars [q, k], params [], class index-only}}
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %0 = arith.cmpi sle, %k, %q : i32
    attn.yield %0 : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    %0 = arith.sitofp %b : i32 to f32
    %1 = arith.addf %s, %0 : f32
    attn.yield %1 : f32
  }
}

// -----

// A runtime scalar keeps the mask index-only; it is read through a value
// computed in the kernel body.
// CHECK-LABEL: attn.kernel @window
// CHECK: attn.mask_deps = {class = "index-only", index_vars = ["h", "q", "k"], params = ["w"]}
attn.kernel @window(%w: i32 {attn.name = "w"}, %unused: i32 {attn.name = "unused"}) {
  %c2 = arith.constant 2 : i32
  %w2 = arith.muli %w, %c2 : i32
  // expected-remark @below {{mask deps: index vars [h, q, k], params [w], class index-only}}
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %d = arith.subi %q, %k : i32
    %hw = arith.addi %w2, %h : i32
    %0 = arith.cmpi slt, %d, %hw : i32
    attn.yield %0 : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// Depends on a scalar but on no index: one value for the whole kernel call.
// CHECK-LABEL: attn.kernel @switch
// CHECK: attn.mask_deps = {class = "constant", index_vars = [], params = ["on"]}
attn.kernel @switch(%on: i32 {attn.name = "on"}) {
  // expected-remark @below {{mask deps: index vars [], params [on], class constant}}
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %c0 = arith.constant 0 : i32
    %0 = arith.cmpi ne, %on, %c0 : i32
    attn.yield %0 : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// Reading a tensor parameter makes the mask data-dependent.
// CHECK-LABEL: attn.kernel @document
// CHECK: attn.mask_deps = {class = "data-dependent", index_vars = ["q", "k"], params = ["doc"]}
attn.kernel @document(%doc: tensor<?xi32> {attn.name = "doc"}) {
  // expected-remark @below {{mask deps: index vars [q, k], params [doc], class data-dependent}}
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

// Values flowing through nested regions are followed.
// CHECK-LABEL: attn.kernel @nested
// CHECK: attn.mask_deps = {class = "data-dependent", index_vars = ["b", "q", "k"], params = ["flag", "keep"]}
attn.kernel @nested(%flag: i1 {attn.name = "flag"},
                    %keep: tensor<?xi1> {attn.name = "keep"}) {
  // expected-remark @below {{mask deps: index vars [b, q, k], params [flag, keep], class data-dependent}}
  attn.attention normalizer = softmax heads = grouped mask {
  ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
    %0 = scf.if %flag -> i1 {
      %1 = attn.load %keep[%b] : tensor<?xi1>
      scf.yield %1 : i1
    } else {
      %2 = arith.cmpi sle, %k, %q : i32
      scf.yield %2 : i1
    }
    attn.yield %0 : i1
  } score {
  ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
    attn.yield %s : f32
  }
}

// -----

// A call that was not inlined reads all of its operands.
attn.mask @document(%b: i32, %h: i32, %q: i32, %k: i32, %doc: tensor<?xi32>) -> i1 {
  %0 = attn.load %doc[%q] : tensor<?xi32>
  %1 = attn.load %doc[%k] : tensor<?xi32>
  %2 = arith.cmpi eq, %0, %1 : i32
  attn.yield %2 : i1
}
// CHECK-LABEL: attn.kernel @called
// CHECK: attn.mask_deps = {class = "data-dependent", index_vars = ["b", "h", "q", "k"], params = ["doc"]}
attn.kernel @called(%doc: tensor<?xi32> {attn.name = "doc"}) {
  // expected-remark @below {{mask deps: index vars [b, h, q, k], params [doc], class data-dependent}}
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
