//! The Kubernetes target: synced secret `name` becomes the Secret `name` in one namespace. Every
//! Secret we write carries `app.kubernetes.io/managed-by: strongbox-agent` and
//! `strongbox.io/synced-secret: <name>`; a Secret of that name without them is someone else's
//! and is never adopted, updated or deleted (research edge-sync §7.7; the SSE's
//! `CreateFailedInvalidLabel`).
//!
//! A new Secret is created with all its data in one request: a create is create-only (409
//! AlreadyExists when the name is taken meanwhile), which is the no-adoption guarantee, and the
//! API server validates the Secret's data against its type on that first write too (an empty
//! placeholder of type basic-auth is refused). Every later change is one server-side apply
//! (field manager `strongbox-agent`), so all keys switch in one write, carrying the
//! `resourceVersion` we checked: a Secret replaced between the check and the write is refused by
//! the API server rather than overwritten.
//!
//! Errors are classified like the vault's: unreachable, 5xx and 429 are transient
//! ([`TargetError::Unavailable`]: Stale, retried with the engine's backoff); forbidden, invalid
//! and the rest are [`TargetError::Api`] (Error, with the API server's reason).

use super::{Payload, Target, TargetError, content_hash, validate_name};
use futures_util::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions, WatchEvent, WatchParams,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Field manager of every write, and the value of the managed-by label.
pub const MANAGER: &str = "strongbox-agent";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const SYNCED_SECRET_LABEL: &str = "strongbox.io/synced-secret";
/// SHA-256 of the data (see [`content_hash`]), never the data.
pub const CONTENT_HASH_ANNOTATION: &str = "strongbox.io/content-hash";
/// A label value holds at most 63 characters, so longer synced secret names cannot be labelled.
const MAX_LABEL_VALUE: usize = 63;
/// Attempts when the Secret changes between our check and our write.
const ATTEMPTS: usize = 4;
/// An API server that does not accept the connection by then is unreachable (the default 30 s
/// would hold every synced secret's round that long).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one watch of our Secrets runs before it is renewed.
const WATCH_SECS: u32 = 290;

fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGER.to_string()),
        (SYNCED_SECRET_LABEL.to_string(), name.to_string()),
    ])
}

