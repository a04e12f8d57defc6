//! Long-lived TCP connections that carry a verifiable byte sequence both ways.
//!
//! Each connection opens with a [`Hello`] naming its id and the seeds of its two
//! streams. Every byte of a stream is a pure function of its seed and offset
//! ([`stream_byte`]), so the receiver checks each byte as it arrives: a NAT that
//! remapped, reordered past TCP's repair, or corrupted anything shows up as a
//! verification error, not as a silently wrong count. Senders are paced (a chunk every
//! `interval`), so a gap in arrivals is a real stall of the path, which is what a
//! failover drill measures.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// The first bytes of every lab connection.
const HELLO_MAGIC: u32 = 0x6d66_706c; // "mfpl"
const HELLO_LEN: usize = 16;

/// How a connection introduces itself to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub conn_id: u32,
    /// Seed of the stream in both directions; client-to-server uses `seed`, the reply
    /// stream `!seed`, so the two can never be confused.
    pub seed: u64,
}

impl Hello {
    fn encode(self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[0..4].copy_from_slice(&HELLO_MAGIC.to_be_bytes());
        b[4..8].copy_from_slice(&self.conn_id.to_be_bytes());
        b[8..16].copy_from_slice(&self.seed.to_be_bytes());
        b
    }

    fn decode(b: &[u8; HELLO_LEN]) -> Option<Hello> {
        let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        (magic == HELLO_MAGIC).then(|| Hello {
            conn_id: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            seed: u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
        })
    }
}

/// Byte `offset` of the stream with `seed`.
pub fn stream_byte(seed: u64, offset: u64) -> u8 {
    let word = splitmix64(seed ^ (offset / 8).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    word.to_le_bytes()[(offset % 8) as usize]
}

fn splitmix64(x: u64) -> u64 {
    let z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What one side saw of one direction of a connection.
#[derive(Clone, Debug, Default)]
pub struct DirectionStats {
    /// Bytes sent by this side.
    pub sent: u64,
    /// Bytes received and found equal to the expected sequence.
    pub verified: u64,
    /// Longest time between two arrivals (or from the stall window's start to the
    /// first arrival), while the connection was open.
    pub max_stall: Duration,
    /// Why the connection ended early, if it did.
    pub error: Option<String>,
    /// Whether the peer closed the stream cleanly after sending everything.
    pub finished: bool,
}

/// The server's view of one connection.
#[derive(Clone, Debug)]
pub struct ServerConn {
    /// The address the server saw: the NAT's external endpoint.
    pub peer: SocketAddr,
    pub stats: DirectionStats,
}

/// Shared, lock-protected stats of all connections, keyed by connection id.
pub type ServerTable = Arc<Mutex<BTreeMap<u32, ServerConn>>>;
/// Client side, keyed by connection id.
pub type ClientTable = Arc<Mutex<BTreeMap<u32, ClientConn>>>;

/// The client's view of one connection.
#[derive(Clone, Debug)]
pub struct ClientConn {
    /// The client's own (inside) endpoint.
    pub local: SocketAddr,
    pub stats: DirectionStats,
}

/// Pacing of the senders.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub chunk: usize,
    pub interval: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        // 1 KiB every 10 ms: 100 KiB/s per direction per connection, enough to see a
        // 10 ms stall and light enough for 100 connections through a userspace NAT.
        Pace {
            chunk: 1024,
            interval: Duration::from_millis(10),
        }
    }
}

/// Serves lab connections on `listener` until `stop` turns true; each connection
/// verifies the client's stream and sends its own until the client closes.
pub async fn serve(
    listener: TcpListener,
    table: ServerTable,
    pace: Pace,
    stop: watch::Receiver<bool>,
) {
    let mut stop_accept = stop.clone();
    loop {
        tokio::select! {
            biased;
            _ = stop_accept.changed() => return,
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let table = table.clone();
                let stop = stop.clone();
                tokio::spawn(async move { serve_one(stream, peer, table, pace, stop).await });
            }
        }
    }
}

async fn serve_one(
    mut stream: TcpStream,
    peer: SocketAddr,
    table: ServerTable,
    pace: Pace,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let mut hello = [0u8; HELLO_LEN];
    let hello =
        match tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut hello)).await {
            Ok(Ok(_)) => match Hello::decode(&hello) {
                Some(h) => h,
                None => return,
            },
            _ => return,
        };
    table.lock().unwrap_or_else(|p| p.into_inner()).insert(
        hello.conn_id,
        ServerConn {
            peer,
            stats: DirectionStats::default(),
        },
    );
    let update = {
        let table = table.clone();
        move |f: &dyn Fn(&mut DirectionStats)| {
            if let Some(c) = table
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(&hello.conn_id)
            {
                f(&mut c.stats);
            }
        }
    };
    exchange(stream, hello.seed, !hello.seed, pace, stop, &update).await;
}

/// Opens a lab connection over an already connected `stream` and exchanges streams
/// until `stop` turns true, then closes its sending side and drains the reply.
pub async fn run_client(
    mut stream: TcpStream,
    hello: Hello,
    table: ClientTable,
    pace: Pace,
    stop: watch::Receiver<bool>,
) {
    let local = stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    table.lock().unwrap_or_else(|p| p.into_inner()).insert(
        hello.conn_id,
        ClientConn {
            local,
            stats: DirectionStats::default(),
        },
    );
    let update = {
        let table = table.clone();
        move |f: &dyn Fn(&mut DirectionStats)| {
            if let Some(c) = table
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(&hello.conn_id)
            {
                f(&mut c.stats);
            }
        }
    };
    let _ = stream.set_nodelay(true);
    if let Err(e) = stream.write_all(&hello.encode()).await {
        let msg = format!("sending hello: {e}");
        update(&|s| first_error(s, &msg));
        return;
    }
    exchange(stream, !hello.seed, hello.seed, pace, stop, &update).await;
}

