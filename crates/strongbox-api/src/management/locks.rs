//! Microsoft.Authorization/locks on resource groups and on vaults, at the paths
//! azure-mgmt-resource-locks builds. The resource-level SDK calls use lower-case
//! `resourcegroups` and, with the usual empty parent path, `Microsoft.KeyVault//vaults`; those
//! spellings are routed beside the canonical one (the lock's own id).

use super::context::{
    ApiVersions, ArmCtx, Done, MAX_MGMT_BODY_BYTES, Outcome, bad_path, json_body,
    method_not_allowed,
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

const GROUP_LOCKS: &str = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Authorization/locks";
/// Vault locks: the canonical spelling first, then the SDK's resource-level spellings.
const VAULT_LOCKS: &[&str] = &[
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.KeyVault/vaults/{vaultName}/providers/Microsoft.Authorization/locks",
    "/subscriptions/{subscriptionId}/resourcegroups/{resourceGroupName}/providers/Microsoft.KeyVault//vaults/{vaultName}/providers/Microsoft.Authorization/locks",
    "/subscriptions/{subscriptionId}/resourcegroups/{resourceGroupName}/providers/Microsoft.KeyVault/vaults/{vaultName}/providers/Microsoft.Authorization/locks",
];

pub fn routes() -> Router<Arc<AppState>> {
    let mut router = Router::new()
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
