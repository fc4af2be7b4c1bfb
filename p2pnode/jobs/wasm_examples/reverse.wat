;; reverse: the input bytes in reverse order.
;; Job ABI (p2pnode.jobs.executors.wasm): exports memory, alloc(len) -> ptr and
;; run(ptr, len) -> (out_ptr << 32) | out_len.
(module
  (memory (export "memory") 1)

  ;; Bump allocator of the job ABI: 8-byte aligned, never frees (a job is one call), grows
  ;; the memory as needed and traps when it cannot.
  (global $heap (mut i32) (i32.const 1024))
  (func $alloc (export "alloc") (param $len i32) (result i32)
    (local $ptr i32) (local $end i64) (local $size i64)
    (local.set $ptr (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (local.set $end (i64.add (i64.extend_i32_u (local.get $ptr)) (i64.extend_i32_u (local.get $len))))
    (if (i64.gt_u (local.get $end) (i64.const 0xFFFFFFFF)) (then unreachable))
    (local.set $size (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
    (if (i64.gt_u (local.get $end) (local.get $size))
      (then
        (if (i32.eq
              (memory.grow (i32.wrap_i64 (i64.shr_u
                (i64.add (i64.sub (local.get $end) (local.get $size)) (i64.const 0xFFFF))
                (i64.const 16))))
              (i32.const -1))
          (then unreachable))))
    (global.set $heap (i32.wrap_i64 (local.get $end)))
    (local.get $ptr))

  ;; (ptr << 32) | len, the packed result of run.
  (func $pack (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len))))

  (func (export "run") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32) (local $out i32)
    (local.set $out (call $alloc (local.get $len)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (i32.store8
          (i32.add (local.get $out) (local.get $i))
          (i32.load8_u (i32.sub (i32.add (local.get $ptr) (local.get $len))
                                (i32.add (local.get $i) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $pack (local.get $out) (local.get $len)))
)
