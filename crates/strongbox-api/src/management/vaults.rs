//! Microsoft.KeyVault/vaults and deletedVaults, at the paths azure-mgmt-keyvault builds. Each
//! handler: caller and api-version → RBAC at the vault's scope → body → domain
//! (`strongbox_domain::vault_lifecycle`) → one audit record (committed with the change, or
//! appended for reads and refusals).

use super::context::{
    ApiVersions, ArmCtx, Done, MAX_MGMT_BODY_BYTES, Outcome, bad_path, json_body,
    method_not_allowed, subscription_chain, vault_chain, vault_host,
};
use super::require;
use crate::AppState;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use std::sync::Arc;
use strongbox_domain::vault_lifecycle::{
    self as lifecycle, PolicyEdit, VaultRequest, actions, deleted_vault_id, resource_group_id,
};
use strongbox_domain::vaults::vault_resource_id;
use strongbox_types::arm_vaults::ArmList;

const GROUP_VAULTS: &str = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.KeyVault/vaults";
const SUBSCRIPTION_VAULTS: &str =
    "/subscriptions/{subscriptionId}/providers/Microsoft.KeyVault/vaults";
const SUBSCRIPTION_RESOURCES: &str = "/subscriptions/{subscriptionId}/resources";
const DELETED_VAULTS: &str =
    "/subscriptions/{subscriptionId}/providers/Microsoft.KeyVault/deletedVaults";
const DELETED_VAULT: &str = "/subscriptions/{subscriptionId}/providers/Microsoft.KeyVault/locations/{location}/deletedVaults/{vaultName}";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            GROUP_VAULTS,
            get(list_in_group).fallback(method_not_allowed),
        )
        .route(
            &format!("{GROUP_VAULTS}/{{vaultName}}"),
            get(get_vault)
                .put(put_vault)
                .patch(patch_vault)
                .delete(delete_vault)
                .fallback(method_not_allowed),
        )
        .route(
            &format!("{GROUP_VAULTS}/{{vaultName}}/accessPolicies/{{operationKind}}"),
            put(access_policies).fallback(method_not_allowed),
        )
        .route(
            SUBSCRIPTION_VAULTS,
            get(list_in_subscription).fallback(method_not_allowed),
        )
        .route(
            SUBSCRIPTION_RESOURCES,
            get(list_resources).fallback(method_not_allowed),
        )
        .route(
            DELETED_VAULTS,
            get(list_deleted).fallback(method_not_allowed),
        )
        .route(
            CHECK_NAME,
            post(check_name_availability).fallback(method_not_allowed),
        )
        .route(DELETED_VAULT, get(get_deleted).fallback(method_not_allowed))
        .route(
            "/subscriptions/{subscriptionId}/providers/Microsoft.KeyVault/managedHSMs",
            get(no_hsms).fallback(method_not_allowed),
        )
        .route(
            "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.KeyVault/managedHSMs",
            get(no_hsms).fallback(method_not_allowed),
        )
        .route(
            "/subscriptions/{subscriptionId}/providers/Microsoft.KeyVault/deletedManagedHSMs",
            get(no_hsms).fallback(method_not_allowed),
        )
        .route(
            &format!("{DELETED_VAULT}/purge"),
            post(purge_deleted).fallback(method_not_allowed),
        )
        .layer(DefaultBodyLimit::max(MAX_MGMT_BODY_BYTES))
}

const CHECK_NAME: &str =
    "/subscriptions/{subscriptionId}/providers/Microsoft.KeyVault/checkNameAvailability";

type VaultPath = Result<Path<(String, String, String)>, PathRejection>;

/// Runs `f` with the vault request of the path, after authentication and RBAC for `action`,
/// then audits and answers.
macro_rules! vault_op {
    ($app:ident, $ctx:ident, $path:ident, $action:expr, |$r:ident| $body:expr) => {{
        let (sub, rg, name) = match $path {
            Ok(Path(p)) => p,
            Err(e) => return bad_path(e),
        };
        let resource_id = vault_resource_id(&sub, &rg, &name);
        let chain = vault_chain(&$app, &sub, &name).await;
        let outcome: Outcome = async {
            let caller = $ctx.check(ApiVersions::Dates)?;
            require(&$app, caller, &resource_id, $action).await?;
            let audit = $ctx.audit_ctx();
            let host = vault_host(&$app);
            let $r = VaultRequest {
                store: &*$app.store,
                clock: &*$app.clock,
                audit: &audit,
                host: &host,
                subscription_id: &sub,
                resource_group: &rg,
                name: &name,
            };
            $body
        }
        .await;
        $ctx.finish(&$app, &chain, &resource_id, $action, outcome)
            .await
    }};
}

