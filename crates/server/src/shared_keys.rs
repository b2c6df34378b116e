//! Signing keys shared by every node of a deployment through the store.
//!
//! With the embedded store, one server owns its key file ([`crate::keys`]). With
//! Redis, several nodes sign and verify access tokens, so they keep one key set
//! in Redis, as the same JSON document the key file holds, and change it only by
//! compare-and-set:
//!
//! - at start, a node loads the set, or creates it if there is none (of nodes
//!   starting together, one creation wins and the others load it);
//! - the upkeep ([`crate::keys::KeyKeeper`]) reloads the set when it changed, and
//!   rotates or prunes it by compare-and-set against the version it loaded: of
//!   nodes rotating at once, one wins and the others load its set next time;
//! - a node that meets an access token signed by a key it does not know yet (just
//!   rotated in by another node) reloads the set at once, at most once a second,
//!   before refusing the token ([`crate::AppState::verify_access_token`]).
//!
//! The document holds private keys: Redis is as trusted as the key file (keep it
//! on a private network, with authentication and TLS where the network is not).

use std::future::Future;
use std::pin::Pin;

use sessionguard_core::StoreError;
use sessionguard_store_redis::RedisStore;
use zeroize::Zeroizing;

/// A boxed future, for the object-safe [`SharedKeys`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the shared key set lives: one JSON document, changed by compare-and-set.
pub trait SharedKeys: Send + Sync + 'static {
    /// The current document, or `None` if there is none yet.
    fn load(&self) -> BoxFuture<'_, Result<Option<Zeroizing<String>>, StoreError>>;

    /// Replaces the document by `new` if it is still `expected` (`None`: absent).
    /// Returns whether it did. Durable.
    fn swap<'a>(
        &'a self,
        expected: Option<&'a str>,
        new: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
}

impl SharedKeys for RedisStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<Zeroizing<String>>, StoreError>> {
        Box::pin(async move { Ok(self.load_signing_keys().await?.map(Zeroizing::new)) })
    }

    fn swap<'a>(
        &'a self,
        expected: Option<&'a str>,
        new: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.swap_signing_keys(expected, new))
    }
}
