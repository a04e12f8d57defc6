//! Leader election over a `coordination.k8s.io/v1` Lease, so two operator replicas can
//! run and only one reconciles (kube 5 has no elector of its own).
//!
//! The rules are client-go's: a holder renews every [`LeaseConfig::retry_period`]; a
//! lease whose `renewTime + leaseDurationSeconds` has passed may be taken over; every
//! write carries the `resourceVersion` it was decided on, so of two replicas racing for
//! it exactly one wins (the other gets 409 Conflict, reads again and waits). A holder
//! that cannot renew within [`LeaseConfig::renew_deadline`] stops reconciling before
//! anyone else may take over.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::{info, warn};

use crate::controller::retry_on_conflict;
use crate::{Error, Result, metrics};

/// The lease and the timing.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub holder: String,
    /// How long a lease lasts without renewal.
    pub lease_duration: Duration,
    /// How long a holder keeps trying to renew before it gives up leading; shorter than
    /// `lease_duration`, so it stops before another replica may start.
    pub renew_deadline: Duration,
    /// How often a holder renews and a candidate retries.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's defaults (15 s / 10 s / 2 s).
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        holder: impl Into<String>,
    ) -> Self {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            holder: holder.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What to do about the lease as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Take it: it is free, expired, or never existed. Carries the new transition count.
    Acquire {
        /// `leaseTransitions` after taking it.
        transitions: i32,
    },
    /// We hold it: renew.
    Renew,
    /// Someone else holds it and it has not expired.
    Wait {
        /// The current holder.
        holder: String,
    },
}

/// Decides from the lease as read (`None`: no Lease object yet) at `now`.
pub fn decide(lease: Option<&Lease>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return Decision::Acquire { transitions: 0 };
    };
    let transitions = spec.lease_transitions.unwrap_or(0);
    match spec.holder_identity.as_deref() {
        Some(h) if h == me => Decision::Renew,
        None | Some("") => Decision::Acquire {
            transitions: transitions.saturating_add(1),
        },
        Some(holder) => {
            let renewed = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map(|t| t.0);
            let duration =
                SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
            match renewed {
                Some(t) if now < t + duration => Decision::Wait {
                    holder: holder.to_owned(),
                },
                _ => Decision::Acquire {
                    transitions: transitions.saturating_add(1),
                },
            }
        }
    }
}

/// Acquires and keeps the lease.
#[derive(Debug, Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
}

impl LeaderElector {
    /// An elector for `config` in `client`'s cluster.
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    /// One attempt to take or renew the lease; `Ok(true)` if this replica holds it now.
    ///
    /// # Errors
    /// [`Error::Kube`] if the API server cannot be reached or refuses for another
    /// reason than a lost race.
    pub async fn try_acquire_or_renew(&self) -> Result<bool> {
        retry_on_conflict(|| self.attempt())
            .await
            .or_else(|e| if e.is_conflict() { Ok(false) } else { Err(e) })
    }

