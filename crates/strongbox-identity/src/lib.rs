//! Strongbox's token service: tenants and service principals with client secrets, ES256 signing
//! keys (sealed at rest, published as a JWKS), the OAuth2 client-credentials grant that MSAL
//! speaks, and verification of bearer tokens with a cache that keeps signature checks off the
//! hot path.

pub mod arc;
mod assertion;
pub mod clients;
pub mod credentials;
pub mod interactive;
pub mod managed;
pub mod mfa;
mod principals;
pub mod signin;
mod tokens;

pub use assertion::JWT_BEARER;

pub use principals::{
    MIN_PASSWORD_CHARS, NewServicePrincipal, NewUser, add_client_secret, create_service_principal,
    create_tenant, create_user, find_user, hash_password, normalize_upn, reset_password,
    revoke_sessions, set_user_enabled,
};
pub use tokens::{AuthError, OAuthFailure, Plane, TokenService, signing_aad};
