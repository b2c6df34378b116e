//! Who a session's user is, beyond the id: the username and the roles that
//! front doors hand to apps (forward-auth's identity headers, the middleware's
//! role guard).
//!
//! Checking a session reads the session and its user's epoch in one store call;
//! the username and roles live elsewhere. So that a check followed by
//! [`Engine::identity`] still costs one store read, the engine remembers each
//! user's identity under the user's privilege count ([`UserEpoch::privileges`]),
//! which the check read together with the session
//! ([`ValidSession::user_privileges`]). Every change of a user's profile or
//! roles increments that count in the same atomic step as the change
//! ([`crate::Store::set_user_access`]), on every node, so a remembered identity
//! whose count is the check's is the current one; any other count is read
//! again. Usernames never change once a user is created.
//!
//! [`UserEpoch::privileges`]: crate::UserEpoch::privileges
//! [`ValidSession::user_privileges`]: super::ValidSession::user_privileges

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use crate::clock::Clock;
use crate::model::UserId;
use crate::store::Store;

use super::{Engine, Result};

/// How many users' identities an engine remembers (about 100 bytes each
/// plus the names: some 10 MiB when full). Past it, one remembered user is
/// forgotten for each new one.
pub const IDENTITY_MEMO_CAPACITY: usize = 100_000;

/// A user's username (absent for users whose credentials live in the app:
/// sidecar users) and roles (sorted, without duplicates).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    username: Option<String>,
    roles: Vec<String>,
}

impl Identity {
    /// An identity with this username and these roles (sorted and deduplicated
    /// here), for identities learnt elsewhere (a sessionguard server's answer).
    pub fn new(username: Option<String>, mut roles: Vec<String>) -> Self {
        roles.sort_unstable();
        roles.dedup();
        Identity { username, roles }
    }

    /// The username, if the user has credentials here.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The roles assigned to the user.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// Whether the user holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles
            .binary_search_by(|r| r.as_str().cmp(role))
            .is_ok()
    }
}

/// Remembered identities, each under the privilege count it was read at.
pub(super) struct IdentityMemo {
    capacity: usize,
    entries: RwLock<HashMap<UserId, (u64, Arc<Identity>)>>,
}

impl IdentityMemo {
    pub(super) fn new(capacity: usize) -> Self {
        IdentityMemo {
            capacity,
            entries: RwLock::new(HashMap::new()),
        }
    }

    fn get(&self, user: &UserId, privileges: u64) -> Option<Arc<Identity>> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        match entries.get(user) {
            Some((count, identity)) if *count == privileges => Some(Arc::clone(identity)),
            _ => None,
        }
    }

    fn insert(&self, user: &UserId, privileges: u64, identity: Arc<Identity>) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(user) {
            let any = entries.keys().next().cloned();
            if let Some(any) = any {
                entries.remove(&any);
            }
        }
        match entries.get_mut(user) {
            // A newer count already remembered (another request read later) stays.
            Some((count, _)) if *count > privileges => {}
            Some(entry) => *entry = (privileges, identity),
            None => {
                entries.insert(user.clone(), (privileges, identity));
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl fmt::Debug for IdentityMemo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityMemo")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

impl<S: Store, C: Clock> Engine<S, C> {
    /// The username and roles of `user`, whose privilege count a check just read
    /// as `privileges` ([`ValidSession::user_privileges`],
    /// [`ValidApiToken::user_privileges`]). Remembered under that count, so a
    /// check and its identity cost one store read until the user's profile or
    /// roles change (see the [module documentation](self)).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use sessionguard_core::{ClientInfo, Engine, MemoryStore, Policy, UserAccess, UserId};
    ///
    /// let engine = Engine::new(MemoryStore::new(), Policy::default()).unwrap();
    /// let user = UserId::new("alice").unwrap();
    /// engine.update_user_access(&user, UserAccess::new(None, vec!["editor".into()]).unwrap()).await.unwrap();
    /// let issued = engine.create_session(&user, 0, ClientInfo::default()).await.unwrap();
    /// let who = engine.identity(&user, issued.session.user_privileges()).await.unwrap();
    /// assert!(who.has_role("editor"));
    /// assert_eq!(who.username(), None); // a sidecar user: no credentials here
    /// # });
    /// ```
    ///
    /// [`ValidSession::user_privileges`]: super::ValidSession::user_privileges
    /// [`ValidApiToken::user_privileges`]: super::ValidApiToken::user_privileges
    pub async fn identity(&self, user: &UserId, privileges: u64) -> Result<Arc<Identity>> {
        if let Some(known) = self.identities.get(user, privileges) {
            return Ok(known);
        }
        // Read after the count: a change landing in between gives newer roles
        // under the older count, never older roles under a newer one.
        let access = self.store.user_access(user).await?;
        let username = self.store.get_user(user).await?.map(|u| u.username);
        let identity = Arc::new(Identity::new(username, access.roles));
        self.identities
            .insert(user, privileges, Arc::clone(&identity));
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: &str) -> Arc<Identity> {
        Arc::new(Identity {
            username: None,
            roles: vec![role.to_owned()],
        })
    }

    #[test]
    fn an_identity_is_found_only_under_its_count() {
        let memo = IdentityMemo::new(10);
        let alice = UserId::new("alice").unwrap();
        memo.insert(&alice, 3, who("admin"));
        assert!(memo.get(&alice, 3).unwrap().has_role("admin"));
        assert!(memo.get(&alice, 4).is_none());
        assert!(memo.get(&alice, 2).is_none());
    }

    #[test]
    fn an_older_count_never_replaces_a_newer_one() {
        let memo = IdentityMemo::new(10);
        let alice = UserId::new("alice").unwrap();
        memo.insert(&alice, 4, who("reader"));
        memo.insert(&alice, 3, who("admin"));
        assert!(memo.get(&alice, 4).unwrap().has_role("reader"));
        memo.insert(&alice, 5, who("editor"));
        assert!(memo.get(&alice, 5).unwrap().has_role("editor"));
    }

    #[test]
    fn the_memo_is_bounded() {
        let memo = IdentityMemo::new(2);
        for name in ["a", "b", "c", "d"] {
            memo.insert(&UserId::new(name).unwrap(), 0, who("x"));
        }
        assert_eq!(memo.len(), 2);
        assert!(memo.get(&UserId::new("d").unwrap(), 0).is_some());
        let off = IdentityMemo::new(0);
        off.insert(&UserId::new("a").unwrap(), 0, who("x"));
        assert_eq!(off.len(), 0);
    }

    #[test]
    fn roles_are_looked_up_exactly() {
        let id = Identity::new(
            Some("alice".into()),
            vec!["editor".into(), "admin".into(), "editor".into()],
        );
        assert_eq!(id.roles(), ["admin", "editor"]);
        assert!(id.has_role("editor"));
        assert!(!id.has_role("Editor"));
        assert!(!id.has_role("edit"));
        assert_eq!(id.username(), Some("alice"));
    }
}
