//! Signed client assertions (RFC 7523 `private_key_jwt`), as MSAL builds them for
//! azure-identity's `CertificateCredential`: header `{"alg":"RS256","typ":"JWT","x5t":…}` (or
//! PS256 with `x5t#S256`, or a `kid` for a registered public key), claims `aud` = the token
//! endpoint, `iss` = `sub` = the client id, `jti`, `exp` and `iat` (floats), no `nbf`.
//!
//! Checked here: the signature by a key registered on the client, that key's validity window,
//! `aud`, `iss`/`sub`, the time claims against the injected clock, and that the `jti` was not
//! used before for the same resource within its lifetime. MSAL reuses one assertion for up to
//! nine minutes across resources (a vault token, then a management token), and Entra ID accepts
//! that; presenting it again for a resource it already bought a token for is a replay.

use crate::credentials::stored_key;
use crate::tokens::{OAuthFailure, oauth};
use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value;
use strongbox_store::{PrincipalRow, Store, StoreError};

/// base64url with or without `=` padding (MSAL pads its `x5t`).
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Largest assertion accepted (an `x5c` chain makes them a few KiB).
const MAX_ASSERTION: usize = 16 * 1024;
/// Tolerated clock difference for `nbf` and `iat`.
const LEEWAY_SECS: i64 = 60;
/// Assertions may not live longer than this (their `jti` is remembered until `exp`).
const MAX_LIFETIME_SECS: i64 = 86_400;
const MAX_JTI_LEN: usize = 256;

fn malformed(what: &str) -> OAuthFailure {
    oauth(
        400,
        "invalid_request",
        format!("AADSTS50027: The client assertion is invalid or malformed: {what}."),
    )
}

fn refused(description: impl Into<String>) -> OAuthFailure {
    oauth(401, "invalid_client", description)
}

fn internal(e: impl std::fmt::Display) -> OAuthFailure {
    tracing::error!(error = %e, "client assertion check failed internally");
    oauth(
        500,
        "server_error",
        "The token service encountered an internal error.",
    )
}

struct Parts {
    header: serde_json::Map<String, Value>,
    claims: serde_json::Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

fn split(assertion: &str) -> Result<Parts, OAuthFailure> {
    if assertion.len() > MAX_ASSERTION {
        return Err(malformed("it is too long"));
    }
    let mut it = assertion.split('.');
    let (Some(h), Some(c), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(malformed("it is not a signed JWT"));
    };
    let object = |part: &str, what: &str| -> Result<serde_json::Map<String, Value>, OAuthFailure> {
        let bytes = B64URL.decode(part).map_err(|_| malformed(what))?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(malformed(what)),
        }
    };
    Ok(Parts {
        header: object(h, "the header is not a base64url JSON object")?,
        claims: object(c, "the claims are not a base64url JSON object")?,
        signing_input: format!("{h}.{c}"),
        signature: B64URL
            .decode(s)
            .map_err(|_| malformed("the signature is not base64url"))?,
    })
}

fn string<'a>(m: &'a serde_json::Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

/// A NumericDate claim (MSAL sends floats), floored to whole seconds.
fn numeric_date(m: &serde_json::Map<String, Value>, k: &str) -> Result<Option<i64>, OAuthFailure> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e12)
            .map(|f| Some(f.floor() as i64))
            .ok_or_else(|| malformed(&format!("'{k}' is not a number"))),
    }
}

