//! The memory store against the shared store conformance suite.

use sessionguard_core::MemoryStore;

async fn make_store() -> MemoryStore {
    MemoryStore::new()
}

sessionguard_test_kit::store_conformance!(make_store);
