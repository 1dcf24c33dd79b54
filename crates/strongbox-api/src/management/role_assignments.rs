//! `Microsoft.Authorization/roleAssignments` and `roleDefinitions`, as azure-mgmt-authorization
//! (api-version 2022-04-01) drives them:
//!
//! - `PUT|GET|DELETE {scope}/providers/Microsoft.Authorization/roleAssignments/{guid}`
//! - `GET {scope}/providers/Microsoft.Authorization/roleAssignments[?$filter=atScope() |
//!   principalId eq '{id}' | assignedTo('{id}')]`
//! - `GET {scope}/providers/Microsoft.Authorization/roleDefinitions[/{guid}][?$filter=roleName
//!   eq '{name}']` listing the built-in roles of `strongbox_domain::rbac`.
//!
//! A scope is a subscription, a resource group, or a resource beneath one (a vault, a secret of
//! a vault, a user-assigned identity). Creating and deleting assignments needs
//! `Microsoft.Authorization/roleAssignments/write|delete` at the scope (Owner); reading needs
//! `…/read`. Routes exist per scope depth because the scope is a path prefix.

use super::context::{
    ApiVersions, ArmCtx, Done, MAX_AUTHZ_BODY_BYTES, json_body, rfc3339, subscription_chain,
};
use super::{ArmError, require};
use crate::AppState;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use strongbox_domain::arm::{Scope, display_scope, is_guid};
use strongbox_domain::rbac::{self, BUILTIN_ROLES, RoleDefinition};
use strongbox_store::RoleAssignmentRow;

const API_VERSIONS: &[&str] = &[
    "2015-07-01",
    "2018-01-01-preview",
    "2018-09-01-preview",
    "2020-03-01-preview",
    "2020-04-01-preview",
    "2020-08-01-preview",
    "2020-10-01-preview",
    "2021-04-01-preview",
    "2022-01-01-preview",
    "2022-04-01",
    "2022-05-01-preview",
];

const ASSIGNMENTS: &str = "providers/Microsoft.Authorization/roleAssignments";
const DEFINITIONS: &str = "providers/Microsoft.Authorization/roleDefinitions";

/// The scope prefixes routes are registered under (both spellings ARM clients use for
/// resource groups).
fn scope_prefixes() -> Vec<String> {
    let mut v = vec!["/subscriptions/{sub}".to_string()];
    for rgs in ["resourceGroups", "resourcegroups"] {
        let rg = format!("/subscriptions/{{sub}}/{rgs}/{{rg}}");
        v.push(rg.clone());
        v.push(format!("{rg}/providers/{{ns}}/{{t1}}/{{n1}}"));
        v.push(format!("{rg}/providers/{{ns}}/{{t1}}/{{n1}}/{{t2}}/{{n2}}"));
    }
    v
}

pub fn routes() -> Router<Arc<AppState>> {
    let mut r = Router::new();
    for prefix in scope_prefixes() {
        r = r
            .route(&format!("{prefix}/{ASSIGNMENTS}"), get(list_assignments))
            .route(
                &format!("{prefix}/{ASSIGNMENTS}/{{ra}}"),
                get(assignment).put(assignment).delete(assignment),
            )
            .route(&format!("{prefix}/{DEFINITIONS}"), get(definitions))
            .route(&format!("{prefix}/{DEFINITIONS}/{{rd}}"), get(definitions));
    }
    r.route(&format!("/{DEFINITIONS}"), get(definitions))
        .route(&format!("/{DEFINITIONS}/{{rd}}"), get(definitions))
}

/// Splits `{scope}/providers/Microsoft.Authorization/{kind}[/{name}]` (case-insensitive).
fn split_path<'a>(path: &'a str, kind: &str) -> Option<(&'a str, Option<&'a str>)> {
    let marker = format!(
        "/providers/microsoft.authorization/{}",
        kind.to_ascii_lowercase()
    );
    let lower = path.to_ascii_lowercase();
    let at = lower.rfind(&marker)?;
    let rest = path[at + marker.len()..].trim_end_matches('/');
    let name = rest.strip_prefix('/');
    if !rest.is_empty() && name.is_none_or(|n| n.contains('/')) {
        return None;
    }
    Some((&path[..at], name))
}