    async fn attempt(&self) -> Result<bool> {
        let c = &self.config;
        let current = self.api.get_opt(&c.name).await?;
        let now = Timestamp::now();
        let (transitions, acquire_time) = match decide(current.as_ref(), &c.holder, now) {
            Decision::Wait { .. } => return Ok(false),
            Decision::Acquire { transitions } => (transitions, MicroTime(now)),
            Decision::Renew => {
                let spec = current.as_ref().and_then(|l| l.spec.as_ref());
                (
                    spec.and_then(|s| s.lease_transitions).unwrap_or(0),
                    spec.and_then(|s| s.acquire_time.clone())
                        .unwrap_or(MicroTime(now)),
                )
            }
        };
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(c.name.clone()),
                namespace: Some(c.namespace.clone()),
                resource_version: current
                    .as_ref()
                    .and_then(|l| l.metadata.resource_version.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(c.holder.clone()),
                lease_duration_seconds: Some(
                    i32::try_from(c.lease_duration.as_secs()).unwrap_or(i32::MAX),
                ),
                acquire_time: Some(acquire_time),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        };
        let written = match current {
            None => self.api.create(&PostParams::default(), &lease).await,
            Some(_) => {
                self.api
                    .replace(&c.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => Ok(true),
            // Created by someone else between our read and our create.
            Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until this replica holds the lease.
    ///
    /// # Errors
    /// Never returns an error for a lost race; API errors are logged and retried.
    pub async fn acquire(&self) {
        let mut announced = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    info!(lease = %self.config.key(), holder = %self.config.holder, "acquired the leader lease");
                    metrics::leader(true);
                    return;
                }
                Ok(false) if !announced => {
                    info!(lease = %self.config.key(), "another replica leads; standing by");
                    announced = true;
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "cannot read or write the leader lease"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews the lease until it cannot; returns why leadership ended.
    pub async fn hold(&self) -> Error {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let reason = match self.try_acquire_or_renew().await {
                Ok(true) => {
                    last_renewal = tokio::time::Instant::now();
                    continue;
                }
                Ok(false) => "another replica holds it".to_owned(),
                Err(e) => format!("renewal failed: {e}"),
            };
            if reason.starts_with("another") || last_renewal.elapsed() >= self.config.renew_deadline
            {
                metrics::leader(false);
                return Error::LostLeadership {
                    lease: self.config.key(),
                    reason,
                };
            }
            warn!(%reason, "leader lease not renewed; retrying");
        }
    }

    /// Gives the lease up (on shutdown) so a standby takes over at once instead of after
    /// the lease expires.
    ///
    /// # Errors
    /// [`Error::Kube`] if the write fails; the lease then simply expires.
    pub async fn release(&self) -> Result<()> {
        let c = &self.config;
        let Some(mut lease) = self.api.get_opt(&c.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(c.holder.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        self.api
            .replace(&c.name, &PostParams::default(), &lease)
            .await?;
        metrics::leader(false);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_at: i64, duration: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("l".into()),
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(Timestamp::from_second(renewed_at).unwrap())),
                lease_transitions: Some(2),
                ..LeaseSpec::default()
            }),
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    pub(crate) mod against_the_api {
        use http::{Method, StatusCode};
        use serde_json::json;

        use super::*;
        use crate::fixtures::{Exchange, Reply, mock_client, not_found};
        use crate::names::{OPERATOR_NAME, OPERATOR_NAMESPACE};

        const LEASE: &str =
            "/apis/coordination.k8s.io/v1/namespaces/mfplane-system/leases/mfplane-operator";
        const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/mfplane-system/leases";

        fn held_by(holder: &str, renewed: Timestamp) -> serde_json::Value {
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": OPERATOR_NAME, "namespace": OPERATOR_NAMESPACE, "resourceVersion": "41"},
                   "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": 4,
                            "renewTime": MicroTime(renewed), "acquireTime": MicroTime(renewed)}})
        }

        fn elector() -> (LeaderElector, crate::fixtures::ApiServerVerifier) {
            let (client, api) = mock_client();
            (
                LeaderElector::new(
                    client,
                    LeaseConfig::new(OPERATOR_NAMESPACE, OPERATOR_NAME, "me"),
                ),
                api,
            )
        }

        async fn done(h: tokio::task::JoinHandle<Vec<crate::fixtures::Seen>>) {
            tokio::time::timeout(std::time::Duration::from_secs(1), h)
                .await
                .expect("scenario timed out")
                .expect("scenario");
        }

        /// Every scenario of this module, for the check that each permission the RBAC
        /// grants is used by one of them (`rbac::tests`).
        pub(crate) const ALL: &[fn()] = &[
            creates_a_missing_lease,
            waits_while_another_replica_holds_a_fresh_lease,
            takes_over_an_expired_lease_with_its_resource_version,
            a_conflict_is_retried_from_a_fresh_read,
            leading_ends_when_another_replica_holds_the_lease,
            leading_ends_before_the_lease_can_expire_when_renewals_fail,
            release_hands_the_lease_back,
        ];

        #[tokio::test]
        async fn creates_a_missing_lease() {
            let (e, api) = elector();
            let server = api.run(vec![
                Exchange::new(Method::GET, LEASE, not_found()),
                Exchange::new(Method::POST, LEASES, Reply::Echo).check(|b| {
                    assert_eq!(b["spec"]["holderIdentity"], "me");
                    assert_eq!(b["spec"]["leaseTransitions"], 0);
                }),
            ]);
            assert!(e.try_acquire_or_renew().await.unwrap());
            done(server).await;
        }

        #[tokio::test]
        async fn waits_while_another_replica_holds_a_fresh_lease() {
            let (e, api) = elector();
            let server = api.run(vec![Exchange::new(
                Method::GET,
                LEASE,
                Reply::Json(StatusCode::OK, held_by("other", Timestamp::now())),
            )]);
            assert!(!e.try_acquire_or_renew().await.unwrap());
            done(server).await;
        }

        #[tokio::test]
        async fn takes_over_an_expired_lease_with_its_resource_version() {
            let (e, api) = elector();
            let old = Timestamp::now() - SignedDuration::from_secs(60);
            let server = api.run(vec![
                Exchange::new(
                    Method::GET,
                    LEASE,
                    Reply::Json(StatusCode::OK, held_by("other", old)),
                ),
                Exchange::new(Method::PUT, LEASE, Reply::Echo).check(|b| {
                    assert_eq!(
                        b["metadata"]["resourceVersion"], "41",
                        "optimistic concurrency"
                    );
                    assert_eq!(b["spec"]["holderIdentity"], "me");
                    assert_eq!(b["spec"]["leaseTransitions"], 5);
                }),
            ]);
            assert!(e.try_acquire_or_renew().await.unwrap());
            done(server).await;
        }

        #[tokio::test]
        async fn a_conflict_is_retried_from_a_fresh_read() {
            let (e, api) = elector();
            let server = api.run(vec![
                Exchange::new(
                    Method::GET,
                    LEASE,
                    Reply::Json(StatusCode::OK, held_by("me", Timestamp::now())),
                ),
                Exchange::new(
                    Method::PUT,
                    LEASE,
                    Reply::Error(StatusCode::CONFLICT, "Conflict"),
                ),
                // Another replica took it meanwhile: stand by, write nothing.
                Exchange::new(
                    Method::GET,
                    LEASE,
                    Reply::Json(StatusCode::OK, held_by("other", Timestamp::now())),
                ),
            ]);
            assert!(!e.try_acquire_or_renew().await.unwrap());
            done(server).await;
        }

        #[tokio::test(start_paused = true)]
        async fn leading_ends_when_another_replica_holds_the_lease() {
            let (e, api) = elector();
            let server = api.run(vec![
                Exchange::new(
                    Method::GET,
                    LEASE,
                    Reply::Json(StatusCode::OK, held_by("me", Timestamp::now())),
                ),
                Exchange::new(Method::PUT, LEASE, Reply::Echo),
                Exchange::new(
                    Method::GET,
                    LEASE,
                    Reply::Json(StatusCode::OK, held_by("other", Timestamp::now())),
                ),
            ]);
            match e.hold().await {
                Error::LostLeadership { lease, reason } => {
                    assert_eq!(lease, "mfplane-system/mfplane-operator");
                    assert!(reason.contains("another replica"), "{reason}");
                }
                other => panic!("{other:?}"),
            }
            done(server).await;
        }

        #[tokio::test(start_paused = true)]
        async fn leading_ends_before_the_lease_can_expire_when_renewals_fail() {
            let (e, api) = elector();
            let started = tokio::time::Instant::now();
            // Renewals every 2 s fail; at the 10 s renew deadline the replica stops,
            // 5 s before another one may take the 15 s lease over.
            let script = (0..5)
                .map(|_| {
                    Exchange::new(
                        Method::GET,
                        LEASE,
                        Reply::Error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
                    )
                })
                .collect();
            let server = api.run(script);
            match e.hold().await {
                Error::LostLeadership { reason, .. } => {
                    assert!(reason.contains("renewal failed"), "{reason}")
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(started.elapsed(), std::time::Duration::from_secs(10));
            done(server).await;
        }

        #[tokio::test]
        async fn release_hands_the_lease_back() {
            let (e, api) = elector();
            let server = api.run(vec![
                Exchange::new(
                    Method::GET,
                    LEASE,
                    Reply::Json(StatusCode::OK, held_by("me", Timestamp::now())),
                ),
                Exchange::new(Method::PUT, LEASE, Reply::Echo).check(|b| {
                    assert!(b["spec"]["holderIdentity"].is_null(), "{b}");
                    assert_eq!(b["spec"]["leaseDurationSeconds"], 1);
                }),
            ]);
            e.release().await.unwrap();
            done(server).await;
        }
    }

    #[test]
    fn decisions_follow_client_go() {
        assert_eq!(
            decide(None, "a", at(100)),
            Decision::Acquire { transitions: 0 }
        );
        assert_eq!(
            decide(Some(&lease(Some("a"), 90, 15)), "a", at(100)),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&lease(Some("b"), 90, 15)), "a", at(100)),
            Decision::Wait { holder: "b".into() }
        );
        assert_eq!(
            decide(Some(&lease(Some("b"), 80, 15)), "a", at(100)),
            Decision::Acquire { transitions: 3 }
        );
        assert_eq!(
            decide(Some(&lease(None, 99, 15)), "a", at(100)),
            Decision::Acquire { transitions: 3 },
            "released"
        );
    }
}
