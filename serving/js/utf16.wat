;; Surrogate pairs in UTF-16 text, for serving/js/utf16.mjs (which holds these functions compiled, base64).
;; Why WebAssembly: Node 20 scans a two-byte string with a regex at ~0.4 ns per unit and builds one string per
;; match; 128-bit SIMD over a copy reads 8 units a step. Rebuild after an edit (wabt from the npm registry):
;;   npx -y -p wabt@1.0.36 wat2wasm serving/js/utf16.wat -o /dev/stdout | base64 -w0
;; and paste the output into utf16.mjs's WASM; tests/serving/test_js_router.py checks the count against Python.
(module
  (memory (export "memory") 1)
  ;; Are any of the UTF-16 units in bytes [0, n) surrogates? 64 bytes a step: the caller pads with zeros.
  (func (export "surrogates") (param $n i32) (result i32)
    (local $p i32) (local $any v128) (local $mask v128) (local $sur v128)
    (local.set $mask (v128.const i16x8 0xF800 0xF800 0xF800 0xF800 0xF800 0xF800 0xF800 0xF800))
    (local.set $sur (v128.const i16x8 0xD800 0xD800 0xD800 0xD800 0xD800 0xD800 0xD800 0xD800))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $p) (local.get $n)))
        (local.set $any
          (v128.or (local.get $any)
            (v128.or
              (v128.or (i16x8.eq (v128.and (v128.load (local.get $p)) (local.get $mask)) (local.get $sur))
                       (i16x8.eq (v128.and (v128.load offset=16 (local.get $p)) (local.get $mask)) (local.get $sur)))
              (v128.or (i16x8.eq (v128.and (v128.load offset=32 (local.get $p)) (local.get $mask)) (local.get $sur))
                       (i16x8.eq (v128.and (v128.load offset=48 (local.get $p)) (local.get $mask)) (local.get $sur))))))
        (local.set $p (i32.add (local.get $p) (i32.const 64)))
        (br $next)))
    (v128.any_true (local.get $any)))
  ;; Surrogate pairs (a high unit right before a low one) starting in bytes [0, n); the caller pads with zeros.
  (func (export "pairs") (param $n i32) (result i32)
    (local $p i32) (local $acc v128) (local $ten v128) (local $high v128) (local $low v128)
    (local.set $ten (v128.const i16x8 0xFC00 0xFC00 0xFC00 0xFC00 0xFC00 0xFC00 0xFC00 0xFC00))
    (local.set $high (v128.const i16x8 0xD800 0xD800 0xD800 0xD800 0xD800 0xD800 0xD800 0xD800))
    (local.set $low (v128.const i16x8 0xDC00 0xDC00 0xDC00 0xDC00 0xDC00 0xDC00 0xDC00 0xDC00))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $p) (local.get $n)))
        (local.set $acc
          (i32x4.sub (local.get $acc)
            (i32x4.extadd_pairwise_i16x8_s
              (v128.and
                (i16x8.eq (v128.and (v128.load (local.get $p)) (local.get $ten)) (local.get $high))
                (i16x8.eq (v128.and (v128.load offset=2 (local.get $p)) (local.get $ten)) (local.get $low))))))
        (local.set $p (i32.add (local.get $p) (i32.const 16)))
        (br $next)))
    (i32.add (i32.add (i32x4.extract_lane 0 (local.get $acc)) (i32x4.extract_lane 1 (local.get $acc)))
             (i32.add (i32x4.extract_lane 2 (local.get $acc)) (i32x4.extract_lane 3 (local.get $acc))))))
