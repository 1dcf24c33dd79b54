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
}
