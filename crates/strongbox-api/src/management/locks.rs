//! Microsoft.Authorization/locks on subscriptions, resource groups and vaults, at the paths
//! azure-mgmt-resource-locks builds. The resource-level SDK calls use lower-case
//! `resourcegroups` and, with the usual empty parent path, `Microsoft.KeyVault//vaults`; those
//! spellings are routed beside the canonical one (the lock's own id). The `*_by_scope` calls
//! percent-encode the whole scope into the first path segment (`/%2Fsubscriptions%2F…/providers/
//! Microsoft.Authorization/locks`); that form is decoded and mapped to the same targets.

use super::context::{
    ApiVersions, ArmCtx, Done, MAX_MGMT_BODY_BYTES, Outcome, bad_path, clip, json_body,
    method_not_allowed, subscription_chain,
};
use super::require;
use crate::AppState;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use std::sync::Arc;
use strongbox_domain::locks::{self, LockTarget, actions};
use strongbox_domain::vault_lifecycle::{MgmtError, UNKNOWN_SUBSCRIPTION_CHAIN};

const SUBSCRIPTION_LOCKS: &str =
    "/subscriptions/{subscriptionId}/providers/Microsoft.Authorization/locks";
/// The scope form: `{scope}` is one segment holding a whole ARM id, percent-encoded (static
/// first segments such as `subscriptions` still take precedence in the router).
const SCOPE_LOCKS: &str = "/{scope}/providers/Microsoft.Authorization/locks";
const GROUP_LOCKS: &str = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Authorization/locks";
/// Vault locks: the canonical spelling first, then the SDK's resource-level spellings.
const VAULT_LOCKS: &[&str] = &[
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.KeyVault/vaults/{vaultName}/providers/Microsoft.Authorization/locks",
    "/subscriptions/{subscriptionId}/resourcegroups/{resourceGroupName}/providers/Microsoft.KeyVault//vaults/{vaultName}/providers/Microsoft.Authorization/locks",
    "/subscriptions/{subscriptionId}/resourcegroups/{resourceGroupName}/providers/Microsoft.KeyVault/vaults/{vaultName}/providers/Microsoft.Authorization/locks",
];

pub fn routes() -> Router<Arc<AppState>> {
    let mut router = Router::new()
        .route(
            SUBSCRIPTION_LOCKS,
            get(list_subscription).fallback(method_not_allowed),
        )
        .route(
            &format!("{SUBSCRIPTION_LOCKS}/{{lockName}}"),
            get(get_subscription)
                .put(put_subscription)
                .delete(delete_subscription)
                .fallback(method_not_allowed),
        )
        .route(SCOPE_LOCKS, get(list_scope).fallback(method_not_allowed))
        .route(
            &format!("{SCOPE_LOCKS}/{{lockName}}"),
            get(get_scope)
                .put(put_scope)
                .delete(delete_scope)
                .fallback(method_not_allowed),
        )
        .route(GROUP_LOCKS, get(list_group).fallback(method_not_allowed))
        .route(
            &format!("{GROUP_LOCKS}/{{lockName}}"),
            get(get_group)
                .put(put_group)
                .delete(delete_group)
                .fallback(method_not_allowed),
        );
    for path in VAULT_LOCKS {
        router = router
            .route(path, get(list_vault).fallback(method_not_allowed))
            .route(
                &format!("{path}/{{lockName}}"),
                get(get_vault)
                    .put(put_vault)
                    .delete(delete_vault)
                    .fallback(method_not_allowed),
            );
    }
    router.layer(DefaultBodyLimit::max(MAX_MGMT_BODY_BYTES))
}

/// What a lock request does, once the target is known.
enum Op {
    List,
    Get(String),
    Put(String, Result<Bytes, BytesRejection>),
    Delete(String),
}

impl Op {
    fn action(&self) -> &'static str {
        match self {
            Op::List | Op::Get(_) => actions::LOCKS_READ,
            Op::Put(..) => actions::LOCKS_WRITE,
            Op::Delete(_) => actions::LOCKS_DELETE,
        }
    }

    fn name(&self) -> Option<&str> {
        match self {
            Op::List => None,
            Op::Get(n) | Op::Put(n, _) | Op::Delete(n) => Some(n),
        }
    }
}

