//! The official Azure SDK for Rust (azure_security_keyvault_secrets + azure_identity from
//! crates.io, unmodified) against the real server: a client-secret credential on a custom cloud
//! whose authority is Strongbox's token service, and the SDK's own HTTP pipeline given a reqwest
//! client that trusts the dev CA and resolves the vault host (the stand-in for DNS).

use crate::common::{Server, client_for};
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::Secret;
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use azure_security_keyvault_secrets::models::SetSecretParameters;
use azure_security_keyvault_secrets::{ResourceExt, SecretClient, SecretClientOptions};
use futures_util::TryStreamExt;
use std::sync::Arc;

fn sdk_client(sb: &Server) -> SecretClient {
    let c = &sb.creds;
    let transport = Transport::new(Arc::new(client_for(c, sb.port)));
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = c["authority"].as_str().unwrap().to_string();
    let credential = ClientSecretCredential::new(
        c["tenant_id"].as_str().unwrap(),
        c["client_id"].as_str().unwrap().to_string(),
        Secret::new(c["client_secret"].as_str().unwrap().to_string()),
        Some(ClientSecretCredentialOptions {
            client_options: ClientOptions {
                transport: Some(transport.clone()),
                cloud: Some(Arc::new(CloudConfiguration::from(cloud))),
                ..Default::default()
            },
        }),
    )
    .unwrap();
    SecretClient::new(
        c["vault_url"].as_str().unwrap(),
        credential,
        Some(SecretClientOptions {
            client_options: ClientOptions {
                transport: Some(transport),
                ..Default::default()
            },
            ..Default::default()
        }),
    )
    .unwrap()
}

#[tokio::test]
async fn rust_sdk_names_deleted_secrets_with_resource_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut sb = Server::start(dir.path(), &[]).await;
    let client = sdk_client(&sb);
    let names = ["rust-sdk-a", "rust-sdk-b"];
    for name in names {
        let params = SetSecretParameters {
            value: Some("v".into()),
            ..Default::default()
        };
        client
            .set_secret(name, params.try_into().unwrap(), None)
            .await
            .unwrap();
        client.delete_secret(name, None).await.unwrap();
    }
    let mut pager = client.list_deleted_secret_properties(None).unwrap();
    let mut seen = Vec::new();
    while let Some(item) = pager.try_next().await.unwrap() {
        let id = item.resource_id().expect("a deleted item's id parses");
        assert_eq!(id.vault_url, sb.vault_url("dev"));
        assert_eq!(id.version, None);
        assert_eq!(
            item.recovery_id.as_deref(),
            Some(format!("{}/deletedsecrets/{}", sb.vault_url("dev"), id.name).as_str())
        );
        seen.push(id.name);
    }
    seen.sort();
    assert_eq!(seen, names);
    // The name the SDK parsed is the one its own calls take.
    client.recover_deleted_secret(&seen[0], None).await.unwrap();
    let back = client.get_secret(&seen[0], None).await.unwrap();
    let back: azure_security_keyvault_secrets::models::Secret = back.into_model().unwrap();
    assert_eq!(back.value.as_deref(), Some("v"));
    sb.stop();
}
