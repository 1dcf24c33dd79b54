//! The vault change feed (`GET /changes`) on the real binary: head then follow, long polls woken
//! by a commit, every kind of change, paging, per-caller filtering and refusals, bad and stale
//! cursors, auditing, and a change made through another server node on the same PostgreSQL
//! database reaching a long poll.

use crate::cli_support::advance_clock;
use crate::common::*;
use crate::rbac_matrix::{assign, create_vault, management_token, principal, role_id};
use reqwest::Method;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use strongbox_types::changes::{ChangeKind, ChangesPage};

/// A data-plane client for one vault host of `server`.
struct Feed {
    http: reqwest::Client,
    base: String,
}

impl Feed {
    fn new(server: &Server, vault: &str) -> Feed {
        let ca = std::fs::read(server.creds["ca_cert"].as_str().unwrap()).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
        let host = format!("{vault}.vault.localhost");
        Feed {
            http: reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                .resolve(&host, addr)
                .timeout(Duration::from_secs(90))
                .build()
                .unwrap(),
            base: format!("https://{host}:{}", server.port),
        }
    }

    /// `GET /changes?{query}&api-version=7.6`.
    async fn get(&self, token: &str, query: &str) -> (u16, Value) {
        let sep = if query.is_empty() { "" } else { "&" };
        let resp = self
            .http
            .get(format!("{}/changes?{query}{sep}api-version=7.6", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn page(&self, token: &str, query: &str) -> ChangesPage {
        let (s, v) = self.get(token, query).await;
        assert_eq!(s, 200, "{query}: {v}");
        serde_json::from_value(v).unwrap()
    }

    async fn head(&self, token: &str) -> String {
        let page = self.page(token, "").await;
        assert!(page.value.is_empty());
        page.cursor
    }

    /// A data-plane call that must succeed.
    async fn ok(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> Value {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut req = self
            .http
            .request(
                method.clone(),
                format!("{}{path}{sep}api-version=7.6", self.base),
            )
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let v = resp.json().await.unwrap_or(Value::Null);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }
}

fn version_of(bundle: &Value) -> String {
    bundle["id"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_then_follow_every_kind_of_change_with_paging() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let token = server.admin_token().await;
    let feed = Feed::new(&server, "dev");

    // The typed client's builder reaches the same route.
    let client = strongbox_client::Client::new(
        strongbox_client::Credentials::from_file(&dir.path().join("dev-credentials.json")).unwrap(),
    )
    .unwrap();
    let vault = server.vault_url("dev");
    let head: ChangesPage = serde_json::from_value(
        client
            .json(&strongbox_client::secrets::changes(&vault, None, 0, None))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(head.value, vec![]);
    let start = feed.head(&token).await;
    assert_eq!(head.cursor, start, "nothing changed in between");
    assert!(start.parse::<i64>().unwrap() >= 0);

    let set = feed
        .ok(
            &token,
            Method::PUT,
            "/secrets/Feed-A",
            Some(json!({"value": "one"})),
        )
        .await;
    let v1 = version_of(&set);
    feed.ok(
        &token,
        Method::PATCH,
        &format!("/secrets/Feed-A/{v1}"),
        Some(json!({"attributes": {"enabled": false}})),
    )
    .await;
    feed.ok(&token, Method::DELETE, "/secrets/Feed-A", None)
        .await;
    feed.ok(&token, Method::POST, "/deletedsecrets/Feed-A/recover", None)
        .await;
    let blob = feed
        .ok(&token, Method::POST, "/secrets/Feed-A/backup", None)
        .await;
    feed.ok(&token, Method::DELETE, "/secrets/Feed-A", None)
        .await;
    feed.ok(&token, Method::DELETE, "/deletedsecrets/Feed-A", None)
        .await;
    feed.ok(
        &token,
        Method::POST,
        "/secrets/restore",
        Some(json!({"value": blob["value"]})),
    )
    .await;
    // A secret named "changes" is a secret like any other, not the feed.
    let named = feed
        .ok(
            &token,
            Method::PUT,
            "/secrets/changes",
            Some(json!({"value": "not-a-feed"})),
        )
        .await;
    let got = feed.ok(&token, Method::GET, "/secrets/changes", None).await;
    assert_eq!(got["value"], "not-a-feed");

    let all = feed
        .page(&token, &format!("cursor={start}&timeout=0"))
        .await;
    use ChangeKind::*;
    let seen: Vec<_> = all
        .value
        .iter()
        .map(|e| (e.change, e.name.as_str(), e.version.clone(), e.enabled))
        .collect();
    let v = |s: &str| Some(s.to_string());
    assert_eq!(
        seen,
        [
            (NewVersion, "Feed-A", v(&v1), Some(true)),
            (Updated, "Feed-A", v(&v1), Some(false)),
            (Deleted, "Feed-A", None, None),
            (Recovered, "Feed-A", v(&v1), Some(false)),
            (Deleted, "Feed-A", None, None),
            (Purged, "Feed-A", None, None),
            (Restored, "Feed-A", v(&v1), Some(false)),
            (NewVersion, "changes", Some(version_of(&named)), Some(true)),
        ]
    );
    assert!(all.value.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(all.value.iter().all(|e| e.time_ms > 1_600_000_000_000));
    assert_eq!(all.cursor, all.value.last().unwrap().seq.to_string());
    // Following from the new cursor: nothing more, and the cursor stays.
    let after = feed
        .page(&token, &format!("cursor={}&timeout=0", all.cursor))
        .await;
    assert_eq!((after.value, after.cursor), (vec![], all.cursor.clone()));
    assert_eq!(feed.head(&token).await, all.cursor);

    // maxresults pages through the same entries.
    let mut paged = Vec::new();
    let mut cursor = start.clone();
    loop {
        let page = feed
            .page(&token, &format!("cursor={cursor}&timeout=0&maxresults=3"))
            .await;
        assert!(page.value.len() <= 3);
        if page.value.is_empty() {
            break;
        }
        cursor = page.cursor;
        paged.extend(page.value);
    }
    assert_eq!(paged, all.value);

    // Every /changes request was audited as SecretChangesGet, and no value reached a record.
    drop(client);
    let mut server = server;
    server.stop();
    let store = strongbox_store_sqlite::SqliteStore::open(&format!(
        "sqlite:{}/strongbox.db",
        dir.path().display()
    ))
    .await
    .unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT operation, record_json FROM audit_records WHERE operation = 'SecretChangesGet'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(rows.len(), 9, "three heads, two follows, four pages");
    let record: Value = serde_json::from_str(&rows[0].1).unwrap();
    assert_eq!(
        (&record["operationName"], &record["resultSignature"]),
        (&json!("SecretChangesGet"), &json!("OK"))
    );
    assert!(rows.iter().all(|(_, r)| !r.contains("not-a-feed")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_wakes_a_waiting_long_poll_and_an_idle_one_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let token = server.admin_token().await;
    let feed = Feed::new(&server, "dev");
    let start = feed.head(&token).await;

    // Nothing happens: the poll answers empty at its timeout, cursor unchanged.
    let t = Instant::now();
    let idle = feed
        .page(&token, &format!("cursor={start}&timeout=1"))
        .await;
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert_eq!((idle.value, idle.cursor), (vec![], start.clone()));

    let waiting = {
        let (http, base, token, start) = (
            feed.http.clone(),
            feed.base.clone(),
            token.clone(),
            start.clone(),
        );
        tokio::spawn(async move {
            let t = Instant::now();
            let page: ChangesPage = http
                .get(format!(
                    "{base}/changes?cursor={start}&timeout=30&api-version=7.6"
                ))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (page, t.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the poll waits for a change");
    let set = feed
        .ok(
            &token,
            Method::PUT,
            "/secrets/wake-up",
            Some(json!({"value": "now"})),
        )
        .await;
    let (page, waited) = waiting.await.unwrap();
    assert!(
        waited < Duration::from_secs(10),
        "a 30 s poll answered after {waited:?}"
    );
    assert_eq!(page.value.len(), 1);
    assert_eq!(
        (
            page.value[0].change,
            page.value[0].name.as_str(),
            page.value[0].version.clone()
        ),
        (ChangeKind::NewVersion, "wake-up", Some(version_of(&set)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_see_only_what_they_may_get() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let admin_id = server.creds["client_id"].as_str().unwrap().to_string();
    let admin_secret = server.creds["client_secret"].as_str().unwrap().to_string();
    let mgmt = management_token(&server, &admin_id, &admin_secret).await;
    let admin = server.admin_token().await;
    let sub = server.creds["subscription_id"].as_str().unwrap();
    let admin_oid = {
        use base64::Engine as _;
        let payload = admin.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        claims["oid"].as_str().unwrap().to_string()
    };

    // An RBAC vault: the admin administers it; "one" may get only the secret "visible".
    let name = format!("feed{}", &uuid_like()[..8]);
    create_vault(dir.path(), &name, true);
    let scope = format!(
        "/subscriptions/{sub}/resourceGroups/strongbox-dev/providers/Microsoft.KeyVault/vaults/{name}"
    );
    let kv_admin = role_id(&server, &mgmt, "Key Vault Administrator").await;
    let user = role_id(&server, &mgmt, "Key Vault Secrets User").await;
    let reader = role_id(&server, &mgmt, "Key Vault Reader").await;
    assign(&server, &mgmt, &scope, &kv_admin, &admin_oid).await;
    let one = principal(&server, dir.path(), "feed-one").await;
    assign(
        &server,
        &mgmt,
        &format!("{scope}/secrets/visible"),
        &user,
        &one.object_id,
    )
    .await;
    let meta = principal(&server, dir.path(), "feed-reader").await;
    assign(&server, &mgmt, &scope, &reader, &meta.object_id).await;
    let nobody = principal(&server, dir.path(), "feed-nobody").await;

    let feed = Feed::new(&server, &name);
    let start = feed.head(&admin).await;
    assert_eq!(feed.head(&one.token).await, start);
    for (who, inner) in [
        (&meta.token, "ForbiddenByRbac"),
        (&nobody.token, "ForbiddenByRbac"),
    ] {
        let (s, v) = feed.get(who, &format!("cursor={start}&timeout=0")).await;
        assert_eq!(
            (s, &v["error"]["code"], &v["error"]["innererror"]["code"]),
            (403, &json!("Forbidden"), &json!(inner)),
            "{v}"
        );
        assert_eq!(feed.get(who, "").await.0, 403, "no head either");
    }

    for path in [
        "/secrets/hidden",
        "/secrets/Visible",
        "/secrets/hidden",
        "/secrets/hidden",
    ] {
        feed.ok(&admin, Method::PUT, path, Some(json!({"value": "x"})))
            .await;
    }
    feed.ok(&admin, Method::DELETE, "/secrets/hidden", None)
        .await;
    let everything = feed
        .page(&admin, &format!("cursor={start}&timeout=0"))
        .await;
    assert_eq!(everything.value.len(), 5);
    let mine = feed
        .page(&one.token, &format!("cursor={start}&timeout=0"))
        .await;
    assert_eq!(
        mine.value
            .iter()
            .map(|e| (e.name.as_str(), e.change))
            .collect::<Vec<_>>(),
        [("Visible", ChangeKind::NewVersion)]
    );
    assert_eq!(
        mine.cursor, everything.cursor,
        "the cursor moves past what this caller may not see"
    );
    // Waiting past hidden changes only: the poll keeps waiting, then answers empty with the
    // cursor moved on.
    feed.ok(
        &admin,
        Method::PUT,
        "/secrets/hidden2",
        Some(json!({"value": "y"})),
    )
    .await;
    let t = Instant::now();
    let quiet = feed
        .page(&one.token, &format!("cursor={}&timeout=1", mine.cursor))
        .await;
    assert!(quiet.value.is_empty() && t.elapsed() >= Duration::from_millis(900));
    assert_eq!(quiet.cursor, feed.head(&admin).await);

    // A policy vault: get without list must name what it follows (the feed would otherwise
    // tell it every secret's name, which AKV keeps for list); list alone is refused.
    let getter = principal(&server, dir.path(), "feed-getter").await;
    let (code, _, err) = cli(&[
        "policy",
        "set",
        "--vault",
        "dev",
        "--object-id",
        &getter.object_id,
        "--secret-permissions",
        "get",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let dev = Feed::new(&server, "dev");
    let (s, v) = dev.get(&getter.token, "").await;
    assert_eq!(
        (s, &v["error"]["innererror"]["code"]),
        (403, &json!("AccessDenied")),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("names="),
        "{v}"
    );
    let from = dev.page(&getter.token, "names=followed").await.cursor;
    for name in ["followed", "unnamed"] {
        dev.ok(
            &admin,
            Method::PUT,
            &format!("/secrets/{name}"),
            Some(json!({"value": "v"})),
        )
        .await;
    }
    let named = dev
        .page(
            &getter.token,
            &format!("cursor={from}&timeout=0&names=FOLLOWED,other"),
        )
        .await;
    assert_eq!(
        named
            .value
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        ["followed"]
    );
    let (s, v) = dev
        .get(
            &getter.token,
            &format!("cursor={from}&timeout=0&names=bad_name"),
        )
        .await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (400, &json!("BadParameter")),
        "{v}"
    );
    let too_many: Vec<String> = (0..257).map(|i| format!("s{i}")).collect();
    let (s, _) = dev
        .get(&getter.token, &format!("names={}", too_many.join(",")))
        .await;
    assert_eq!(s, 400);

    // List alone is refused.
    let lister = principal(&server, dir.path(), "feed-lister").await;
    let (code, _, err) = cli(&[
        "policy",
        "set",
        "--vault",
        "dev",
        "--object-id",
        &lister.object_id,
        "--secret-permissions",
        "list",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (s, v) = dev.get(&lister.token, "").await;
    assert_eq!(
        (s, &v["error"]["innererror"]["code"]),
        (403, &json!("AccessDenied")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ahead_and_expired_cursors_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--dev-clock", "--purge-interval-secs", "1"]).await;
    let token = server.admin_token().await;
    let feed = Feed::new(&server, "dev");
    let start = feed.head(&token).await;

    for query in [
        "cursor=abc",
        "cursor=-1",
        "cursor=",
        "cursor=1&timeout=61",
        "cursor=1&timeout=soon",
        "cursor=1&maxresults=0",
        "cursor=1&maxresults=1001",
    ] {
        let (s, v) = feed.get(&token, query).await;
        assert_eq!(
            (s, &v["error"]["code"]),
            (400, &json!("BadParameter")),
            "{query}: {v}"
        );
    }
    let resp = feed
        .http
        .post(format!("{}/changes?api-version=7.6", feed.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    // The usual data-plane front door: a challenge without a token, api-version required.
    let resp = feed
        .http
        .get(format!("{}/changes?api-version=7.6", feed.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer authorization=")
    );
    let resp = feed
        .http
        .get(format!("{}/changes", feed.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // A cursor this vault never issued.
    let ahead = start.parse::<i64>().unwrap() + 1000;
    let (s, v) = feed.get(&token, &format!("cursor={ahead}&timeout=0")).await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (410, &json!("CursorExpired")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fresh cursor")
    );

    // A cursor older than what is kept: changes go after 7 days.
    feed.ok(
        &token,
        Method::PUT,
        "/secrets/old",
        Some(json!({"value": "x"})),
    )
    .await;
    assert_eq!(
        feed.page(&token, &format!("cursor={start}&timeout=0"))
            .await
            .value
            .len(),
        1
    );
    advance_clock(&server, 8 * 86_400).await;
    let token = server.admin_token().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let expired = loop {
        let (s, v) = feed.get(&token, &format!("cursor={start}&timeout=0")).await;
        if s == 410 || Instant::now() > deadline {
            break (s, v);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (expired.0, &expired.1["error"]["code"]),
        (410, &json!("CursorExpired")),
        "{}",
        expired.1
    );
    assert!(
        expired.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("older than the changes this vault keeps")
    );
    // A fresh cursor follows on.
    let fresh = feed.head(&token).await;
    assert!(fresh.parse::<i64>().unwrap() > start.parse::<i64>().unwrap());
    feed.ok(
        &token,
        Method::PUT,
        "/secrets/new",
        Some(json!({"value": "y"})),
    )
    .await;
    let next = feed
        .page(&token, &format!("cursor={fresh}&timeout=5"))
        .await;
    assert_eq!(next.value.len(), 1);
    assert_eq!(next.value[0].name, "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_another_node_reaches_a_long_poll() {
    let Some(url) = strongbox_store_postgres::test_database_url("feedtwonodes").await else {
        return;
    };
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let pass = dir_a.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple").unwrap();
    let p = pass.to_str().unwrap();
    let a = Server::start(dir_a.path(), &["--store", &url, "--passphrase-file", p]).await;
    let b = Server::start(dir_b.path(), &["--store", &url, "--passphrase-file", p]).await;
    let ta = a.admin_token().await;
    let tb = b.admin_token().await;
    let feed_a = Feed::new(&a, "dev");
    let start = feed_a.head(&ta).await;
    assert_eq!(Feed::new(&b, "dev").head(&tb).await, start, "one feed");

    let waiting = {
        let (http, base, token, start) = (
            feed_a.http.clone(),
            feed_a.base.clone(),
            ta.clone(),
            start.clone(),
        );
        tokio::spawn(async move {
            let t = Instant::now();
            let page: ChangesPage = http
                .get(format!(
                    "{base}/changes?cursor={start}&timeout=30&api-version=7.6"
                ))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (page, t.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished());
    let (s, set) = b
        .call(
            &tb,
            Method::PUT,
            "/secrets/from-b",
            Some(json!({"value": "hello"})),
        )
        .await;
    assert_eq!(s, 200);
    let (page, waited) = waiting.await.unwrap();
    assert!(
        waited < Duration::from_secs(10),
        "a 30 s poll on A answered after {waited:?}"
    );
    assert_eq!(page.value.len(), 1);
    assert_eq!(
        (page.value[0].name.as_str(), page.value[0].version.clone()),
        ("from-b", Some(version_of(&set)))
    );
}