/// The exact Secret the target creates, and then applies, for `p` in `namespace`.
pub fn manifest(p: &Payload, namespace: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(p.name.clone()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels(&p.name)),
            annotations: Some(BTreeMap::from([(
                CONTENT_HASH_ANNOTATION.to_string(),
                content_hash(&p.data),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some(p.secret_type.as_str().to_string()),
        data: Some(
            p.data
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// Whether `s` carries both of our labels for synced secret `name`.
pub fn is_ours(s: &Secret, name: &str) -> bool {
    let l = s.metadata.labels.as_ref();
    let get = |k: &str| l.and_then(|l| l.get(k)).map(String::as_str);
    get(MANAGED_BY_LABEL) == Some(MANAGER) && get(SYNCED_SECRET_LABEL) == Some(name)
}

fn data_of(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    s.data
        .as_ref()
        .map(|d| d.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
        .unwrap_or_default()
}

/// Classifies a failed call and names the code and reason; Secret API errors quote keys and
/// fields, not values. Transient: no answer (connect, TLS, a dropped connection), 5xx and 429
/// (whose `retryAfterSeconds` is kept); everything else (403 Forbidden, 422 Invalid, 401, 404)
/// is the API server's answer and is reported as it is.
fn api_err(what: &str, e: kube::Error) -> TargetError {
    match e {
        kube::Error::Api(s) => {
            let m = format!(
                "{what}: {} {}: {}",
                s.code,
                s.reason,
                s.message.chars().take(300).collect::<String>()
            );
            if s.code == 429 || s.code >= 500 {
                let after = s
                    .details
                    .as_ref()
                    .map(|d| d.retry_after_seconds)
                    .filter(|s| *s > 0)
                    .map(|s| Duration::from_secs(u64::from(s)));
                TargetError::Unavailable(m, after)
            } else {
                TargetError::Api(m)
            }
        }
        e @ (kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_)) => {
            TargetError::Unavailable(format!("{what}: {e}"), None)
        }
        other => TargetError::Api(format!("{what}: {other}")),
    }
}

fn status_of(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Delivers synced secrets as Secrets in one namespace.
pub struct KubernetesTarget {
    api: Api<Secret>,
    namespace: String,
}

impl KubernetesTarget {
    pub fn new(client: kube::Client, namespace: &str) -> KubernetesTarget {
        KubernetesTarget {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
        }
    }

    /// A client for `config` that leaves retrying to the sync engine: kube's own retry layer
    /// (up to 15 attempts on 429/503/504, growing to minutes) would hide an outage from the
    /// status and hold the engine's round.
    pub fn client(mut config: kube::Config) -> Result<kube::Client, TargetError> {
        config.default_retry = false;
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        kube::Client::try_from(config)
            .map_err(|e| TargetError::Api(format!("building the Kubernetes client: {e}")))
    }

    /// A client from the environment (`KUBECONFIG`, `~/.kube/config`, or the in-cluster
    /// service account), in `namespace` or else the configuration's default namespace.
    pub async fn from_env(namespace: Option<&str>) -> Result<KubernetesTarget, TargetError> {
        let config = kube::Config::infer()
            .await
            .map_err(|e| TargetError::Api(format!("no Kubernetes configuration: {e}")))?;
        let ns = namespace
            .map(String::from)
            .unwrap_or_else(|| config.default_namespace.clone());
        Ok(KubernetesTarget::new(Self::client(config)?, &ns))
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn not_ours(&self, name: &str) -> TargetError {
        TargetError::NotOurs(format!(
            "Secret {}/{name} exists without the labels {MANAGED_BY_LABEL}={MANAGER} and {SYNCED_SECRET_LABEL}={name}; it is someone else's and is left alone",
            self.namespace
        ))
    }

    /// The Secret `name` if it is ours; `None` if absent.
    async fn ours(&self, name: &str) -> Result<Option<Secret>, TargetError> {
        validate_name(name).map_err(TargetError::Invalid)?;
        match self
            .api
            .get_opt(name)
            .await
            .map_err(|e| api_err("reading the Secret", e))?
        {
            Some(s) if !is_ours(&s, name) => Err(self.not_ours(name)),
            found => Ok(found),
        }
    }

    /// Server-side apply of `want`, conditional on the resourceVersion we saw: the Secret as
    /// applied, or `None` when it changed meanwhile.
    async fn apply_over(
        &self,
        mut want: Secret,
        seen: &Secret,
    ) -> Result<Option<Secret>, TargetError> {
        let name = want.metadata.name.clone().unwrap_or_default();
        want.metadata.resource_version = seen.metadata.resource_version.clone();
        match self
            .api
            .patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&want),
            )
            .await
        {
            Ok(applied) => Ok(Some(applied)),
            Err(e) if status_of(&e) == Some(409) => Ok(None),
            Err(e) => Err(api_err("applying the Secret", e)),
        }
    }

    /// Removes the keys an apply left that `want` no longer has. The create records its keys
    /// as written by an update, and an apply removes only keys it owns alone, so a key dropped
    /// from the synced secret after the create stays until it is removed here (after the new
    /// values are in place, conditional on the version the apply made). `false` when the
    /// Secret changed meanwhile.
    async fn drop_leftovers(
        &self,
        applied: &Secret,
        want: &BTreeMap<String, Vec<u8>>,
    ) -> Result<bool, TargetError> {
        let left: serde_json::Map<String, serde_json::Value> = data_of(applied)
            .into_keys()
            .filter(|k| !want.contains_key(k))
            .map(|k| (k, serde_json::Value::Null))
            .collect();
        if left.is_empty() {
            return Ok(true);
        }
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": applied.metadata.resource_version},
            "data": left,
        });
        let name = applied.metadata.name.clone().unwrap_or_default();
        let pp = PatchParams {
            field_manager: Some(MANAGER.to_string()),
            ..PatchParams::default()
        };
        match self.api.patch(&name, &pp, &Patch::Merge(&patch)).await {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(409) => Ok(false),
            Err(e) => Err(api_err("removing dropped keys from the Secret", e)),
        }
    }
}

#[async_trait::async_trait]
impl Target for KubernetesTarget {
    fn describe(&self) -> String {
        format!("kubernetes:{}", self.namespace)
    }

    async fn apply(&self, p: &Payload) -> Result<bool, TargetError> {
        p.validate()?;
        if p.name.len() > MAX_LABEL_VALUE {
            return Err(TargetError::Invalid(format!(
                "synced secret {} is longer than {MAX_LABEL_VALUE} characters, which a Kubernetes label value cannot hold",
                p.name
            )));
        }
        let want = manifest(p, &self.namespace);
        let want_data = data_of(&want);
        for _ in 0..ATTEMPTS {
            let Some(current) = self.ours(&p.name).await? else {
                // Create-only, data and all: 409 if a Secret of this name appeared since the
                // read (the next read says whose it is).
                let pp = PostParams {
                    field_manager: Some(MANAGER.to_string()),
                    ..PostParams::default()
                };
                match self.api.create(&pp, &want).await {
                    Ok(_) => return Ok(true),
                    Err(e) if status_of(&e) == Some(409) => continue,
                    Err(e) => return Err(api_err("creating the Secret", e)),
                }
            };
            let same_data = data_of(&current) == want_data;
            if current.type_ != want.type_ {
                // The type is immutable: replace our own Secret (only the one we checked).
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: current.metadata.uid.clone(),
                        resource_version: current.metadata.resource_version.clone(),
                    }),
                    ..DeleteParams::default()
                };
                match self.api.delete(&p.name, &dp).await {
                    Ok(_) => {}
                    Err(e) if matches!(status_of(&e), Some(404 | 409)) => {}
                    Err(e) => return Err(api_err("replacing the Secret", e)),
                }
                continue;
            }
            let hash = |s: &Secret| {
                s.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(CONTENT_HASH_ANNOTATION))
                    .cloned()
            };
            if same_data && hash(&current) == hash(&want) {
                return Ok(false);
            }
            if let Some(applied) = self.apply_over(want.clone(), &current).await?
                && self.drop_leftovers(&applied, &want_data).await?
            {
                return Ok(!same_data);
            }
        }
        // Someone else keeps writing it: a race, not a refusal; the engine retries soon.
        Err(TargetError::Unavailable(
            format!(
                "Secret {}/{} kept changing while it was written",
                self.namespace, p.name
            ),
            None,
        ))
    }

    async fn remove(&self, name: &str) -> Result<(), TargetError> {
        let Some(current) = self.ours(name).await? else {
            return Ok(());
        };
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: current.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.api.delete(name, &dp).await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(api_err("deleting the Secret", e)),
        }
    }

    async fn present(&self, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, TargetError> {
        Ok(self.ours(name).await?.map(|s| data_of(&s)))
    }

    /// Watches the metadata of our Secrets in the namespace (only those labelled as ours) and
    /// tells `changed` on every event, so a Secret deleted or edited by hand is put back at
    /// once. Each (re)started watch first lists what exists, which also tells `changed` when the
    /// API server is back after an outage. Failures retry with the engine's backoff.
    fn follow_changes(&self, changed: Arc<Notify>) {
        let api = self.api.clone();
        let namespace = self.namespace.clone();
        tokio::spawn(async move {
            let selector = format!("{MANAGED_BY_LABEL}={MANAGER}");
            let mut backoff = crate::sync::Backoff::default();
            let mut failing = false;
            loop {
                let wp = WatchParams::default().labels(&selector).timeout(WATCH_SECS);
                let failure = match api.watch_metadata(&wp, "0").await {
                    Ok(stream) => {
                        let mut stream = std::pin::pin!(stream);
                        loop {
                            match stream.next().await {
                                None => break None,
                                Some(Ok(WatchEvent::Bookmark(_))) => {}
                                Some(Ok(WatchEvent::Error(s))) => {
                                    break Some(format!("{} {}", s.code, s.reason));
                                }
                                Some(Ok(_)) => {
                                    failing = false;
                                    backoff.reset();
                                    changed.notify_one();
                                }
                                Some(Err(e)) => break Some(e.to_string()),
                            }
                        }
                    }
                    Err(e) => Some(api_err("watching our Secrets", e).to_string()),
                };
                if let Some(why) = failure
                    && !std::mem::replace(&mut failing, true)
                {
                    eprintln!(
                        "warning: watching Secrets in {namespace} failed ({why}); retrying, and checking them on every sync round meanwhile"
                    );
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::SecretType;
    use super::super::contract::{self, payload};
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn the_manifest_is_exactly_the_secret_we_mean() {
        let p = payload(
            "edp1secrets",
            SecretType::BasicAuth,
            &[("username", "user"), ("password", "pass")],
        );
        // The hash by hand: length-prefixed key and value, in key order.
        let mut framed = Vec::new();
        for (k, v) in [("password", "pass"), ("username", "user")] {
            framed.extend_from_slice(&(k.len() as u64).to_be_bytes());
            framed.extend_from_slice(k.as_bytes());
            framed.extend_from_slice(&(v.len() as u64).to_be_bytes());
            framed.extend_from_slice(v.as_bytes());
        }
        let hash = format!("sha256:{}", hex::encode(strongbox_crypto::sha256(&framed)));
        let expected = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "edp1secrets",
                "namespace": "azure-iot-operations",
                "labels": {
                    "app.kubernetes.io/managed-by": "strongbox-agent",
                    "strongbox.io/synced-secret": "edp1secrets",
                },
                "annotations": {"strongbox.io/content-hash": hash},
            },
            "type": "kubernetes.io/basic-auth",
            "data": {"password": "cGFzcw==", "username": "dXNlcg=="},
        });
        let m = manifest(&p, "azure-iot-operations");
        assert_eq!(serde_json::to_value(&m).unwrap(), expected);
        // It is a Secret as kube's own types read one.
        let back: Secret = serde_json::from_value(expected).unwrap();
        assert_eq!(back, m);
        assert!(is_ours(&m, "edp1secrets"));
        assert!(!is_ours(&m, "other"));
        use kube::Resource;
        assert_eq!(Secret::kind(&()), "Secret");

        let opaque = manifest(&payload("x", SecretType::Opaque, &[("k", "v")]), "ns");
        assert_eq!(opaque.type_.as_deref(), Some("Opaque"));
        // A Secret someone else made, even with one of our labels, is not ours.
        let mut foreign = opaque.clone();
        foreign
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(MANAGED_BY_LABEL);
        assert!(!is_ours(&foreign, "x"));
        foreign.metadata.labels = None;
        assert!(!is_ours(&foreign, "x"));
    }

    #[test]
    fn basic_auth_manifests_need_username_and_password() {
        let p = payload(
            "db",
            SecretType::BasicAuth,
            &[("user", "u"), ("password", "p")],
        );
        let e = p.validate().unwrap_err();
        assert!(e.to_string().contains("username"), "{e}");
    }

    /// A fake API server: a real HTTP server on 127.0.0.1 that answers the Secret calls the
    /// target makes the way kube-apiserver does (Status bodies, create-only POST with 409
    /// AlreadyExists, resourceVersion preconditions, apply keeping keys a create wrote, merge
    /// patch removing `null` keys), records every write, and can be told to fail every call
    /// with a given answer. It validates nothing itself: the tests look at what was sent.
    mod fake {
        use axum::Router;
        use axum::extract::{Path, State};
        use axum::http::{HeaderMap, StatusCode};
        use axum::response::{IntoResponse, Response};
        use serde_json::{Value, json};
        use std::collections::BTreeMap;
        use std::sync::{Arc, Mutex};

        #[derive(Default)]
        pub struct Fake {
            pub secrets: Mutex<BTreeMap<String, Value>>,
            /// (method and patch kind, body) of every write.
            pub writes: Mutex<Vec<(String, Value)>>,
            /// Every call answers this (status, Status body) while set.
            pub fail: Mutex<Option<(u16, Value)>>,
            rv: Mutex<u64>,
        }

        pub fn status(code: u16, reason: &str, message: &str) -> Value {
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": message, "reason": reason, "code": code})
        }

        fn answer(code: u16, v: Value) -> Response {
            (StatusCode::from_u16(code).unwrap(), axum::Json(v)).into_response()
        }

        impl Fake {
            fn failing(&self) -> Option<Response> {
                self.fail.lock().unwrap().clone().map(|(c, v)| answer(c, v))
            }
            fn stamp(&self, mut v: Value) -> Value {
                let mut rv = self.rv.lock().unwrap();
                *rv += 1;
                v["metadata"]["resourceVersion"] = json!(rv.to_string());
                if v["metadata"]["uid"].is_null() {
                    v["metadata"]["uid"] = json!(format!("uid-{rv}"));
                }
                v
            }
        }

        type S = State<Arc<Fake>>;

        async fn get(State(f): S, Path((_, name)): Path<(String, String)>) -> Response {
            if let Some(r) = f.failing() {
                return r;
            }
            match f.secrets.lock().unwrap().get(&name) {
                Some(v) => answer(200, v.clone()),
                None => answer(
                    404,
                    status(404, "NotFound", &format!("secrets \"{name}\" not found")),
                ),
            }
        }

        async fn create(
            State(f): S,
            Path(_): Path<String>,
            axum::Json(body): axum::Json<Value>,
        ) -> Response {
            if let Some(r) = f.failing() {
                return r;
            }
            f.writes.lock().unwrap().push(("POST".into(), body.clone()));
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mut secrets = f.secrets.lock().unwrap();
            if secrets.contains_key(&name) {
                return answer(
                    409,
                    status(
                        409,
                        "AlreadyExists",
                        &format!("secrets \"{name}\" already exists"),
                    ),
                );
            }
            let v = f.stamp(body);
            secrets.insert(name, v.clone());
            answer(201, v)
        }

        async fn patch(
            State(f): S,
            Path((_, name)): Path<(String, String)>,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> Response {
            // Apply bodies come as application/apply-patch+yaml (JSON is YAML).
            let body: Value = serde_json::from_slice(&body).unwrap();
            if let Some(r) = f.failing() {
                return r;
            }
            let kind = headers["content-type"].to_str().unwrap().to_string();
            f.writes
                .lock()
                .unwrap()
                .push((format!("PATCH {kind}"), body.clone()));
            let mut secrets = f.secrets.lock().unwrap();
            let Some(current) = secrets.get(&name).cloned() else {
                return answer(404, status(404, "NotFound", "not found"));
            };
            let want_rv = &body["metadata"]["resourceVersion"];
            if !want_rv.is_null() && *want_rv != current["metadata"]["resourceVersion"] {
                return answer(409, status(409, "Conflict", "the object has been modified"));
            }
            let mut next = current.clone();
            let mut data = current["data"].as_object().cloned().unwrap_or_default();
            for (k, v) in body["data"].as_object().cloned().unwrap_or_default() {
                if v.is_null() {
                    data.remove(&k);
                } else {
                    data.insert(k, v);
                }
            }
            next["data"] = json!(data);
            for field in ["labels", "annotations"] {
                if !body["metadata"][field].is_null() {
                    next["metadata"][field] = body["metadata"][field].clone();
                }
            }
            let v = f.stamp(next);
            secrets.insert(name, v.clone());
            answer(200, v)
        }

        async fn delete(State(f): S, Path((_, name)): Path<(String, String)>) -> Response {
            if let Some(r) = f.failing() {
                return r;
            }
            f.writes
                .lock()
                .unwrap()
                .push(("DELETE".into(), json!(name)));
            match f.secrets.lock().unwrap().remove(&name) {
                Some(_) => answer(
                    200,
                    json!({"kind": "Status", "status": "Success", "code": 200}),
                ),
                None => answer(404, status(404, "NotFound", "not found")),
            }
        }

        /// Serves on a free port; the kube config that points at it.
        pub async fn start() -> (Arc<Fake>, kube::Config) {
            let f = Arc::new(Fake::default());
            let app = Router::new()
                .route(
                    "/api/v1/namespaces/{ns}/secrets",
                    axum::routing::post(create),
                )
                .route(
                    "/api/v1/namespaces/{ns}/secrets/{name}",
                    axum::routing::get(get).patch(patch).delete(delete),
                )
                .with_state(f.clone());
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", l.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(l, app).await });
            (f, kube::Config::new(url.parse().unwrap()))
        }
    }

    fn valid(t: SecretType) -> Vec<(&'static str, &'static str)> {
        match t {
            SecretType::Opaque => vec![("config.yaml", "a: 1")],
            SecretType::BasicAuth => vec![("username", "u"), ("password", "p")],
            SecretType::Tls => vec![
                ("tls.crt", "-----BEGIN CERTIFICATE-----"),
                ("tls.key", "-----BEGIN PRIVATE KEY-----"),
            ],
            SecretType::SshAuth => vec![("ssh-privatekey", "-----BEGIN OPENSSH PRIVATE KEY-----")],
            SecretType::DockerConfigJson => vec![(".dockerconfigjson", r#"{"auths":{}}"#)],
        }
    }

    #[tokio::test]
    async fn the_first_write_of_every_type_is_a_create_that_carries_its_data() {
        let (f, config) = fake::start().await;
        let t = KubernetesTarget::new(KubernetesTarget::client(config).unwrap(), "edge");
        for ty in SecretType::ALL {
            let name = format!(
                "s-{}",
                ty.as_str().rsplit('/').next().unwrap().to_lowercase()
            );
            f.writes.lock().unwrap().clear();
            let p = payload(&name, ty, &valid(ty));
            assert!(t.apply(&p).await.unwrap(), "{ty}");
            let writes = f.writes.lock().unwrap().clone();
            assert_eq!(writes.len(), 1, "{ty}: one write, the create: {writes:?}");
            let (method, body) = &writes[0];
            assert_eq!(method, "POST", "{ty}");
            assert_eq!(body["type"], ty.as_str());
            assert_eq!(body, &serde_json::to_value(manifest(&p, "edge")).unwrap());
            for (k, v) in valid(ty) {
                let sent = base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    body["data"][k].as_str().unwrap(),
                )
                .unwrap();
                assert_eq!(sent, v.as_bytes(), "{ty}: {k} is in the first write");
            }
            assert!(is_ours(
                &serde_json::from_value(body.clone()).unwrap(),
                &name
            ));
            // The same content again: nothing written.
            assert!(!t.apply(&p).await.unwrap());
            assert_eq!(f.writes.lock().unwrap().len(), 1);
        }

        // A later change is one server-side apply, conditional on the version read.
        let ty = SecretType::BasicAuth;
        let v2 = payload(
            "s-basic-auth",
            ty,
            &[("username", "u2"), ("password", "p2"), ("ca.crt", "c")],
        );
        f.writes.lock().unwrap().clear();
        assert!(t.apply(&v2).await.unwrap());
        let writes = f.writes.lock().unwrap().clone();
        assert_eq!(writes.len(), 1, "{writes:?}");
        assert_eq!(writes[0].0, "PATCH application/apply-patch+yaml");
        assert!(writes[0].1["metadata"]["resourceVersion"].is_string());
        assert_eq!(writes[0].1["data"]["username"], "dTI=");
        // A key dropped after the create (the API server keeps keys a create wrote through an
        // apply that omits them): removed by a conditional merge patch after the apply.
        let v3 = payload(
            "s-basic-auth",
            ty,
            &[("username", "u3"), ("password", "p3")],
        );
        f.writes.lock().unwrap().clear();
        assert!(t.apply(&v3).await.unwrap());
        let writes = f.writes.lock().unwrap().clone();
        assert_eq!(writes.len(), 2, "{writes:?}");
        assert_eq!(writes[1].0, "PATCH application/merge-patch+json");
        assert_eq!(writes[1].1["data"], json!({"ca.crt": null}));
        assert!(writes[1].1["metadata"]["resourceVersion"].is_string());
        let present = t.present("s-basic-auth").await.unwrap().unwrap();
        assert_eq!(present.keys().collect::<Vec<_>>(), ["password", "username"]);
    }

    #[tokio::test]
    async fn kubernetes_errors_are_transient_or_the_servers_refusal() {
        let (f, config) = fake::start().await;
        let t = KubernetesTarget::new(KubernetesTarget::client(config).unwrap(), "edge");
        let p = payload("db", SecretType::Opaque, &[("k", "v")]);
        let fail = |code: u16, body: Value| *f.fail.lock().unwrap() = Some((code, body));

        // 503 and 500: transient (Stale), not retried by the client itself (one call).
        for code in [500, 503] {
            fail(
                code,
                fake::status(code, "ServiceUnavailable", "etcd is down"),
            );
            let e = t.apply(&p).await.unwrap_err();
            assert!(
                matches!(&e, TargetError::Unavailable(m, None) if m.contains(&code.to_string())),
                "{e}"
            );
        }
        // 429 with the server's retryAfterSeconds: transient, and the delay is kept.
        let mut busy = fake::status(429, "TooManyRequests", "too many requests");
        busy["details"] = json!({"retryAfterSeconds": 3});
        fail(429, busy);
        let e = t.apply(&p).await.unwrap_err();
        assert_eq!(
            e,
            TargetError::Unavailable(
                "reading the Secret: 429 TooManyRequests: too many requests".into(),
                Some(Duration::from_secs(3))
            )
        );
        // Forbidden and invalid: the server's answer, with its reason (an Error).
        fail(
            403,
            fake::status(
                403,
                "Forbidden",
                "secrets \"db\" is forbidden: User \"system:serviceaccount:edge:agent\" cannot get resource \"secrets\" in the namespace \"other\"",
            ),
        );
        let e = t.apply(&p).await.unwrap_err();
        assert!(
            matches!(&e, TargetError::Api(m) if m.contains("403 Forbidden") && m.contains("cannot get")),
            "{e}"
        );
        assert!(!e.is_transient());
        *f.fail.lock().unwrap() = None;
        // 422 Invalid (what a Secret the API server cannot accept gets): Error.
        fail(
            422,
            fake::status(
                422,
                "Invalid",
                "Secret \"db\" is invalid: data[username]: Required value",
            ),
        );
        let e = t.apply(&p).await.unwrap_err();
        assert!(
            matches!(&e, TargetError::Api(m) if m.contains("422 Invalid")),
            "{e}"
        );
        *f.fail.lock().unwrap() = None;

        // A Secret of that name created by someone else between our read and our create: the
        // create is refused (409) and the next read finds it is not ours.
        f.secrets.lock().unwrap().insert(
            "theirs".into(),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "theirs", "resourceVersion": "1"}, "data": {"k": "eA=="}}),
        );
        let e = t
            .apply(&payload("theirs", SecretType::Opaque, &[("k", "v")]))
            .await
            .unwrap_err();
        assert!(matches!(e, TargetError::NotOurs(_)), "{e}");
        assert!(matches!(
            t.remove("theirs").await,
            Err(TargetError::NotOurs(_))
        ));

        // Nothing listening (the API server stopped): transient, and quickly so.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let gone = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
        let t3 = KubernetesTarget::new(KubernetesTarget::client(gone).unwrap(), "edge");
        let started = std::time::Instant::now();
        let e = t3.apply(&p).await.unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn the_target_refuses_what_kubernetes_would_before_any_call() {
        // A client to an address nothing listens on: validation must not need it.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let t = KubernetesTarget::new(KubernetesTarget::client(config).unwrap(), "ns");
        assert_eq!(t.describe(), "kubernetes:ns");
        let long = "a".repeat(64);
        for p in [
            payload(&long, SecretType::Opaque, &[("k", "v")]),
            payload("ok", SecretType::BasicAuth, &[("username", "u")]),
            payload("ok", SecretType::Opaque, &[("a/b", "v")]),
            payload("ok", SecretType::Tls, &[("tls.crt", "c")]),
            payload("ok", SecretType::SshAuth, &[("ssh-privatekey", "")]),
            payload(
                "ok",
                SecretType::DockerConfigJson,
                &[(".dockerconfigjson", "not json")],
            ),
        ] {
            let e = t.apply(&p).await.unwrap_err();
            assert!(matches!(e, TargetError::Invalid(_)), "{e}");
        }
        // And an unreachable API is a transient error, not a panic.
        let e = t
            .apply(&payload("ok", SecretType::Opaque, &[("k", "v")]))
            .await
            .unwrap_err();
        assert!(matches!(e, TargetError::Unavailable(..)), "{e}");
    }

    /// Against a real cluster when `KUBECONFIG` names one (namespace from
    /// `STRONGBOX_TEST_K8S_NAMESPACE`, default `default`). No API server can run here.
    #[tokio::test]
    async fn live_cluster_contract_ownership_and_type_change() {
        if std::env::var_os("KUBECONFIG").is_none() {
            println!("skipped: KUBECONFIG not set");
            return;
        }
        let ns = std::env::var("STRONGBOX_TEST_K8S_NAMESPACE").unwrap_or_else(|_| "default".into());
        let t = KubernetesTarget::from_env(Some(&ns)).await.unwrap();
        let suffix = strongbox_crypto::random_hex_id()[..10].to_string();
        contract::run(&t, &format!("sbx-contract-{suffix}")).await;

        // A foreign Secret of the same name: never adopted, updated or deleted.
        let foreign_name = format!("sbx-foreign-{suffix}");
        let foreign = Secret {
            metadata: ObjectMeta {
                name: Some(foreign_name.clone()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                "k".to_string(),
                ByteString(b"theirs".to_vec()),
            )])),
            ..Secret::default()
        };
        t.api
            .create(&PostParams::default(), &foreign)
            .await
            .unwrap();
        let p = payload(&foreign_name, SecretType::Opaque, &[("k", "ours")]);
        assert!(matches!(t.apply(&p).await, Err(TargetError::NotOurs(_))));
        assert!(matches!(
            t.remove(&foreign_name).await,
            Err(TargetError::NotOurs(_))
        ));
        assert!(matches!(
            t.present(&foreign_name).await,
            Err(TargetError::NotOurs(_))
        ));
        let still = t.api.get(&foreign_name).await.unwrap();
        assert_eq!(data_of(&still)["k"], b"theirs");
        t.api
            .delete(&foreign_name, &DeleteParams::default())
            .await
            .unwrap();

        // Opaque to basic-auth: the immutable type is changed by replacing our own Secret.
        let name = format!("sbx-type-{suffix}");
        t.apply(&payload(
            &name,
            SecretType::Opaque,
            &[("username", "u"), ("password", "p")],
        ))
        .await
        .unwrap();
        t.apply(&payload(
            &name,
            SecretType::BasicAuth,
            &[("username", "u"), ("password", "p")],
        ))
        .await
        .unwrap();
        let s = t.api.get(&name).await.unwrap();
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        t.remove(&name).await.unwrap();
    }
}
