//! The Azure Key Vault secrets data plane (api-version 7.6): request builders and the shapes
//! the service returns. `vault` is a vault URL (`https://{name}.{suffix}:{port}`).

use crate::{Call, Plane, seg};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub const API_VERSION: &str = "7.6";
/// Page size asked for when listing.
pub const PAGE: u32 = 25;

pub type Tags = BTreeMap<String, String>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attributes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recoverable_days: Option<i64>,
}

/// A secret bundle, list item or deleted secret: the fields each carries are optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default)]
    pub attributes: Attributes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_date: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_purge_date: Option<i64>,
}

impl Secret {
    /// The secret's name, from its id (`…/secrets/{name}[/{version}]`).
    pub fn name(&self) -> &str {
        let path = self
            .id
            .split_once("://")
            .map_or(self.id.as_str(), |(_, r)| r);
        let mut parts = path.split('/').skip(1);
        let _collection = parts.next();
        parts.next().unwrap_or_default()
    }
    /// The version, from its id (empty for list items without one).
    pub fn version(&self) -> &str {
        let path = self
            .id
            .split_once("://")
            .map_or(self.id.as_str(), |(_, r)| r);
        path.split('/').nth(3).unwrap_or_default()
    }
}

fn url(vault: &str, path: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!(
        "{}{path}{sep}api-version={API_VERSION}",
        vault.trim_end_matches('/')
    )
}

/// What `set` sends besides the value.
#[derive(Debug, Clone, Default)]
pub struct SetOptions {
    pub content_type: Option<String>,
    pub tags: Option<Tags>,
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
}

fn attributes(enabled: Option<bool>, nbf: Option<i64>, exp: Option<i64>) -> Option<Value> {
    (enabled.is_some() || nbf.is_some() || exp.is_some()).then(|| {
        serde_json::to_value(Attributes {
            enabled,
            nbf,
            exp,
            ..Default::default()
        })
        .expect("attributes serialize")
    })
}

pub fn set(vault: &str, name: &str, value: &str, o: &SetOptions) -> Call {
    let mut body = json!({"value": value});
    if let Some(ct) = &o.content_type {
        body["contentType"] = json!(ct);
    }
    if let Some(t) = &o.tags {
        body["tags"] = json!(t);
    }
    if let Some(a) = attributes(o.enabled, o.nbf, o.exp) {
        body["attributes"] = a;
    }
    Call::new(
        Method::PUT,
        url(vault, &format!("/secrets/{}", seg(name))),
        Plane::Vault,
    )
    .body(body)
}

pub fn get(vault: &str, name: &str, version: Option<&str>) -> Call {
    let path = match version {
        Some(v) => format!("/secrets/{}/{}", seg(name), seg(v)),
        None => format!("/secrets/{}", seg(name)),
    };
    Call::new(Method::GET, url(vault, &path), Plane::Vault)
}

/// `GET /changes` (Strongbox's change feed): without a cursor, the vault's current cursor at
/// once; with one, the changes after it, waiting up to `timeout_secs` (0..=60) for one.
/// `maxresults` is 1..=1000 (server default 100). The answer is a
/// `strongbox_types::changes::ChangesPage`; a `410 CursorExpired` means read everything again
/// and follow from a fresh cursor. The request may take `timeout_secs` plus a margin.
pub fn changes(
    vault: &str,
    cursor: Option<&str>,
    timeout_secs: u32,
    maxresults: Option<u32>,
) -> Call {
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(c) = cursor {
        query.push(("cursor", c.to_string()));
        query.push(("timeout", timeout_secs.to_string()));
    }
    if let Some(m) = maxresults {
        query.push(("maxresults", m.to_string()));
    }
    let path = if query.is_empty() {
        "/changes".to_string()
    } else {
        format!(
            "/changes?{}",
            serde_urlencoded::to_string(&query).expect("query pairs encode")
        )
    };
    let mut call = Call::new(Method::GET, url(vault, &path), Plane::Vault);
    if cursor.is_some() {
        // The server answers by the timeout; the margin covers the trip and the audit commit.
        call.timeout = Some(std::time::Duration::from_secs(u64::from(timeout_secs) + 30));
    }
    call
}

/// [`changes`] restricted to the named secrets: what a caller with get but not list on the
/// vault must ask for (the server answers 403 otherwise). At most 256 names.
pub fn changes_named(
    vault: &str,
    cursor: Option<&str>,
    timeout_secs: u32,
    names: &[String],
) -> Call {
    let mut call = changes(vault, cursor, timeout_secs, None);
    if !names.is_empty() {
        let list: Vec<String> = names.iter().map(|n| seg(n)).collect();
        call.url.push_str(&format!("&names={}", list.join(",")));
    }
    call
}

pub fn list(vault: &str) -> Call {
    Call::new(
        Method::GET,
        url(vault, &format!("/secrets?maxresults={PAGE}")),
        Plane::Vault,
    )
}

pub fn list_versions(vault: &str, name: &str) -> Call {
    Call::new(
        Method::GET,
        url(
            vault,
            &format!("/secrets/{}/versions?maxresults={PAGE}", seg(name)),
        ),
        Plane::Vault,
    )
}

/// What `update` changes (only the fields given).
#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    pub content_type: Option<String>,
    pub tags: Option<Tags>,
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
}