async fn get_vault(State(app): State<Arc<AppState>>, ctx: ArmCtx, path: VaultPath) -> Response {
    vault_op!(app, ctx, path, actions::VAULT_READ, |r| {
        let v = lifecycle::get(&r).await?;
        Ok(Done::json(StatusCode::OK, &v, false))
    })
}

async fn put_vault(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: VaultPath,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    vault_op!(app, ctx, path, actions::VAULT_WRITE, |r| {
        let params = json_body(&body, MAX_MGMT_BODY_BYTES)?;
        let (v, created) = lifecycle::create_or_update(&r, params).await?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok(Done::json(status, &v, true))
    })
}

async fn patch_vault(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: VaultPath,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    vault_op!(app, ctx, path, actions::VAULT_WRITE, |r| {
        let params = json_body(&body, MAX_MGMT_BODY_BYTES)?;
        let v = lifecycle::patch(&r, params).await?;
        Ok(Done::json(StatusCode::OK, &v, true))
    })
}

async fn delete_vault(State(app): State<Arc<AppState>>, ctx: ArmCtx, path: VaultPath) -> Response {
    vault_op!(app, ctx, path, actions::VAULT_DELETE, |r| {
        Ok(if lifecycle::delete(&r).await? {
            Done::empty(StatusCode::OK, true)
        } else {
            // Nothing there: ARM's idempotent delete.
            Done::empty(StatusCode::NO_CONTENT, false)
        })
    })
}

