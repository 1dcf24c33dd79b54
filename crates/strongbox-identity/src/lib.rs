//! Strongbox's token service: tenants and service principals with client secrets, ES256 signing
//! keys (sealed at rest, published as a JWKS), the OAuth2 client-credentials grant that MSAL
//! speaks, and verification of bearer tokens with a cache that keeps signature checks off the
//! hot path.

pub mod arc;
mod assertion;
pub mod credentials;
pub mod managed;
mod principals;
mod tokens;

pub use assertion::JWT_BEARER;

pub use principals::{
    NewServicePrincipal, add_client_secret, create_service_principal, create_tenant,
};
pub use tokens::{AuthError, OAuthFailure, Plane, TokenService, signing_aad};
