//! Optional throttling in Azure's shape: a vault over its limit answers 429 `Throttled` with
//! Retry-After; the token endpoint limits each client id (OAuth error shape).

use crate::common::*;
use reqwest::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_over_its_limit_answers_429_throttled_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--vault-requests-per-10s",
            "5",
            "--token-requests-per-client-per-min",
            "3",
        ],
    )
    .await;
    let token = server.admin_token().await;
    let mut statuses = Vec::new();
    let mut throttled = None;
    for _ in 0..10 {
        let resp = server
            .client
            .get(format!(
                "{}/secrets?api-version=7.6",
                server.vault_url("dev")
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 && throttled.is_none() {
            let retry_after = resp.headers()["retry-after"].to_str().unwrap().to_string();
            throttled = Some((retry_after, resp.json::<serde_json::Value>().await.unwrap()));
        }
    }
    // A burst of 5 is allowed, then one request per 2 s: the rest of the 10 are throttled.
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    let (retry_after, body) = throttled.unwrap();
    assert!(retry_after.parse::<u32>().unwrap() >= 1, "{retry_after}");
    assert_eq!(body["error"]["code"], "Throttled", "{body}");
    // Still within the same 10 s: still throttled.
    let (s, body) = server.call(&token, Method::GET, "/secrets", None).await;
    assert_eq!(
        (s, &body["error"]["code"]),
        (429, &serde_json::json!("Throttled"))
    );

    // The token endpoint: the admin's first token was 1 of 3 this minute.
    let (id, secret) = (
        server.creds["client_id"].as_str().unwrap(),
        server.creds["client_secret"].as_str().unwrap(),
    );
    assert_eq!(server.token_response(id, secret).await.status(), 200);
    assert_eq!(server.token_response(id, secret).await.status(), 200);
    let resp = server.token_response(id, secret).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_endpoint_limits_each_source_address_whatever_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--token-requests-per-address-per-min", "4"]).await;
    let (id, secret) = (
        server.creds["client_id"].as_str().unwrap(),
        server.creds["client_secret"].as_str().unwrap(),
    );
    // Made-up client ids count against the address too, so spraying ids does not get around it.
    let mut statuses = Vec::new();
    for i in 0..3 {
        statuses.push(
            server
                .token_response(&format!("00000000-0000-0000-0000-00000000000{i}"), "x")
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [401, 401, 401]);
    assert_eq!(server.token_response(id, secret).await.status(), 200);
    let resp = server.token_response(id, secret).await;
    assert_eq!(resp.status(), 429);
    let retry_after: u32 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(!body.to_string().contains(secret));
}