fn not_found(what: &str) -> ArmError {
    ArmError::not_found(
        "RoleAssignmentNotFound",
        format!("The role assignment '{what}' is not found."),
    )
}

fn principal_not_found(id: &str, tenant: &str) -> ArmError {
    ArmError::new(
        StatusCode::BAD_REQUEST,
        "PrincipalNotFound",
        format!(
            "Principal {} does not exist in the directory {tenant}.",
            id.chars().take(64).collect::<String>()
        ),
    )
}

fn definition_id(subscription: Option<&str>, role: &RoleDefinition) -> String {
    match subscription {
        Some(s) => format!("/subscriptions/{s}/{DEFINITIONS}/{}", role.id),
        None => format!("/{DEFINITIONS}/{}", role.id),
    }
}

/// ARM's principalType of a principal: people are `User`, everything else (applications,
/// managed identities) a `ServicePrincipal`.
fn arm_principal_type(kind: &str) -> &'static str {
    if kind == "User" {
        "User"
    } else {
        "ServicePrincipal"
    }
}

/// The principalType of the principal an assignment names (gone: `ServicePrincipal`, as before).
async fn principal_type_of(app: &AppState, principal_id: &str) -> Result<&'static str, ArmError> {
    Ok(app
        .store
        .get_principal(principal_id)
        .await?
        .map_or("ServicePrincipal", |p| arm_principal_type(&p.kind)))
}

fn assignment_json(a: &RoleAssignmentRow, principal_type: &str) -> serde_json::Value {
    let scope = display_scope(&a.scope);
    let subscription = Scope::parse(&a.scope).ok().map(|s| s.subscription_id);
    let role_id = match rbac::role_definition(&a.role_definition_id) {
        Some(r) => definition_id(subscription.as_deref(), r),
        None => a.role_definition_id.clone(),
    };
    json!({
        "id": format!("{scope}/{ASSIGNMENTS}/{}", a.id),
        "name": a.id,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "scope": scope,
            "roleDefinitionId": role_id,
            "principalId": a.principal_id,
            "principalType": principal_type,
            "description": null,
            "condition": null,
            "conditionVersion": null,
            "createdOn": rfc3339(a.created * 1000),
            "updatedOn": rfc3339(a.created * 1000),
            "createdBy": null,
            "updatedBy": null,
            "delegatedManagedIdentityResourceId": null,
        }
    })
}

fn definition_json(subscription: Option<&str>, r: &RoleDefinition) -> serde_json::Value {
    json!({
        "id": definition_id(subscription, r),
        "name": r.id,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": r.name,
            "type": "BuiltInRole",
            "description": r.description,
            "assignableScopes": ["/"],
            "permissions": [{
                "actions": r.actions,
                "notActions": r.not_actions,
                "dataActions": r.data_actions,
                "notDataActions": r.not_data_actions,
            }],
            "createdOn": null,
            "updatedOn": null,
            "createdBy": null,
            "updatedBy": null,
        }
    })
}

/// Checks, in ARM's order, that the scope's subscription exists (in the caller's tenant), that
/// the caller holds `action` there, and, for resources, that the resource exists (so existence
/// is not revealed to callers without rights).
async fn authorize_scope(
    app: &AppState,
    scope: &Scope,
    caller: &strongbox_domain::Caller,
    action: &str,
) -> Result<(), ArmError> {
    let subscription = app.store.get_subscription(&scope.subscription_id).await?;
    if subscription.is_none_or(|s| s.tenant_id != caller.tenant_id) {
        return Err(ArmError::not_found(
            "SubscriptionNotFound",
            format!(
                "The subscription '{}' could not be found.",
                scope.subscription_id
            ),
        ));
    }
    require(app, caller, &scope.id(), action).await?;
    let Some((ns, chain_parts)) = &scope.resource else {
        return Ok(());
    };
    let missing = || {
        ArmError::not_found(
            "ResourceNotFound",
            format!("The resource '{}' was not found.", scope.id()),
        )
    };
    if let Some((vault_name, _secret)) = scope.vault() {
        app.store
            .get_vault_by_name(vault_name)
            .await?
            .filter(|v| v.deleted.is_none())
            .filter(|v| {
                v.resource_id.eq_ignore_ascii_case(
                    &Scope {
                        resource: Some((ns.clone(), chain_parts[..1].to_vec())),
                        ..scope.clone()
                    }
                    .id(),
                )
            })
            .ok_or_else(missing)?;
        return Ok(());
    }
    if ns == "microsoft.managedidentity"
        && chain_parts.len() == 1
        && chain_parts[0].0 == "userassignedidentities"
    {
        app.store
            .get_managed_identity_by_resource(
                strongbox_domain::identities::USER_ASSIGNED,
                &scope.key(),
            )
            .await?
            .ok_or_else(missing)?;
        return Ok(());
    }
    Err(ArmError::new(
        StatusCode::BAD_REQUEST,
        "InvalidScope",
        format!(
            "Role assignments at '{}' are not supported: use a subscription, resource group, vault, secret or user-assigned identity.",
            scope.id()
        ),
    ))
}

