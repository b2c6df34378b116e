//! The store conformance suite: every sessionguard backend must pass it.
//!
//! Each case exercises one clause of the [`Store`] contract, including the atomic
//! ones under concurrency. A backend crate runs the whole suite with one line:
//!
//! ```ignore
//! async fn make_store() -> MyStore { /* a fresh, empty store */ }
//! sessionguard_test_kit::store_conformance!(make_store);
//!
//! // Backends that promise durability also run:
//! async fn open_at(dir: &std::path::Path) -> MyStore { /* open the store kept in dir */ }
//! sessionguard_test_kit::durable_store_conformance!(open_at);
//! ```
//!
//! The macros expand to one `#[test]` per case, so a failure names the clause.

pub mod cases;
pub mod durable;
pub mod fixtures;
pub mod instrumented;
pub mod policy_cases;
pub mod redis;
pub mod throttle_cases;

pub use instrumented::Instrumented;

use std::future::Future;

#[doc(hidden)]
pub use sessionguard_core::Store;

/// Runs a case on a fresh multi-threaded runtime (two workers, so concurrency
/// cases really interleave).
pub fn run<F: Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime can be built in tests")
        .block_on(f);
}

/// Expands to one test per conformance case, each on a store from `$make`
/// (an `async fn() -> impl Store` returning a fresh, empty store).
#[macro_export]
macro_rules! store_conformance {
    ($make:path) => {
        $crate::__cases!(
            store_conformance, $make, cases;
            insert_then_load_round_trips,
            load_of_unknown_id_is_none,
            insert_never_overwrites,
            insert_with_stale_epoch_is_refused,
            touch_extends_but_never_shortens,
            touch_never_revives_a_revoked_session,
            touch_of_unknown_id_is_a_no_op,
            revoke_first_reason_wins,
            revoke_user_bumps_epoch_with_reason,
            revoke_user_keeps_only_the_named_live_session_of_that_user,
            epoch_bumps_accumulate,
            list_is_per_user_and_includes_ended_records,
            purge_removes_exactly_records_ended_by_cutoff,
            users_are_found_by_exact_username_and_by_id,
            usernames_and_user_ids_are_unique,
            set_password_swaps_hash_and_bumps_epoch,
            sidecar_user_has_epoch_without_credentials,
            concurrent_revokes_of_one_session_have_one_winner,
            concurrent_epoch_bumps_are_never_lost,
            concurrent_user_creation_has_one_winner,
            password_change_is_never_seen_half_done,
            keep_during_revoke_all_is_atomic,
            refresh_round_trips_and_is_never_overwritten,
            refresh_tokens_keep_the_client_they_were_issued_to,
            rotate_refresh_happens_exactly_once,
            concurrent_rotations_of_one_refresh_token_have_one_winner,
            purge_takes_refresh_tokens_with_their_session,
            api_token_round_trips_and_is_listed_per_user,
            api_token_with_stale_epoch_is_refused,
            api_token_revoke_and_touch,
            epoch_bump_ends_api_tokens_only_when_asked,
            purge_removes_ended_api_tokens,
            a_working_store_is_ready,
        );
        $crate::__cases!(
            policy_conformance, $make, policy_cases;
            limit_evicts_the_least_recently_used,
            limit_rejects_new_and_changes_nothing,
            limit_counts_only_live_sessions,
            simultaneous_logins_never_exceed_the_limit,
            rotate_session_token_is_a_compare_and_set,
            simultaneous_rotations_have_one_winner,
            user_access_round_trips_and_counts_privilege_changes,
            audit_events_append_list_and_purge,
        );
        $crate::__cases!(
            throttle_conformance, $make, throttle_cases;
            throttle_counts_then_makes_attempts_wait,
            throttle_does_not_create_records_unless_asked,
            throttle_settles_forget_release_and_trust,
            throttle_records_are_forgotten_after_their_window,
            simultaneous_attempts_never_pass_the_limit,
        );
    };
}

