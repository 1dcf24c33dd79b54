//! `Microsoft.Storage/storageAccounts`: a storage target is a directory on the server, inside
//! the server's storage root (`--storage-root`, default `{data dir}/storage`), so a caller can
//! never make the server write elsewhere. Properties (all optional):
//! `localPath` (relative to the root, or absolute inside it; default `{root}/{name}`; fixed once
//! created), `maxFileBytes` (a file is closed past this size; default 8 MiB, at least 1 KiB),
//! `maxFileAgeSeconds` (or once this old; default 3600, at least 1).

use super::common::*;
use crate::AppState;
use crate::management::{ArmError, require};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Component, PathBuf};
use std::sync::Arc;
use strongbox_store::StoreError;
use strongbox_store::insights::StorageAccountRow;

pub const DEFAULT_MAX_FILE_BYTES: i64 = 8 * 1024 * 1024;
pub const DEFAULT_MAX_FILE_AGE_SECS: i64 = 3600;

pub fn routes() -> Router<Arc<AppState>> {
    let mut r = Router::new();
    for rg in ["resourceGroups", "resourcegroups"] {
        r = r
            .route(
                &format!("/subscriptions/{{sub}}/{rg}/{{rg}}/providers/Microsoft.Storage/storageAccounts/{{name}}"),
                get(get_account).put(put_account).delete(delete_account),
            )
            .route(
                &format!("/subscriptions/{{sub}}/{rg}/{{rg}}/providers/Microsoft.Storage/storageAccounts"),
                get(list_in_group),
            );
    }
    r.route(
        "/subscriptions/{sub}/providers/Microsoft.Storage/storageAccounts",
        get(list_in_subscription),
    )
}

pub fn account_id(sub: &str, rg: &str, name: &str) -> String {
    format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{name}"
    )
}

/// Parses a storage account id (any casing of the fixed segments) into (sub, rg, name).
pub fn parse_account_id(id: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = id.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        [s, sub, r, rg, p, ns, t, name]
            if s.eq_ignore_ascii_case("subscriptions")
                && r.eq_ignore_ascii_case("resourceGroups")
                && p.eq_ignore_ascii_case("providers")
                && ns.eq_ignore_ascii_case("Microsoft.Storage")
                && t.eq_ignore_ascii_case("storageAccounts") =>
        {
            Some((
                sub.to_string(),
                rg.to_ascii_lowercase(),
                name.to_ascii_lowercase(),
            ))
        }
        _ => None,
    }
}

