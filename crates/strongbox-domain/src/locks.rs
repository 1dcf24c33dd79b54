//! Resource locks (Microsoft.Authorization/locks). A lock at a scope protects that scope and
//! everything beneath it: `CanNotDelete` refuses deletes, `ReadOnly` refuses deletes and writes.
//! A lock on a resource group therefore holds every vault in it. Refusals are ARM's 409
//! `ScopeLocked`, naming the locked scopes and the locks.

use crate::Clock;
use crate::vault_lifecycle::{
    AuditCtx, MgmtError, MgmtErrorKind, find_live, require_subscription, resource_group_id,
    resource_group_name, subscription_chain,
};
use strongbox_store::{LOCK_CAN_NOT_DELETE, LOCK_READ_ONLY, LockGuard, LockRow, Store, StoreError};
use strongbox_types::arm_locks::*;

/// RBAC actions on locks; audit records use them as operation names too.
pub mod actions {
    pub const LOCKS_READ: &str = "Microsoft.Authorization/locks/read";
    pub const LOCKS_WRITE: &str = "Microsoft.Authorization/locks/write";
    pub const LOCKS_DELETE: &str = "Microsoft.Authorization/locks/delete";
}

pub const LOCK_TYPE: &str = "Microsoft.Authorization/locks";
const MAX_LOCK_NAME: usize = 260;
const MAX_NOTES: usize = 512;
const MAX_OWNERS: usize = 16;

/// What a guarded operation does to the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockedOp {
    /// Refused by any lock.
    Delete,
    /// Refused by ReadOnly locks.
    Write,
}

/// The scopes whose locks apply to `resource_id`: the subscription, the resource group (if
/// any), and the resource itself. Lowercase.
pub fn covering_scopes(resource_id: &str) -> Vec<String> {
    let lower = resource_id.trim_end_matches('/').to_ascii_lowercase();
    let segments: Vec<&str> = lower.trim_start_matches('/').split('/').collect();
    let mut scopes = Vec::new();
    for n in [2, 4] {
        if segments.len() >= n && (n != 4 || segments[2] == "resourcegroups") {
            scopes.push(format!("/{}", segments[..n].join("/")));
        }
    }
    if !scopes.contains(&lower) {
        scopes.push(lower);
    }
    scopes
}

fn scope_locked(resource_id: &str, op: LockedOp, locks: &[LockRow]) -> MgmtError {
    let verb = match op {
        LockedOp::Delete => "delete",
        LockedOp::Write => "write",
    };
    let mut scopes: Vec<&str> = locks.iter().map(|l| l.resource_id.as_str()).collect();
    scopes.dedup();
    let named: Vec<String> = locks
        .iter()
        .map(|l| format!("'{}' ({}) on '{}'", l.display_name, l.level, l.resource_id))
        .collect();
    MgmtError::conflict(
        "ScopeLocked",
        format!(
            "The scope '{resource_id}' cannot perform {verb} operation because following scope(s) are locked: '{}'. \
             Please remove the lock and try again. Locks: {}.",
            scopes.join("', '"),
            named.join(", ")
        ),
    )
}

/// Refuses `op` on `resource_id` if a lock forbids it; otherwise returns the guard the store
/// re-checks inside the write's own transaction.
pub async fn ensure_unlocked(
    store: &dyn Store,
    resource_id: &str,
    op: LockedOp,
) -> Result<LockGuard, MgmtError> {
    let scopes = covering_scopes(resource_id);
    let blocking: Vec<LockRow> = store
        .list_locks_at(&scopes)
        .await?
        .into_iter()
        .filter(|l| op == LockedOp::Delete || l.level == LOCK_READ_ONLY)
        .collect();
    if !blocking.is_empty() {
        return Err(scope_locked(resource_id, op, &blocking));
    }
    Ok(LockGuard {
        scopes,
        read_only_only: op == LockedOp::Write,
    })
}

/// ARM lock names: 1-260 characters, none of `<>%&:\?/` nor control characters.
pub fn lock_name(raw: &str) -> Result<String, MgmtError> {
    let ok = !raw.is_empty()
        && raw.chars().count() <= MAX_LOCK_NAME
        && !raw
            .chars()
            .any(|c| c.is_control() || "<>%&:\\?/".contains(c));
    if ok {
        Ok(raw.to_string())
    } else {
        Err(MgmtError::bad_request(format!(
            "The lock name '{}' is invalid: use 1-{MAX_LOCK_NAME} characters without <>%&:\\?/ or control characters.",
            raw.chars().take(100).collect::<String>()
        )))
    }
}

