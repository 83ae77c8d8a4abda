use super::*;

const PRELUDE: &str = r#"
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
"#;

fn module(body: &str) -> Vec<u8> {
    let text = format!("(module {PRELUDE} {body})");
    wat::parse_str(&text).unwrap_or_else(|e| panic!("bad test module: {e}"))
}

/// Reads up to 1000 bytes of stdin and writes them back.
fn echo() -> Vec<u8> {
    module(
        r#"(func (export "_start")
          (i32.store (i32.const 0) (i32.const 100))
          (i32.store (i32.const 4) (i32.const 1000))
          (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
          (i32.store (i32.const 4) (i32.load (i32.const 8)))
          (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))"#,
    )
}

fn limits() -> Limits {
    Limits {
        fuel: 10_000_000,
        memory: 4 << 20,
        output: 100 << 10,
        time: 5,
        deadline: 60,
        canonical_nans: true,
    }
}

#[test]
fn runs_a_unit_on_stdin_and_keeps_working_after_hostile_ones() -> Result<(), Fault> {
    let sb = Sandbox::new()?;
    let out = sb.run(&echo(), &[], b"hello unit", &limits())?;
    assert_eq!(out.stdout, b"hello unit");
    assert!(out.fuel > 0);

    let forever = module(r#"(func (export "_start") (loop (br 0)))"#);
    assert_eq!(
        sb.run(&forever, &[], b"", &limits()).err(),
        Some(Fault::OutOfFuel)
    );

    let mut long = limits();
    long.fuel = u64::MAX / 2;
    long.time = 1;
    let t = Instant::now();
    assert_eq!(
        sb.run(&forever, &[], b"", &long).err(),
        Some(Fault::TimedOut)
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stopped near its time limit"
    );

    let bomb = module(
        r#"(func (export "_start")
          (loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
          unreachable)"#,
    );
    assert_eq!(
        sb.run(&bomb, &[], b"", &limits()).err(),
        Some(Fault::Memory)
    );

    let flood = module(
        r#"(func (export "_start")
          (i32.store (i32.const 0) (i32.const 100))
          (i32.store (i32.const 4) (i32.const 60000))
          (loop (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))) (br 0)))"#,
    );
    let mut more_fuel = limits();
    more_fuel.fuel = 1_000_000_000;
    assert_eq!(
        sb.run(&flood, &[], b"", &more_fuel).err(),
        Some(Fault::OutputTooLarge)
    );

    let trap = module(r#"(func (export "_start") unreachable)"#);
    assert!(matches!(
        sb.run(&trap, &[], b"", &limits()),
        Err(Fault::Trap(_))
    ));

    let exit3 = module(r#"(func (export "_start") (call $exit (i32.const 3)))"#);
    assert_eq!(
        sb.run(&exit3, &[], b"", &limits()).err(),
        Some(Fault::Exit(3))
    );

    assert!(matches!(
        sb.run(b"not wasm at all", &[], b"", &limits()),
        Err(Fault::Invalid(_))
    ));
    let host = wat::parse_str(r#"(module (import "env" "open" (func)) (func (export "_start")))"#)
        .unwrap_or_default();
    let e = sb.run(&host, &[], b"", &limits()).err();
    assert!(
        matches!(&e, Some(Fault::Invalid(m)) if m.contains("env::open")),
        "{e:?}"
    );
    let lib = wat::parse_str(r#"(module (func (export "f")))"#).unwrap_or_default();
    assert!(matches!(
        sb.run(&lib, &[], b"", &limits()),
        Err(Fault::Invalid(_))
    ));

    // Still working, and the compiled module was kept.
    let again = sb.run(&echo(), &[], b"still here", &limits())?;
    assert_eq!(again.stdout, b"still here");
    Ok(())
}

#[test]
fn the_clock_is_stopped_and_runs_are_identical() -> Result<(), Fault> {
    let sb = Sandbox::new()?;
    // Writes the realtime clock's 8 bytes, then a NaN computed at run time.
    let m = module(
        r#"(func (export "_start") (local $z f32)
          (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 104)))
          (f32.store (i32.const 112) (f32.div (local.get $z) (local.get $z)))
          (i32.store (i32.const 0) (i32.const 104))
          (i32.store (i32.const 4) (i32.const 12))
          (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))"#,
    );
    let a = sb.run(&m, &[], b"", &limits())?.stdout;
    let b = Sandbox::new()?.run(&m, &[], b"", &limits())?.stdout;
    assert_eq!(a, b);
    assert_eq!(&a[..8], &[0u8; 8], "the unit sees no clock");
    assert_eq!(&a[8..], &0x7fc0_0000u32.to_le_bytes(), "canonical NaN");
    Ok(())
}

#[test]
fn native_floats_run_the_same_integer_code() -> Result<(), Fault> {
    let sb = Sandbox::new()?;
    let mut l = limits();
    l.canonical_nans = false;
    assert_eq!(sb.run(&echo(), &[], b"native", &l)?.stdout, b"native");
    Ok(())
}
