//! The Kubernetes target: synced secret `name` becomes the Secret `name` in one namespace,
//! written by server-side apply (field manager `strongbox-agent`), so all its keys switch in one
//! write. Every Secret we write carries `app.kubernetes.io/managed-by: strongbox-agent` and
//! `strongbox.io/synced-secret: <name>`; a Secret of that name without them is someone else's
//! and is never adopted, updated or deleted (research edge-sync §7.7; the SSE's
//! `CreateFailedInvalidLabel`).
//!
//! Adoption is also closed against races: a new Secret is first created (POST fails if one
//! appeared meanwhile) holding only our labels and type, then filled by apply; every apply to an
//! existing Secret carries the `resourceVersion` we checked, so a Secret replaced between the
//! check and the write is refused by the API server rather than overwritten. The data keys are
//! owned by the apply alone, so a key dropped from the synced secret is dropped from the Secret.

use super::{Payload, Target, TargetError, content_hash, validate_name};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use std::collections::BTreeMap;

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

fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGER.to_string()),
        (SYNCED_SECRET_LABEL.to_string(), name.to_string()),
    ])
}

/// The exact Secret the target applies for `p` in `namespace`.
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

/// Names the code and reason; Secret API errors quote keys and fields, not values.
fn api_err(what: &str, e: kube::Error) -> TargetError {
    match e {
        kube::Error::Api(s) => TargetError::Api(format!(
            "{what}: {} {}: {}",
            s.code,
            s.reason,
            s.message.chars().take(300).collect::<String>()
        )),
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

    /// A client from the environment (`KUBECONFIG`, `~/.kube/config`, or the in-cluster
    /// service account), in `namespace` or else the configuration's default namespace.
    pub async fn from_env(namespace: Option<&str>) -> Result<KubernetesTarget, TargetError> {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| TargetError::Api(format!("no Kubernetes configuration: {e}")))?;
        let ns = namespace
            .map(String::from)
            .unwrap_or_else(|| client.default_namespace().to_string());
        Ok(KubernetesTarget::new(client, &ns))
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

    /// Server-side apply of `want`, conditional on the resourceVersion we saw. `false` when
    /// the Secret changed meanwhile.
    async fn apply_over(&self, mut want: Secret, seen: &Secret) -> Result<bool, TargetError> {
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
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(409) => Ok(false),
            Err(e) => Err(api_err("applying the Secret", e)),
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
                // Create holding only labels and type: fails if a Secret appeared meanwhile.
                let skeleton = Secret {
                    metadata: ObjectMeta {
                        name: Some(p.name.clone()),
                        namespace: Some(self.namespace.clone()),
                        labels: Some(labels(&p.name)),
                        ..ObjectMeta::default()
                    },
                    type_: want.type_.clone(),
                    ..Secret::default()
                };
                let pp = PostParams {
                    field_manager: Some(MANAGER.to_string()),
                    ..PostParams::default()
                };
                match self.api.create(&pp, &skeleton).await {
                    Ok(created) => match self.apply_over(want.clone(), &created).await {
                        Ok(true) => return Ok(true),
                        Ok(false) => {}
                        Err(e) => {
                            // Never leave workloads an empty Secret: take back the one just made.
                            let dp = DeleteParams {
                                preconditions: Some(Preconditions {
                                    uid: created.metadata.uid.clone(),
                                    resource_version: None,
                                }),
                                ..DeleteParams::default()
                            };
                            let _ = self.api.delete(&p.name, &dp).await;
                            return Err(e);
                        }
                    },
                    Err(e) if status_of(&e) == Some(409) => {}
                    Err(e) => return Err(api_err("creating the Secret", e)),
                }
                continue;
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
            let same_meta = current
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(CONTENT_HASH_ANNOTATION))
                == want
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(CONTENT_HASH_ANNOTATION));
            if same_data && same_meta {
                return Ok(false);
            }
            if self.apply_over(want.clone(), &current).await? {
                return Ok(!same_data);
            }
        }
        Err(TargetError::Api(format!(
            "Secret {}/{} kept changing while it was written; retry later",
            self.namespace, p.name
        )))
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
}

#[cfg(test)]
mod tests {
    use super::super::SecretType;
    use super::super::contract::{self, payload};
    use super::*;
    use serde_json::json;

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

    #[tokio::test]
    async fn the_target_refuses_what_kubernetes_would_before_any_call() {
        // A client to an address nothing listens on: validation must not need it.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let t = KubernetesTarget::new(kube::Client::try_from(config).unwrap(), "ns");
        assert_eq!(t.describe(), "kubernetes:ns");
        let long = "a".repeat(64);
        for p in [
            payload(&long, SecretType::Opaque, &[("k", "v")]),
            payload("ok", SecretType::BasicAuth, &[("username", "u")]),
            payload("ok", SecretType::Opaque, &[("a/b", "v")]),
        ] {
            let e = t.apply(&p).await.unwrap_err();
            assert!(matches!(e, TargetError::Invalid(_)), "{e}");
        }
        // And an unreachable API is an Api error, not a panic.
        let e = t
            .apply(&payload("ok", SecretType::Opaque, &[("k", "v")]))
            .await
            .unwrap_err();
        assert!(matches!(e, TargetError::Api(_)), "{e}");
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
