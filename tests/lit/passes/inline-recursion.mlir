// RUN: attnc-opt %s -split-input-file -attn-inline-definitions -verify-diagnostics

// Recursion is reported with its cycle instead of being unrolled.

attn.mask @self(%b: i32, %h: i32, %q: i32, %k: i32) -> i1 {
  // expected-error @below {{recursive call to @self cannot be inlined: @self -> @self}}
  %0 = attn.call @self(%b, %h, %q, %k) : (i32, i32, i32, i32) -> i1
  attn.yield %0 : i1
}

// -----

attn.mask @a(%b: i32, %h: i32, %q: i32, %k: i32) -> i1 {
  %0 = attn.call @b(%b, %h, %q, %k) : (i32, i32, i32, i32) -> i1
  attn.yield %0 : i1
}
attn.mask @b(%b: i32, %h: i32, %q: i32, %k: i32) -> i1 {
  %0 = attn.call @c(%b, %h, %q, %k) : (i32, i32, i32, i32) -> i1
  attn.yield %0 : i1
}
attn.mask @c(%b: i32, %h: i32, %q: i32, %k: i32) -> i1 {
  // expected-error @below {{recursive call to @a cannot be inlined: @a -> @b -> @c -> @a}}
  %0 = attn.call @a(%b, %h, %q, %k) : (i32, i32, i32, i32) -> i1
  attn.yield %0 : i1
}

// -----

// A cycle between two scores.
attn.score @ping(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32) -> f32 {
  %0 = attn.call @pong(%s, %b, %h, %q, %k) : (f32, i32, i32, i32, i32) -> f32
  attn.yield %0 : f32
}
attn.score @pong(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32) -> f32 {
  // expected-error @below {{recursive call to @ping cannot be inlined: @ping -> @pong -> @ping}}
  %0 = attn.call @ping(%s, %b, %h, %q, %k) : (f32, i32, i32, i32, i32) -> f32
  attn.yield %0 : f32
}
