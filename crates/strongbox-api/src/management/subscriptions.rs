//! What the Azure CLI asks of ARM before any resource command: the cloud's metadata document
//! (`az cloud register --endpoint-resource-manager`), the caller's subscriptions and tenants
//! (`az login`), and a subscription by id (`az account set`, `--subscription`).

use super::ArmError;
use super::context::{
    ApiVersions, ArmCtx, Done, Outcome, bad_path, clip, method_not_allowed, subscription_chain,
    vault_host,
};
use crate::AppState;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;
use strongbox_domain::rbac;
use strongbox_domain::vault_lifecycle::{UNKNOWN_SUBSCRIPTION_CHAIN, tenant_chain};
use strongbox_store::SubscriptionRow;

/// ARM's operation names, as the audit log records them.
const SUBSCRIPTION_READ: &str = "Microsoft.Resources/subscriptions/read";
const TENANT_READ: &str = "Microsoft.Resources/tenants/read";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/metadata/endpoints",
            get(metadata_endpoints).fallback(method_not_allowed),
        )
        .route(
            "/subscriptions",
            get(list_subscriptions).fallback(method_not_allowed),
        )
        .route(
            "/subscriptions/{subscriptionId}",
            get(get_subscription).fallback(method_not_allowed),
        )
        .route("/tenants", get(list_tenants).fallback(method_not_allowed))
}

/// The cloud's endpoints in ARM's metadata shape (`GET /metadata/endpoints`): what `az cloud
/// register --endpoint-resource-manager URL` reads to configure itself. Public, like the OpenID
/// discovery document. api-version 2019-05-01 and older answer a list of clouds, newer ones the
/// one cloud (the form the CLI's 2022-09-01 request expects).
async fn metadata_endpoints(State(app): State<Arc<AppState>>, ctx: ArmCtx) -> Response {
    let authority = app.tokens.authority();
    let host = vault_host(&app);
    let cloud = json!({
        "name": "Strongbox",
        "portal": format!("{authority}/portal"),
        "authentication": {
            "loginEndpoint": authority,
            // The first audience is the resource the CLI asks ARM tokens for.
            "audiences": [format!("{authority}/"), "https://management.core.windows.net/", "https://management.azure.com/"],
            "tenant": "common",
            "identityProvider": "AAD",
        },
        "resourceManager": format!("{authority}/"),
        "microsoftGraphResourceId": format!("{authority}/graph/"),
        "suffixes": {
            "keyVaultDns": format!("{}{}", host.dns_suffix, host.port_suffix),
        },
    });
    let legacy = ctx
        .query("api-version")
        .is_some_and(|v| v.get(..10).is_some_and(|d| d <= "2019-05-01"));
    let body = if legacy { json!([cloud]) } else { cloud };
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// A subscription in the shape of ARM's Subscriptions API (2022-12-01).
fn wire(s: &SubscriptionRow) -> Value {
    json!({
        "id": format!("/subscriptions/{}", s.id),
        "subscriptionId": s.id,
        "tenantId": s.tenant_id,
        "displayName": s.display_name,
        "state": "Enabled",
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "Strongbox",
            "spendingLimit": "Off",
        },
    })
}

/// The caller's subscriptions in its own tenant: those it holds a role in.
async fn in_reach(app: &AppState, ctx: &ArmCtx) -> Result<Vec<SubscriptionRow>, ArmError> {
    let caller = ctx.check(ApiVersions::Dates)?;
    let assignments = app
        .store
        .list_role_assignments_for_principal(&caller.object_id)
        .await?;
    let mut out = Vec::new();
    for id in rbac::subscriptions_in_reach(&assignments) {
        if let Some(s) = app.store.get_subscription(&id).await?
            && s.tenant_id.eq_ignore_ascii_case(&caller.tenant_id)
        {
            out.push(s);
        }
    }
    Ok(out)
}

async fn list_subscriptions(State(app): State<Arc<AppState>>, ctx: ArmCtx) -> Response {
    let outcome: Outcome = async {
        let subs = in_reach(&app, &ctx).await?;
        let value: Vec<Value> = subs.iter().map(wire).collect();
        let count = value.len();
        Ok(Done::json(
            StatusCode::OK,
            &json!({"value": value, "count": {"type": "Total", "value": count}}),
            false,
        ))
    }
    .await;
    let chain = caller_chain(&ctx);
    ctx.finish(&app, &chain, "/subscriptions", SUBSCRIPTION_READ, outcome)
        .await
}

async fn get_subscription(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let Path(sub) = match path {
        Ok(p) => p,
        Err(e) => return bad_path(e),
    };
    let scope = format!("/subscriptions/{sub}");
    let outcome: Outcome = async {
        let wanted = sub.to_ascii_lowercase();
        let found = in_reach(&app, &ctx)
            .await?
            .into_iter()
            .find(|s| s.id.eq_ignore_ascii_case(&wanted));
        // One answer for "no such subscription" and "not yours", as ARM gives.
        let s = found.ok_or_else(|| {
            ArmError::not_found(
                "SubscriptionNotFound",
                format!("The subscription '{}' could not be found.", clip(&sub)),
            )
        })?;
        Ok(Done::json(StatusCode::OK, &wire(&s), false))
    }
    .await;
    let chain = subscription_chain(&app, &sub).await;
    ctx.finish(&app, &chain, &scope, SUBSCRIPTION_READ, outcome)
        .await
}

/// The caller's own tenant: a token names exactly one.
async fn list_tenants(State(app): State<Arc<AppState>>, ctx: ArmCtx) -> Response {
    let outcome: Outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        let tenant = app.store.get_tenant(&caller.tenant_id).await?;
        let value: Vec<Value> = tenant
            .iter()
            .map(|t| {
                json!({
                    "id": format!("/tenants/{}", t.id),
                    "tenantId": t.id,
                    "tenantCategory": "Home",
                    "displayName": t.display_name,
                    "domains": [],
                    "tenantType": "AAD",
                })
            })
            .collect();
        Ok(Done::json(StatusCode::OK, &json!({"value": value}), false))
    }
    .await;
    let chain = caller_chain(&ctx);
    ctx.finish(&app, &chain, "/tenants", TENANT_READ, outcome)
        .await
}

/// Tenant-level requests join the caller's tenant chain; unauthenticated ones the shared chain
/// of unknown subscriptions, so they cannot mint chains.
fn caller_chain(ctx: &ArmCtx) -> String {
    match ctx.caller() {
        Ok(c) => tenant_chain(&c.tenant_id),
        Err(_) => UNKNOWN_SUBSCRIPTION_CHAIN.into(),
    }
}
