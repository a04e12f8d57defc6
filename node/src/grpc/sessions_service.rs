//! The public `mfplane.sessions.v1.Sessions` service: paged reads of the committed
//! sessions, for tools. Served from this member's applied state (which may trail the
//! leader by a few milliseconds).

use std::sync::Arc;

use mfplane_core::{ExternalKey, SessionKey};
use mfplane_proto::sessions::{
    ListRequest, ListResponse, LookupRequest, Session, lookup_request, sessions_server,
};
use mfplane_raft_store::NodeId;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::grpc::convert::{self, status};
use crate::node::Core;

/// Default and largest page.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 10_000;

/// Serves Sessions for one node.
#[derive(Debug)]
pub struct SessionsService {
    core: Arc<Core>,
}

impl SessionsService {
    pub fn new(core: Arc<Core>) -> Self {
        SessionsService { core }
    }
}

#[tonic::async_trait]
impl sessions_server::Sessions for SessionsService {
    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let member = self.core.require_member().map_err(status)?;
        let r = request.into_inner();
        let limit = match r.limit {
            0 => DEFAULT_LIMIT,
            n if n > MAX_LIMIT => {
                return Err(status(Error::InvalidRequest(format!(
                    "limit {n} is above {MAX_LIMIT}: page through with page_token"
                ))));
            }
            n => n,
        } as usize;
        let mut after = convert::parse_page_token(&r.page_token).map_err(status)?;
        let owner = (r.owner != 0).then_some(NodeId(r.owner));
        let state = member.state();
        if let Some(o) = owner
            && state.node(o).is_none()
        {
            return Err(status(Error::UnknownNode(o)));
        }
        let total = match owner {
            Some(o) => state.sessions_owned_by(o),
            None => state.session_count(),
        };
        let mut sessions: Vec<Session> = Vec::with_capacity(limit);
        let mut last: Option<SessionKey>;
        // With an owner filter, scan pages until the page is full or the table ends.
        'scan: loop {
            let page = state.sessions_range(after, limit);
            if page.is_empty() {
                last = None;
                break;
            }
            for rec in &page {
                after = Some(rec.key);
                let rec_owner = state.owner_of(rec.bucket);
                if owner.is_none() || rec_owner == owner {
                    sessions.push(convert::session(rec, rec_owner));
                    last = Some(rec.key);
                    if sessions.len() == limit {
                        break 'scan;
                    }
                }
            }
            if page.len() < limit {
                last = None;
                break;
            }
        }
        let next_page_token = match last {
            Some(k) if !state.sessions_range(Some(k), 1).is_empty() => convert::page_token(&k),
            _ => String::new(),
        };
        Ok(Response::new(ListResponse {
            sessions,
            next_page_token,
            total,
        }))
    }

    async fn lookup(&self, request: Request<LookupRequest>) -> Result<Response<Session>, Status> {
        let member = self.core.require_member().map_err(status)?;
        let r = request.into_inner();
        let proto = convert::proto(&r.proto).map_err(status)?;
        let state = member.state();
        let found = match r.by {
            Some(lookup_request::By::Inside(e)) => {
                let inside = convert::endpoint("inside", &e.ip, e.port).map_err(status)?;
                state.session(&SessionKey { proto, inside }).copied()
            }
            Some(lookup_request::By::External(e)) => {
                let external = convert::endpoint("external", &e.ip, e.port).map_err(status)?;
                state
                    .session_by_external(&ExternalKey { proto, external })
                    .copied()
            }
            None => {
                return Err(status(Error::InvalidRequest(
                    "give either inside or external endpoint".into(),
                )));
            }
        };
        match found {
            Some(rec) => Ok(Response::new(convert::session(
                &rec,
                state.owner_of(rec.bucket),
            ))),
            None => Err(Status::not_found("no committed session with that endpoint")),
        }
    }
}
