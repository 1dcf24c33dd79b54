use crate::principals::CLIENT_SECRET_MAC;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use strongbox_crypto::Keyring;
use strongbox_domain::{Caller, Clock, DomainError};
use strongbox_store::{PrincipalRow, SigningKeyRow, Store, StoreError};
use strongbox_types::token::*;

/// Lifetime of issued access tokens.
pub(crate) const TOKEN_LIFETIME_SECS: i64 = 3600;

/// Azure Key Vault's resource identifiers (public cloud, China, US Government), accepted as names
/// of Strongbox's vaults: a token asked for one of them is a vault token.
const AZURE_VAULT_RESOURCES: &[&str] = &[
    "https://vault.azure.net",
    "https://vault.azure.cn",
    "https://vault.usgovcloudapi.net",
];

/// Azure Resource Manager's resource identifiers (and their classic aliases), accepted as names of
/// the management API.
const AZURE_MANAGEMENT_RESOURCES: &[&str] = &[
    "https://management.azure.com",
    "https://management.core.windows.net",
    "https://management.chinacloudapi.cn",
    "https://management.core.chinacloudapi.cn",
    "https://management.usgovcloudapi.net",
    "https://management.core.usgovcloudapi.net",
];
/// Tolerated clock difference for `nbf`.
const LEEWAY_SECS: i64 = 60;
/// Verified tokens remembered; the cache is cleared when it fills.
const CACHE_CAPACITY: usize = 50_000;

/// Why a bearer token was refused. Messages follow AKV's `AKV100xx` style; none echo the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("AKV10000: Request is missing a Bearer or PoP token.")]
    Missing,
    #[error("AKV10000: Request is missing a Bearer or PoP token.")]
    Malformed,
    #[error("AKV10022: Invalid audience.")]
    Audience,
    #[error("AKV10032: Invalid issuer.")]
    Issuer,
    #[error("AKV10013: The token has expired or is not yet valid.")]
    Expired,
    #[error("AKV10023: Invalid token signature or signing key.")]
    Signature,
}

/// A refusal at the token endpoint, as the Microsoft identity platform shapes it.
#[derive(Debug)]
pub struct OAuthFailure {
    pub status: u16,
    pub body: OAuthError,
}

pub(crate) fn oauth(status: u16, error: &str, description: impl Into<String>) -> OAuthFailure {
    OAuthFailure {
        status,
        body: OAuthError {
            error: error.into(),
            error_description: description.into(),
        },
    }
}

/// Which API a token is presented to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// The secrets data plane of every vault.
    Vault,
    /// The management API (vaults, locks, role assignments…).
    Management,
    /// The directory lookups (a Microsoft Graph subset) that the Azure CLI makes.
    Graph,
}

struct Signer {
    kid: String,
    key: EncodingKey,
}

pub struct TokenService {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) clock: Arc<dyn Clock>,
    /// The Azure Arc file challenges, when that form is enabled.
    pub(crate) arc: Option<crate::arc::ArcChallenges>,
    authority: String,
    audience: String,
    signer: Signer,
    verify_keys: RwLock<HashMap<String, DecodingKey>>,
    jwks: RwLock<JwkSet>,
    cache: Mutex<HashMap<String, (Caller, i64, String)>>,
    /// Last poll (ms) per device grant, for `slow_down`: a hint, so kept per node.
    pub(crate) polls: Mutex<HashMap<String, i64>>,
}

/// What a signing key's sealed private key is bound to (also used when a rotation reseals it).
pub fn signing_aad(kid: &str) -> Vec<u8> {
    format!("strongbox signing-key {kid}").into_bytes()
}

