;; Weighted sums of matrix rows, for serving/js/rows.mjs (which holds these functions compiled, base64).
;; Why WebAssembly: the text family's projection (hundreds of buckets x k columns) and the embedding's pooling
;; (a row per token) were a fifth of a JavaScript decision; 128-bit SIMD adds two columns per instruction.
;; Each sum is the JavaScript loop's, element by element: out[j] + row_0[j] * w_0 + row_1[j] * w_1 + ..., a
;; product then a sum, rounded as IEEE doubles (no fused multiply-add in WebAssembly), so the bits are the same.
;; Rebuild after an edit (wabt from the npm registry):
;;   npx -y -p wabt@1.0.36 wat2wasm serving/js/rows.wat -o /dev/stdout | base64 -w0
;; and paste the output into rows.mjs's WASM; tests/serving/test_js_router.py checks features against Python.
(module
  (memory (export "memory") 1)
  ;; out[j] += sum over i < n of matrix[rows[i] * k + j] * weights[i], for j < k, in order of i (float64 matrix;
  ;; m, out, rows, w: byte offsets; rows int32, w float64).
  (func (export "f64rows") (param $m i32) (param $out i32) (param $rows i32) (param $w i32) (param $n i32) (param $k i32)
    (local $j i32) (local $i i32) (local $p i32) (local $o i32) (local $x v128) (local $s f64)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (block $wide_done
      (loop $wide
        (br_if $wide_done (i32.gt_u (i32.add (local.get $j) (i32.const 8)) (local.get $k)))
        (local.set $o (i32.add (local.get $out) (i32.shl (local.get $j) (i32.const 3))))
        (local.set $a0 (v128.load (local.get $o)))
        (local.set $a1 (v128.load offset=16 (local.get $o)))
        (local.set $a2 (v128.load offset=32 (local.get $o)))
        (local.set $a3 (v128.load offset=48 (local.get $o)))
        (local.set $i (i32.const 0))
        (block $rows_done
          (loop $rows_next
            (br_if $rows_done (i32.ge_u (local.get $i) (local.get $n)))
            (local.set $p
              (i32.add (local.get $m)
                (i32.shl
                  (i32.add
                    (i32.mul (i32.load (i32.add (local.get $rows) (i32.shl (local.get $i) (i32.const 2)))) (local.get $k))
                    (local.get $j))
                  (i32.const 3))))
            (local.set $x (f64x2.splat (f64.load (i32.add (local.get $w) (i32.shl (local.get $i) (i32.const 3))))))
            (local.set $a0 (f64x2.add (local.get $a0) (f64x2.mul (v128.load (local.get $p)) (local.get $x))))
            (local.set $a1 (f64x2.add (local.get $a1) (f64x2.mul (v128.load offset=16 (local.get $p)) (local.get $x))))
            (local.set $a2 (f64x2.add (local.get $a2) (f64x2.mul (v128.load offset=32 (local.get $p)) (local.get $x))))
            (local.set $a3 (f64x2.add (local.get $a3) (f64x2.mul (v128.load offset=48 (local.get $p)) (local.get $x))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $rows_next)))
        (v128.store (local.get $o) (local.get $a0))
        (v128.store offset=16 (local.get $o) (local.get $a1))
        (v128.store offset=32 (local.get $o) (local.get $a2))
        (v128.store offset=48 (local.get $o) (local.get $a3))
        (local.set $j (i32.add (local.get $j) (i32.const 8)))
        (br $wide)))
    (block $tail_done
      (loop $tail
        (br_if $tail_done (i32.ge_u (local.get $j) (local.get $k)))
        (local.set $o (i32.add (local.get $out) (i32.shl (local.get $j) (i32.const 3))))
        (local.set $s (f64.load (local.get $o)))
        (local.set $i (i32.const 0))
        (block $rows_done
          (loop $rows_next
            (br_if $rows_done (i32.ge_u (local.get $i) (local.get $n)))
            (local.set $s
              (f64.add (local.get $s)
                (f64.mul
                  (f64.load
                    (i32.add (local.get $m)
                      (i32.shl
                        (i32.add
                          (i32.mul (i32.load (i32.add (local.get $rows) (i32.shl (local.get $i) (i32.const 2)))) (local.get $k))
                          (local.get $j))
                        (i32.const 3))))
                  (f64.load (i32.add (local.get $w) (i32.shl (local.get $i) (i32.const 3)))))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $rows_next)))
        (f64.store (local.get $o) (local.get $s))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $tail))))
  ;; out[j] += sum over i < n of table[rows[i] * k + j], for j < k, in order of i (float32 table, each value made a
  ;; float64 exactly: the JavaScript loop's x * 1.0).
  (func (export "f32rows") (param $t i32) (param $out i32) (param $rows i32) (param $n i32) (param $k i32)
    (local $j i32) (local $i i32) (local $p i32) (local $o i32) (local $lo v128) (local $hi v128) (local $s f64)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (block $wide_done
      (loop $wide
        (br_if $wide_done (i32.gt_u (i32.add (local.get $j) (i32.const 8)) (local.get $k)))
        (local.set $o (i32.add (local.get $out) (i32.shl (local.get $j) (i32.const 3))))
        (local.set $a0 (v128.load (local.get $o)))
        (local.set $a1 (v128.load offset=16 (local.get $o)))
        (local.set $a2 (v128.load offset=32 (local.get $o)))
        (local.set $a3 (v128.load offset=48 (local.get $o)))
        (local.set $i (i32.const 0))
        (block $rows_done
          (loop $rows_next
            (br_if $rows_done (i32.ge_u (local.get $i) (local.get $n)))
            (local.set $p
              (i32.add (local.get $t)
                (i32.shl
                  (i32.add
                    (i32.mul (i32.load (i32.add (local.get $rows) (i32.shl (local.get $i) (i32.const 2)))) (local.get $k))
                    (local.get $j))
                  (i32.const 2))))
            (local.set $lo (v128.load (local.get $p)))
            (local.set $hi (v128.load offset=16 (local.get $p)))
            (local.set $a0 (f64x2.add (local.get $a0) (f64x2.promote_low_f32x4 (local.get $lo))))
            (local.set $a1 (f64x2.add (local.get $a1)
              (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $lo) (local.get $lo)))))
            (local.set $a2 (f64x2.add (local.get $a2) (f64x2.promote_low_f32x4 (local.get $hi))))
            (local.set $a3 (f64x2.add (local.get $a3)
              (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $hi) (local.get $hi)))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $rows_next)))
        (v128.store (local.get $o) (local.get $a0))
        (v128.store offset=16 (local.get $o) (local.get $a1))
        (v128.store offset=32 (local.get $o) (local.get $a2))
        (v128.store offset=48 (local.get $o) (local.get $a3))
        (local.set $j (i32.add (local.get $j) (i32.const 8)))
        (br $wide)))
    (block $tail_done
      (loop $tail
        (br_if $tail_done (i32.ge_u (local.get $j) (local.get $k)))
        (local.set $o (i32.add (local.get $out) (i32.shl (local.get $j) (i32.const 3))))
        (local.set $s (f64.load (local.get $o)))
        (local.set $i (i32.const 0))
        (block $rows_done
          (loop $rows_next
            (br_if $rows_done (i32.ge_u (local.get $i) (local.get $n)))
            (local.set $s
              (f64.add (local.get $s)
                (f64.promote_f32
                  (f32.load
                    (i32.add (local.get $t)
                      (i32.shl
                        (i32.add
                          (i32.mul (i32.load (i32.add (local.get $rows) (i32.shl (local.get $i) (i32.const 2)))) (local.get $k))
                          (local.get $j))
                        (i32.const 2)))))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $rows_next)))
        (f64.store (local.get $o) (local.get $s))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $tail)))))
