//! The `mfplane-lb` binary rejects bad flags and bad `--config` files before touching
//! the kernel, with a message that names the flag or the key, and waits for a
//! `--config` file that does not exist yet while serving its probes. No root needed:
//! nothing gets loaded.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{KillOnDrop, free_port, get_request, lb_from_config_file, parse_response};

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
    rejects("--http-listen", "localhost", "invalid");
    rejects("--next-hop-mac", "02:00", "aa:bb:cc:dd:ee:ff");
    let (ok, err) = run(&["--fabric", "lo"]);
    assert!(!ok && err.contains("--attach"), "{err}");
}

#[test]
fn bad_config_files_fail_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb-m1.toml");
    let cases = [
        (
            "mode = \"vxlan\"\n",
            "mode: \"vxlan\" is not one of l2, ipip",
        ),
        (
            "bucket_bits = 40\n",
            "bucket_bits: 40 is not a bucket bit count: use 4 to 12",
        ),
        (
            "xdp_mode = \"offload\"\n",
            "xdp_mode: \"offload\" is not supported",
        ),
        ("insides = [\"10.0.0.0/8\"]\n", "unknown key \"insides\""),
        (
            "[[interfaces]]\nname = \"lo\"\nside = \"up\"\n",
            "interfaces[0].side: \"up\" is not one of inside, outside, both",
        ),
        // Valid file, but the interface does not exist: named by its key too.
        (
            "inside_sources = [\"10.0.0.0/8\"]\ncluster = [\"127.0.0.1:1\"]\n\
             [[interfaces]]\nname = \"mfp-nope2\"\n",
            "interfaces[0].name in ",
        ),
    ];
    for (text, needle) in cases {
        std::fs::write(&path, text).unwrap();
        let (ok, err) = run(&["--config", path.to_str().unwrap()]);
        assert!(!ok, "{text:?} accepted");
        assert!(
            err.contains(needle),
            "{text:?}: error lacks {needle:?}: {err}"
        );
        assert!(
            err.contains(path.to_str().unwrap()),
            "{text:?}: error does not name the file: {err}"
        );
    }
}

/// `(status, body)` of `GET path` on 127.0.0.1:`port`.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(get_request(path).as_bytes())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    Ok(parse_response(&buf))
}

/// A missing `--config` file is waited for while `/healthz` answers and `/readyz`
/// says what is awaited; SIGTERM ends the wait with exit 0. A file that then appears
/// invalid ends the process with the key named.
#[test]
fn waits_for_a_missing_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb-m1.toml");
    let port = free_port();
    let spawn = || {
        KillOnDrop(
            lb_from_config_file(&path, port, "info")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    };
    let wait_exit = |child: &mut KillOnDrop| {
        let start = Instant::now();
        loop {
            if let Some(st) = child.exited() {
                return st;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "no exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let wait_ready_probe = || {
        let start = Instant::now();
        loop {
            if let Ok(r) = http_get(port, "/readyz") {
                return r;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "/readyz never answered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    let mut child = spawn();
    let (code, body) = wait_ready_probe();
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("waiting for the configuration file") && body.contains("lb-m1.toml"),
        "{body}"
    );
    assert_eq!(http_get(port, "/healthz").unwrap(), (200, "ok\n".into()));
    // Still waiting after more than one poll.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.exited().is_none(), "exited while waiting");
    child.sigterm();
    let status = wait_exit(&mut child);
    assert!(status.success(), "exit status {status}");
    let mut out = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(
        out.matches("waiting for the configuration file to appear")
            .count(),
        1,
        "says once that it waits: {out}"
    );

    // Appearing invalid: exits non-zero, naming the key.
    let mut child = spawn();
    wait_ready_probe();
    std::fs::write(&path, "mode = \"l3\"\n").unwrap();
    let status = wait_exit(&mut child);
    assert!(!status.success());
    let mut err = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("mode: \"l3\" is not one of l2, ipip"), "{err}");
}