/// The audit chain for a scope, without failing (refusals are audited too).
async fn chain_of(app: &AppState, scope: Option<&Scope>) -> String {
    let Some(scope) = scope else {
        return "subscription:unknown".into();
    };
    if let Some((vault, _)) = scope.vault()
        && let Ok(Some(v)) = app.store.get_vault_by_name(vault).await
        && v.subscription_id
            .eq_ignore_ascii_case(&scope.subscription_id)
    {
        return v.id;
    }
    subscription_chain(app, &scope.subscription_id).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    properties: CreateProperties,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateProperties {
    role_definition_id: String,
    principal_id: String,
    #[serde(default)]
    principal_type: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    condition: Option<String>,
    #[serde(default)]
    condition_version: Option<String>,
    #[serde(default)]
    delegated_managed_identity_resource_id: Option<String>,
}

/// The role GUID a `roleDefinitionId` names, if it is a built-in role's id at the tenant or at
/// the scope's subscription.
fn parse_role_definition_id(
    id: &str,
    subscription: &str,
) -> Result<&'static RoleDefinition, ArmError> {
    let lower = id.to_ascii_lowercase();
    let tenant_prefix = format!("/{}/", DEFINITIONS.to_ascii_lowercase());
    let sub_prefix = format!(
        "/subscriptions/{}{tenant_prefix}",
        subscription.to_ascii_lowercase()
    );
    let guid = lower
        .strip_prefix(&sub_prefix)
        .or_else(|| lower.strip_prefix(&tenant_prefix))
        .filter(|g| is_guid(g))
        .ok_or_else(|| {
            ArmError::new(
                StatusCode::BAD_REQUEST,
                "InvalidRoleDefinitionId",
                "The roleDefinitionId must be '/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{guid}'.",
            )
        })?;
    rbac::role_definition(guid).ok_or_else(|| {
        ArmError::new(
            StatusCode::BAD_REQUEST,
            "RoleDefinitionDoesNotExist",
            format!("The specified role definition with ID '{guid}' does not exist."),
        )
    })
}

async fn assignment(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let operation = match method {
        Method::PUT => "Microsoft.Authorization/roleAssignments/write",
        Method::DELETE => "Microsoft.Authorization/roleAssignments/delete",
        _ => "Microsoft.Authorization/roleAssignments/read",
    };
    let parsed = split_path(uri.path(), "roleAssignments")
        .and_then(|(scope, name)| Some((Scope::parse(scope).ok()?, name?)));
    let chain = chain_of(&app, parsed.as_ref().map(|(s, _)| s)).await;
    let resource_id = uri.path().to_string();
    let outcome = match parsed {
        None => Err(ArmError::bad_request(
            "The role assignment path is not valid.",
        )),
        Some((scope, name)) => assignment_op(&app, &ctx, &method, &scope, name, &body).await,
    };
    ctx.finish(
        &app,
        &chain,
        &resource_id,
        operation,
        outcome.map(Done::response),
    )
    .await
}

