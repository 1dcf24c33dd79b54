//! Documents of the token service: OpenID discovery, JWKS, OAuth2 token responses and errors.

use serde::{Deserialize, Serialize};

/// `{authority}/{tenant}/v2.0/.well-known/openid-configuration`. MSAL reads
/// `authorization_endpoint` and `token_endpoint` and takes the tenant from the latter's path.
#[derive(Debug, Serialize, Deserialize)]
pub struct OpenIdConfiguration {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub response_types_supported: Vec<String>,
    pub subject_types_supported: Vec<String>,
    pub id_token_signing_alg_values_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub grant_types_supported: Vec<String>,
    pub tenant_region_scope: Option<String>,
    /// RFC 8628's endpoint (MSAL Python needs it for the device flow).
    pub device_authorization_endpoint: String,
    pub end_session_endpoint: String,
    pub code_challenge_methods_supported: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub claims_supported: Vec<String>,
}

/// The device authorization response (RFC 8628 §3.2, with Entra's `message`).
#[derive(Debug, Serialize, Deserialize)]
pub struct DeviceCodeResponse {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub expires_in: i64,
    pub interval: i64,
    pub message: String,
}

/// Claims of the ID tokens Strongbox issues to public clients after a person signs in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdClaims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub sub: String,
    pub oid: String,
    pub tid: String,
    pub preferred_username: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nonce: Option<String>,
    pub auth_time: i64,
    pub ver: String,
}

/// One public key of the JWKS (EC P-256 only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub y: String,
    pub kid: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub alg: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// A successful token response.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenResponse {
    pub token_type: String,
    pub expires_in: i64,
    pub ext_expires_in: i64,
    pub access_token: String,
    /// The next fields come only with tokens for people.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scope: Option<String>,
    /// base64url JSON `{"uid": object id, "utid": tenant id}`: MSAL's account key.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_info: Option<String>,
}

/// An OAuth2 error response, as the Microsoft identity platform sends it.
#[derive(Debug, Serialize, Deserialize)]
pub struct OAuthError {
    pub error: String,
    pub error_description: String,
}

/// Claims of the access tokens Strongbox issues.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub oid: String,
    pub sub: String,
    pub tid: String,
    pub appid: String,
    pub azp: String,
    pub ver: String,
    pub idtyp: String,
    pub uti: String,
    /// Delegated (user) tokens only: the scope granted (`user_impersonation`) and who the user is.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub upn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub preferred_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unique_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// `0`: a public client.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub appidacr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub amr: Option<Vec<String>>,
}
