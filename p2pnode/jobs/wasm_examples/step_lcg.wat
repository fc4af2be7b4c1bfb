;; A step module (spec 06 WSM-2): mixes a 64 KiB table with a 64-bit LCG, 256 updates per
;; step, for as many steps as the little-endian u32 of its input says. Its state is the
;; memory and the exported globals steps, left and x; output() is the 8 bytes of x.
(module
  (memory (export "memory") 2)
  (global $steps (export "steps") (mut i32) (i32.const 0))
  (global $left (export "left") (mut i32) (i32.const 0))
  (global $x (export "x") (mut i64) (i64.const 1))
  (func (export "alloc") (param i32) (result i32) (i32.const 65536))
  (func (export "init") (param $p i32) (param $n i32)
    (global.set $left (i32.load (local.get $p))))
  (func (export "step") (result i32)
    (local $k i32) (local $a i32)
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $k) (i32.const 256)))
        (global.set $x (i64.add (i64.mul (global.get $x) (i64.const 6364136223846793005))
                                (i64.const 1442695040888963407)))
        (local.set $a (i32.shl (i32.and (i32.add (i32.mul (global.get $steps) (i32.const 256))
                                                 (local.get $k))
                                        (i32.const 8191))
                               (i32.const 3)))
        (i64.store (local.get $a) (i64.xor (i64.load (local.get $a)) (global.get $x)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $l)))
    (global.set $steps (i32.add (global.get $steps) (i32.const 1)))
    (global.set $left (i32.sub (global.get $left) (i32.const 1)))
    (i32.gt_s (global.get $left) (i32.const 0)))
  (func (export "output") (result i64)
    (i64.store (i32.const 65552) (global.get $x))
    (i64.or (i64.shl (i64.const 65552) (i64.const 32)) (i64.const 8))))