/// Expands to one test per durability case. `$open` is an
/// `async fn(&std::path::Path) -> impl Store` that opens the store kept in a
/// directory; each case opens, drops and reopens it.
#[macro_export]
macro_rules! durable_store_conformance {
    ($open:path) => {
        $crate::__durable_cases!(
            durable_store_conformance, $open;
            everything_acknowledged_survives_reopen,
            purge_survives_reopen,
            touch_survives_clean_reopen_and_never_moves_backwards,
            tokens_survive_reopen,
            policy_state_survives_reopen,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __cases {
    ($module:ident, $make:path, $cases:ident; $($case:ident),* $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $case() {
                    $crate::run(async { $crate::$cases::$case($make().await).await });
                }
            )*
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __durable_cases {
    ($module:ident, $open:path; $($case:ident),* $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $case() {
                    $crate::run(async {
                        let dir = $crate::fixtures::TempDir::new();
                        $crate::durable::$case(dir.path().to_path_buf(), |p: ::std::path::PathBuf| async move { $open(&p).await }).await;
                    });
                }
            )*
        }
    };
}

/// Runs every case of [`store_conformance!`] (the `cases`, `policy_cases` and
/// `throttle_cases`)
/// one after another inside the calling test, each on a fresh store from `$make`
/// (an expression callable as `$make()` that returns a future of a fresh, empty
/// store), and fails at the end naming every case that failed.
///
/// For backends whose fixture is expensive to start (a Redis Cluster): test
/// runners such as nextest run each test in its own process, so one test per case
/// would start one fixture per case. Each case still runs on its own runtime and
/// its own store (give each store its own key space, e.g. a fresh prefix); a
/// case's panic is caught, so the others still run.
///
/// ```ignore
/// #[test]
/// fn conformance_on_my_backend() {
///     let server = MyServer::start();
///     let url = server.url();
///     sessionguard_test_kit::store_conformance_sequential!(|| MyStore::fresh(&url));
/// }
/// ```
#[macro_export]
macro_rules! store_conformance_sequential {
    ($make:expr) => {
        $crate::__sequential_cases!(@run $make)
    };
}

/// The names (`cases::…`, `policy_cases::…`) of the cases that
/// [`store_conformance_sequential!`] runs, in its order: lets a test check that the
/// sequential list and [`store_conformance!`] have not drifted apart.
#[macro_export]
macro_rules! store_conformance_case_names {
    () => {
        $crate::__sequential_cases!(@names)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __sequential_cases {
    ([@names]; $($module:ident: [$($case:ident),* $(,)?]),*) => {
        &[$($(concat!(stringify!($module), "::", stringify!($case)),)*)*] as &[&str]
    };
    ([@run $make:expr]; $($module:ident: [$($case:ident),* $(,)?]),*) => {{
        let make = $make;
        let mut failed: ::std::vec::Vec<&'static str> = ::std::vec::Vec::new();
        let mut total = 0usize;
        $($(
            total += 1;
            let name = concat!(stringify!($module), "::", stringify!($case));
            let started = ::std::time::Instant::now();
            let outcome = ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| {
                $crate::run(async { $crate::$module::$case(make().await).await })
            }));
            let verdict = if outcome.is_ok() { "ok" } else { "FAILED" };
            eprintln!("{name} ... {verdict} ({:.2?})", started.elapsed());
            if outcome.is_err() {
                failed.push(name);
            }
        )*)*
        assert!(
            failed.is_empty(),
            "{} of {} conformance cases failed: {}",
            failed.len(),
            total,
            failed.join(", ")
        );
    }};
    (@$how:ident $($arg:tt)*) => {
        $crate::__sequential_cases!(
            [@$how $($arg)*];
            cases: [
                insert_then_load_round_trips,
                load_of_unknown_id_is_none,
                insert_never_overwrites,
                insert_with_stale_epoch_is_refused,
                touch_extends_but_never_shortens,
                touch_never_revives_a_revoked_session,
                touch_of_unknown_id_is_a_no_op,
                revoke_first_reason_wins,
                revoke_user_bumps_epoch_with_reason,
                revoke_user_keeps_only_the_named_live_session_of_that_user,
                epoch_bumps_accumulate,
                list_is_per_user_and_includes_ended_records,
                purge_removes_exactly_records_ended_by_cutoff,
                users_are_found_by_exact_username_and_by_id,
                usernames_and_user_ids_are_unique,
                set_password_swaps_hash_and_bumps_epoch,
                sidecar_user_has_epoch_without_credentials,
                concurrent_revokes_of_one_session_have_one_winner,
                concurrent_epoch_bumps_are_never_lost,
                concurrent_user_creation_has_one_winner,
                password_change_is_never_seen_half_done,
                keep_during_revoke_all_is_atomic,
                refresh_round_trips_and_is_never_overwritten,
                refresh_tokens_keep_the_client_they_were_issued_to,
                rotate_refresh_happens_exactly_once,
                concurrent_rotations_of_one_refresh_token_have_one_winner,
                purge_takes_refresh_tokens_with_their_session,
                api_token_round_trips_and_is_listed_per_user,
                api_token_with_stale_epoch_is_refused,
                api_token_revoke_and_touch,
                epoch_bump_ends_api_tokens_only_when_asked,
                purge_removes_ended_api_tokens,
                a_working_store_is_ready,
            ],
            policy_cases: [
                limit_evicts_the_least_recently_used,
                limit_rejects_new_and_changes_nothing,
                limit_counts_only_live_sessions,
                simultaneous_logins_never_exceed_the_limit,
                rotate_session_token_is_a_compare_and_set,
                simultaneous_rotations_have_one_winner,
                user_access_round_trips_and_counts_privilege_changes,
                audit_events_append_list_and_purge,
            ],
            throttle_cases: [
                throttle_counts_then_makes_attempts_wait,
                throttle_does_not_create_records_unless_asked,
                throttle_settles_forget_release_and_trust,
                throttle_records_are_forgotten_after_their_window,
                simultaneous_attempts_never_pass_the_limit,
            ]
        )
    };
}
