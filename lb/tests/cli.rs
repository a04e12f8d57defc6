//! The `mfplane-lb` binary rejects bad flags before touching the kernel, with a
//! message that names the flag. No root needed: nothing gets loaded.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mfplane-lb"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const BASE: &[&str] = &[
    "--attach",
    "lo",
    "--fabric",
    "lo",
    "--inside-prefix",
    "10.0.0.0/8",
    "--cluster",
    "127.0.0.1:1",
];

fn with(flag: &str, value: &str) -> Vec<String> {
    let mut v: Vec<String> = BASE.iter().map(|s| s.to_string()).collect();
    match v.iter().position(|a| a == flag) {
        Some(i) => v[i + 1] = value.to_owned(),
        None => v.extend([flag.to_owned(), value.to_owned()]),
    }
    v
}

fn rejects(flag: &str, value: &str, needle: &str) {
    let args = with(flag, value);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, err) = run(&args);
    assert!(!ok, "{flag} {value} accepted");
    assert!(
        err.contains(flag),
        "{flag} {value}: error does not name the flag: {err}"
    );
    assert!(
        err.contains(needle),
        "{flag} {value}: error lacks {needle:?}: {err}"
    );
}

#[test]
fn bad_flags_fail_with_the_flag_named() {
    rejects("--inside-prefix", "10.0.0/8", "a.b.c.d/len");
    rejects("--cluster", "node-1", "host:port");
    rejects("--mode", "vxlan", "l2");
    rejects("--xdp-mode", "fast", "native");
    rejects("--fabric", "mfp-nope0", "no such interface");
    rejects("--attach", "lo,mfp-nope1", "mfp-nope1");
    rejects("--metrics-listen", "localhost", "invalid");
    rejects("--next-hop-mac", "02:00", "aa:bb:cc:dd:ee:ff");
    let (ok, err) = run(&["--fabric", "lo"]);
    assert!(!ok && err.contains("--attach"), "{err}");
}