async fn assignment_op(
    app: &AppState,
    ctx: &ArmCtx,
    method: &Method,
    scope: &Scope,
    name: &str,
    body: &Result<Bytes, BytesRejection>,
) -> Result<Response, ArmError> {
    let caller = ctx.check(ApiVersions::Only(API_VERSIONS))?;
    let action = match *method {
        Method::PUT => "Microsoft.Authorization/roleAssignments/write",
        Method::DELETE => "Microsoft.Authorization/roleAssignments/delete",
        _ => "Microsoft.Authorization/roleAssignments/read",
    };
    authorize_scope(app, scope, caller, action).await?;
    if !is_guid(name) {
        return Err(ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRoleAssignmentId",
            "The role assignment ID is not valid. The role assignment ID must be a GUID.",
        ));
    }
    let name = name.to_ascii_lowercase();
    let existing = app
        .store
        .get_role_assignment(&name)
        .await?
        .filter(|a| a.scope == scope.key());
    match *method {
        Method::GET => {
            let a = existing.ok_or_else(|| not_found(&name))?;
            let t = principal_type_of(app, &a.principal_id).await?;
            Ok(Json(assignment_json(&a, t)).into_response())
        }
        Method::DELETE => match existing {
            None => Ok(StatusCode::NO_CONTENT.into_response()),
            Some(a) => match app.store.delete_role_assignment(&a.id).await {
                Ok(()) => {
                    let t = principal_type_of(app, &a.principal_id).await?;
                    Ok(Json(assignment_json(&a, t)).into_response())
                }
                Err(strongbox_store::StoreError::NotFound) => {
                    Ok(StatusCode::NO_CONTENT.into_response())
                }
                Err(e) => Err(e.into()),
            },
        },
        _ => {
            let body: CreateBody = json_body(body, MAX_AUTHZ_BODY_BYTES)?;
            let p = body.properties;
            if p.condition.is_some()
                || p.condition_version.is_some()
                || p.delegated_managed_identity_resource_id.is_some()
                || p.description.as_deref().is_some_and(|d| !d.is_empty())
            {
                return Err(ArmError::bad_request(
                    "Conditions, descriptions and delegated managed identities are not supported on role assignments.",
                ));
            }
            let role = parse_role_definition_id(&p.role_definition_id, &scope.subscription_id)?;
            let principal_id = p.principal_id.to_ascii_lowercase();
            if !is_guid(&principal_id) {
                return Err(principal_not_found(&principal_id, &caller.tenant_id));
            }
            let principal = app
                .store
                .get_principal(&principal_id)
                .await?
                .filter(|pr| pr.tenant_id == caller.tenant_id)
                .ok_or_else(|| principal_not_found(&principal_id, &caller.tenant_id))?;
            let principal_type = arm_principal_type(&principal.kind);
            if let Some(t) = &p.principal_type
                && !t.eq_ignore_ascii_case(principal_type)
            {
                return Err(ArmError::new(
                    StatusCode::BAD_REQUEST,
                    "UnmatchedPrincipalType",
                    format!(
                        "The PrincipalId is of type '{principal_type}'; the request's principalType does not match it."
                    ),
                ));
            }
            let row = RoleAssignmentRow {
                id: name.clone(),
                scope: scope.key(),
                role_definition_id: role.id.to_string(),
                principal_id: principal.object_id.clone(),
                created: app.clock.now(),
            };
            if let Some(a) = &existing {
                if a.role_definition_id.eq_ignore_ascii_case(role.id)
                    && a.principal_id == row.principal_id
                {
                    return Ok(Json(assignment_json(a, principal_type)).into_response());
                }
                return Err(ArmError::conflict(
                    "RoleAssignmentUpdateNotPermitted",
                    "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
                ));
            }
            let same = app
                .store
                .list_role_assignments_for_principal(&row.principal_id)
                .await?
                .into_iter()
                .any(|a| {
                    a.scope == row.scope && a.role_definition_id.eq_ignore_ascii_case(role.id)
                });
            if same {
                return Err(ArmError::conflict(
                    "RoleAssignmentExists",
                    "The role assignment already exists.",
                ));
            }
            match app.store.insert_role_assignment(row.clone()).await {
                Ok(()) => Ok((
                    StatusCode::CREATED,
                    Json(assignment_json(&row, principal_type)),
                )
                    .into_response()),
                // The name is taken at another scope.
                Err(strongbox_store::StoreError::Conflict) => Err(ArmError::conflict(
                    "RoleAssignmentUpdateNotPermitted",
                    "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
                )),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// A parsed `$filter` of the role-assignment list.
#[derive(Debug, Default, PartialEq)]
struct Filter {
    at_scope: bool,
    principal: Option<String>,
}

fn parse_filter(f: &str) -> Result<Filter, ArmError> {
    let bad = || {
        ArmError::new(
            StatusCode::BAD_REQUEST,
            "UnsupportedQuery",
            "The $filter is not supported: use atScope(), principalId eq '{id}' or assignedTo('{id}'), joined by 'and'.",
        )
    };
    let mut out = Filter::default();
    for term in f.split(" and ").map(str::trim) {
        if term.eq_ignore_ascii_case("atScope()") {
            out.at_scope = true;
            continue;
        }
        let quoted = |s: &str| -> Option<String> {
            let s = s.trim();
            s.strip_prefix('\'')?
                .strip_suffix('\'')
                .filter(|v| !v.contains('\''))
                .map(str::to_ascii_lowercase)
        };
        let id = if let Some(rest) = term.strip_prefix("principalId eq ") {
            quoted(rest)
        } else if let Some(rest) = term
            .strip_prefix("assignedTo(")
            .and_then(|r| r.strip_suffix(')'))
        {
            quoted(rest)
        } else {
            None
        };
        match id {
            Some(id) if out.principal.is_none() => out.principal = Some(id),
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

async fn list_assignments(State(app): State<Arc<AppState>>, ctx: ArmCtx, uri: Uri) -> Response {
    let scope = split_path(uri.path(), "roleAssignments")
        .filter(|(_, name)| name.is_none())
        .and_then(|(s, _)| Scope::parse(s).ok());
    let chain = chain_of(&app, scope.as_ref()).await;
    let outcome = match &scope {
        None => Err(ArmError::bad_request("The scope is not valid.")),
        Some(scope) => list_op(&app, &ctx, scope).await,
    };
    ctx.finish(
        &app,
        &chain,
        uri.path(),
        "Microsoft.Authorization/roleAssignments/read",
        outcome.map(Done::response),
    )
    .await
}

async fn list_op(app: &AppState, ctx: &ArmCtx, scope: &Scope) -> Result<Response, ArmError> {
    let caller = ctx.check(ApiVersions::Only(API_VERSIONS))?;
    authorize_scope(
        app,
        scope,
        caller,
        "Microsoft.Authorization/roleAssignments/read",
    )
    .await?;
    let scope_id = scope.id();
    let filter = match ctx.query("$filter") {
        Some(f) => parse_filter(f)?,
        None => Filter::default(),
    };
    let all = app
        .store
        .list_role_assignments_under(&Scope::subscription(&scope.subscription_id).id())
        .await?;
    let listed: Vec<_> = all
        .iter()
        .filter(|a| {
            let above_or_at = rbac::scope_covers(&a.scope, &scope_id);
            let below = rbac::scope_covers(&scope_id, &a.scope);
            (above_or_at || (below && !filter.at_scope))
                && filter
                    .principal
                    .as_ref()
                    .is_none_or(|p| &a.principal_id == p)
        })
        .collect();
    let mut value = Vec::with_capacity(listed.len());
    for a in listed {
        value.push(assignment_json(
            a,
            principal_type_of(app, &a.principal_id).await?,
        ));
    }
    Ok(Json(json!({ "value": value })).into_response())
}

async fn definitions(State(app): State<Arc<AppState>>, ctx: ArmCtx, uri: Uri) -> Response {
    let parsed = split_path(uri.path(), "roleDefinitions");
    let scope = parsed.and_then(|(s, _)| (!s.is_empty()).then(|| Scope::parse(s).ok()).flatten());
    let chain = chain_of(&app, scope.as_ref()).await;
    let outcome = match parsed {
        None => Err(ArmError::bad_request(
            "The role definition path is not valid.",
        )),
        Some((s, _)) if !s.is_empty() && scope.is_none() => {
            Err(ArmError::bad_request("The scope is not valid."))
        }
        Some((_, name)) => definitions_op(&app, &ctx, scope.as_ref(), name).await,
    };
    ctx.finish(
        &app,
        &chain,
        uri.path(),
        "Microsoft.Authorization/roleDefinitions/read",
        outcome.map(Done::response),
    )
    .await
}

async fn definitions_op(
    app: &AppState,
    ctx: &ArmCtx,
    scope: Option<&Scope>,
    name: Option<&str>,
) -> Result<Response, ArmError> {
    let caller = ctx.check(ApiVersions::Only(API_VERSIONS))?;
    // Built-in roles are public knowledge; under a scope the caller must be able to read there.
    if let Some(scope) = scope {
        authorize_scope(
            app,
            scope,
            caller,
            "Microsoft.Authorization/roleDefinitions/read",
        )
        .await?;
    }
    let subscription = scope.map(|s| s.subscription_id.as_str());
    if let Some(name) = name {
        let role = is_guid(name)
            .then(|| rbac::role_definition(name))
            .flatten()
            .ok_or_else(|| {
                ArmError::not_found(
                    "RoleDefinitionDoesNotExist",
                    format!(
                        "The specified role definition with ID '{}' does not exist.",
                        name.chars().take(64).collect::<String>()
                    ),
                )
            })?;
        return Ok(Json(definition_json(subscription, role)).into_response());
    }
    let mut by_name = None;
    if let Some(f) = ctx.query("$filter") {
        let f = f.trim();
        if let Some(n) = f
            .strip_prefix("roleName eq '")
            .and_then(|r| r.strip_suffix('\''))
        {
            by_name = Some(n.to_string());
        } else if !f.eq_ignore_ascii_case("type eq 'BuiltInRole'") {
            return Err(ArmError::new(
                StatusCode::BAD_REQUEST,
                "UnsupportedQuery",
                "The $filter is not supported: use roleName eq '{name}' or type eq 'BuiltInRole'.",
            ));
        }
    }
    let value: Vec<_> = BUILTIN_ROLES
        .iter()
        .filter(|r| {
            by_name
                .as_ref()
                .is_none_or(|n| r.name.eq_ignore_ascii_case(n))
        })
        .map(|r| definition_json(subscription, r))
        .collect();
    Ok(Json(json!({ "value": value })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_scope_and_name() {
        assert_eq!(
            split_path(
                "/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/abc",
                "roleAssignments"
            ),
            Some(("/subscriptions/s", Some("abc")))
        );
        assert_eq!(
            split_path(
                "/subscriptions/s/resourcegroups/rg/providers/microsoft.authorization/roleassignments",
                "roleAssignments"
            ),
            Some(("/subscriptions/s/resourcegroups/rg", None))
        );
        assert_eq!(
            split_path(
                "/providers/Microsoft.Authorization/roleDefinitions/x",
                "roleDefinitions"
            ),
            Some(("", Some("x")))
        );
        assert_eq!(
            split_path(
                "/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/a/b",
                "roleAssignments"
            ),
            None
        );
    }

    #[test]
    fn filters_as_the_sdks_send_them() {
        assert_eq!(
            parse_filter("atScope()").unwrap(),
            Filter {
                at_scope: true,
                principal: None
            }
        );
        assert_eq!(
            parse_filter("atScope() and assignedTo('ABC')").unwrap(),
            Filter {
                at_scope: true,
                principal: Some("abc".into())
            }
        );
        assert_eq!(
            parse_filter("principalId eq 'x'")
                .unwrap()
                .principal
                .as_deref(),
            Some("x")
        );
        for bad in [
            "roleName eq 'x'",
            "principalId eq x",
            "atScope() or 1",
            "principalId eq 'a' and principalId eq 'b'",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn role_definition_ids_at_tenant_or_subscription() {
        let sub = "11111111-1111-1111-1111-111111111111";
        let id = format!(
            "/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{}",
            rbac::OWNER
        );
        assert_eq!(parse_role_definition_id(&id, sub).unwrap().name, "Owner");
        let tenant = format!(
            "/providers/Microsoft.Authorization/roleDefinitions/{}",
            rbac::READER
        );
        assert_eq!(
            parse_role_definition_id(&tenant, sub).unwrap().name,
            "Reader"
        );
        assert!(parse_role_definition_id(rbac::OWNER, sub).is_err());
        assert!(parse_role_definition_id(&id.replace(sub, "other"), sub).is_err());
        assert!(
            parse_role_definition_id(
                "/providers/Microsoft.Authorization/roleDefinitions/00000000-0000-0000-0000-000000000000",
                sub
            )
            .is_err()
        );
    }
}
