//! The change feed's waiting rules over a real (SQLite) store: a commit through this service
//! wakes a long poll by itself; a commit through another service on the same store (another
//! node) arrives through the periodic re-check, and only through it; retention is a rule of the
//! injected clock.

use std::sync::Arc;
use std::time::{Duration, Instant};
use strongbox_crypto::{Keyring, RootKey};
use strongbox_domain::audit::{AuditWriter, Operation, RequestInfo};
use strongbox_domain::changes::{ChangeNotifier, ChangesRequest};
use strongbox_domain::secrets::SecretService;
use strongbox_domain::vaults::{NewVault, create_vault};
use strongbox_domain::{
    Caller, DomainError, FeedGrant, Grant, ManualClock, SecretAction, VaultAccess, authorize,
    authorize_feed,
};
use strongbox_store::{AccessPolicyRow, Store, VaultRow};
use strongbox_types::secrets::SecretSetParameters;

/// One day longer than anyone waits in these tests: only a signal can wake such a poll.
const NEVER: Duration = Duration::from_secs(86_400);

struct World {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    keyring: Arc<Keyring>,
    audit: AuditWriter,
    vault: Arc<VaultRow>,
}

impl World {
    /// A service on the shared store, as one server node would have.
    fn node(&self, recheck: Duration) -> Arc<SecretService> {
        Arc::new(
            SecretService::new(
                self.store.clone(),
                self.keyring.clone(),
                self.clock.clone(),
                self.audit.clone(),
            )
            .with_change_notifier(Arc::new(ChangeNotifier::new(16, recheck))),
        )
    }

    async fn access(&self) -> VaultAccess {
        VaultAccess::Policies(
            self.store
                .list_access_policies(&self.vault.id)
                .await
                .unwrap(),
        )
    }

    async fn feed(&self) -> FeedGrant {
        authorize_feed(self.vault.clone(), &self.access().await, &caller()).unwrap()
    }

    async fn setter(&self) -> Grant {
        authorize(
            self.vault.clone(),
            &self.access().await,
            &caller(),
            SecretAction::Set,
            None,
        )
        .unwrap()
    }
}

fn caller() -> Caller {
    Caller {
        object_id: "admin".into(),
        tenant_id: "t1".into(),
        app_id: "app".into(),
    }
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        strongbox_store_sqlite::SqliteStore::open(&format!(
            "sqlite:{}",
            dir.path().join("s.db").display()
        ))
        .await
        .unwrap(),
    );
    let root = RootKey::from_passphrase(b"test passphrase", b"0123456789abcdef").unwrap();
    let keyring = Arc::new(Keyring::open(&root, &[Keyring::new_data_key(&root, 1)]).unwrap());
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let (audit, _task) = AuditWriter::start(store.clone());
    let v = create_vault(
        &*store,
        &*clock,
        NewVault {
            name: "feed",
            tenant_id: "t1",
            subscription_id: "sub",
            resource_group: "rg",
            location: "local",
            retention_days: 7,
            purge_protection: false,
            enable_rbac: false,
        },
    )
    .await
    .unwrap();
    store
        .set_access_policy(AccessPolicyRow {
            vault_id: v.id.clone(),
            object_id: "admin".into(),
            secret_permissions: vec!["get".into(), "set".into()],
        })
        .await
        .unwrap();
    World {
        _dir: dir,
        store,
        clock,
        keyring,
        audit,
        vault: Arc::new(v),
    }
}

fn info(op: Operation) -> RequestInfo {
    RequestInfo {
        operation: op,
        base_url: "https://feed.vault.localhost".into(),
        api_version: "7.6".into(),
        correlation_id: "c".into(),
        caller_ip: "127.0.0.1".into(),
        client_info: "test".into(),
        request_uri: "/changes".into(),
        started: Instant::now(),
    }
}

fn set(value: &str) -> SecretSetParameters {
    serde_json::from_value(serde_json::json!({"value": value})).unwrap()
}

fn follow(cursor: &str, timeout_secs: u64) -> ChangesRequest {
    ChangesRequest::parse(Some(cursor), Some(&timeout_secs.to_string()), None).unwrap()
}

async fn head(w: &World, node: &SecretService) -> String {
    let req = ChangesRequest::parse(None, None, None).unwrap();
    node.changes(&w.feed().await, &info(Operation::SecretChangesGet), req)
        .await
        .unwrap()
        .cursor
}

