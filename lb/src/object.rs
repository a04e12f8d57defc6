//! The LB eBPF object, embedded at build time by `build.rs`.

use crate::error::{Error, Result};

/// The object bytes, 8-byte aligned as the ELF parser wants them.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mfplane-lb.bpf.o"));

/// Name of the XDP program (its function name) inside the object.
pub const PROGRAM_NAME: &str = "mfplane_lb";

/// Name of the empty XDP program in the same object: the benchmark's baseline.
pub const EMPTY_PROGRAM_NAME: &str = "mfplane_lb_empty";

/// The embedded object, or [`Error::ObjectMissing`] if this build skipped it.
pub fn embedded() -> Result<&'static [u8]> {
    if OBJECT.is_empty() {
        return Err(Error::ObjectMissing);
    }
    Ok(OBJECT)
}
