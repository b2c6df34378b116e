//! Helpers shared by the Redis store's test files.

#![allow(dead_code, unreachable_pub)]

use std::time::{SystemTime, UNIX_EPOCH};

use sessionguard_core::{StoreError, Timestamp, TokenId};
use sessionguard_store_redis::{BackendError, RedisConfig};

/// A multi-threaded runtime with two workers, as the store runs in the server.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The defaults for `urls`, under a fresh key prefix of the test's own.
pub fn config(urls: Vec<String>) -> RedisConfig {
    let mut c = RedisConfig::new(urls);
    c.prefix = format!("t{}", TokenId::random());
    c
}

/// The wall clock, as a timestamp.
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    Timestamp::from_millis(i64::try_from(ms).unwrap())
}

/// The backend error behind a `StoreError`, if it is this crate's.
pub fn backend_error(e: &StoreError) -> Option<&BackendError> {
    match e {
        StoreError::Backend(b) => b.downcast_ref::<BackendError>(),
        _ => None,
    }
}
