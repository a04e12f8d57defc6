//! The lab's network: namespaces, links, addresses and routes.
//!
//! ```text
//!  client ──inside── [ lb / router ] ──outside── server
//!                         │ fabric
//!                    [ fabric bridge ]
//!                    │      │      │
//!                   w1     w2     w3 ...      (NAT workers)
//! ```
//!
//! Addresses come from the documentation ranges (RFC 5737) so nothing the lab does can
//! be mistaken for, or leak to, a real network:
//!
//! | net | prefix | hosts |
//! |---|---|---|
//! | inside | 192.0.2.0/25 | router .1, client .10 |
//! | fabric | 192.0.2.128/25 | router .129, worker *i* .130+*i* |
//! | outside | 198.51.100.0/24 | router .1, server .10 |
//! | NAT external IPs | 203.0.113.0/24 | .1, .2 |

use std::net::Ipv4Addr;

use super::Result;
use super::netns::{self, Netns};

/// The inside client's address.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// The router's address on the inside network (the client's gateway).
pub const ROUTER_INSIDE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The inside prefix the load balancer steers outbound traffic from.
pub const INSIDE_PREFIX: (Ipv4Addr, u8) = (Ipv4Addr::new(192, 0, 2, 0), 25);
/// The router's address on the fabric (the workers' gateway).
pub const ROUTER_FABRIC_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 129);
/// The outside server's address.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// The router's address on the outside network (the server's gateway).
pub const ROUTER_OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The NAT's external addresses.
pub const EXTERNAL_IPS: [Ipv4Addr; 2] =
    [Ipv4Addr::new(203, 0, 113, 1), Ipv4Addr::new(203, 0, 113, 2)];

/// Interface names inside the router namespace.
pub const LB_INSIDE_DEV: &str = "inside";
/// See [`LB_INSIDE_DEV`].
pub const LB_OUTSIDE_DEV: &str = "outside";
/// See [`LB_INSIDE_DEV`].
pub const LB_FABRIC_DEV: &str = "fabric";
/// The single data interface of every host namespace (client, server, workers).
pub const HOST_DEV: &str = "eth0";

/// The fabric address of worker `index` (1-based).
pub fn worker_ip(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 130 + index)
}

/// A worker's namespace and data-plane identity.
#[derive(Clone, Debug)]
pub struct WorkerHost {
    /// 1-based position in the lab (w1, w2, ...).
    pub index: u8,
    pub ns: Netns,
    pub ip: Ipv4Addr,
    pub mac: String,
}

/// The namespaces of one lab instance. Every name starts with `prefix`.
#[derive(Clone, Debug)]
pub struct Topology {
    pub prefix: String,
    pub client: Netns,
    pub server: Netns,
    pub router: Netns,
    pub fabric: Netns,
    pub workers: Vec<WorkerHost>,
    /// The router's MAC on the fabric: the next hop of every translated packet.
    pub router_fabric_mac: String,
}

