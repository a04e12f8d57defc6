//! The worker pods the operator renders start: `mfplane-node`'s own flag and file
//! parser accepts the StatefulSet arguments and the ConfigMap's `node.toml` exactly as
//! the operator writes them, and every key of the file takes effect.
//!
//! The files are `deploy/tests/fixtures/worker/<case>/{args,node.toml}`; the
//! operator's `worker_contract` test fails when its rendering drifts from them.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use mfplane_node::config::{CommitMode, DatapathSettings};
use mfplane_node::{Args, Error, NodeConfig};

fn fixture_dir(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/tests/fixtures/worker")
        .join(case)
}

/// The container's arguments as the kubelet passes them (`$(VAR)` expanded from the
/// pod's env), with `--config` pointing at the fixture, plus `extra`.
fn pod_args(dir: &Path, pod: &str, namespace: &str, extra: &[&str]) -> Args {
    let text = std::fs::read_to_string(dir.join("args")).expect("the operator's args fixture");
    let mut argv = vec!["mfplane-node".to_owned()];
    for line in text.lines().filter(|l| !l.is_empty()) {
        let arg = line
            .replace("$(POD_NAME)", pod)
            .replace("$(POD_NAMESPACE)", namespace);
        argv.push(match arg.strip_prefix("--config=") {
            Some(_) => format!("--config={}", dir.join("node.toml").display()),
            None => arg,
        });
    }
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    Args::try_parse_from(argv).unwrap_or_else(|e| panic!("the operator's flags: {e}"))
}

fn load(case: &str, extra: &[&str]) -> mfplane_node::Result<NodeConfig> {
    let dir = fixture_dir(case);
    pod_args(&dir, "demo-0", "default", extra)
        .merge_file()
        .and_then(|a| a.validate(1))
}

fn datapath(c: &NodeConfig) -> &DatapathSettings {
    c.datapath
        .as_ref()
        .expect("data_interface turns the data path on")
}

/// As rendered, the member reads its data address from the pod's interface: here that
/// interface exists only if this machine happens to have it, and otherwise the error
/// must be the interface one (so every other key was accepted).
fn as_rendered_fails_only_on_a_missing_interface(case: &str, iface: &str) {
    match load(case, &[]) {
        Ok(c) => assert_eq!(datapath(&c).iface, iface),
        Err(Error::Config { flag, message }) => {
            assert_eq!(flag, "--data-interface", "{message}");
            assert!(message.contains(iface), "{message}");
        }
        Err(e) => panic!("{case}: {e}"),
    }
}

#[test]
fn the_sample_nat_s_worker_configuration_is_accepted() {
    as_rendered_fails_only_on_a_missing_interface("sample", "net1");
    // On this machine the pod's net1 is played by loopback.
    let c = load("sample", &["--data-interface=lo"]).unwrap();
    assert_eq!(c.name, "demo-0");
    assert_eq!(c.advertise, "demo-0.demo.default.svc:7700");
    assert_eq!(c.join.len(), 3);
    assert_eq!(c.bucket_bits.get(), 8);
    assert_eq!(
        c.external_ips,
        [
            Ipv4Addr::new(203, 0, 113, 10),
            Ipv4Addr::new(203, 0, 113, 11)
        ]
    );
    assert_eq!(c.data_ip, Ipv4Addr::LOCALHOST, "read from the interface");
    let d = datapath(&c);
    assert_eq!(d.commit_mode, CommitMode::Optimistic);
    assert_eq!(d.timeouts.udp, Duration::from_secs(300));
    assert_eq!(d.timeouts.tcp_established, Duration::from_secs(7440));
    assert_eq!(d.timeouts.tcp_transitory, Duration::from_secs(240));
    assert_eq!(d.timeouts.icmp, Duration::from_secs(60));
    let inside: Vec<String> = d
        .inside_prefixes
        .iter()
        .flatten()
        .map(ToString::to_string)
        .collect();
    assert_eq!(inside, ["10.0.0.0/8"]);
    assert_eq!(d.next_hop_mac, None, "the pod's default gateway");
}

#[test]
fn a_strict_nat_on_the_pod_network_is_accepted_with_every_value() {
    as_rendered_fails_only_on_a_missing_interface("strict-pod-network", "eth0");
    let c = load("strict-pod-network", &["--data-interface=lo"]).unwrap();
    assert_eq!(c.bucket_bits.get(), 10);
    assert_eq!(c.external_ips, [Ipv4Addr::new(198, 51, 100, 7)]);
    let d = datapath(&c);
    assert_eq!(d.commit_mode, CommitMode::Strict);
    assert_eq!(d.timeouts.udp, Duration::from_secs(600));
    assert_eq!(d.timeouts.tcp_established, Duration::from_secs(86_400));
    assert_eq!(d.timeouts.tcp_transitory, Duration::from_secs(300));
    assert_eq!(d.timeouts.icmp, Duration::from_secs(120));
    let inside: Vec<String> = d
        .inside_prefixes
        .iter()
        .flatten()
        .map(ToString::to_string)
        .collect();
    assert_eq!(inside, ["10.0.0.0/8", "100.64.0.0/10"]);
    assert_eq!(
        d.next_hop_mac.map(|m| m.to_string()).as_deref(),
        Some("00:00:5e:00:01:01"),
        "spec.network.nextHopMAC"
    );
}

/// The environment sits between the flags and the file, for the new keys as for the
/// old ones; checked through the real binary so no test mutates its own environment.
#[test]
fn environment_variables_reach_the_new_keys() {
    let dir = fixture_dir("strict-pod-network");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mfplane-node"))
        .args([
            "--name=env-test",
            "--data-dir=/nonexistent/mfplane-env-test",
            "--listen=127.0.0.1:1",
            &format!("--config={}", dir.join("node.toml").display()),
        ])
        .env("MFPLANE_DATA_INTERFACE", "lo")
        .env("MFPLANE_ICMP_TIMEOUT", "30s")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--icmp-timeout: icmp_timeout = \"30s\" is below"),
        "the environment's 30s must win over the file's 120s and be refused: {stderr}"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mfplane-node"))
        .args(["--name=env-test"])
        .env("MFPLANE_COMMIT_MODE", "eventually")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--commit-mode"),
        "{stderr}"
    );
}
