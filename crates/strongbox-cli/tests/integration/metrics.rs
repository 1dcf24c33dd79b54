//! The server's metrics listener (plain HTTP, its own address): `/readyz` follows the store, and
//! `/metrics` is never on the public HTTPS port. The exposition itself is parsed by the official
//! Prometheus parser in sdk-tests/python/test_metrics.py.

use crate::common::*;

async fn ready(client: &reqwest::Client, at: &str) -> (u16, serde_json::Value) {
    let r = client
        .get(format!("http://{at}/readyz"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_only() {
    let dir = tempfile::tempdir().unwrap();
    let at = format!("127.0.0.1:{}", free_port());
    let mut sb = Server::start(dir.path(), &["--metrics-listen", &at]).await;
    let plain = reqwest::Client::new();
    let text = plain
        .get(format!("http://{at}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("strongbox_build_info"), "{text}");
    assert_eq!(ready(&plain, &at).await.0, 200);
    // Not on the public port.
    let public = sb
        .client
        .get(format!("https://localhost:{}/metrics", sb.port))
        .send()
        .await
        .unwrap();
    assert_ne!(public.status(), 200);
    sb.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_unready_while_postgres_refuses_connections() {
    let Some(url) = strongbox_store_postgres::test_database_url("readyz").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let at = format!("127.0.0.1:{}", free_port());
    let mut sb = Server::start(dir.path(), &["--store", &url, "--metrics-listen", &at]).await;
    let plain = reqwest::Client::new();
    assert_eq!(
        ready(&plain, &at).await,
        (
            200,
            serde_json::json!({
                "status": "ready",
                "checks": {"store": true, "auditWriter": true, "rootKey": true}
            })
        )
    );

    let (base, db) = url.rsplit_once('/').unwrap();
    let admin = sqlx::PgPool::connect(&format!("{base}/postgres"))
        .await
        .unwrap();
    let set_connections = |allow: bool| {
        let admin = admin.clone();
        let db = db.to_string();
        async move {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "ALTER DATABASE {db} ALLOW_CONNECTIONS {allow}"
            )))
            .execute(&admin)
            .await
            .unwrap();
            if !allow {
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                )
                .bind(&db)
                .execute(&admin)
                .await
                .unwrap();
            }
        }
    };
    set_connections(false).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let unready = loop {
        let (status, body) = ready(&plain, &at).await;
        if status == 503 {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "still ready: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(unready["status"], "unready");
    assert_eq!(unready["checks"]["store"], false);

    set_connections(true).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while ready(&plain, &at).await.0 != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    sb.stop();
}