async fn access_policies(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: Result<Path<(String, String, String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (path, kind) = match path {
        Ok(Path((s, g, n, k))) => (Ok(Path((s, g, n))), k),
        Err(e) => return bad_path(e),
    };
    vault_op!(app, ctx, path, actions::ACCESS_POLICIES_WRITE, |r| {
        let edit = PolicyEdit::parse(&kind)?;
        let params = json_body(&body, MAX_MGMT_BODY_BYTES)?;
        let echoed = lifecycle::update_access_policy(&r, edit, params).await?;
        Ok(Done::json(StatusCode::OK, &echoed, true))
    })
}

/// Lists live vaults of a subscription, or of one group in it.
async fn list(app: &AppState, ctx: &ArmCtx, sub: &str, rg: Option<&str>, scope: &str) -> Outcome {
    let caller = ctx.check(ApiVersions::Dates)?;
    require(app, caller, scope, actions::VAULT_READ).await?;
    let (top, after) = ctx.page()?;
    let (value, last) = lifecycle::list(
        &*app.store,
        &vault_host(app),
        sub,
        rg,
        after.as_deref(),
        top,
    )
    .await?;
    Ok(Done::json(
        StatusCode::OK,
        &ArmList {
            value,
            next_link: ctx.next_link(top, last),
        },
        false,
    ))
}

async fn list_in_group(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let Path((sub, rg)) = match path {
        Ok(p) => p,
        Err(e) => return bad_path(e),
    };
    let scope = resource_group_id(&sub, &rg);
    let outcome = list(&app, &ctx, &sub, Some(&rg), &scope).await;
    let chain = subscription_chain(&app, &sub).await;
    ctx.finish(&app, &chain, &scope, actions::VAULT_READ, outcome)
        .await
}

async fn list_in_subscription(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let Path(sub) = match path {
        Ok(p) => p,
        Err(e) => return bad_path(e),
    };
    let scope = format!("/subscriptions/{sub}");
    let outcome = list(&app, &ctx, &sub, None, &scope).await;
    let chain = subscription_chain(&app, &sub).await;
    ctx.finish(&app, &chain, &scope, actions::VAULT_READ, outcome)
        .await
}

/// `GET /subscriptions/{sub}/resources`, the generic resource list that azure-mgmt-keyvault's
/// `vaults.list()` (and the JS SDK's) calls with `$filter=resourceType eq
/// 'Microsoft.KeyVault/vaults'`. Only vaults are listed here; the SDKs drop the filter from the
/// next page's request, so a missing filter means the same list, and any other is refused.
async fn list_resources(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let Path(sub) = match path {
        Ok(p) => p,
        Err(e) => return bad_path(e),
    };
    let scope = format!("/subscriptions/{sub}");
    let outcome = match ctx.query("$filter").map(ResourceFilter::parse) {
        // Authentication first, so an anonymous caller learns nothing from the filter check.
        Some(None) => ctx.check(ApiVersions::Dates).and_then(|_| {
            Err(super::ArmError::bad_request(
                "The $filter is not supported: use resourceType eq 'Microsoft.KeyVault/vaults', optionally with and name eq 'NAME'.",
            ))
        }),
        Some(Some(ResourceFilter { name: Some(name) })) => {
            list_named(&app, &ctx, &sub, &name, &scope).await
        }
        _ => list(&app, &ctx, &sub, None, &scope).await,
    };
    let chain = lifecycle::subscription_audit_chain(&*app.store, &sub).await;
    ctx.finish(&app, &chain, &scope, actions::VAULT_READ, outcome)
        .await
}

async fn list_named(app: &AppState, ctx: &ArmCtx, sub: &str, name: &str, scope: &str) -> Outcome {
    let caller = ctx.check(ApiVersions::Dates)?;
    require(app, caller, scope, actions::VAULT_READ).await?;
    let value = lifecycle::list_named(&*app.store, &vault_host(app), sub, name).await?;
    Ok(Done::json(
        StatusCode::OK,
        &ArmList {
            value,
            next_link: None,
        },
        false,
    ))
}

/// The generic-resource `$filter`s served: `resourceType eq 'Microsoft.KeyVault/vaults'`, alone
/// or joined by `and` to `name eq 'NAME'` (either order, any case and spacing).
#[derive(Debug, PartialEq)]
struct ResourceFilter {
    name: Option<String>,
}

impl ResourceFilter {
    fn parse(f: &str) -> Option<ResourceFilter> {
        let words: Vec<&str> = f.split_whitespace().collect();
        let mut vaults = false;
        let mut name = None;
        for clause in words.split(|w| w.eq_ignore_ascii_case("and")) {
            let [field, op, value] = clause else {
                return None;
            };
            let quoted = value.strip_prefix('\'')?.strip_suffix('\'')?;
            if !op.eq_ignore_ascii_case("eq") {
                return None;
            }
            if field.eq_ignore_ascii_case("resourceType")
                && quoted.eq_ignore_ascii_case("Microsoft.KeyVault/vaults")
                && !vaults
            {
                vaults = true;
            } else if field.eq_ignore_ascii_case("name") && name.is_none() {
                name = Some(quoted.to_string());
            } else {
                return None;
            }
        }
        vaults.then_some(ResourceFilter { name })
    }
}

/// Managed HSMs, which Strongbox does not have: ARM's empty list, so that `az keyvault list` and
/// `list-deleted` (which ask for vaults and HSMs together) work.
async fn no_hsms(State(app): State<Arc<AppState>>, ctx: ArmCtx) -> Response {
    let sub = ctx.path.split('/').nth(2).unwrap_or_default().to_string();
    let scope = ctx.path.clone();
    let outcome: Outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        require(
            &app,
            caller,
            &format!("/subscriptions/{sub}"),
            actions::VAULT_READ,
        )
        .await?;
        Ok(Done::json(
            StatusCode::OK,
            &ArmList::<serde_json::Value> {
                value: Vec::new(),
                next_link: None,
            },
            false,
        ))
    }
    .await;
    let chain = subscription_chain(&app, &sub).await;
    ctx.finish(&app, &chain, &scope, actions::VAULT_READ, outcome)
        .await
}

