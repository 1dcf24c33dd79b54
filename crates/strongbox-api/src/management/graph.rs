//! The few Microsoft Graph (v1.0) directory lookups the Azure CLI makes around its ARM calls:
//! "who am I" before `az keyvault create` grants the caller an access policy, an assignee's
//! object id and type for `az role assignment create`, and principal names for `az role
//! assignment list`. Served under `{authority}/graph` (the cloud metadata's
//! `microsoftGraphResourceId`), with tokens for that audience (or Graph's own). A caller sees
//! only principals and users of its own tenant, and only their ids, names, app ids and UPNs.

use super::ArmError;
use super::context::{ArmCtx, Done, MAX_AUTHZ_BODY_BYTES, Outcome, json_body, method_not_allowed};
use crate::AppState;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use strongbox_domain::Caller;
use strongbox_domain::vault_lifecycle::tenant_chain;
use strongbox_identity::Plane;
use strongbox_store::{PrincipalRow, UserRow};

/// The principal kind of people (see strongbox-identity's users).
const USER_KIND: &str = "User";
/// Graph's own limit on `directoryObjects/getByIds`.
const MAX_IDS: usize = 1000;
/// The audit record's operation name of every directory read.
const DIRECTORY_READ: &str = "Microsoft.Graph/directoryObjects/read";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/graph/v1.0/me", get(me).fallback(method_not_allowed))
        .route(
            "/graph/v1.0/servicePrincipals",
            get(service_principals).fallback(method_not_allowed),
        )
        .route("/graph/v1.0/users", get(users).fallback(method_not_allowed))
        .route(
            "/graph/v1.0/directoryObjects/getByIds",
            post(get_by_ids).fallback(method_not_allowed),
        )
}

/// A request to the directory: the management context with a token for the Graph audience.
struct GraphCtx(ArmCtx);

impl FromRequestParts<Arc<AppState>> for GraphCtx {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        Ok(GraphCtx(ArmCtx::new(parts, app, Plane::Graph).await))
    }
}

impl GraphCtx {
    /// Answers `outcome` after its audit record is durable in the caller's tenant chain.
    async fn finish(&self, app: &AppState, outcome: Outcome) -> Response {
        let chain = match self.0.caller() {
            Ok(c) => tenant_chain(&c.tenant_id),
            Err(_) => strongbox_domain::vault_lifecycle::UNKNOWN_SUBSCRIPTION_CHAIN.into(),
        };
        self.0
            .finish(app, &chain, &self.0.path, DIRECTORY_READ, outcome)
            .await
    }
}

/// A person as Graph shows a user.
fn wire_user(u: &UserRow) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.user",
        "id": u.object_id,
        "userPrincipalName": u.upn,
        "displayName": u.display_name,
        "accountEnabled": u.enabled,
    })
}

/// A directory object: a user, or a service principal (managed identities are service
/// principals there too).
async fn wire_object(app: &AppState, p: &PrincipalRow) -> Result<Value, ArmError> {
    if p.kind == USER_KIND
        && let Some(u) = app.store.get_user(&p.object_id).await?
    {
        return Ok(wire_user(&u));
    }
    Ok(wire(p))
}

/// A directory object as Graph shows a service principal.
fn wire(p: &PrincipalRow) -> Value {
    let kind = if p.kind == "ServicePrincipal" {
        "Application"
    } else {
        "ManagedIdentity"
    };
    json!({
        "@odata.type": "#microsoft.graph.servicePrincipal",
        "id": p.object_id,
        "appId": p.client_id,
        "displayName": p.display_name,
        "servicePrincipalNames": [p.client_id],
        "servicePrincipalType": kind,
        "accountEnabled": true,
    })
}

fn list(value: Vec<Value>) -> Outcome {
    Ok(Done::json(
        StatusCode::OK,
        &json!({ "value": value }),
        false,
    ))
}

/// The principal behind an object id, if it is in the caller's tenant.
async fn in_tenant(
    app: &AppState,
    caller: &Caller,
    object_id: &str,
) -> Result<Option<PrincipalRow>, ArmError> {
    Ok(app
        .store
        .get_principal(&object_id.to_ascii_lowercase())
        .await?
        .filter(|p| p.tenant_id.eq_ignore_ascii_case(&caller.tenant_id)))
}

/// `/me`: the signed-in user (a delegated token); an application's token gets Graph's
/// refusal, which tells the CLI to look the caller up by its app id instead.
async fn me(State(app): State<Arc<AppState>>, ctx: GraphCtx) -> Response {
    let outcome: Outcome = async {
        let caller = ctx.0.caller()?;
        match app.store.get_user(&caller.object_id).await? {
            Some(u) if u.tenant_id.eq_ignore_ascii_case(&caller.tenant_id) => {
                Ok(Done::json(StatusCode::OK, &wire_user(&u), false))
            }
            _ => Err(ArmError::bad_request_code(
                "BadRequest",
                "/me request is only valid with delegated authentication flow.",
            )),
        }
    }
    .await;
    ctx.finish(&app, outcome).await
}