fn level(raw: &str) -> Result<&'static str, MgmtError> {
    match raw.to_ascii_lowercase().as_str() {
        "cannotdelete" => Ok(LOCK_CAN_NOT_DELETE),
        "readonly" => Ok(LOCK_READ_ONLY),
        _ => Err(MgmtError::bad_request(
            "The lock level must be 'CanNotDelete' or 'ReadOnly'.",
        )),
    }
}

/// What a lock request is about: a subscription, a resource group in it, or a vault in one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockTarget<'a> {
    Subscription {
        subscription_id: &'a str,
    },
    ResourceGroup {
        subscription_id: &'a str,
        resource_group: &'a str,
    },
    Vault {
        subscription_id: &'a str,
        resource_group: &'a str,
        name: &'a str,
    },
}

/// A target checked against the store: its scope, the vault it is (if one), its audit chain.
struct Resolved {
    resource_id: String,
    vault_id: Option<String>,
    chain: String,
}

impl LockTarget<'_> {
    fn subscription_id(&self) -> &str {
        match self {
            LockTarget::Subscription { subscription_id }
            | LockTarget::ResourceGroup {
                subscription_id, ..
            }
            | LockTarget::Vault {
                subscription_id, ..
            } => subscription_id,
        }
    }

    async fn resolve(&self, store: &dyn Store) -> Result<Resolved, MgmtError> {
        let subscription = require_subscription(store, self.subscription_id()).await?;
        match *self {
            LockTarget::Subscription { .. } => Ok(Resolved {
                resource_id: subscription_scope(&subscription.id),
                vault_id: None,
                chain: subscription_chain(&subscription.id),
            }),
            LockTarget::ResourceGroup {
                subscription_id,
                resource_group,
            } => Ok(Resolved {
                resource_id: resource_group_id(
                    subscription_id,
                    &resource_group_name(resource_group)?,
                ),
                vault_id: None,
                chain: subscription_chain(subscription_id),
            }),
            LockTarget::Vault {
                subscription_id,
                resource_group,
                name,
            } => {
                let v = find_live(store, subscription_id, resource_group, name).await?;
                Ok(Resolved {
                    resource_id: v.resource_id,
                    chain: v.id.clone(),
                    vault_id: Some(v.id),
                })
            }
        }
    }

    /// The audit chain of a request about this target, even one that is refused.
    pub async fn audit_chain(&self, store: &dyn Store) -> String {
        match *self {
            LockTarget::Subscription { subscription_id }
            | LockTarget::ResourceGroup {
                subscription_id, ..
            } => crate::vault_lifecycle::subscription_audit_chain(store, subscription_id).await,
            LockTarget::Vault {
                subscription_id,
                name,
                ..
            } => crate::vault_lifecycle::audit_chain(store, subscription_id, name).await,
        }
    }

    /// The ARM id of a lock on this target (for audit records of refused requests too).
    pub fn lock_id(&self, lock: &str) -> String {
        format!("{}/providers/{LOCK_TYPE}/{lock}", self.scope())
    }

    /// The scope RBAC checks for locks on this target.
    pub fn scope(&self) -> String {
        match *self {
            LockTarget::Subscription { subscription_id } => subscription_scope(subscription_id),
            LockTarget::ResourceGroup {
                subscription_id,
                resource_group,
            } => resource_group_id(subscription_id, resource_group),
            LockTarget::Vault {
                subscription_id,
                resource_group,
                name,
            } => crate::vaults::vault_resource_id(subscription_id, resource_group, name),
        }
    }
}

fn subscription_scope(subscription_id: &str) -> String {
    format!("/subscriptions/{subscription_id}")
}