async fn run(app: Arc<AppState>, ctx: ArmCtx, target: LockTarget<'_>, op: Op) -> Response {
    let action = op.action();
    let resource_id = match &op {
        Op::List => format!("{}/providers/{}", target.scope(), locks::LOCK_TYPE),
        Op::Get(n) | Op::Put(n, _) | Op::Delete(n) => target.lock_id(n),
    };
    let chain = target.audit_chain(&*app.store).await;
    let outcome: Outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        require(&app, caller, &target.scope(), action).await?;
        let audit = ctx.audit_ctx();
        let store = &*app.store;
        match op {
            Op::List => {
                let value = locks::list(store, &target, ctx.query("$filter")).await?;
                Ok(Done::json(
                    StatusCode::OK,
                    &serde_json::json!({"value": value, "nextLink": null}),
                    false,
                ))
            }
            Op::Get(name) => {
                let lock = locks::get(store, &target, &name).await?;
                Ok(Done::json(StatusCode::OK, &lock, false))
            }
            Op::Put(name, body) => {
                let params = json_body(&body, MAX_MGMT_BODY_BYTES)?;
                let (lock, created) =
                    locks::put(store, &*app.clock, &audit, &target, &name, params).await?;
                let status = if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                Ok(Done::json(status, &lock, true))
            }
            Op::Delete(name) => Ok(
                if locks::delete(store, &*app.clock, &audit, &target, &name).await? {
                    Done::empty(StatusCode::OK, true)
                } else {
                    Done::empty(StatusCode::NO_CONTENT, false)
                },
            ),
        }
    }
    .await;
    ctx.finish(&app, &chain, &resource_id, action, outcome)
        .await
}

/// A scope-form request whose scope names no lock target: refused (after authentication) and
/// audited in the chain of the subscription it names, if we know it.
async fn refuse_scope(
    app: Arc<AppState>,
    ctx: ArmCtx,
    scope: &str,
    error: MgmtError,
    op: Op,
) -> Response {
    let segments: Vec<&str> = scope.split('/').filter(|s| !s.is_empty()).collect();
    let chain = match segments.as_slice() {
        [first, id, ..] if first.eq_ignore_ascii_case("subscriptions") => {
            subscription_chain(&app, id).await
        }
        _ => UNKNOWN_SUBSCRIPTION_CHAIN.into(),
    };
    let resource_id = format!(
        "/{}/providers/{}{}",
        clip(scope.trim_start_matches('/')),
        locks::LOCK_TYPE,
        op.name()
            .map(|n| format!("/{}", clip(n)))
            .unwrap_or_default()
    );
    // Authentication and api-version first, as for any other lock request.
    let outcome: Outcome = match ctx.check(ApiVersions::Dates) {
        Ok(_) => Err(error.into()),
        Err(e) => Err(e),
    };
    ctx.finish(&app, &chain, &resource_id, op.action(), outcome)
        .await
}

async fn scope_op(app: Arc<AppState>, ctx: ArmCtx, scope: String, op: Op) -> Response {
    match locks::parse_scope(&scope) {
        Ok(target) => run(app, ctx, target, op).await,
        Err(e) => refuse_scope(app, ctx, &scope, e, op).await,
    }
}

type ScopePath = Result<Path<String>, PathRejection>;
type ScopeLockPath = Result<Path<(String, String)>, PathRejection>;

async fn list_scope(State(app): State<Arc<AppState>>, ctx: ArmCtx, path: ScopePath) -> Response {
    match path {
        Ok(Path(scope)) => scope_op(app, ctx, scope, Op::List).await,
        Err(e) => bad_path(e),
    }
}

async fn scope_lock_op(
    app: Arc<AppState>,
    ctx: ArmCtx,
    path: ScopeLockPath,
    op: impl FnOnce(String) -> Op,
) -> Response {
    match path {
        Ok(Path((scope, lock))) => scope_op(app, ctx, scope, op(lock)).await,
        Err(e) => bad_path(e),
    }
}

async fn get_scope(State(app): State<Arc<AppState>>, ctx: ArmCtx, path: ScopeLockPath) -> Response {
    scope_lock_op(app, ctx, path, Op::Get).await
}

async fn put_scope(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: ScopeLockPath,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    scope_lock_op(app, ctx, path, |n| Op::Put(n, body)).await
}

async fn delete_scope(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: ScopeLockPath,
) -> Response {
    scope_lock_op(app, ctx, path, Op::Delete).await
}