fn valid_name(name: &str) -> bool {
    (3..=24).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

pub fn view(a: &StorageAccountRow) -> Value {
    let tags: Value = a
        .tags_json
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_else(|| json!({}));
    json!({
        "id": account_id(&a.subscription_id, &a.resource_group, &a.name),
        "name": a.name,
        "type": "Microsoft.Storage/storageAccounts",
        "location": a.location,
        "kind": "StorageV2",
        "sku": {"name": "Standard_LRS", "tier": "Standard"},
        "tags": tags,
        "properties": {
            "provisioningState": "Succeeded",
            "creationTime": rfc3339(a.created * 1000),
            "localPath": a.local_path,
            "maxFileBytes": a.max_file_bytes,
            "maxFileAgeSeconds": a.max_file_age_secs,
        },
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sku {
    #[allow(dead_code)] // accepted for ARM's sake; there is one kind of storage here
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    tier: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Properties {
    local_path: Option<String>,
    max_file_bytes: Option<i64>,
    max_file_age_seconds: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    location: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    sku: Option<Sku>,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    properties: Option<Properties>,
}

/// Where the account's files go: inside the storage root, whatever the request says.
fn resolve_path(app: &AppState, name: &str, given: Option<&str>) -> Result<PathBuf, ArmError> {
    let root = &app.storage_root;
    let bad = |m: &str| ArmError::bad_request(format!("properties.localPath {m}"));
    let path = match given {
        None => root.join(name),
        Some(p) => {
            let p = PathBuf::from(p);
            if p.as_os_str().is_empty() || p.as_os_str().len() > 1024 {
                return Err(bad("must be a path of 1 to 1024 bytes."));
            }
            if p.components().any(|c| matches!(c, Component::ParentDir)) {
                return Err(bad("may not contain '..'."));
            }
            let full = if p.is_absolute() { p } else { root.join(p) };
            if !full.starts_with(root) || full == *root {
                return Err(bad(&format!(
                    "must be a directory inside the server's storage root {}.",
                    root.display()
                )));
            }
            full
        }
    };
    // Create it now so a bad location fails the request, not the delivery later; then check
    // again with symbolic links resolved.
    std::fs::create_dir_all(&path)
        .map_err(|e| bad(&format!("cannot be created: {}.", e.kind())))?;
    let real = path
        .canonicalize()
        .map_err(|e| bad(&format!("cannot be resolved: {}.", e.kind())))?;
    let real_root = root.canonicalize().map_err(|e| {
        ArmError::from(strongbox_domain::DomainError::Internal(format!(
            "storage root: {e}"
        )))
    })?;
    if !real.starts_with(&real_root) || real == real_root {
        return Err(bad("leads outside the server's storage root."));
    }
    Ok(real)
}

fn account_not_found(name: &str) -> ArmError {
    ArmError::not_found(
        "ResourceNotFound",
        format!(
            "The Resource 'Microsoft.Storage/storageAccounts/{}' was not found.",
            clip(name)
        ),
    )
}

async fn put_account(
    State(app): State<Arc<AppState>>,
    Path((sub, rg, name)): Path<(String, String, String)>,
    ctx: ArmCtx,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let a = Audited {
        app: &app,
        ctx: &ctx,
        chain: subscription_chain(&app, &sub).await,
        resource_id: account_id(&clip(&sub), &clip(&rg), &clip(&name)),
        operation: "Microsoft.Storage/storageAccounts/write",
    };
    let outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        require(&app, caller, &a.resource_id, a.operation).await?;
        if !valid_resource_group(&rg) {
            return Err(ArmError::bad_request("The resource group name is invalid."));
        }
        if !valid_name(&name) {
            return Err(ArmError::bad_request(format!(
                "'{}' is not a valid storage account name: use 3-24 lowercase letters and digits.",
                clip(&name)
            )));
        }
        let b: PutBody = json_body(&raw, crate::MAX_BODY_BYTES)?;
        if b.location.is_empty() || b.location.len() > 64 {
            return Err(ArmError::bad_request(
                "location must have 1 to 64 characters.",
            ));
        }
        if let Some(k) = &b.kind
            && !["StorageV2", "Storage", "BlobStorage"].contains(&k.as_str())
        {
            return Err(ArmError::bad_request("kind must be StorageV2."));
        }
        let _ = b.sku;
        let props = b.properties.unwrap_or_default();
        let max_file_bytes = props.max_file_bytes.unwrap_or(DEFAULT_MAX_FILE_BYTES);
        let max_file_age_secs = props
            .max_file_age_seconds
            .unwrap_or(DEFAULT_MAX_FILE_AGE_SECS);
        if !(1024..=1 << 40).contains(&max_file_bytes) {
            return Err(ArmError::bad_request(
                "properties.maxFileBytes must be between 1024 and 2^40.",
            ));
        }
        if !(1..=366 * 86_400).contains(&max_file_age_secs) {
            return Err(ArmError::bad_request(
                "properties.maxFileAgeSeconds must be between 1 and 31622400.",
            ));
        }
        if let Some(tags) = &b.tags
            && (tags.len() > 50 || tags.iter().any(|(k, v)| k.len() > 512 || v.len() > 256))
        {
            return Err(ArmError::bad_request(
                "At most 50 tags; names up to 512 and values up to 256 characters.",
            ));
        }
        let existing = app.store.get_storage_account(&name).await?;
        let local_path = match &existing {
            // The directory is fixed once created: moving it would split the files.
            Some(e) => {
                if let Some(p) = &props.local_path {
                    let wanted = resolve_path(&app, &name, Some(p))?;
                    if wanted.to_string_lossy() != e.local_path {
                        return Err(ArmError::conflict(
                            "PropertyChangeNotAllowed",
                            "properties.localPath cannot be changed once the account exists.",
                        ));
                    }
                }
                e.local_path.clone()
            }
            None => resolve_path(&app, &name, props.local_path.as_deref())?
                .to_string_lossy()
                .into_owned(),
        };
        let row = StorageAccountRow {
            name: name.clone(),
            subscription_id: sub.clone(),
            resource_group: rg.to_ascii_lowercase(),
            location: b.location,
            local_path,
            max_file_bytes,
            max_file_age_secs,
            tags_json: b
                .tags
                .map(|t| serde_json::to_string(&t).expect("tags serialize")),
            created: existing
                .as_ref()
                .map_or_else(|| app.clock.now(), |e| e.created),
        };
        let status = if existing.is_some() {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        match app
            .store
            .put_storage_account(row.clone(), a.entry(status.as_u16()))
            .await
        {
            Ok(()) => Ok((status, Json(view(&row))).into_response()),
            Err(StoreError::Conflict) => Err(ArmError::conflict(
                "StorageAccountAlreadyTaken",
                format!("The storage account named {} is already taken.", row.name),
            )),
            Err(e) => Err(e.into()),
        }
    }
    .await;
    a.finish(outcome.map(Done::committed)).await
}

async fn get_account(
    State(app): State<Arc<AppState>>,
    Path((sub, rg, name)): Path<(String, String, String)>,
    ctx: ArmCtx,
) -> Response {
    let a = Audited {
        app: &app,
        ctx: &ctx,
        chain: subscription_chain(&app, &sub).await,
        resource_id: account_id(&clip(&sub), &clip(&rg), &clip(&name)),
        operation: "Microsoft.Storage/storageAccounts/read",
    };
    let outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        require(&app, caller, &a.resource_id, a.operation).await?;
        match app
            .store
            .get_storage_account(&name.to_ascii_lowercase())
            .await?
        {
            Some(acc)
                if acc.subscription_id.eq_ignore_ascii_case(&sub)
                    && acc.resource_group.eq_ignore_ascii_case(&rg) =>
            {
                Ok((StatusCode::OK, Json(view(&acc)).into_response()))
            }
            _ => Err(account_not_found(&name)),
        }
    }
    .await;
    a.finish(outcome.map(|(_, r)| Done::response(r))).await
}

async fn delete_account(
    State(app): State<Arc<AppState>>,
    Path((sub, rg, name)): Path<(String, String, String)>,
    ctx: ArmCtx,
) -> Response {
    let a = Audited {
        app: &app,
        ctx: &ctx,
        chain: subscription_chain(&app, &sub).await,
        resource_id: account_id(&clip(&sub), &clip(&rg), &clip(&name)),
        operation: "Microsoft.Storage/storageAccounts/delete",
    };
    let outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        require(&app, caller, &a.resource_id, a.operation).await?;
        let name = name.to_ascii_lowercase();
        let here = app.store.get_storage_account(&name).await?.filter(|acc| {
            acc.subscription_id.eq_ignore_ascii_case(&sub)
                && acc.resource_group.eq_ignore_ascii_case(&rg)
        });
        if here.is_none() {
            // Deleting what is not there succeeds with 204, as in ARM.
            return Ok(None);
        }
        match app.store.delete_storage_account(&name, a.entry(200)).await {
            Ok(()) => Ok(Some(StatusCode::OK.into_response())),
            Err(StoreError::NotFound) => Ok(None),
            Err(StoreError::Conflict) => Err(ArmError::conflict(
                "StorageAccountInUse",
                "Diagnostic settings send records to this storage account; delete them first.",
            )),
            Err(e) => Err(e.into()),
        }
    }
    .await;
    match outcome {
        Ok(Some(r)) => r,
        Ok(None) => {
            a.finish(Ok(Done::empty(StatusCode::NO_CONTENT, false)))
                .await
        }
        Err(e) => a.finish(Err(e)).await,
    }
}

async fn list(app: &AppState, ctx: &ArmCtx, sub: &str, rg: Option<&str>) -> Response {
    let scope = match rg {
        Some(rg) => format!("/subscriptions/{}/resourceGroups/{}", clip(sub), clip(rg)),
        None => format!("/subscriptions/{}", clip(sub)),
    };
    let a = Audited {
        app,
        ctx,
        chain: subscription_chain(app, sub).await,
        resource_id: scope.clone(),
        operation: "Microsoft.Storage/storageAccounts/read",
    };
    let outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        require(app, caller, &scope, a.operation).await?;
        let rg = rg.map(str::to_ascii_lowercase);
        let all = app.store.list_storage_accounts(sub, rg.as_deref()).await?;
        let value: Vec<Value> = all.iter().map(view).collect();
        Ok((
            StatusCode::OK,
            Json(json!({"value": value})).into_response(),
        ))
    }
    .await;
    a.finish(outcome.map(|(_, r)| Done::response(r))).await
}

async fn list_in_group(
    State(app): State<Arc<AppState>>,
    Path((sub, rg)): Path<(String, String)>,
    ctx: ArmCtx,
) -> Response {
    list(&app, &ctx, &sub, Some(&rg)).await
}

async fn list_in_subscription(
    State(app): State<Arc<AppState>>,
    Path(sub): Path<String>,
    ctx: ArmCtx,
) -> Response {
    list(&app, &ctx, &sub, None).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn account_ids_parse_in_any_case() {
        use super::*;
        assert_eq!(
            parse_account_id(
                "/subscriptions/S/resourcegroups/RG/providers/microsoft.storage/storageaccounts/Logs"
            ),
            Some(("S".into(), "rg".into(), "logs".into()))
        );
        assert_eq!(parse_account_id("/subscriptions/S/resourceGroups/RG"), None);
        assert!(
            valid_name("logs01")
                && !valid_name("Logs")
                && !valid_name("ab")
                && !valid_name("a-b-c")
        );
    }
}