/// Starts a long poll on `node`; returns it with the time it started.
fn poll(
    node: &Arc<SecretService>,
    feed: FeedGrant,
    cursor: String,
    timeout_secs: u64,
) -> tokio::task::JoinHandle<(strongbox_types::changes::ChangesPage, Duration)> {
    let node = node.clone();
    tokio::spawn(async move {
        let t = Instant::now();
        let page = node
            .changes(
                &feed,
                &info(Operation::SecretChangesGet),
                follow(&cursor, timeout_secs),
            )
            .await
            .unwrap();
        (page, t.elapsed())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_commit_wakes_a_long_poll_without_any_recheck() {
    let w = world().await;
    let node = w.node(NEVER);
    let start = head(&w, &node).await;
    let waiting = poll(&node, w.feed().await, start, 30);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());
    node.set(
        &w.setter().await,
        &info(Operation::SecretSet),
        "a",
        set("x"),
    )
    .await
    .unwrap();
    let (page, waited) = waiting.await.unwrap();
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert_eq!(page.value.len(), 1);
    assert_eq!(page.value[0].name, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_through_another_node_arrives_by_the_recheck_only() {
    let w = world().await;
    let other = w.node(NEVER);

    // Without re-checks the poll sees nothing until its timeout.
    let deaf = w.node(NEVER);
    let start = head(&w, &deaf).await;
    let waiting = poll(&deaf, w.feed().await, start.clone(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    other
        .set(
            &w.setter().await,
            &info(Operation::SecretSet),
            "a",
            set("x"),
        )
        .await
        .unwrap();
    let (page, waited) = waiting.await.unwrap();
    assert!(page.value.is_empty() && waited >= Duration::from_millis(1900));
    assert_eq!(page.cursor, start);

    // With them, it arrives.
    let listening = w.node(Duration::from_millis(200));
    let cursor = head(&w, &listening).await;
    let waiting = poll(&listening, w.feed().await, cursor, 30);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished());
    other
        .set(
            &w.setter().await,
            &info(Operation::SecretSet),
            "b",
            set("y"),
        )
        .await
        .unwrap();
    let (page, waited) = waiting.await.unwrap();
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert_eq!(page.value.len(), 1);
    assert_eq!(page.value[0].name, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_bounded_and_closing_answers_them() {
    let w = world().await;
    let node = Arc::new(
        SecretService::new(
            w.store.clone(),
            w.keyring.clone(),
            w.clock.clone(),
            w.audit.clone(),
        )
        .with_change_notifier(Arc::new(ChangeNotifier::new(1, NEVER))),
    );
    let start = head(&w, &node).await;
    let first = poll(&node, w.feed().await, start.clone(), 30);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = node
        .changes(
            &w.feed().await,
            &info(Operation::SecretChangesGet),
            follow(&start, 30),
        )
        .await;
    assert!(matches!(second, Err(DomainError::Throttled(_))));
    // A poll that does not wait needs no place.
    node.changes(
        &w.feed().await,
        &info(Operation::SecretChangesGet),
        follow(&start, 0),
    )
    .await
    .unwrap();
    node.change_notifier().close();
    let (page, waited) = first.await.unwrap();
    assert!(page.value.is_empty() && waited < Duration::from_secs(10));
}

#[tokio::test]
async fn changes_expire_after_seven_days_of_the_clock() {
    let w = world().await;
    let node = w.node(NEVER);
    let start = head(&w, &node).await;
    node.set(
        &w.setter().await,
        &info(Operation::SecretSet),
        "a",
        set("x"),
    )
    .await
    .unwrap();
    w.clock.advance_secs(7 * 86_400);
    assert_eq!(
        node.prune_changes().await.unwrap(),
        0,
        "exactly 7 days: kept"
    );
    let page = node
        .changes(
            &w.feed().await,
            &info(Operation::SecretChangesGet),
            follow(&start, 0),
        )
        .await
        .unwrap();
    assert_eq!(page.value.len(), 1);
    w.clock.advance_secs(1);
    assert_eq!(node.prune_changes().await.unwrap(), 1);
    let gone = node
        .changes(
            &w.feed().await,
            &info(Operation::SecretChangesGet),
            follow(&start, 0),
        )
        .await;
    assert!(matches!(gone, Err(DomainError::CursorExpired(_))));
    assert_eq!(
        head(&w, &node).await,
        page.cursor,
        "the floor is the new head"
    );
}
