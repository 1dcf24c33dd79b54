//! `Microsoft.ManagedIdentity`, as azure-mgmt-msi (api-version 2024-11-30) drives it:
//!
//! - `PUT|PATCH|GET|DELETE /subscriptions/{s}/resourceGroups/{rg}/providers/
//!   Microsoft.ManagedIdentity/userAssignedIdentities/{name}`
//! - `GET …/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities` and
//!   `GET /subscriptions/{s}/providers/Microsoft.ManagedIdentity/userAssignedIdentities`
//! - `GET {resource}/providers/Microsoft.ManagedIdentity/identities/default`: the
//!   system-assigned identity of a resource (created and deleted with that resource).
//!
//! Authorization is by role assignment (`Microsoft.ManagedIdentity/…/read|write|delete`, which
//! Owner and Contributor hold); every operation is audited on the subscription's chain.

use super::context::{
    ApiVersions, ArmCtx, Done, MAX_AUTHZ_BODY_BYTES, json_body, subscription_chain, tags_json,
    tags_value,
};
use super::{ArmError, require};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use strongbox_domain::arm::Scope;
use strongbox_domain::identities::{self, ManagedIdentity, NewUserAssigned, RESOURCE_TYPE};

const API_VERSIONS: &[&str] = &[
    "2018-11-30",
    "2021-09-30-preview",
    "2022-01-31-preview",
    "2023-01-31",
    "2023-07-31-preview",
    "2024-11-30",
    // The Azure CLI's `az identity` (2.91) sends these.
    "2025-01-31-preview",
    "2025-05-31-preview",
];

pub fn routes() -> Router<Arc<AppState>> {
    let mut r = Router::new().route(
        &format!("/subscriptions/{{sub}}/providers/{RESOURCE_TYPE}"),
        get(list),
    );
    for rgs in ["resourceGroups", "resourcegroups"] {
        let rg = format!("/subscriptions/{{sub}}/{rgs}/{{rg}}");
        r = r
            .route(&format!("{rg}/providers/{RESOURCE_TYPE}"), get(list))
            .route(
                &format!("{rg}/providers/{RESOURCE_TYPE}/{{name}}"),
                get(user_assigned)
                    .put(user_assigned)
                    .patch(user_assigned)
                    .delete(user_assigned),
            )
            .route(
                &format!("{rg}/providers/{{ns}}/{{t1}}/{{n1}}/providers/Microsoft.ManagedIdentity/identities/default"),
                get(system_assigned),
            );
    }
    r
}

fn identity_json(m: &ManagedIdentity) -> serde_json::Value {
    json!({
        "id": m.arm_id(),
        "name": m.identity.name,
        "type": RESOURCE_TYPE,
        "location": m.identity.location,
        "tags": tags_value(m.identity.tags_json.as_deref()),
        "properties": {
            "tenantId": m.principal.tenant_id,
            "principalId": m.principal.object_id,
            "clientId": m.principal.client_id,
            "isolationScope": "None",
        }
    })
}