pub fn update(vault: &str, name: &str, version: Option<&str>, o: &UpdateOptions) -> Call {
    let mut body = json!({});
    if let Some(ct) = &o.content_type {
        body["contentType"] = json!(ct);
    }
    if let Some(t) = &o.tags {
        body["tags"] = json!(t);
    }
    if let Some(a) = attributes(o.enabled, o.nbf, o.exp) {
        body["attributes"] = a;
    }
    let path = format!(
        "/secrets/{}/{}",
        seg(name),
        version.map(seg).unwrap_or_default()
    );
    Call::new(Method::PATCH, url(vault, &path), Plane::Vault).body(body)
}

pub fn delete(vault: &str, name: &str) -> Call {
    Call::new(
        Method::DELETE,
        url(vault, &format!("/secrets/{}", seg(name))),
        Plane::Vault,
    )
}

pub fn get_deleted(vault: &str, name: &str) -> Call {
    Call::new(
        Method::GET,
        url(vault, &format!("/deletedsecrets/{}", seg(name))),
        Plane::Vault,
    )
}

pub fn list_deleted(vault: &str) -> Call {
    Call::new(
        Method::GET,
        url(vault, &format!("/deletedsecrets?maxresults={PAGE}")),
        Plane::Vault,
    )
}

pub fn recover(vault: &str, name: &str) -> Call {
    Call::new(
        Method::POST,
        url(vault, &format!("/deletedsecrets/{}/recover", seg(name))),
        Plane::Vault,
    )
}

pub fn purge(vault: &str, name: &str) -> Call {
    Call::new(
        Method::DELETE,
        url(vault, &format!("/deletedsecrets/{}", seg(name))),
        Plane::Vault,
    )
}

pub fn backup(vault: &str, name: &str) -> Call {
    Call::new(
        Method::POST,
        url(vault, &format!("/secrets/{}/backup", seg(name))),
        Plane::Vault,
    )
}

pub fn restore(vault: &str, blob: &str) -> Call {
    Call::new(Method::POST, url(vault, "/secrets/restore"), Plane::Vault)
        .body(json!({"value": blob}))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = "https://dev.vault.localhost:8443";

    #[test]
    fn change_feed_requests() {
        let head = changes(V, None, 30, None);
        assert_eq!(
            (head.method.clone(), head.url.as_str(), head.timeout),
            (Method::GET, &*format!("{V}/changes?api-version=7.6"), None)
        );
        let follow = changes(&format!("{V}/"), Some("42"), 25, Some(10));
        assert_eq!(
            follow.url,
            format!("{V}/changes?cursor=42&timeout=25&maxresults=10&api-version=7.6")
        );
        assert_eq!(follow.timeout, Some(std::time::Duration::from_secs(55)));
        assert_eq!(follow.plane, Plane::Vault);
    }

    #[test]
    fn requests_have_the_akv_shape() {
        let c = set(
            V,
            "db-pass",
            "s3cret",
            &SetOptions {
                content_type: Some("text/plain".into()),
                tags: Some(Tags::from([("env".into(), "prod".into())])),
                enabled: Some(false),
                exp: Some(99),
                ..Default::default()
            },
        );
        assert_eq!(c.method, Method::PUT);
        assert_eq!(c.url, format!("{V}/secrets/db-pass?api-version=7.6"));
        assert_eq!(
            c.body.unwrap(),
            json!({"value": "s3cret", "contentType": "text/plain", "tags": {"env": "prod"},
                   "attributes": {"enabled": false, "exp": 99}})
        );
        assert_eq!(
            get(V, "a", Some("v1")).url,
            format!("{V}/secrets/a/v1?api-version=7.6")
        );
        assert_eq!(
            list(V).url,
            format!("{V}/secrets?maxresults=25&api-version=7.6")
        );
        assert_eq!(
            list_versions(V, "a").url,
            format!("{V}/secrets/a/versions?maxresults=25&api-version=7.6")
        );
        let u = update(
            V,
            "a",
            None,
            &UpdateOptions {
                enabled: Some(true),
                ..Default::default()
            },
        );
        assert_eq!(
            (u.method, u.url.as_str()),
            (Method::PATCH, &*format!("{V}/secrets/a/?api-version=7.6"))
        );
        assert_eq!(u.body.unwrap(), json!({"attributes": {"enabled": true}}));
        assert_eq!(delete(V, "a").method, Method::DELETE);
        assert_eq!(
            purge(V, "a").url,
            format!("{V}/deletedsecrets/a?api-version=7.6")
        );
        assert_eq!(
            recover(V, "a").url,
            format!("{V}/deletedsecrets/a/recover?api-version=7.6")
        );
        assert_eq!(
            backup(V, "a").url,
            format!("{V}/secrets/a/backup?api-version=7.6")
        );
        assert_eq!(restore(V, "blob").body.unwrap(), json!({"value": "blob"}));
        assert!(list(V).plane == Plane::Vault);
    }

    #[test]
    fn names_and_versions_come_from_ids() {
        let s = Secret {
            id: format!("{V}/secrets/db-pass/0123abcd"),
            ..Default::default()
        };
        assert_eq!((s.name(), s.version()), ("db-pass", "0123abcd"));
        let s = Secret {
            id: format!("{V}/secrets/db-pass"),
            ..Default::default()
        };
        assert_eq!((s.name(), s.version()), ("db-pass", ""));
        let d = Secret {
            id: format!("{V}/deletedsecrets/x"),
            ..Default::default()
        };
        assert_eq!(d.name(), "x");
    }
}