/// Maps the `{scope}` of the scope-form lock paths (`/{scope}/providers/Microsoft.Authorization/
/// locks`, the scope percent-encoded into one segment by the SDKs) to a lock target: a
/// subscription, a resource group, or a Key Vault. The leading `/` is optional and keywords are
/// case-insensitive; empty segments are ignored, as the SDKs' resource-level paths produce them.
pub fn parse_scope(scope: &str) -> Result<LockTarget<'_>, MgmtError> {
    let segments: Vec<&str> = scope.split('/').filter(|s| !s.is_empty()).collect();
    let is = |i: usize, word: &str| segments[i].eq_ignore_ascii_case(word);
    match segments.len() {
        2 if is(0, "subscriptions") => Ok(LockTarget::Subscription {
            subscription_id: segments[1],
        }),
        4 if is(0, "subscriptions") && is(2, "resourceGroups") => Ok(LockTarget::ResourceGroup {
            subscription_id: segments[1],
            resource_group: segments[3],
        }),
        8 if is(0, "subscriptions")
            && is(2, "resourceGroups")
            && is(4, "providers")
            && is(5, "Microsoft.KeyVault")
            && is(6, "vaults") =>
        {
            Ok(LockTarget::Vault {
                subscription_id: segments[1],
                resource_group: segments[3],
                name: segments[7],
            })
        }
        // Some other resource in a resource group: well formed, but not one this server hosts.
        n if n >= 8
            && n % 2 == 0
            && is(0, "subscriptions")
            && is(2, "resourceGroups")
            && is(4, "providers") =>
        {
            Err(MgmtError::not_found(
                "ResourceNotFound",
                format!(
                    "The resource '{}' was not found: locks can be placed on subscriptions, resource groups and Microsoft.KeyVault/vaults.",
                    bounded(scope)
                ),
            ))
        }
        _ => Err(MgmtError::bad_request(format!(
            "The scope '{}' is invalid: use /subscriptions/{{id}}, /subscriptions/{{id}}/resourceGroups/{{name}}, \
             or /subscriptions/{{id}}/resourceGroups/{{name}}/providers/Microsoft.KeyVault/vaults/{{name}}.",
            bounded(scope)
        ))),
    }
}

/// A client-supplied string, cut short for an error message.
fn bounded(s: &str) -> String {
    s.chars().take(200).collect()
}

/// What `$filter` asks of a lock list: `atScope()` (the locks that apply to the target rather
/// than those beneath it) and/or `level eq '<level>'`, joined by `and`.
#[derive(Debug, Default, PartialEq, Eq)]
struct ListFilter {
    at_scope: bool,
    level: Option<&'static str>,
}

fn list_filter(raw: Option<&str>) -> Result<ListFilter, MgmtError> {
    let mut f = ListFilter::default();
    let Some(raw) = raw else { return Ok(f) };
    let unsupported = || {
        MgmtError::bad_request(format!(
            "The $filter '{}' is not supported: use atScope(), level eq 'CanNotDelete', level eq 'ReadOnly', \
             or atScope() and one of those.",
            bounded(raw)
        ))
    };
    let words: Vec<&str> = raw.split_whitespace().collect();
    for clause in words.split(|w| w.eq_ignore_ascii_case("and")) {
        match clause {
            [c] if c.eq_ignore_ascii_case("atScope()") && !f.at_scope => f.at_scope = true,
            [field, op, value]
                if field.eq_ignore_ascii_case("level")
                    && op.eq_ignore_ascii_case("eq")
                    && f.level.is_none() =>
            {
                let quoted = value
                    .strip_prefix('\'')
                    .and_then(|v| v.strip_suffix('\''))
                    .ok_or_else(unsupported)?;
                f.level = Some(level(quoted)?);
            }
            _ => return Err(unsupported()),
        }
    }
    Ok(f)
}

fn wire(l: &LockRow) -> ManagementLock {
    ManagementLock {
        id: format!("{}/providers/{LOCK_TYPE}/{}", l.resource_id, l.display_name),
        name: l.display_name.clone(),
        kind: LOCK_TYPE.into(),
        properties: LockProperties {
            level: l.level.clone(),
            notes: l.notes.clone(),
            owners: l
                .owners_json
                .as_deref()
                .and_then(|o| serde_json::from_str(o).ok()),
        },
    }
}

fn lock_not_found(name: &str) -> MgmtError {
    MgmtError::not_found(
        "LockNotFound",
        format!("The lock '{name}' could not be found."),
    )
}