/// `(subscription, resource group or "", name)` of a user-assigned identity path (the routes
/// guarantee the provider and type segments).
fn parse_path(path: &str) -> Option<(String, String, Option<String>)> {
    let s: Vec<&str> = path.trim_matches('/').split('/').collect();
    let is = |i: usize, v: &str| s.get(i).is_some_and(|x| x.eq_ignore_ascii_case(v));
    if !is(0, "subscriptions") {
        return None;
    }
    let sub = s[1].to_ascii_lowercase();
    match s.len() {
        5 if is(2, "providers") => Some((sub, String::new(), None)),
        7 | 8 if is(2, "resourceGroups") && is(4, "providers") => Some((
            sub,
            s[3].to_ascii_lowercase(),
            s.get(7).map(|n| n.to_string()),
        )),
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PutBody {
    location: String,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    properties: Option<Properties>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PatchBody {
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    properties: Option<Properties>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Properties {
    #[serde(default)]
    isolation_scope: Option<String>,
}

fn check_properties(p: &Option<Properties>) -> Result<(), ArmError> {
    match p.as_ref().and_then(|p| p.isolation_scope.as_deref()) {
        None | Some("None") => Ok(()),
        Some(_) => Err(ArmError::bad_request(
            "isolationScope 'Regional' is not supported: identities are not bound to a region here.",
        )),
    }
}

async fn subscription_in_tenant(
    app: &AppState,
    subscription: &str,
    tenant: &str,
) -> Result<(), ArmError> {
    match app.store.get_subscription(subscription).await? {
        Some(s) if s.tenant_id == tenant => Ok(()),
        _ => Err(ArmError::not_found(
            "SubscriptionNotFound",
            format!("The subscription '{subscription}' could not be found."),
        )),
    }
}

fn not_found(rg: &str, name: &str) -> ArmError {
    ArmError::not_found(
        "ResourceNotFound",
        format!(
            "The Resource '{RESOURCE_TYPE}/{}' under resource group '{rg}' was not found.",
            name.chars().take(128).collect::<String>()
        ),
    )
}

async fn user_assigned(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let operation = match method {
        Method::GET => "Microsoft.ManagedIdentity/userAssignedIdentities/read",
        Method::DELETE => "Microsoft.ManagedIdentity/userAssignedIdentities/delete",
        _ => "Microsoft.ManagedIdentity/userAssignedIdentities/write",
    };
    let parsed = parse_path(uri.path());
    let chain = subscription_chain(&app, parsed.as_ref().map_or("unknown", |p| p.0.as_str())).await;
    let outcome = match parsed {
        Some((sub, rg, Some(name))) => {
            user_assigned_op(&app, &ctx, &method, operation, &sub, &rg, &name, &body).await
        }
        _ => Err(ArmError::bad_request("The identity path is not valid.")),
    };
    ctx.finish(
        &app,
        &chain,
        uri.path(),
        operation,
        outcome.map(Done::response),
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn user_assigned_op(
    app: &AppState,
    ctx: &ArmCtx,
    method: &Method,
    action: &str,
    sub: &str,
    rg: &str,
    name: &str,
    body: &Result<Bytes, BytesRejection>,
) -> Result<Response, ArmError> {
    let caller = ctx.check(ApiVersions::Only(API_VERSIONS))?;
    subscription_in_tenant(app, sub, &caller.tenant_id).await?;
    let id = identities::user_assigned_id(sub, rg, name);
    require(app, caller, &id, action).await?;
    let store = &*app.store;
    match *method {
        Method::GET => {
            let m = identities::get_user_assigned(store, sub, rg, name)
                .await?
                .ok_or_else(|| not_found(rg, name))?;
            Ok(Json(identity_json(&m)).into_response())
        }
        Method::DELETE => {
            if identities::delete_user_assigned(store, sub, rg, name).await? {
                Ok(StatusCode::OK.into_response())
            } else {
                Ok(StatusCode::NO_CONTENT.into_response())
            }
        }
        Method::PUT => {
            let b: PutBody = json_body(body, MAX_AUTHZ_BODY_BYTES)?;
            check_properties(&b.properties)?;
            let (m, created) = identities::put_user_assigned(
                store,
                &*app.clock,
                NewUserAssigned {
                    subscription_id: sub,
                    resource_group: rg,
                    name,
                    location: &b.location,
                    tags_json: tags_json(b.tags)?,
                },
            )
            .await?;
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, Json(identity_json(&m))).into_response())
        }
        _ => {
            let b: PatchBody = json_body(body, MAX_AUTHZ_BODY_BYTES)?;
            check_properties(&b.properties)?;
            let existing = identities::get_user_assigned(store, sub, rg, name)
                .await?
                .ok_or_else(|| not_found(rg, name))?;
            let tags = match b.tags {
                Some(t) => tags_json(Some(t))?,
                None => existing.identity.tags_json.clone(),
            };
            let (m, _) = identities::put_user_assigned(
                store,
                &*app.clock,
                NewUserAssigned {
                    subscription_id: sub,
                    resource_group: rg,
                    name,
                    location: b.location.as_deref().unwrap_or(&existing.identity.location),
                    tags_json: tags,
                },
            )
            .await?;
            Ok(Json(identity_json(&m)).into_response())
        }
    }
}

async fn list(State(app): State<Arc<AppState>>, ctx: ArmCtx, uri: Uri) -> Response {
    let parsed = parse_path(uri.path());
    let chain = subscription_chain(&app, parsed.as_ref().map_or("unknown", |p| p.0.as_str())).await;
    let outcome = match parsed {
        Some((sub, rg, None)) => list_op(&app, &ctx, &sub, &rg).await,
        _ => Err(ArmError::bad_request("The identity path is not valid.")),
    };
    ctx.finish(
        &app,
        &chain,
        uri.path(),
        "Microsoft.ManagedIdentity/userAssignedIdentities/read",
        outcome.map(Done::response),
    )
    .await
}

async fn list_op(app: &AppState, ctx: &ArmCtx, sub: &str, rg: &str) -> Result<Response, ArmError> {
    let caller = ctx.check(ApiVersions::Only(API_VERSIONS))?;
    subscription_in_tenant(app, sub, &caller.tenant_id).await?;
    let scope = if rg.is_empty() {
        format!("/subscriptions/{sub}")
    } else {
        format!("/subscriptions/{sub}/resourceGroups/{rg}")
    };
    require(
        app,
        caller,
        &scope,
        "Microsoft.ManagedIdentity/userAssignedIdentities/read",
    )
    .await?;
    let items =
        identities::list_user_assigned(&*app.store, sub, (!rg.is_empty()).then_some(rg)).await?;
    let value: Vec<_> = items.iter().map(identity_json).collect();
    Ok(Json(json!({ "value": value })).into_response())
}

async fn system_assigned(State(app): State<Arc<AppState>>, ctx: ArmCtx, uri: Uri) -> Response {
    let owner = uri
        .path()
        .to_ascii_lowercase()
        .rfind("/providers/microsoft.managedidentity/identities/default")
        .and_then(|at| Scope::parse(&uri.path()[..at]).ok());
    let chain = subscription_chain(
        &app,
        owner
            .as_ref()
            .map_or("unknown", |s| s.subscription_id.as_str()),
    )
    .await;
    let outcome = match &owner {
        Some(owner) => system_assigned_op(&app, &ctx, owner).await,
        None => Err(ArmError::bad_request("The resource path is not valid.")),
    };
    ctx.finish(
        &app,
        &chain,
        uri.path(),
        "Microsoft.ManagedIdentity/identities/read",
        outcome.map(Done::response),
    )
    .await
}

async fn system_assigned_op(
    app: &AppState,
    ctx: &ArmCtx,
    owner: &Scope,
) -> Result<Response, ArmError> {
    let caller = ctx.check(ApiVersions::Only(API_VERSIONS))?;
    subscription_in_tenant(app, &owner.subscription_id, &caller.tenant_id).await?;
    let owner_id = owner.id();
    require(
        app,
        caller,
        &owner_id,
        "Microsoft.ManagedIdentity/identities/read",
    )
    .await?;
    let m = identities::system_assigned_for(&*app.store, &owner_id)
        .await?
        .ok_or_else(|| {
            ArmError::not_found(
                "ResourceNotFound",
                format!("The resource '{owner_id}' has no system-assigned identity."),
            )
        })?;
    Ok(Json(json!({
        "id": format!("{owner_id}/providers/Microsoft.ManagedIdentity/identities/default"),
        "name": "default",
        "type": "Microsoft.ManagedIdentity/Identities",
        "location": m.identity.location,
        "tags": {},
        "properties": {
            "tenantId": m.principal.tenant_id,
            "principalId": m.principal.object_id,
            "clientId": m.principal.client_id,
            "clientSecretUrl": null,
        }
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_paths() {
        let p = |s: &str| parse_path(s);
        assert_eq!(
            p("/subscriptions/S/providers/Microsoft.ManagedIdentity/userAssignedIdentities"),
            Some(("s".into(), String::new(), None))
        );
        assert_eq!(
            p(
                "/subscriptions/S/resourceGroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
            ),
            Some(("s".into(), "rg".into(), None))
        );
        assert_eq!(
            p(
                "/subscriptions/S/resourcegroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/Id-1"
            ),
            Some(("s".into(), "rg".into(), Some("Id-1".into())))
        );
    }
}