type SubscriptionPath = Result<Path<String>, PathRejection>;
type SubscriptionLockPath = Result<Path<(String, String)>, PathRejection>;

async fn list_subscription(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: SubscriptionPath,
) -> Response {
    let sub = match path {
        Ok(Path(p)) => p,
        Err(e) => return bad_path(e),
    };
    let target = LockTarget::Subscription {
        subscription_id: &sub,
    };
    run(app, ctx, target, Op::List).await
}

async fn subscription_op(
    app: Arc<AppState>,
    ctx: ArmCtx,
    path: SubscriptionLockPath,
    op: impl FnOnce(String) -> Op,
) -> Response {
    let (sub, lock) = match path {
        Ok(Path(p)) => p,
        Err(e) => return bad_path(e),
    };
    let target = LockTarget::Subscription {
        subscription_id: &sub,
    };
    run(app, ctx, target, op(lock)).await
}

async fn get_subscription(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: SubscriptionLockPath,
) -> Response {
    subscription_op(app, ctx, path, Op::Get).await
}

async fn put_subscription(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: SubscriptionLockPath,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    subscription_op(app, ctx, path, |n| Op::Put(n, body)).await
}

async fn delete_subscription(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: SubscriptionLockPath,
) -> Response {
    subscription_op(app, ctx, path, Op::Delete).await
}

type GroupPath = Result<Path<(String, String)>, PathRejection>;
type GroupLockPath = Result<Path<(String, String, String)>, PathRejection>;
type VaultPath = Result<Path<(String, String, String)>, PathRejection>;
type VaultLockPath = Result<Path<(String, String, String, String)>, PathRejection>;

async fn list_group(State(app): State<Arc<AppState>>, ctx: ArmCtx, path: GroupPath) -> Response {
    let (sub, rg) = match path {
        Ok(Path(p)) => p,
        Err(e) => return bad_path(e),
    };
    let target = LockTarget::ResourceGroup {
        subscription_id: &sub,
        resource_group: &rg,
    };
    run(app, ctx, target, Op::List).await
}

async fn group_op(
    app: Arc<AppState>,
    ctx: ArmCtx,
    path: GroupLockPath,
    op: impl FnOnce(String) -> Op,
) -> Response {
    let (sub, rg, lock) = match path {
        Ok(Path(p)) => p,
        Err(e) => return bad_path(e),
    };
    let target = LockTarget::ResourceGroup {
        subscription_id: &sub,
        resource_group: &rg,
    };
    run(app, ctx, target, op(lock)).await
}

async fn get_group(State(app): State<Arc<AppState>>, ctx: ArmCtx, path: GroupLockPath) -> Response {
    group_op(app, ctx, path, Op::Get).await
}

async fn put_group(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: GroupLockPath,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    group_op(app, ctx, path, |n| Op::Put(n, body)).await
}

async fn delete_group(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: GroupLockPath,
) -> Response {
    group_op(app, ctx, path, Op::Delete).await
}

async fn list_vault(State(app): State<Arc<AppState>>, ctx: ArmCtx, path: VaultPath) -> Response {
    let (sub, rg, name) = match path {
        Ok(Path(p)) => p,
        Err(e) => return bad_path(e),
    };
    let target = LockTarget::Vault {
        subscription_id: &sub,
        resource_group: &rg,
        name: &name,
    };
    run(app, ctx, target, Op::List).await
}

async fn vault_op(
    app: Arc<AppState>,
    ctx: ArmCtx,
    path: VaultLockPath,
    op: impl FnOnce(String) -> Op,
) -> Response {
    let (sub, rg, name, lock) = match path {
        Ok(Path(p)) => p,
        Err(e) => return bad_path(e),
    };
    let target = LockTarget::Vault {
        subscription_id: &sub,
        resource_group: &rg,
        name: &name,
    };
    run(app, ctx, target, op(lock)).await
}

async fn get_vault(State(app): State<Arc<AppState>>, ctx: ArmCtx, path: VaultLockPath) -> Response {
    vault_op(app, ctx, path, Op::Get).await
}

async fn put_vault(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: VaultLockPath,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    vault_op(app, ctx, path, |n| Op::Put(n, body)).await
}

async fn delete_vault(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: VaultLockPath,
) -> Response {
    vault_op(app, ctx, path, Op::Delete).await
}
