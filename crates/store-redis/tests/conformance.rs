//! The shared store conformance suite, run against a single `redis-server` and
//! against a Redis Cluster of three masters with one replica each. Each runs every
//! case in one test (starting a cluster per case would dominate the run), each
//! case on a fresh store under its own key prefix.

use sessionguard_core::TokenId;
use sessionguard_store_redis::{RedisConfig, RedisStore};
use sessionguard_test_kit::redis::{RedisCluster, RedisServer};

/// A store under a fresh random prefix, so cases never see each other's keys.
async fn fresh(urls: Vec<String>) -> RedisStore {
    let mut config = RedisConfig::new(urls);
    config.prefix = format!("t{}", TokenId::random());
    RedisStore::connect(config)
        .await
        .expect("the store connects to the test Redis")
}

#[test]
fn conformance_on_a_single_redis_server() {
    let server = RedisServer::start();
    let url = server.url();
    sessionguard_test_kit::store_conformance_sequential!(|| fresh(vec![url.clone()]));
}

#[test]
fn conformance_on_a_redis_cluster_with_replicas() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    sessionguard_test_kit::store_conformance_sequential!(|| fresh(urls.clone()));
}

/// The sequential list runs exactly the cases of `store_conformance!`.
#[test]
fn the_sequential_suite_runs_every_conformance_case() {
    let source = include_str!("../../test-kit/src/lib.rs");
    let start = source
        .find("macro_rules! store_conformance {")
        .expect("the test kit defines store_conformance!");
    let end = start
        + source[start..]
            .find("\n}\n")
            .expect("store_conformance! ends");
    let mut expected = Vec::new();
    for block in source[start..end].split("$crate::__cases!(").skip(1) {
        let (head, list) = block
            .split_once(';')
            .expect("a module, a maker, then cases");
        let module = head.split(',').nth(2).expect("the cases' module").trim();
        for case in list.split(')').next().unwrap_or_default().split(',') {
            let case = case.trim();
            if !case.is_empty() {
                expected.push(format!("{module}::{case}"));
            }
        }
    }
    let listed: Vec<String> = sessionguard_test_kit::store_conformance_case_names!()
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    assert!(expected.len() > 30, "parsed {expected:?}");
    assert_eq!(listed, expected);
}
