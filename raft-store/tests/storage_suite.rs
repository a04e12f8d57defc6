//! openraft's storage conformance suite, run against both backends.
#![allow(clippy::unwrap_used)] // reason: helpers of tests; a failed unwrap is a failed test.

use mfplane_raft_store::{LogStore, MemoryBackend, Runtime, StateMachineStore, TypeConfig};
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use tempfile::TempDir;

struct MemoryStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, MemoryBackend> for MemoryStores {
    async fn build(
        &self,
    ) -> Result<(MemoryBackend, LogStore, StateMachineStore), StorageError<TypeConfig>> {
        let backend = MemoryBackend::new();
        let (log, sm) = mfplane_raft_store::open_memory(&backend);
        Ok((backend, log, sm))
    }
}

struct SledStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for SledStores {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<TypeConfig>> {
        let dir =
            tempfile::tempdir().map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
        let (log, sm) = mfplane_raft_store::open_sled(dir.path().join("data"))
            .map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_backend_passes_openraft_suite() {
    Runtime::scope(1, Suite::test_all(MemoryStores))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_backend_passes_openraft_suite() {
    Runtime::scope(2, Suite::test_all(SledStores))
        .await
        .unwrap();
}
