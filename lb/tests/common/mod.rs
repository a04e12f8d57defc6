//! What the tests that run the `mfplane-lb` binary share (`agent.rs`, `cli.rs`): a
//! free port, a child process that cannot outlive its test, and a minimal HTTP/1.0
//! GET for the probes and metrics it serves.

// Each test binary compiles this module and uses part of it.
#![allow(dead_code, reason = "not every test binary uses every helper")]

use std::path::Path;
use std::process::{Child, Command, ExitStatus};

/// A port nothing listens on right now, on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The binary as the operator's DaemonSet runs it: settings from the file at `path`
/// (which may not exist yet), probes and metrics on 127.0.0.1:`port`, logging at
/// `log` (a `RUST_LOG` filter).
pub fn lb_from_config_file(path: &Path, port: u16, log: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mfplane-lb"));
    cmd.arg("--config")
        .arg(path)
        .args(["--http-listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", log);
    cmd
}

/// Kills and reaps a child process when dropped (test failure included).
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// Asks the child to shut down the way its supervisor would.
    pub fn sigterm(&self) {
        let pid = libc::pid_t::try_from(self.0.id()).unwrap();
        // SAFETY: signalling our own child by its pid; it is not reaped before drop.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill");
    }

    /// Its exit status if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().unwrap()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The request line and headers of `GET path` over HTTP/1.0 (the server closes the
/// connection after the answer, so reading to the end reads it all).
pub fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")
}

/// `(status, body)` of a whole HTTP/1.0 answer; status 0 when there is none.
pub fn parse_response(raw: &str) -> (u16, String) {
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}