/// Checks a client assertion presented at `token_endpoint` of `tenant_id`. `client_id` is the
/// form's `client_id`, if sent (RFC 7523 lets it be omitted; then `iss` names the client).
/// Returns the authenticated principal.
pub(crate) async fn verify(
    store: &dyn Store,
    now: i64,
    tenant_id: &str,
    token_endpoint: &str,
    client_id: Option<&str>,
    assertion: &str,
    audience: &str,
) -> Result<PrincipalRow, OAuthFailure> {
    let parts = split(assertion)?;
    let alg = string(&parts.header, "alg").unwrap_or_default();
    if !matches!(alg, "RS256" | "PS256" | "ES256") {
        return Err(malformed("'alg' must be RS256, PS256 or ES256"));
    }
    let iss = string(&parts.claims, "iss").ok_or_else(|| malformed("'iss' is missing"))?;
    let sub = string(&parts.claims, "sub").ok_or_else(|| malformed("'sub' is missing"))?;
    if iss != sub {
        return Err(refused(
            "AADSTS700021: The client assertion's 'iss' and 'sub' must both be the client id.",
        ));
    }
    if let Some(c) = client_id
        && c != iss
    {
        return Err(refused(
            "AADSTS700021: Client assertion application identifier doesn't match 'client_id' parameter.",
        ));
    }
    let principal = store
        .get_principal_by_client_id(tenant_id, iss)
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            oauth(
                401,
                "unauthorized_client",
                format!(
                    "AADSTS700016: Application with identifier '{}' was not found in the tenant.",
                    iss.chars().take(64).collect::<String>()
                ),
            )
        })?;

    // Which registered keys may have signed it: the header names a certificate by thumbprint,
    // or a key by id; with neither, every key of the client is tried.
    let x5t = string(&parts.header, "x5t")
        .map(|t| B64URL.decode(t).map(hex::encode_upper))
        .transpose()
        .map_err(|_| malformed("'x5t' is not base64url"))?;
    let x5t256 = string(&parts.header, "x5t#S256")
        .map(|t| B64URL.decode(t).map(hex::encode_upper))
        .transpose()
        .map_err(|_| malformed("'x5t#S256' is not base64url"))?;
    let kid = string(&parts.header, "kid");
    let credentials = store
        .list_key_credentials(&principal.object_id)
        .await
        .map_err(internal)?;
    let candidates: Vec<_> = credentials
        .iter()
        .filter(|c| {
            let by_sha1 = x5t.as_ref().is_none_or(|t| *t == c.key_id);
            let by_sha256 = x5t256.as_ref().is_none_or(|t| *t == c.sha256);
            let by_kid = kid.is_none_or(|k| k == c.key_id || k.eq_ignore_ascii_case(&c.sha256));
            by_sha1 && by_sha256 && by_kid
        })
        .collect();
    if candidates.is_empty() {
        return Err(refused(
            "AADSTS700027: The key used to sign the client assertion is not registered on the application.",
        ));
    }
    let signer = candidates.into_iter().find(|c| {
        stored_key(c).is_ok_and(|k| k.verify(alg, parts.signing_input.as_bytes(), &parts.signature))
    });
    let Some(signer) = signer else {
        return Err(refused(
            "AADSTS700027: Client assertion failed signature validation.",
        ));
    };
    if now < signer.not_before || now >= signer.expires {
        return Err(refused(format!(
            "AADSTS700027: The {} that signed the client assertion is expired or not yet valid.",
            if signer.kind == crate::credentials::CERTIFICATE {
                "certificate"
            } else {
                "key"
            }
        )));
    }

    let audience_ok = match parts.claims.get("aud") {
        Some(Value::String(a)) => same_url(a, token_endpoint),
        Some(Value::Array(list)) => list
            .iter()
            .any(|a| a.as_str().is_some_and(|a| same_url(a, token_endpoint))),
        _ => false,
    };
    if !audience_ok {
        return Err(refused(format!(
            "The client assertion's audience must be the token endpoint '{token_endpoint}'."
        )));
    }
    let exp = numeric_date(&parts.claims, "exp")?.ok_or_else(|| malformed("'exp' is missing"))?;
    let nbf = numeric_date(&parts.claims, "nbf")?;
    let iat = numeric_date(&parts.claims, "iat")?;
    if exp <= now
        || nbf.is_some_and(|n| n > now + LEEWAY_SECS)
        || iat.is_some_and(|i| i > now + LEEWAY_SECS)
    {
        return Err(refused(
            "AADSTS700024: Client assertion is not within its valid time range.",
        ));
    }
    if exp - now > MAX_LIFETIME_SECS {
        return Err(refused(
            "AADSTS700024: Client assertion lifetime is too long (at most one day).",
        ));
    }
    let jti = string(&parts.claims, "jti")
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN)
        .ok_or_else(|| malformed("'jti' is missing or longer than 256 characters"))?;
    // Single use per resource: the replay cache key is the jti with the requested audience.
    let key = format!("{jti}\n{}", audience.to_ascii_lowercase());
    match store
        .record_assertion_id(&principal.object_id, &key, exp, now)
        .await
    {
        Ok(true) => Ok(principal),
        Ok(false) => Err(refused(
            "The client assertion was already used for this resource: each assertion ('jti') buys one token per resource.",
        )),
        Err(StoreError::Conflict) => Err(refused(
            "The client assertion was already used for this resource: each assertion ('jti') buys one token per resource.",
        )),
        Err(e) => Err(internal(e)),
    }
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}
