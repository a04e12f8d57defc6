//! The agent's readiness, as `/readyz` reports it.
//!
//! Ready means the LB steers: the XDP program is attached and a steering table from
//! the cluster has been installed at least once. Losing the cluster later does not
//! make the LB unready: it keeps steering by its last table, which is what it is for
//! (DESIGN §2.5). The agent reports each step here; the HTTP side only reads.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::table::Epoch;

/// Shared by the agent (writer) and the HTTP endpoints (reader).
#[derive(Debug, Default)]
pub struct Health {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    phase: Phase,
    /// `name (side)` of every interface the program is attached to.
    attached: Vec<String>,
    /// The epoch installed last.
    installed: Option<Epoch>,
    /// Why the last table was not installed, until one is.
    refused: Option<String>,
    cluster: ClusterLink,
}

#[derive(Debug, Default)]
enum Phase {
    #[default]
    Starting,
    WaitingForConfig(PathBuf),
    Running,
    ShuttingDown,
}

/// The steering stream, as the watcher last reported it.
#[derive(Debug, Default)]
enum ClusterLink {
    #[default]
    NotYet,
    Following(String),
    Lost(String),
}

/// What `/readyz` answers: the HTTP status follows the variant, the text says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready(String),
    NotReady(String),
}

impl Health {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a plain assignment: a panic elsewhere leaves nothing half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `--config` file does not exist yet and the agent waits for it.
    pub fn waiting_for_config(&self, path: &Path) {
        self.state().phase = Phase::WaitingForConfig(path.to_owned());
    }

    /// Configuration read; the program is being loaded and attached.
    pub fn starting(&self) {
        self.state().phase = Phase::Starting;
    }

    /// The program is attached to `interfaces` (`name (side)` each).
    pub fn attached(&self, interfaces: Vec<String>) {
        let mut s = self.state();
        s.attached = interfaces;
        s.phase = Phase::Running;
    }

    /// The agent is detaching; whatever sends traffic here should stop counting on it.
    pub fn shutting_down(&self) {
        self.state().phase = Phase::ShuttingDown;
    }

    /// A steering stream from `endpoint` is open.
    pub fn following(&self, endpoint: &str) {
        self.state().cluster = ClusterLink::Following(endpoint.to_owned());
    }

    /// The steering stream ended or could not be opened.
    pub fn cluster_lost(&self, error: String) {
        self.state().cluster = ClusterLink::Lost(error);
    }

    /// A table at `epoch` now steers packets.
    pub fn table_installed(&self, epoch: Epoch) {
        let mut s = self.state();
        s.installed = Some(epoch);
        s.refused = None;
    }

    /// A table was refused or could not be installed; the previous one, if any, stays
    /// in use.
    pub fn table_refused(&self, reason: String) {
        self.state().refused = Some(reason);
    }

    /// Whether the LB steers now, and why (not).
    pub fn readiness(&self) -> Readiness {
        let s = self.state();
        let attached = s.attached.join(", ");
        match (&s.phase, s.installed) {
            (Phase::WaitingForConfig(path), _) => Readiness::NotReady(format!(
                "waiting for the configuration file {} to appear",
                path.display()
            )),
            (Phase::Starting, _) => {
                Readiness::NotReady("loading and attaching the XDP program".to_owned())
            }
            (Phase::ShuttingDown, _) => {
                Readiness::NotReady("shutting down: detaching the XDP program".to_owned())
            }
            (Phase::Running, None) => {
                let why = match (&s.refused, &s.cluster) {
                    (Some(refused), _) => format!("the cluster's table was refused: {refused}"),
                    (None, ClusterLink::NotYet) => {
                        "waiting for the first one from the cluster".to_owned()
                    }
                    (None, ClusterLink::Following(ep)) => {
                        format!("waiting for the first one from {ep}")
                    }
                    (None, ClusterLink::Lost(e)) => format!("the cluster is unreachable: {e}"),
                };
                Readiness::NotReady(format!(
                    "attached to {attached}, but no steering table installed yet: {why}"
                ))
            }
            (Phase::Running, Some(epoch)) => {
                let mut text = format!("steering by epoch {} on {attached}", epoch.0);
                match &s.cluster {
                    ClusterLink::Following(ep) => text.push_str(&format!("; following {ep}")),
                    ClusterLink::Lost(e) => text.push_str(&format!(
                        "; keeping this table while the cluster is unreachable: {e}"
                    )),
                    ClusterLink::NotYet => {}
                }
                if let Some(refused) = &s.refused {
                    text.push_str(&format!("; a newer table was refused: {refused}"));
                }
                Readiness::Ready(text)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(h: &Health) -> bool {
        matches!(h.readiness(), Readiness::Ready(_))
    }

    #[test]
    fn ready_needs_attachment_and_a_table() {
        let h = Health::default();
        assert!(!ready(&h));
        h.waiting_for_config(Path::new("/etc/mfplane/lb-m1.toml"));
        assert_eq!(
            h.readiness(),
            Readiness::NotReady(
                "waiting for the configuration file /etc/mfplane/lb-m1.toml to appear".into()
            )
        );
        h.starting();
        // A table before the attachment (cannot happen in the agent) is not enough.
        h.table_installed(Epoch(3));
        assert!(!ready(&h));
        h.attached(vec!["eth1 (both)".into()]);
        assert_eq!(
            h.readiness(),
            Readiness::Ready("steering by epoch 3 on eth1 (both)".into())
        );
        h.cluster_lost("connect: refused".into());
        let Readiness::Ready(text) = h.readiness() else {
            panic!("losing the cluster must not make a steering LB unready");
        };
        assert!(text.contains("connect: refused"), "{text}");
        h.shutting_down();
        assert!(!ready(&h));
    }

    #[test]
    fn not_ready_says_why() {
        let h = Health::default();
        h.attached(vec!["eth1 (inside)".into(), "eth2 (outside)".into()]);
        let Readiness::NotReady(text) = h.readiness() else {
            panic!("ready without a table");
        };
        assert!(
            text.contains("eth1 (inside), eth2 (outside)")
                && text.contains("no steering table installed yet"),
            "{text}"
        );
        h.following("http://demo-0:7700");
        let Readiness::NotReady(text) = h.readiness() else {
            panic!("ready without a table");
        };
        assert!(text.contains("from http://demo-0:7700"), "{text}");
        h.table_refused("bucket_bits mismatch".into());
        let Readiness::NotReady(text) = h.readiness() else {
            panic!("ready without a table");
        };
        assert!(text.contains("bucket_bits mismatch"), "{text}");
        h.table_installed(Epoch(1));
        assert_eq!(
            h.readiness(),
            Readiness::Ready(
                "steering by epoch 1 on eth1 (inside), eth2 (outside); following http://demo-0:7700"
                    .into()
            )
        );
    }
}
