//! The simulated load balancer: follows `Steering.Watch` and steers every frame to
//! the owner of its bucket by the shared bucket rule (the same functions the XDP LB
//! compiles), with no per-flow state.
//!
//! It watches every member it knows (the configured seeds, then every owner the
//! stream names) and steers by the table with the highest epoch, so a member cut off
//! from the majority (whose table is stale) cannot hold it back. When no member is
//! reachable it keeps steering on its last table, as DESIGN §2.5 requires.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mfplane_core::{BucketBits, FlowHashKey, inbound_bucket, outbound_bucket};
use mfplane_proto::steering::{SteeringUpdate, WatchRequest, steering_client::SteeringClient};

use crate::net::{self, DATA_PORT};
use crate::packet::{Burst, Packet, frames};
use crate::world::{World, lock};

/// One steering table, as built from one member's stream.
#[derive(Debug, Default, Clone)]
struct Table {
    epoch: u64,
    bits: u8,
    owners: Vec<u64>,
    owner_ip: BTreeMap<u64, Ipv4Addr>,
    external: BTreeSet<u32>,
    /// The cluster's flow-hash key, from the stream (as the real LB takes it).
    hash_key: Option<FlowHashKey>,
}

impl Table {
    fn apply(&mut self, u: &SteeringUpdate) {
        let bits = u8::try_from(u.bucket_bits).unwrap_or(0);
        if u.full || bits != self.bits {
            self.owners = vec![0; 1usize << bits];
            self.bits = bits;
        }
        for b in &u.buckets {
            if let Some(o) = self.owners.get_mut(b.bucket as usize) {
                *o = b.node_id;
            }
        }
        for o in &u.owners {
            if let Ok(ip) = o.data_ip.parse() {
                self.owner_ip.insert(o.node_id, ip);
            }
        }
        self.external = u
            .external_ips
            .iter()
            .filter_map(|s| s.parse::<Ipv4Addr>().ok())
            .map(u32::from)
            .collect();
        if let Some(k) = u.flow_hash_key {
            self.hash_key = Some(FlowHashKey::new(k.k0, k.k1));
        }
        self.epoch = u.epoch;
    }
}

#[derive(Debug, Default)]
struct Shared {
    current: Table,
    watching: BTreeSet<String>,
}

/// The LB host: `seeds` are the member hosts known from configuration.
///
/// # Errors
/// Socket failures, which end the simulation.
pub async fn run(seeds: Vec<String>, world: Arc<World>) -> turmoil::Result {
    let shared = Arc::new(Mutex::new(Shared::default()));
    for s in seeds {
        let addr = format!("{}:{}", turmoil::lookup(s.as_str()), net::GRPC_PORT);
        watch_new(&shared, &world, addr);
    }
    let sock = turmoil::net::UdpSocket::bind(("0.0.0.0", DATA_PORT)).await?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let (n, _) = sock.recv_from(&mut buf).await?;
        let table = lock(&shared).current.clone();
        let mut bursts: BTreeMap<Ipv4Addr, Burst> = BTreeMap::new();
        let (mut steered, mut unsteered) = (0, 0);
        for frame in frames(&buf[..n]) {
            match route(&table, frame) {
                Some(ip) => {
                    bursts.entry(ip).or_default().push(frame);
                    steered += 1;
                }
                None => unsteered += 1,
            }
        }
        {
            let mut v = lock(&world.lb);
            v.steered += steered;
            v.unsteered += unsteered;
        }
        for (ip, mut b) in bursts {
            sock.send_to(&b.take(), (ip, DATA_PORT)).await?;
        }
    }
}

/// The data IP of the owner of `frame`'s bucket.
fn route(t: &Table, frame: &[u8]) -> Option<Ipv4Addr> {
    let p = Packet::decode(frame)?;
    let bits = BucketBits::new(t.bits)?;
    let hash_key = t.hash_key?;
    let bucket = if t.external.contains(&p.dst.ip) {
        inbound_bucket(bits, p.dst.port)
    } else {
        outbound_bucket(&hash_key, bits, p.src.ip, p.src.port, p.proto.number())
    };
    let owner = *t.owners.get(usize::from(bucket.0))?;
    t.owner_ip.get(&owner).copied()
}

fn watch_new(shared: &Arc<Mutex<Shared>>, world: &Arc<World>, addr: String) {
    if lock(shared).watching.insert(addr.clone()) {
        tokio::spawn(watch(addr, shared.clone(), world.clone()));
    }
}

/// Follows one member's stream forever, reconnecting after failures.
async fn watch(addr: String, shared: Arc<Mutex<Shared>>, world: Arc<World>) {
    loop {
        if let Ok(channel) = net::channel(&addr) {
            let mut client = SteeringClient::new(channel);
            let started = tokio::time::timeout(
                Duration::from_secs(1),
                client.watch(WatchRequest { from_epoch: 0 }),
            )
            .await;
            if let Ok(Ok(resp)) = started {
                let mut stream = resp.into_inner();
                let mut table = Table::default();
                // HTTP/2 keepalive ends the stream when the member stops answering.
                while let Ok(Some(update)) = stream.message().await {
                    table.apply(&update);
                    let new_owners: Vec<Ipv4Addr> = table.owner_ip.values().copied().collect();
                    {
                        let mut s = lock(&shared);
                        if table.epoch > s.current.epoch {
                            s.current = table.clone();
                            let mut v = lock(&world.lb);
                            v.epoch = table.epoch;
                            v.owners = table.owners.clone();
                        }
                    }
                    for ip in new_owners {
                        watch_new(&shared, &world, format!("{ip}:{}", net::GRPC_PORT));
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
