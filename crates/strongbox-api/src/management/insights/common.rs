//! What the handlers of this family share beyond the management context: finding the vault a
//! path names, and the times and durations their queries take.

pub use crate::management::context::*;

use crate::AppState;
use crate::management::ArmError;
use strongbox_store::VaultRow;

/// The live vault a path names, if it is where the path says (subscription, resource group).
pub async fn find_vault(
    app: &AppState,
    subscription: &str,
    resource_group: &str,
    name: &str,
) -> Result<Option<VaultRow>, ArmError> {
    let Ok(name) = strongbox_domain::names::vault_name(name) else {
        return Ok(None);
    };
    Ok(app.store.get_vault_by_name(&name).await?.filter(|v| {
        v.deleted.is_none()
            && v.subscription_id.eq_ignore_ascii_case(subscription)
            && v.resource_group.eq_ignore_ascii_case(resource_group)
    }))
}

/// The vault a request names (or why it cannot be had), with the chain and resource id its
/// audit record takes even when the request is refused.
pub async fn vault_target(
    app: &AppState,
    sub: &str,
    rg: &str,
    vault: &str,
) -> (Result<VaultRow, ArmError>, String, String) {
    match find_vault(app, sub, rg, vault).await {
        Ok(Some(v)) => {
            let (chain, rid) = (v.id.clone(), v.resource_id.clone());
            (Ok(v), chain, rid)
        }
        found => (
            found.and_then(|_| Err(vault_not_found(rg, vault))),
            subscription_chain(app, sub).await,
            vault_path_id(sub, rg, vault),
        ),
    }
}

pub fn vault_not_found(resource_group: &str, name: &str) -> ArmError {
    ArmError::not_found(
        "ResourceNotFound",
        format!(
            "The Resource 'Microsoft.KeyVault/vaults/{}' under resource group '{}' was not found.",
            clip(name),
            clip(resource_group)
        ),
    )
}

/// The resource id a vault path names (as the client spelled it, for refusals).
pub fn vault_path_id(subscription: &str, resource_group: &str, name: &str) -> String {
    strongbox_domain::vaults::vault_resource_id(
        &clip(subscription),
        &clip(resource_group),
        &clip(name),
    )
}

/// Resource group names as ARM allows them: 1-90 of letters, digits, `-_.()`, not ending in `.`.
pub fn valid_resource_group(rg: &str) -> bool {
    (1..=90).contains(&rg.len())
        && !rg.ends_with('.')
        && rg
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
}

pub fn parse_rfc3339(name: &str, s: &str) -> Result<i64, ArmError> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            ArmError::bad_request(format!(
                "The '{name}' parameter must be an RFC 3339 time such as 2026-01-31T12:00:00Z."
            ))
        })
}

/// An ISO 8601 duration of days, hours, minutes and seconds (`P1D`, `PT1H`, `PT5M`, `PT30S`)
/// in milliseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let rest = s.strip_prefix('P').or_else(|| s.strip_prefix('p'))?;
    let (days, time_part) = match rest.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut total: i64 = 0;
    let mut take = |text: &str, units: &[(char, i64)]| -> Option<()> {
        let mut num = String::new();
        let mut last = 0usize;
        for c in text.chars() {
            if c.is_ascii_digit() {
                num.push(c);
            } else {
                let pos = units.iter().position(|(u, _)| u.eq_ignore_ascii_case(&c))?;
                if num.is_empty() || pos < last {
                    return None;
                }
                let n: i64 = num.parse().ok()?;
                total = total.checked_add(n.checked_mul(units[pos].1)?)?;
                num.clear();
                last = pos + 1;
            }
        }
        num.is_empty().then_some(())
    };
    if !days.is_empty() {
        take(days, &[('D', 86_400_000)])?;
    }
    match time_part {
        Some("") => return None,
        Some(t) => take(t, &[('H', 3_600_000), ('M', 60_000), ('S', 1000)])?,
        None if days.is_empty() => return None,
        None => {}
    }
    (total > 0).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_iso_8601() {
        assert_eq!(parse_duration("PT1H"), Some(3_600_000));
        assert_eq!(parse_duration("PT5M"), Some(300_000));
        assert_eq!(
            parse_duration("P1DT2H30S"),
            Some(86_400_000 + 7_200_000 + 30_000)
        );
        assert_eq!(parse_duration("P2D"), Some(172_800_000));
        for bad in [
            "", "P", "PT", "1H", "PT1", "PTH", "PT1M1H", "PT0S", "P1Y", "PT-1H",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
