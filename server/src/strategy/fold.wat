;; The server's hot loops in WebAssembly SIMD, over the fold arena (foldArena.ts):
;; - reduce: FedAvg's weighted sum of up to B float32 updates in float64, 8 values per step (the JS loop it replaced
;;   ran at ~1.7 ns per value and update, this at ~0.35);
;; - first_nonfinite_f32 / _f16: the finite check of an upload as its chunks arrive (~8x the JS loop).
;; Compiled by `npm run build:wasm` (wabt) into fold.wasm; test/strategy.test.ts checks the two agree.
(module
  (import "env" "memory" (memory 1 65536 shared))
  ;; For i < n (n a multiple of 8), in float64, left to right:
  ;;   s = (add ? acc[i] : 0) + w_0 x_0[i] + ... + w_(k-1) x_(k-1)[i]
  ;; ptab holds k i32 byte addresses of the float32 arrays x_j, wtab k float64 weights w_j.
  ;; out32 = 0: acc[i] = s.   out32 = 1: float32 dst[i] = s * scale.
  ;; Every address is read before the same step writes, and later steps read higher addresses only, so dst may be
  ;; x_0 itself or acc's own first half.
  (func (export "reduce")
    (param $dst i32) (param $acc i32) (param $n i32) (param $ptab i32) (param $wtab i32) (param $k i32)
    (param $add i32) (param $out32 i32) (param $scale f64)
    (local $i i32) (local $j i32) (local $p i32) (local $a i32) (local $w v128) (local $s v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local.set $s (f64x2.splat (local.get $scale)))
    (block $done (loop $step
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 3))))
      (if (local.get $add)
        (then
          (local.set $a0 (v128.load (local.get $a)))
          (local.set $a1 (v128.load offset=16 (local.get $a)))
          (local.set $a2 (v128.load offset=32 (local.get $a)))
          (local.set $a3 (v128.load offset=48 (local.get $a))))
        (else
          (local.set $a0 (v128.const i64x2 0 0))
          (local.set $a1 (v128.const i64x2 0 0))
          (local.set $a2 (v128.const i64x2 0 0))
          (local.set $a3 (v128.const i64x2 0 0))))
      (local.set $j (i32.const 0))
      (block $updates_done (loop $update
        (br_if $updates_done (i32.ge_u (local.get $j) (local.get $k)))
        (local.set $p (i32.add
          (i32.load (i32.add (local.get $ptab) (i32.shl (local.get $j) (i32.const 2))))
          (i32.shl (local.get $i) (i32.const 2))))
        (local.set $w (f64x2.splat (f64.load (i32.add (local.get $wtab) (i32.shl (local.get $j) (i32.const 3))))))
        (local.set $a0 (f64x2.add (local.get $a0) (f64x2.mul (local.get $w) (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $p))))))
        (local.set $a1 (f64x2.add (local.get $a1) (f64x2.mul (local.get $w) (f64x2.promote_low_f32x4 (v128.load64_zero offset=8 (local.get $p))))))
        (local.set $a2 (f64x2.add (local.get $a2) (f64x2.mul (local.get $w) (f64x2.promote_low_f32x4 (v128.load64_zero offset=16 (local.get $p))))))
        (local.set $a3 (f64x2.add (local.get $a3) (f64x2.mul (local.get $w) (f64x2.promote_low_f32x4 (v128.load64_zero offset=24 (local.get $p))))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $update)))
      (if (local.get $out32)
        (then
          (local.set $p (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 2))))
          (v128.store (local.get $p)
            (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
              (f32x4.demote_f64x2_zero (f64x2.mul (local.get $a0) (local.get $s)))
              (f32x4.demote_f64x2_zero (f64x2.mul (local.get $a1) (local.get $s)))))
          (v128.store offset=16 (local.get $p)
            (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
              (f32x4.demote_f64x2_zero (f64x2.mul (local.get $a2) (local.get $s)))
              (f32x4.demote_f64x2_zero (f64x2.mul (local.get $a3) (local.get $s))))))
        (else
          (v128.store (local.get $a) (local.get $a0))
          (v128.store offset=16 (local.get $a) (local.get $a1))
          (v128.store offset=32 (local.get $a) (local.get $a2))
          (v128.store offset=48 (local.get $a) (local.get $a3))))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $step))))
  ;; Index of the first float32 among n at addr whose exponent bits are all ones (NaN, +-Infinity), or -1.
  (func (export "first_nonfinite_f32") (param $addr i32) (param $n i32) (result i32)
    (local $i i32) (local $m v128) (local $body i32)
    (local.set $m (i32x4.splat (i32.const 0x7f800000)))
    (local.set $body (i32.and (local.get $n) (i32.const -16)))
    (block $done (loop $step
      (br_if $done (i32.ge_u (local.get $i) (local.get $body)))
      (if (v128.any_true (v128.or
            (v128.or
              (i32x4.eq (v128.and (v128.load (i32.add (local.get $addr) (i32.shl (local.get $i) (i32.const 2)))) (local.get $m)) (local.get $m))
              (i32x4.eq (v128.and (v128.load offset=16 (i32.add (local.get $addr) (i32.shl (local.get $i) (i32.const 2)))) (local.get $m)) (local.get $m)))
            (v128.or
              (i32x4.eq (v128.and (v128.load offset=32 (i32.add (local.get $addr) (i32.shl (local.get $i) (i32.const 2)))) (local.get $m)) (local.get $m))
              (i32x4.eq (v128.and (v128.load offset=48 (i32.add (local.get $addr) (i32.shl (local.get $i) (i32.const 2)))) (local.get $m)) (local.get $m)))))
        (then (br $done)))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br $step)))
    ;; the rest, or the 16 values that hold the first hit, one by one
    (block $none (loop $one
      (br_if $none (i32.ge_u (local.get $i) (local.get $n)))
      (if (i32.eq (i32.and (i32.load (i32.add (local.get $addr) (i32.shl (local.get $i) (i32.const 2)))) (i32.const 0x7f800000)) (i32.const 0x7f800000))
        (then (return (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $one)))
    (i32.const -1))
  ;; The same for float16 bits (exponent 0x7c00).
  (func (export "first_nonfinite_f16") (param $addr i32) (param $n i32) (result i32)
    (local $i i32) (local $m v128) (local $body i32)
    (local.set $m (i16x8.splat (i32.const 0x7c00)))
    (local.set $body (i32.and (local.get $n) (i32.const -32)))
    (block $done (loop $step
      (br_if $done (i32.ge_u (local.get $i) (local.get $body)))
      (if (v128.any_true (v128.or
            (v128.or
              (i16x8.eq (v128.and (v128.load (i32.add (local.get $addr) (i32.shl (local.get $i) (i32.const 1)))) (local.get $m)) (local.get $m))
              (i16x8.eq (v128.and (v128.load offset=16 (i32.add (local.get $addr) (i32.shl (local.get $i) (i32.const 1)))) (local.get $m)) (local.get $m)))
            (v128.or
              (i16x8.eq (v128.and (v128.load offset=32 (i32.add (local.get $addr) (i32.shl (local.get $i) (i32.const 1)))) (local.get $m)) (local.get $m))
              (i16x8.eq (v128.and (v128.load offset=48 (i32.add (local.get $addr) (i32.shl (local.get $i) (i32.const 1)))) (local.get $m)) (local.get $m)))))
        (then (br $done)))
      (local.set $i (i32.add (local.get $i) (i32.const 32)))
      (br $step)))
    (block $none (loop $one
      (br_if $none (i32.ge_u (local.get $i) (local.get $n)))
      (if (i32.eq (i32.and (i32.load16_u (i32.add (local.get $addr) (i32.shl (local.get $i) (i32.const 1)))) (i32.const 0x7c00)) (i32.const 0x7c00))
        (then (return (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $one)))
    (i32.const -1)))