async fn list_deleted(
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
        let caller = ctx.check(ApiVersions::Dates)?;
        require(&app, caller, &scope, actions::DELETED_VAULTS_READ).await?;
        let (top, after) = ctx.page()?;
        let (value, last) =
            lifecycle::list_deleted(&*app.store, &sub, after.as_deref(), top).await?;
        Ok(Done::json(
            StatusCode::OK,
            &ArmList {
                value,
                next_link: ctx.next_link(top, last),
            },
            false,
        ))
    }
    .await;
    let chain = subscription_chain(&app, &sub).await;
    ctx.finish(&app, &chain, &scope, actions::DELETED_VAULTS_READ, outcome)
        .await
}

type DeletedPath = Result<Path<(String, String, String)>, PathRejection>;

async fn get_deleted(State(app): State<Arc<AppState>>, ctx: ArmCtx, path: DeletedPath) -> Response {
    let Path((sub, location, name)) = match path {
        Ok(p) => p,
        Err(e) => return bad_path(e),
    };
    let id = deleted_vault_id(&sub, &location, &name);
    let outcome: Outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        require(&app, caller, &id, actions::DELETED_VAULTS_READ).await?;
        let v = lifecycle::get_deleted(&*app.store, &sub, &location, &name).await?;
        Ok(Done::json(StatusCode::OK, &v, false))
    }
    .await;
    let chain = vault_chain(&app, &sub, &name).await;
    ctx.finish(&app, &chain, &id, actions::DELETED_VAULTS_READ, outcome)
        .await
}

async fn purge_deleted(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: DeletedPath,
) -> Response {
    let Path((sub, location, name)) = match path {
        Ok(p) => p,
        Err(e) => return bad_path(e),
    };
    let id = deleted_vault_id(&sub, &location, &name);
    // Chosen before the purge: afterwards the vault (and so its chain's owner) is gone.
    let chain = vault_chain(&app, &sub, &name).await;
    let outcome: Outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        require(&app, caller, &id, actions::DELETED_VAULT_PURGE).await?;
        let audit = ctx.audit_ctx();
        lifecycle::purge_deleted(&*app.store, &*app.clock, &audit, &sub, &location, &name).await?;
        // 200 with no Location header: the SDK's poller finishes at once.
        Ok(Done::empty(StatusCode::OK, true))
    }
    .await;
    ctx.finish(&app, &chain, &id, actions::DELETED_VAULT_PURGE, outcome)
        .await
}

async fn check_name_availability(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Path(sub) = match path {
        Ok(p) => p,
        Err(e) => return bad_path(e),
    };
    let scope = format!("/subscriptions/{sub}");
    let outcome: Outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        require(&app, caller, &scope, actions::CHECK_NAME_AVAILABILITY).await?;
        let params = json_body(&body, MAX_MGMT_BODY_BYTES)?;
        let result = lifecycle::check_name_availability(&*app.store, &sub, params).await?;
        Ok(Done::json(StatusCode::OK, &result, false))
    }
    .await;
    let chain = subscription_chain(&app, &sub).await;
    ctx.finish(
        &app,
        &chain,
        &scope,
        actions::CHECK_NAME_AVAILABILITY,
        outcome,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::ResourceFilter;

    #[test]
    fn resource_filters_name_vaults_and_optionally_one_name() {
        let p = ResourceFilter::parse;
        assert_eq!(
            p("resourceType eq 'Microsoft.KeyVault/vaults'"),
            Some(ResourceFilter { name: None })
        );
        assert_eq!(
            p("resourceType eq 'Microsoft.KeyVault/vaults' and name eq 'kv1'"),
            Some(ResourceFilter {
                name: Some("kv1".into())
            })
        );
        assert_eq!(
            p("NAME EQ 'kv1' AND resourcetype eq 'microsoft.keyvault/VAULTS'"),
            Some(ResourceFilter {
                name: Some("kv1".into())
            })
        );
        for bad in [
            "",
            "name eq 'kv1'",
            "resourceType eq 'Microsoft.Compute/virtualMachines'",
            "resourceType eq 'Microsoft.KeyVault/vaults' or name eq 'a'",
            "resourceType eq 'Microsoft.KeyVault/vaults' and name ne 'a'",
            "resourceType eq 'Microsoft.KeyVault/vaults' and name eq 'a' and name eq 'b'",
            "resourceType eq Microsoft.KeyVault/vaults",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }
}