/// Applies a change to the [`DirectionStats`] of one connection, wherever the caller
/// keeps them (the client's or the server's table).
type StatsUpdate<'a> = &'a (dyn Fn(&dyn Fn(&mut DirectionStats)) + Sync);

/// Reads the peer's stream (`rx_seed`) and writes ours (`tx_seed`). The writer stops
/// when `stop` turns true and shuts its side down; the reader runs until the peer does
/// the same, so every byte sent is accounted for.
async fn exchange(
    stream: TcpStream,
    rx_seed: u64,
    tx_seed: u64,
    pace: Pace,
    mut stop: watch::Receiver<bool>,
    update: StatsUpdate<'_>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let writer = async {
        let mut offset = 0u64;
        let mut buf = vec![0u8; pace.chunk];
        let mut tick = tokio::time::interval(pace.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                _ = tick.tick() => {}
            }
            for (i, b) in buf.iter_mut().enumerate() {
                *b = stream_byte(tx_seed, offset + i as u64);
            }
            if let Err(e) = wr.write_all(&buf).await {
                let msg = format!("send failed after {offset} bytes: {e}");
                update(&|s| first_error(s, &msg));
                return;
            }
            offset += buf.len() as u64;
            update(&|s| s.sent = offset);
        }
        let _ = wr.shutdown().await;
    };
    let reader = async {
        let mut offset = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        let mut last = Instant::now();
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => {
                    update(&|s| s.finished = true);
                    return;
                }
                Ok(n) => {
                    let now = Instant::now();
                    let gap = now - last;
                    last = now;
                    if let Some(bad) =
                        (0..n).find(|&i| buf[i] != stream_byte(rx_seed, offset + i as u64))
                    {
                        let msg = format!(
                            "byte {} differs from the expected sequence",
                            offset + bad as u64
                        );
                        update(&|s| first_error(s, &msg));
                        return;
                    }
                    offset += n as u64;
                    update(&|s| {
                        s.verified = offset;
                        s.max_stall = s.max_stall.max(gap);
                    });
                }
                Err(e) => {
                    let msg = format!("receive failed after {offset} bytes: {e}");
                    update(&|s| first_error(s, &msg));
                    return;
                }
            }
        }
    };
    tokio::join!(writer, reader);
}

/// Records `msg` unless an earlier error is already recorded: the first failure of a
/// connection is the one that explains it.
fn first_error(s: &mut DirectionStats, msg: &str) {
    if s.error.is_none() {
        s.error = Some(msg.to_string());
    }
}

/// Resets the stall measurement of every connection (used right before a fault is
/// injected, so warm-up gaps don't count).
pub fn reset_stalls<T>(
    table: &Mutex<BTreeMap<u32, T>>,
    stats: impl Fn(&mut T) -> &mut DirectionStats,
) {
    for c in table.lock().unwrap_or_else(|p| p.into_inner()).values_mut() {
        stats(c).max_stall = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_and_rejects_garbage() {
        let h = Hello {
            conn_id: 7,
            seed: 0x1234_5678_9abc_def0,
        };
        assert_eq!(Hello::decode(&h.encode()), Some(h));
        assert_eq!(Hello::decode(&[0u8; HELLO_LEN]), None);
    }

    #[test]
    fn streams_differ_by_seed_and_offset() {
        let a: Vec<u8> = (0..64).map(|i| stream_byte(1, i)).collect();
        let b: Vec<u8> = (0..64).map(|i| stream_byte(2, i)).collect();
        assert_ne!(a, b);
        assert_ne!(a[..8], a[8..16]);
    }

    /// Two connections over loopback exchange and verify their streams both ways, and
    /// every byte sent is verified by the other side after a clean stop.
    #[tokio::test]
    async fn loopback_exchange_verifies_every_byte() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server_table = ServerTable::default();
        let client_table = ClientTable::default();
        let (stop_tx, stop_rx) = watch::channel(false);
        let pace = Pace {
            chunk: 512,
            interval: Duration::from_millis(2),
        };
        let server = tokio::spawn(serve(listener, server_table.clone(), pace, stop_rx.clone()));
        let mut clients = Vec::new();
        for id in 0..2 {
            let stream = TcpStream::connect(addr).await.unwrap();
            let hello = Hello {
                conn_id: id,
                seed: 100 + u64::from(id),
            };
            clients.push(tokio::spawn(run_client(
                stream,
                hello,
                client_table.clone(),
                pace,
                stop_rx.clone(),
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop_tx.send(true).unwrap();
        for c in clients {
            tokio::time::timeout(Duration::from_secs(5), c)
                .await
                .unwrap()
                .unwrap();
        }
        server.await.unwrap();
        // Give the server's connection tasks a moment to see the clients' FIN.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let s = server_table.lock().unwrap();
        let c = client_table.lock().unwrap();
        assert_eq!(s.len(), 2);
        for id in 0..2 {
            let (sc, cc) = (&s[&id], &c[&id]);
            assert!(cc.stats.error.is_none(), "{:?}", cc.stats.error);
            assert!(sc.stats.error.is_none(), "{:?}", sc.stats.error);
            assert!(cc.stats.sent > 0 && sc.stats.sent > 0);
            assert_eq!(sc.stats.verified, cc.stats.sent, "client->server bytes");
            assert_eq!(cc.stats.verified, sc.stats.sent, "server->client bytes");
            assert_eq!(
                sc.peer, cc.local,
                "no NAT on loopback: the server sees the client"
            );
        }
    }
}