/// `servicePrincipals?$filter=servicePrincipalNames/any(c:c eq 'APP-ID')`: the principal of an
/// app id, which is its one service principal name here.
async fn service_principals(State(app): State<Arc<AppState>>, ctx: GraphCtx) -> Response {
    let outcome: Outcome = async {
        let caller = ctx.0.caller()?;
        let filter = ctx.0.query("$filter").unwrap_or_default();
        let Some(app_id) = spn_filter(filter) else {
            return Err(unsupported_filter());
        };
        let found = app
            .store
            .get_principal_by_client_id(&caller.tenant_id, &app_id)
            .await?;
        list(found.iter().map(wire).collect())
    }
    .await;
    ctx.finish(&app, outcome).await
}

/// `users?$filter=userPrincipalName eq 'UPN'`: the user of that name in the caller's tenant.
async fn users(State(app): State<Arc<AppState>>, ctx: GraphCtx) -> Response {
    let outcome: Outcome = async {
        let caller = ctx.0.caller()?;
        let filter = ctx.0.query("$filter").unwrap_or_default();
        let Some(upn) = upn_filter(filter) else {
            return Err(unsupported_filter());
        };
        let found = app
            .store
            .get_user_by_upn(&upn.to_ascii_lowercase())
            .await?
            .filter(|u| u.tenant_id.eq_ignore_ascii_case(&caller.tenant_id));
        list(found.iter().map(wire_user).collect())
    }
    .await;
    ctx.finish(&app, outcome).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetByIds {
    ids: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)] // accepted as Graph does; every object here is a service principal
    types: Vec<String>,
}

/// `directoryObjects/getByIds`: the objects of those ids that exist in the caller's tenant.
async fn get_by_ids(
    State(app): State<Arc<AppState>>,
    ctx: GraphCtx,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let outcome: Outcome = async {
        let caller = ctx.0.caller()?;
        let req: GetByIds = json_body(&body, MAX_AUTHZ_BODY_BYTES)?;
        if req.ids.len() > MAX_IDS {
            return Err(ArmError::bad_request(format!(
                "At most {MAX_IDS} ids can be looked up at once."
            )));
        }
        let mut value = Vec::new();
        for id in &req.ids {
            if let Some(p) = in_tenant(&app, caller, id).await? {
                value.push(wire_object(&app, &p).await?);
            }
        }
        list(value)
    }
    .await;
    ctx.finish(&app, outcome).await
}

fn unsupported_filter() -> ArmError {
    ArmError::bad_request_code(
        "Request_UnsupportedQuery",
        "Only the filters the Azure CLI sends are supported: servicePrincipalNames/any(c:c eq 'ID') and userPrincipalName eq 'UPN'.",
    )
}

/// The quoted value of `servicePrincipalNames/any(c:c eq 'VALUE')`.
fn spn_filter(f: &str) -> Option<String> {
    let inner = f
        .trim()
        .strip_prefix("servicePrincipalNames/any(")?
        .strip_suffix(')')?;
    let (var, rest) = inner.split_once(':')?;
    let rest = rest.trim().strip_prefix(var.trim())?.trim_start();
    let value = rest.strip_prefix("eq")?.trim();
    quoted(value)
}

/// The quoted value of `userPrincipalName eq 'VALUE'`.
fn upn_filter(f: &str) -> Option<String> {
    let rest = f.trim().strip_prefix("userPrincipalName")?.trim_start();
    quoted(rest.strip_prefix("eq")?.trim())
}

/// An OData string literal (`'…'`, a quote doubled inside).
fn quoted(v: &str) -> Option<String> {
    let inner = v.strip_prefix('\'')?.strip_suffix('\'')?;
    if inner.replace("''", "").contains('\'') {
        return None;
    }
    Some(inner.replace("''", "'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_the_cli_sends_are_understood() {
        assert_eq!(
            spn_filter("servicePrincipalNames/any(c:c eq 'abc-1')").as_deref(),
            Some("abc-1")
        );
        assert_eq!(
            upn_filter("userPrincipalName eq 'o''neil@contoso.example'").as_deref(),
            Some("o'neil@contoso.example")
        );
        for bad in [
            "",
            "servicePrincipalNames/any(c:d eq 'x')",
            "servicePrincipalNames/any(c:c ne 'x')",
            "displayName eq 'x'",
            "servicePrincipalNames/any(c:c eq 'x'y')",
        ] {
            assert_eq!(spn_filter(bad), None, "{bad}");
        }
    }
}
