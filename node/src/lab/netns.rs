//! Network namespaces and the `ip` commands that shape them.
//!
//! The lab drives iproute2 rather than netlink directly: every step it takes is then a
//! command an operator can read in the log and repeat by hand. Sockets that must live
//! inside a namespace are created by a short-lived thread that has entered it with
//! `setns(2)`; a socket keeps the namespace it was created in, so the rest of the
//! program (tokio included) uses it from anywhere.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};

use super::{LabError, Result};

/// A network namespace created by the lab (its name always starts with the lab's
/// prefix, so the lab never touches a namespace it did not create).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// A handle on a namespace that may or may not exist yet.
    pub fn named(name: impl Into<String>) -> Self {
        Netns { name: name.into() }
    }

    /// Creates the namespace and brings its loopback up.
    pub fn create(name: impl Into<String>) -> Result<Self> {
        let ns = Netns::named(name);
        ip(&["netns", "add", &ns.name])?;
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// Sets a sysctl inside the namespace, e.g. `("net.ipv4.ip_forward", "1")`.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        run(self
            .exec("sysctl")
            .args(["-q", "-w", &format!("{key}={value}")]))
        .map(drop)
    }

    /// Turns off the NIC offloads that do not survive an XDP redirect between veths
    /// (partial checksums, see TOOLCHAIN.md) and turns on GRO so redirected frames are
    /// delivered to a veth peer that has no XDP program of its own.
    pub fn veth_offloads(&self, dev: &str) -> Result<()> {
        run(self
            .exec("ethtool")
            .args(["-K", dev, "tx", "off", "gro", "on"]))
        .map(drop)
    }

    /// A command that runs inside the namespace (`ip netns exec`).
    pub fn exec(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Reads the MAC address of `dev` inside the namespace.
    pub fn mac_of(&self, dev: &str) -> Result<String> {
        let path = format!("/sys/class/net/{dev}/address");
        let out = run(self.exec("cat").arg(&path))?;
        let mac = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if mac.len() != 17 {
            return Err(LabError::Command {
                command: format!("cat {path} in {}", self.name),
                detail: format!("unexpected MAC address {mac:?}"),
            });
        }
        Ok(mac)
    }

    /// Runs `f` on a thread that has entered this namespace, and returns its result.
    ///
    /// Use it to create sockets that must belong to the namespace; the calling thread's
    /// namespace is never changed.
    pub fn enter<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> std::io::Result<T> + Send,
        T: Send,
    {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).map_err(|source| LabError::Io {
            context: format!("opening namespace {path}"),
            source,
        })?;
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a namespace file descriptor we own affects only this
                // (scoped, short-lived) thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(LabError::Io {
                        context: format!("entering namespace {}", self.name),
                        source: std::io::Error::last_os_error(),
                    });
                }
                f().map_err(|source| LabError::Io {
                    context: format!("inside namespace {}", self.name),
                    source,
                })
            })
            .join()
            .unwrap_or_else(|_| {
                Err(LabError::Command {
                    command: format!("thread in namespace {}", self.name),
                    detail: "panicked".into(),
                })
            })
        })
    }

    /// Deletes the namespace; everything inside it (veth ends, XDP programs attached
    /// to them) goes with it. Not existing is not an error.
    pub fn delete(&self) -> Result<()> {
        if !self.exists() {
            return Ok(());
        }
        ip(&["netns", "del", &self.name])
    }

    /// Whether the namespace exists.
    pub fn exists(&self) -> bool {
        std::path::Path::new(&format!("/run/netns/{}", self.name)).exists()
    }
}

/// Every namespace whose name starts with `prefix`.
pub fn list_with_prefix(prefix: &str) -> Result<Vec<Netns>> {
    let out = run(Command::new("ip").args(["netns", "list"]))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(Netns::named)
        .collect())
}

/// Runs `ip <args>` in the current namespace.
pub fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args)).map(drop)
}

/// Runs a command to completion and turns a failure into an error that quotes the
/// command and what it printed.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Io {
            context: format!("running {shown}"),
            source,
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: shown,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// Fails with a clear message unless the process can manage namespaces.
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LabError::NotRoot);
    }
    Ok(())
}