impl TokenService {
    /// Loads the signing keys, creating the first one if there is none. `authority` is
    /// `https://host:port` of the token service; `audience` the resource vault tokens are for.
    pub async fn open(
        store: Arc<dyn Store>,
        keyring: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        authority: String,
        audience: String,
    ) -> Result<TokenService, DomainError> {
        let mut rows = store.list_signing_keys().await?;
        if rows.is_empty() {
            let row = new_signing_key(&keyring, clock.now())?;
            match store.insert_signing_key(row).await {
                Ok(()) | Err(StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
            rows = store.list_signing_keys().await?;
        }
        let newest = rows
            .last()
            .ok_or_else(|| DomainError::Internal("no signing key".into()))?;
        let pkcs8 = keyring
            .open_sealed(&signing_aad(&newest.kid), &newest.sealed_private)
            .map_err(|e| DomainError::Internal(format!("signing key: {e}")))?;
        let signer = Signer {
            kid: newest.kid.clone(),
            key: EncodingKey::from_ec_der(&pkcs8),
        };
        let service = TokenService {
            store,
            keyring,
            clock,
            authority,
            audience,
            signer,
            verify_keys: RwLock::new(HashMap::new()),
            jwks: RwLock::new(JwkSet { keys: vec![] }),
            cache: Mutex::new(HashMap::new()),
            polls: Mutex::new(HashMap::new()),
            arc: None,
        };
        service.load_public_keys(&rows)?;
        Ok(service)
    }

    /// Enables the Azure Arc managed-identity form with challenge files in `dir`.
    pub fn with_arc_challenges(mut self, arc: crate::arc::ArcChallenges) -> Self {
        self.arc = Some(arc);
        self
    }

    fn load_public_keys(&self, rows: &[SigningKeyRow]) -> Result<(), DomainError> {
        let mut keys = HashMap::new();
        let mut jwks = Vec::new();
        for row in rows {
            let jwk: Jwk = serde_json::from_str(&row.public_jwk)
                .map_err(|e| DomainError::Internal(format!("stored JWK {}: {e}", row.kid)))?;
            let key = DecodingKey::from_ec_components(&jwk.x, &jwk.y)
                .map_err(|e| DomainError::Internal(format!("stored JWK {}: {e}", row.kid)))?;
            keys.insert(row.kid.clone(), key);
            jwks.push(jwk);
        }
        *self.verify_keys.write().expect("lock") = keys;
        *self.jwks.write().expect("lock") = JwkSet { keys: jwks };
        Ok(())
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// `{authority}/{tenant}/v2.0`; for the multi-tenant aliases Entra's literal `{tenantid}`.
    pub fn issuer(&self, tenant_id: &str) -> String {
        if crate::signin::is_alias(tenant_id) {
            return format!("{}/{{tenantid}}/v2.0", self.authority);
        }
        format!("{}/{tenant_id}/v2.0", self.authority)
    }

    pub fn openid_configuration(&self, tenant_id: &str) -> OpenIdConfiguration {
        let base = format!("{}/{tenant_id}", self.authority);
        OpenIdConfiguration {
            issuer: self.issuer(tenant_id),
            authorization_endpoint: format!("{base}/oauth2/v2.0/authorize"),
            token_endpoint: format!("{base}/oauth2/v2.0/token"),
            jwks_uri: format!("{base}/discovery/v2.0/keys"),
            response_types_supported: vec!["code".into(), "token".into()],
            subject_types_supported: vec!["pairwise".into()],
            id_token_signing_alg_values_supported: vec!["ES256".into()],
            token_endpoint_auth_methods_supported: vec![
                "client_secret_post".into(),
                "private_key_jwt".into(),
            ],
            grant_types_supported: vec![
                "client_credentials".into(),
                "authorization_code".into(),
                "refresh_token".into(),
                crate::interactive::DEVICE_CODE_GRANT.into(),
            ],
            tenant_region_scope: None,
            device_authorization_endpoint: format!("{base}/oauth2/v2.0/devicecode"),
            end_session_endpoint: format!("{base}/oauth2/v2.0/logout"),
            code_challenge_methods_supported: vec!["S256".into()],
            scopes_supported: vec!["openid".into(), "profile".into(), "offline_access".into()],
            claims_supported: [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "nbf",
                "oid",
                "tid",
                "name",
                "preferred_username",
                "nonce",
                "auth_time",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    pub fn jwks(&self) -> JwkSet {
        let jwks = self.jwks.read().expect("lock");
        JwkSet {
            keys: jwks.keys.clone(),
        }
    }

    /// Whether `tenant_id` names a tenant of this deployment, or is one of the aliases
    /// (`organizations`, `common`) that people's sign-ins use.
    pub async fn tenant_exists(&self, tenant_id: &str) -> Result<bool, DomainError> {
        Ok(crate::signin::is_alias(tenant_id) || self.store.get_tenant(tenant_id).await?.is_some())
    }

    /// The OAuth2 token endpoint (client credentials with a client secret).
    pub async fn token(
        &self,
        tenant_id: &str,
        form: &HashMap<String, String>,
    ) -> Result<TokenResponse, OAuthFailure> {
        let field = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let internal = |e: StoreError| {
            tracing::error!(error = %e, "token endpoint store error");
            oauth(
                500,
                "server_error",
                "The token service encountered an internal error.",
            )
        };
        match field("grant_type") {
            Some("client_credentials") => {}
            Some(other) => {
                return Err(oauth(
                    400,
                    "unsupported_grant_type",
                    format!("AADSTS70003: The grant type '{other}' is not supported."),
                ));
            }
            None => {
                return Err(oauth(
                    400,
                    "invalid_request",
                    "AADSTS900144: The request body must contain 'grant_type'.",
                ));
            }
        }
        if self
            .store
            .get_tenant(tenant_id)
            .await
            .map_err(internal)?
            .is_none()
        {
            return Err(oauth(
                400,
                "invalid_request",
                format!("AADSTS90002: Tenant '{tenant_id}' not found."),
            ));
        }
        let scope = field("scope").ok_or_else(|| {
            oauth(
                400,
                "invalid_scope",
                "AADSTS900144: The request body must contain 'scope'.",
            )
        })?;
        let resources: Vec<&str> = scope
            .split_whitespace()
            .filter(|s| !matches!(*s, "openid" | "profile" | "offline_access"))
            .map(|s| {
                s.strip_suffix("/.default")
                    .unwrap_or("")
                    .trim_end_matches('/')
            })
            .collect();
        let audience = match resources.as_slice() {
            [one] => self.audience_for(one),
            _ => None,
        };
        let Some(audience) = audience else {
            return Err(oauth(
                400,
                "invalid_scope",
                format!(
                    "AADSTS70011: The provided scope is not valid: use '{}/.default' for vaults or '{}/.default' for management.",
                    self.audience, self.authority
                ),
            ));
        };
        let now = self.clock.now();
        let principal = match field("client_assertion_type") {
            Some(crate::assertion::JWT_BEARER) => {
                if field("client_secret").is_some() {
                    return Err(oauth(
                        400,
                        "invalid_request",
                        "Send either a client secret or a client assertion, not both.",
                    ));
                }
                let assertion = field("client_assertion").ok_or_else(|| {
                    oauth(
                        400,
                        "invalid_request",
                        "AADSTS900144: The request body must contain 'client_assertion'.",
                    )
                })?;
                crate::assertion::verify(
                    &*self.store,
                    now,
                    tenant_id,
                    &self.token_endpoint(tenant_id),
                    field("client_id"),
                    assertion,
                    &audience,
                )
                .await?
            }
            Some(_) => {
                return Err(oauth(
                    400,
                    "invalid_request",
                    format!(
                        "AADSTS50027: 'client_assertion_type' must be '{}'.",
                        crate::assertion::JWT_BEARER
                    ),
                ));
            }
            None => self.client_secret_principal(tenant_id, form).await?,
        };
        self.issue(&principal, tenant_id, audience)
    }

    /// The OAuth2 token endpoint of a tenant: the audience of client assertions.
    pub fn token_endpoint(&self, tenant_id: &str) -> String {
        format!("{}/{tenant_id}/oauth2/v2.0/token", self.authority)
    }

    /// Client credentials with a client secret.
    async fn client_secret_principal(
        &self,
        tenant_id: &str,
        form: &HashMap<String, String>,
    ) -> Result<PrincipalRow, OAuthFailure> {
        let field = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let internal = |e: StoreError| {
            tracing::error!(error = %e, "token endpoint store error");
            oauth(
                500,
                "server_error",
                "The token service encountered an internal error.",
            )
        };
        let client_id = field("client_id").ok_or_else(|| {
            oauth(
                400,
                "invalid_request",
                "AADSTS900144: The request body must contain 'client_id'.",
            )
        })?;
        let secret = field("client_secret").ok_or_else(|| {
            oauth(
                401,
                "invalid_client",
                "AADSTS7000216: 'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
            )
        })?;
        let principal = self
            .store
            .get_principal_by_client_id(tenant_id, client_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                oauth(401, "unauthorized_client", format!("AADSTS700016: Application with identifier '{}' was not found in the tenant.", client_id.chars().take(64).collect::<String>()))
            })?;
        let presented = self.keyring.mac(CLIENT_SECRET_MAC, secret.as_bytes());
        let now = self.clock.now();
        let credentials = self
            .store
            .list_client_secrets(&principal.object_id)
            .await
            .map_err(internal)?;
        let matching = credentials
            .iter()
            .find(|c| strongbox_crypto::constant_time_eq(&c.hash, &presented));
        match matching {
            None => Err(oauth(
                401,
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided.",
            )),
            Some(c) if c.expires <= now => Err(oauth(
                401,
                "invalid_client",
                "AADSTS7000222: The provided client secret keys are expired.",
            )),
            Some(_) => Ok(principal),
        }
    }

    /// The audience a requested resource maps to: the vaults' resource (also under Azure Key
    /// Vault's own names, which docs, samples and workloads hard-code), or one of the names the
    /// management API answers to (our authority, and ARM's own, so SDK and CLI defaults work).
    pub fn audience_for(&self, resource: &str) -> Option<String> {
        let r = resource.trim_end_matches('/');
        if r.eq_ignore_ascii_case(&self.audience)
            || AZURE_VAULT_RESOURCES
                .iter()
                .any(|a| a.eq_ignore_ascii_case(r))
        {
            return Some(self.audience.clone());
        }
        self.management_audiences()
            .into_iter()
            .chain(self.graph_audiences())
            .find(|m| m.eq_ignore_ascii_case(r))
    }

    /// The names the directory (Graph) API answers to: `{authority}/graph`, and Microsoft
    /// Graph's own.
    pub fn graph_audiences(&self) -> Vec<String> {
        vec![
            format!("{}/graph", self.authority),
            "https://graph.microsoft.com".into(),
        ]
    }

    pub fn management_audiences(&self) -> Vec<String> {
        std::iter::once(self.authority.clone())
            .chain(AZURE_MANAGEMENT_RESOURCES.iter().map(|a| a.to_string()))
            .collect()
    }

    /// Issues an access token for `principal` (already authenticated by the caller) with `aud`.
    pub fn issue(
        &self,
        principal: &PrincipalRow,
        tenant_id: &str,
        aud: String,
    ) -> Result<TokenResponse, OAuthFailure> {
        let now = self.clock.now();
        let claims = AccessClaims {
            aud,
            iss: self.issuer(tenant_id),
            iat: now,
            nbf: now,
            exp: now + TOKEN_LIFETIME_SECS,
            oid: principal.object_id.clone(),
            sub: principal.object_id.clone(),
            tid: tenant_id.to_string(),
            appid: principal.client_id.clone(),
            azp: principal.client_id.clone(),
            ver: "2.0".into(),
            idtyp: "app".into(),
            uti: strongbox_crypto::random_hex_id(),
            scp: None,
            upn: None,
            preferred_username: None,
            unique_name: None,
            name: None,
            appidacr: None,
            amr: None,
        };
        Ok(TokenResponse {
            token_type: "Bearer".into(),
            expires_in: TOKEN_LIFETIME_SECS,
            ext_expires_in: TOKEN_LIFETIME_SECS,
            access_token: self.sign(&claims)?,
            refresh_token: None,
            id_token: None,
            scope: None,
            client_info: None,
        })
    }

    /// Signs claims (access or ID token) with the current key.
    pub(crate) fn sign<T: serde::Serialize>(&self, claims: &T) -> Result<String, OAuthFailure> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.signer.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signer.key).map_err(|e| {
            tracing::error!(error = %e, "token signing failed");
            oauth(
                500,
                "server_error",
                "The token service encountered an internal error.",
            )
        })
    }

    /// Verifies a bearer token for the given plane: ES256 signature by one of our keys, audience,
    /// issuer, time window.
    pub async fn verify(&self, token: &str, plane: Plane) -> Result<Caller, AuthError> {
        let now = self.clock.now();
        let audiences = match plane {
            Plane::Vault => vec![self.audience.clone()],
            Plane::Management => self.management_audiences(),
            Plane::Graph => self.graph_audiences(),
        };
        if let Some((caller, exp, aud)) = self.cache.lock().expect("lock").get(token).cloned() {
            if !audiences.iter().any(|a| a.eq_ignore_ascii_case(&aud)) {
                return Err(AuthError::Audience);
            }
            if now < exp {
                return Ok(caller);
            }
            return Err(AuthError::Expired);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.alg != Algorithm::ES256 {
            return Err(AuthError::Signature);
        }
        let kid = header.kid.ok_or(AuthError::Signature)?;
        if !self.verify_keys.read().expect("lock").contains_key(&kid) {
            // Another node may have added a key since we loaded ours.
            if let Ok(rows) = self.store.list_signing_keys().await {
                let _ = self.load_public_keys(&rows);
            }
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&audiences);
        validation.validate_exp = false; // checked below against the injected clock
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["aud", "iss", "exp"]);
        let claims = {
            let keys = self.verify_keys.read().expect("lock");
            let key = keys.get(&kid).ok_or(AuthError::Signature)?;
            jsonwebtoken::decode::<AccessClaims>(token, key, &validation).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidAudience => AuthError::Audience,
                    jsonwebtoken::errors::ErrorKind::InvalidSignature
                    | jsonwebtoken::errors::ErrorKind::InvalidAlgorithm
                    | jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey => AuthError::Signature,
                    _ => AuthError::Malformed,
                }
            })?
        }
        .claims;
        if claims.iss != self.issuer(&claims.tid) {
            return Err(AuthError::Issuer);
        }
        if now >= claims.exp || claims.nbf > now + LEEWAY_SECS {
            return Err(AuthError::Expired);
        }
        let caller = Caller {
            object_id: claims.oid,
            tenant_id: claims.tid,
            app_id: claims.appid,
        };
        let mut cache = self.cache.lock().expect("lock");
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(token.to_string(), (caller.clone(), claims.exp, claims.aud));
        Ok(caller)
    }
}

fn new_signing_key(keyring: &Keyring, now: i64) -> Result<SigningKeyRow, DomainError> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| DomainError::Internal("key generation failed".into()))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .map_err(|_| DomainError::Internal("key generation failed".into()))?;
    // Uncompressed point: 0x04 || X (32) || Y (32).
    let point = pair.public_key().as_ref();
    let kid = strongbox_crypto::random_hex_id();
    let jwk = Jwk {
        kty: "EC".into(),
        crv: "P-256".into(),
        x: URL_SAFE_NO_PAD.encode(&point[1..33]),
        y: URL_SAFE_NO_PAD.encode(&point[33..65]),
        kid: kid.clone(),
        use_: "sig".into(),
        alg: "ES256".into(),
    };
    Ok(SigningKeyRow {
        sealed_private: keyring.seal(&signing_aad(&kid), pkcs8.as_ref()),
        public_jwk: serde_json::to_string(&jwk).expect("JWK serializes"),
        kid,
        created: now,
    })
}
