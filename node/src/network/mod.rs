//! The client side of member-to-member traffic: cached channels, openraft's network,
//! and forwarding to the leader.

pub mod channels;
pub mod forward;
pub mod raft_client;

pub use channels::Channels;
pub use forward::{ForwardReply, ForwardRequest};
pub use raft_client::NetworkFactory;