impl Topology {
    /// Builds the whole network with `workers` worker namespaces.
    ///
    /// On error, whatever was created is left for [`teardown`] (the caller holds a
    /// guard that calls it), so a half-built lab never survives a failure.
    pub fn build(prefix: &str, workers: u8) -> Result<Self> {
        netns::require_root()?;
        let client = Netns::create(format!("{prefix}client"))?;
        let server = Netns::create(format!("{prefix}server"))?;
        let router = Netns::create(format!("{prefix}lb"))?;
        let fabric = Netns::create(format!("{prefix}fabric"))?;

        // The router: forwards between the three nets. Reverse-path filtering is off
        // because translated packets arrive from the fabric with external source
        // addresses that the router has no route back to by design.
        router.sysctl("net.ipv4.ip_forward", "1")?;
        router.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
        router.sysctl("net.ipv4.conf.default.rp_filter", "0")?;

        link_pair(&client, HOST_DEV, &router, LB_INSIDE_DEV)?;
        link_pair(&server, HOST_DEV, &router, LB_OUTSIDE_DEV)?;
        link_pair(&router, LB_FABRIC_DEV, &fabric, "lb")?;

        fabric.ip(&["link", "add", "br0", "type", "bridge"])?;
        fabric.ip(&["link", "set", "br0", "up"])?;
        fabric.ip(&["link", "set", "lb", "master", "br0"])?;

        client.ip(&["addr", "add", &cidr(CLIENT_IP, 25), "dev", HOST_DEV])?;
        client.ip(&[
            "route",
            "add",
            "default",
            "via",
            &ROUTER_INSIDE_IP.to_string(),
        ])?;
        server.ip(&["addr", "add", &cidr(SERVER_IP, 24), "dev", HOST_DEV])?;
        server.ip(&[
            "route",
            "add",
            "default",
            "via",
            &ROUTER_OUTSIDE_IP.to_string(),
        ])?;
        router.ip(&[
            "addr",
            "add",
            &cidr(ROUTER_INSIDE_IP, 25),
            "dev",
            LB_INSIDE_DEV,
        ])?;
        router.ip(&[
            "addr",
            "add",
            &cidr(ROUTER_OUTSIDE_IP, 24),
            "dev",
            LB_OUTSIDE_DEV,
        ])?;
        router.ip(&[
            "addr",
            "add",
            &cidr(ROUTER_FABRIC_IP, 25),
            "dev",
            LB_FABRIC_DEV,
        ])?;

        // Sockets in the client and server hand partial checksums to the veth; an XDP
        // redirect loses that metadata, so the lab's senders compute full checksums.
        client.veth_offloads(HOST_DEV)?;
        server.veth_offloads(HOST_DEV)?;
        // The fabric port facing the router receives frames the LB redirects with XDP:
        // it needs GRO to deliver them (TOOLCHAIN.md, veth pitfall 1).
        fabric.veth_offloads("lb")?;
        router.veth_offloads(LB_FABRIC_DEV)?;

        let router_fabric_mac = router.mac_of(LB_FABRIC_DEV)?;
        let mut topo = Topology {
            prefix: prefix.to_string(),
            client,
            server,
            router,
            fabric,
            workers: Vec::new(),
            router_fabric_mac,
        };
        for _ in 0..workers {
            topo.add_worker()?;
        }
        Ok(topo)
    }

    /// Adds one more worker namespace on the fabric (scale-out) and returns it.
    pub fn add_worker(&mut self) -> Result<WorkerHost> {
        let index = self.workers.iter().map(|w| w.index).max().unwrap_or(0) + 1;
        let ns = Netns::create(format!("{}w{index}", self.prefix))?;
        let port = format!("w{index}");
        link_pair(&ns, HOST_DEV, &self.fabric, &port)?;
        self.fabric.ip(&["link", "set", &port, "master", "br0"])?;
        let ip = worker_ip(index);
        ns.ip(&["addr", "add", &cidr(ip, 25), "dev", HOST_DEV])?;
        ns.ip(&[
            "route",
            "add",
            "default",
            "via",
            &ROUTER_FABRIC_IP.to_string(),
        ])?;
        // Steered packets are addressed to other hosts; the worker's NAT takes them,
        // the kernel must not forward them around it.
        ns.sysctl("net.ipv4.ip_forward", "0")?;
        ns.veth_offloads(HOST_DEV)?;
        self.fabric.veth_offloads(&port)?;
        let mac = ns.mac_of(HOST_DEV)?;
        let host = WorkerHost { index, ns, ip, mac };
        self.workers.push(host.clone());
        Ok(host)
    }

    /// Simulates a host crash of a worker's network: its link goes down.
    pub fn cut_worker(&self, index: u8) -> Result<()> {
        if let Some(w) = self.workers.iter().find(|w| w.index == index) {
            w.ns.ip(&["link", "set", HOST_DEV, "down"])?;
        }
        Ok(())
    }
}

/// Deletes every namespace of the lab instance `prefix` (and with them every link and
/// XDP attachment the lab made). Safe to call on a partly built or already removed lab.
pub fn teardown(prefix: &str) -> Result<usize> {
    let all = netns::list_with_prefix(prefix)?;
    let mut first_err = None;
    for ns in &all {
        if let Err(e) = ns.delete() {
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(all.len()),
    }
}

/// A veth pair from `a`/`a_dev` to `b`/`b_dev`, both ends up.
fn link_pair(a: &Netns, a_dev: &str, b: &Netns, b_dev: &str) -> Result<()> {
    netns::ip(&[
        "link",
        "add",
        a_dev,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_dev,
        "netns",
        b.name(),
    ])?;
    a.ip(&["link", "set", a_dev, "up"])?;
    b.ip(&["link", "set", b_dev, "up"])?;
    Ok(())
}

fn cidr(ip: Ipv4Addr, len: u8) -> String {
    format!("{ip}/{len}")
}