/// Creates or replaces a lock; returns it and whether it was created (201) or replaced (200).
pub async fn put(
    store: &dyn Store,
    clock: &dyn Clock,
    audit: &AuditCtx,
    target: &LockTarget<'_>,
    name: &str,
    params: LockParameters,
) -> Result<(ManagementLock, bool), MgmtError> {
    let name = lock_name(name)?;
    let level = level(&params.properties.level)?;
    let notes = params.properties.notes.filter(|n| !n.is_empty());
    if notes
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NOTES)
    {
        return Err(MgmtError::bad_request(format!(
            "Lock notes may have at most {MAX_NOTES} characters."
        )));
    }
    let owners = params.properties.owners.unwrap_or_default();
    if owners.len() > MAX_OWNERS
        || owners
            .iter()
            .any(|o| o.application_id.as_ref().is_some_and(|a| a.len() > 128))
    {
        return Err(MgmtError::bad_request(format!(
            "A lock may have at most {MAX_OWNERS} owners, each an application id."
        )));
    }
    let t = target.resolve(store).await?;
    let existing = store.get_lock(&t.resource_id, &name).await?;
    let row = LockRow {
        scope: t.resource_id.to_ascii_lowercase(),
        name: name.to_ascii_lowercase(),
        resource_id: existing
            .as_ref()
            .map_or_else(|| t.resource_id.clone(), |e| e.resource_id.clone()),
        display_name: existing
            .as_ref()
            .map_or_else(|| name.clone(), |e| e.display_name.clone()),
        level: level.to_string(),
        notes,
        owners_json: (!owners.is_empty())
            .then(|| serde_json::to_string(&owners).expect("owners serialize")),
        vault_id: t.vault_id.clone(),
        created: clock.now(),
    };
    let status = if existing.is_some() { 200 } else { 201 };
    let entry = audit.entry(
        &t.chain,
        &wire(&row).id,
        actions::LOCKS_WRITE,
        status,
        clock.now_ms(),
    );
    match store.put_lock(row.clone(), entry).await {
        Ok(_) => Ok((wire(&row), existing.is_none())),
        // The vault was deleted meanwhile.
        Err(StoreError::NotFound) => Err(MgmtError::not_found(
            "ResourceNotFound",
            format!("The resource '{}' was not found.", t.resource_id),
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn get(
    store: &dyn Store,
    target: &LockTarget<'_>,
    name: &str,
) -> Result<ManagementLock, MgmtError> {
    let name = lock_name(name)?;
    let t = target.resolve(store).await?;
    store
        .get_lock(&t.resource_id, &name)
        .await?
        .map(|l| wire(&l))
        .ok_or_else(|| lock_not_found(&name))
}

/// Locks on the target and beneath it; with `$filter=atScope()`, the locks that apply to it
/// (at it and above); with `level eq '…'`, only locks of that level.
pub async fn list(
    store: &dyn Store,
    target: &LockTarget<'_>,
    filter: Option<&str>,
) -> Result<Vec<ManagementLock>, MgmtError> {
    let filter = list_filter(filter)?;
    let t = target.resolve(store).await?;
    let rows = if filter.at_scope {
        store
            .list_locks_at(&covering_scopes(&t.resource_id))
            .await?
    } else {
        store.list_locks_under(&t.resource_id).await?
    };
    Ok(rows
        .iter()
        .filter(|l| filter.level.is_none_or(|want| l.level == want))
        .map(wire)
        .collect())
}

/// Removes a lock; false when there was none (204). The removal is audited with it.
pub async fn delete(
    store: &dyn Store,
    clock: &dyn Clock,
    audit: &AuditCtx,
    target: &LockTarget<'_>,
    name: &str,
) -> Result<bool, MgmtError> {
    let name = lock_name(name)?;
    let t = match target.resolve(store).await {
        Ok(t) => t,
        Err(e) if e.kind == MgmtErrorKind::NotFound && e.code == "ResourceNotFound" => {
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    let Some(existing) = store.get_lock(&t.resource_id, &name).await? else {
        return Ok(false);
    };
    let entry = audit.entry(
        &t.chain,
        &wire(&existing).id,
        actions::LOCKS_DELETE,
        200,
        clock.now_ms(),
    );
    match store.delete_lock(&t.resource_id, &name, entry).await {
        Ok(()) => Ok(true),
        Err(StoreError::NotFound) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vault_is_covered_by_its_group_and_subscription() {
        let v = "/subscriptions/S/resourceGroups/RG/providers/Microsoft.KeyVault/vaults/V";
        assert_eq!(
            covering_scopes(v),
            [
                "/subscriptions/s",
                "/subscriptions/s/resourcegroups/rg",
                "/subscriptions/s/resourcegroups/rg/providers/microsoft.keyvault/vaults/v"
            ]
        );
        assert_eq!(
            covering_scopes("/subscriptions/s/resourceGroups/rg"),
            ["/subscriptions/s", "/subscriptions/s/resourcegroups/rg"]
        );
    }

    #[test]
    fn lock_names_and_levels() {
        assert!(lock_name("no-delete (prod)").is_ok());
        for bad in ["", "a/b", "a?b", "a%b", "a:b", "a\nb", &"x".repeat(261)] {
            assert!(lock_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(level("readonly").unwrap(), "ReadOnly");
        assert!(level("NotSpecified").is_err());
    }

    #[test]
    fn scopes_map_to_subscriptions_groups_and_vaults() {
        assert_eq!(
            parse_scope("/subscriptions/s1").unwrap(),
            LockTarget::Subscription {
                subscription_id: "s1"
            }
        );
        // No leading slash, other keyword case, doubled slashes: the same targets.
        assert_eq!(
            parse_scope("Subscriptions/s1/resourcegroups/RG").unwrap(),
            LockTarget::ResourceGroup {
                subscription_id: "s1",
                resource_group: "RG"
            }
        );
        assert_eq!(
            parse_scope(
                "/subscriptions/s1/resourceGroups/rg/providers/microsoft.keyvault//vaults/v1/"
            )
            .unwrap(),
            LockTarget::Vault {
                subscription_id: "s1",
                resource_group: "rg",
                name: "v1"
            }
        );
        let other =
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a";
        assert_eq!(parse_scope(other).unwrap_err().code, "ResourceNotFound");
        for bad in [
            "",
            "/",
            "/subscriptions",
            "/subscriptions/s1/resourceGroups",
            "/subscriptions/s1/locations/westeurope",
            "/providers/Microsoft.Management/managementGroups/mg",
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.KeyVault",
            "/tenants/t/resourceGroups/rg",
        ] {
            let e = parse_scope(bad).unwrap_err();
            assert_eq!(
                (e.kind, e.code),
                (MgmtErrorKind::BadRequest, "BadRequest"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn list_filters() {
        assert_eq!(list_filter(None).unwrap(), ListFilter::default());
        assert!(list_filter(Some("atScope()")).unwrap().at_scope);
        assert_eq!(
            list_filter(Some("level eq 'readonly'")).unwrap(),
            ListFilter {
                at_scope: false,
                level: Some(LOCK_READ_ONLY)
            }
        );
        assert_eq!(
            list_filter(Some(" atScope()  AND level eq 'CanNotDelete' ")).unwrap(),
            ListFilter {
                at_scope: true,
                level: Some(LOCK_CAN_NOT_DELETE)
            }
        );
        for bad in [
            "",
            "atScope",
            "level eq ReadOnly",
            "level eq 'NotSpecified'",
            "level ne 'ReadOnly'",
            "name eq 'x'",
            "atScope() and atScope()",
            "level eq 'ReadOnly' and level eq 'CanNotDelete'",
            "atScope() or level eq 'ReadOnly'",
            "atScope() and",
        ] {
            let e = list_filter(Some(bad)).unwrap_err();
            assert_eq!(e.kind, MgmtErrorKind::BadRequest, "{bad:?}");
        }
    }

    #[test]
    fn scope_locked_names_scopes_and_locks() {
        let lock = LockRow {
            scope: "/subscriptions/s/resourcegroups/rg".into(),
            name: "keep".into(),
            resource_id: "/subscriptions/s/resourceGroups/rg".into(),
            display_name: "Keep".into(),
            level: LOCK_CAN_NOT_DELETE.into(),
            notes: None,
            owners_json: None,
            vault_id: None,
            created: 0,
        };
        let e = scope_locked("/x/v", LockedOp::Delete, &[lock]);
        assert_eq!(e.code, "ScopeLocked");
        assert!(e.message.contains("cannot perform delete operation"));
        assert!(e.message.contains("'/subscriptions/s/resourceGroups/rg'"));
        assert!(e.message.contains("'Keep' (CanNotDelete)"));
    }
}
