//! Versioned encoding of everything the store writes: one leading format byte, then
//! postcard. A record from a newer (or foreign) format is detected instead of being
//! misread, because postcard itself carries no schema.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::state::{ClusterState, StateWire};

/// The record format this build writes. Bump it when a stored type changes in a way
/// that positional decoding cannot absorb (see `command` for the compatibility rule).
///
/// History: 1, the first; 2, `ClusterConfig` gained `flow_hash_key`; 3, snapshots
/// carry the buckets' allocation fences.
pub const RECORD_FORMAT: u8 = 3;

/// Encodes `value` as `[RECORD_FORMAT] ++ postcard(value)`.
pub(crate) fn encode<T: Serialize + ?Sized>(what: &'static str, value: &T) -> Result<Vec<u8>> {
    postcard::to_extend(value, vec![RECORD_FORMAT]).map_err(|e| Error::Decode {
        what,
        why: format!("cannot encode: {e}"),
    })
}

/// Decodes a record written by [`encode`]; `what` names it in the error.
pub(crate) fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T> {
    let Some((&format, body)) = bytes.split_first() else {
        return Err(Error::Decode {
            what,
            why: "empty record".into(),
        });
    };
    if format != RECORD_FORMAT {
        return Err(Error::UnsupportedRecord {
            what,
            found: format,
            supported: RECORD_FORMAT,
        });
    }
    postcard::from_bytes(body).map_err(|e| Error::Decode {
        what,
        why: e.to_string(),
    })
}

/// Serializes the whole state machine data for a snapshot.
pub(crate) fn encode_state(state: &StateWire) -> Result<Vec<u8>> {
    encode("snapshot", state)
}

/// Reads snapshot data back, rebuilding and validating the indexes.
pub(crate) fn decode_state(bytes: &[u8]) -> Result<ClusterState> {
    let wire: StateWire = decode("snapshot", bytes)?;
    wire.into_state().map_err(|why| Error::Decode {
        what: "snapshot",
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_format_byte() {
        let bytes = encode("test", &(7u64, "x")).unwrap();
        assert_eq!(bytes[0], RECORD_FORMAT);
        let back: (u64, String) = decode("test", &bytes).unwrap();
        assert_eq!(back, (7, "x".to_string()));
    }

    #[test]
    fn newer_format_is_reported() {
        let mut bytes = encode("test", &7u64).unwrap();
        bytes[0] = RECORD_FORMAT + 1;
        let err = decode::<u64>("test", &bytes).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedRecord { found, .. } if found == RECORD_FORMAT + 1)
        );
        assert!(decode::<u64>("test", &[]).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode::<(u64, String)>("test", &[RECORD_FORMAT, 0xff, 0xff]).is_err());
    }
}
