//! The shared store conformance suite, run against [`SqliteStore`].

use std::path::Path;

use sessionguard_store_sqlite::SqliteStore;

/// A fresh store in its own directory under cargo's per-target temp dir. The
/// directory is kept (not removed) because the store outlives this function;
/// `cargo clean` removes it.
async fn make_store() -> SqliteStore {
    let dir = tempfile::Builder::new()
        .prefix("conformance-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("cargo's target temp dir is writable")
        .keep();
    SqliteStore::open(dir.join("sessionguard.db")).expect("a fresh store opens")
}

sessionguard_test_kit::store_conformance!(make_store);

async fn open_at(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir.join("sessionguard.db")).unwrap()
}

sessionguard_test_kit::durable_store_conformance!(open_at);
