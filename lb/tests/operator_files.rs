//! The files the Kubernetes operator hands an LB pod, run through the agent's own
//! parser and resolution: the `lb-<machine>.toml` and container arguments kept in
//! `deploy/tests/fixtures/lb/<case>/` (`deploy/tests/lb_contract.rs` fails when the
//! operator's rendering drifts from them). No root needed: the machine's interfaces
//! are stood in for, nothing is loaded.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use clap::Parser;
use mfplane_core::lb_maps::SteerMode;
use mfplane_lb::config::Side;
use mfplane_lb::datapath::XdpModeChoice;
use mfplane_lb::iface::Interface;
use mfplane_lb::table::MacAddr;
use mfplane_lb::{Args, ConfigFile};

/// Where the operator mounts the ConfigMap in the LB pod.
const CONFIG_DIR: &str = "/etc/mfplane/";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/tests/fixtures/lb")
}

/// Stands in for the LB machine's interfaces: every name exists, with an address.
fn machine_interface(name: &str) -> mfplane_lb::Result<Interface> {
    let n = u8::try_from(name.len()).unwrap();
    Ok(Interface {
        name: name.to_owned(),
        index: 10 + u32::from(n),
        mac: MacAddr([2, 0, 0, 0, 0, n]),
        ipv4: Some(Ipv4Addr::new(192, 0, 2, n)),
        driver: Some("mlx5_core".to_owned()),
    })
}

/// One case: the container arguments with `$(NODE_NAME)` expanded and the config
/// directory pointed at the fixture, and the machine's file.
fn load(case: &Path) -> (Args, ConfigFile) {
    let file = std::fs::read_dir(case)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("lb-") && n.ends_with(".toml"))
        })
        .unwrap_or_else(|| panic!("{}: no lb-<machine>.toml", case.display()));
    let stem = file.file_stem().unwrap().to_str().unwrap();
    let node_name = stem.strip_prefix("lb-").unwrap();
    let args_text = std::fs::read_to_string(case.join("args")).unwrap();
    let argv: Vec<String> = args_text
        .lines()
        .map(|a| {
            a.replace("$(NODE_NAME)", node_name)
                .replace(CONFIG_DIR, &format!("{}/", case.display()))
        })
        .collect();
    let args = Args::try_parse_from(std::iter::once("mfplane-lb".to_owned()).chain(argv))
        .unwrap_or_else(|e| {
            panic!(
                "{}: the LB rejects the operator's arguments: {e}",
                case.display()
            )
        });
    assert_eq!(
        args.config.as_deref(),
        Some(file.as_path()),
        "--config names the machine's own file"
    );
    let cfg = ConfigFile::load(&file)
        .unwrap_or_else(|e| panic!("the LB rejects the operator's file: {e}"));
    (args, cfg)
}

#[test]
fn every_operator_case_resolves() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 2, "fixtures missing: {cases:?}");
    for case in cases {
        let (args, file) = load(&case);
        let c = args
            .resolve_using(Some(&file), &machine_interface)
            .unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        assert_eq!(c.http_listen, "0.0.0.0:9190".parse().unwrap());
        let attached: Vec<(String, Side)> = c
            .attach
            .iter()
            .map(|a| (a.iface.name.clone(), a.side))
            .collect();
        let listed: Vec<(String, Side)> = file
            .interfaces
            .iter()
            .map(|i| (i.name.clone(), i.side))
            .collect();
        assert_eq!(attached, listed);
        assert!(!c.cluster.is_empty() && c.cluster.iter().all(|e| e.starts_with("http://")));
        assert!(c.expect.bucket_bits.is_some() && c.expect.external_ips.is_some());
        assert_ne!(c.settings.inside_count, 0);
    }
}

/// The sample: two-armed, L2, native XDP, the fabric named by the Node.
#[test]
fn sample_case_means_what_the_nat_says() {
    let (args, file) = load(&fixtures().join("sample"));
    let c = args.resolve_using(Some(&file), &machine_interface).unwrap();
    assert_eq!(c.settings.mode, SteerMode::L2 as u32);
    assert_eq!(c.xdp_mode, XdpModeChoice::Native);
    assert_eq!(c.fabric.name, "ens1f0");
    assert_eq!(
        c.attach.iter().map(|a| a.side).collect::<Vec<_>>(),
        vec![Side::Inside, Side::Outside]
    );
    assert_eq!(c.cluster[0], "http://demo-0.demo.default.svc:7700");
    assert_eq!(c.cluster.len(), 3);
    assert_eq!(c.expect.bucket_bits.map(|b| b.get()), Some(8));
    assert_eq!(
        c.expect.external_ips,
        Some(BTreeSet::from([
            Ipv4Addr::new(203, 0, 113, 10),
            Ipv4Addr::new(203, 0, 113, 11)
        ]))
    );
    assert!(c.settings.is_inside(0x0a01_0203));
}

/// IP-in-IP with the Nat's interface list: the only interface is the fabric and
/// its address the outer source.
#[test]
fn ipip_case_takes_the_fabric_address() {
    let (args, file) = load(&fixtures().join("ipip-nat-interfaces"));
    let c = args.resolve_using(Some(&file), &machine_interface).unwrap();
    assert_eq!(c.settings.mode, SteerMode::IpIp as u32);
    assert_eq!(c.xdp_mode, XdpModeChoice::Generic);
    assert_eq!(c.fabric.name, "eth1");
    assert_eq!(c.attach[0].side, Side::Both);
    assert_eq!(c.settings.fabric_ip, u32::from(Ipv4Addr::new(192, 0, 2, 4)));
    assert_eq!(c.expect.bucket_bits.map(|b| b.get()), Some(10));
    assert_eq!(c.cluster.len(), 5);
}
