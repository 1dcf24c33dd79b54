//! Token endpoints for managed identities, in the two forms azure-identity's
//! `ManagedIdentityCredential` speaks from environment variables alone (the requests are built
//! by MSAL's `ManagedIdentityClient`):
//!
//! - App Service: `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`. `GET {endpoint}?api-version=2019-08-01
//!   &resource=…[&client_id|object_id|mi_res_id=…]` with `X-IDENTITY-HEADER: {secret}`. The
//!   secret is issued per identity, shown once and stored as a keyed hash; it also names the
//!   identity.
//! - Azure Arc: `IDENTITY_ENDPOINT` + `IMDS_ENDPOINT`. `GET {endpoint}?api-version=2020-06-01
//!   &resource=…[&client_id|object_id|msi_res_id=…]` with `Metadata: true`, answered by a file
//!   challenge (see [`crate::arc`]); the endpoint's path names the identity.
//!
//! A selector in the query, if any, must name the endpoint's own identity.

use crate::TokenService;
use secrecy::SecretString;
use strongbox_crypto::Keyring;
use strongbox_domain::identities::USER_ASSIGNED;
use strongbox_domain::{Clock, DomainError};
use strongbox_store::{IdentityEndpointRow, ManagedIdentityRow, PrincipalRow, Store};
use strongbox_types::token::TokenResponse;

/// `IdentityEndpointRow::form` values.
pub const APP_SERVICE: &str = "AppService";
pub const AZURE_ARC: &str = "AzureArc";
/// Label of the keyed hash under which App Service endpoint secrets are stored.
const ENDPOINT_SECRET_MAC: &str = "identity-endpoint-secret";
const APP_SERVICE_API_VERSIONS: &[&str] = &["2019-08-01"];
const ARC_API_VERSIONS: &[&str] = &["2019-08-15", "2019-11-01", "2020-06-01", "2021-02-01"];

/// Issues a new App Service endpoint secret for a managed identity. The secret is returned once.
pub async fn issue_app_service_secret(
    store: &dyn Store,
    keyring: &Keyring,
    clock: &dyn Clock,
    principal_id: &str,
) -> Result<(IdentityEndpointRow, SecretString), DomainError> {
    require_managed(store, principal_id).await?;
    let secret = format!(
        "sbxmi~{}",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            strongbox_crypto::random_bytes::<32>()
        )
    );
    let row = IdentityEndpointRow {
        id: uuid::Uuid::new_v4().to_string(),
        principal_id: principal_id.to_string(),
        form: APP_SERVICE.into(),
        secret_hash: Some(keyring.mac(ENDPOINT_SECRET_MAC, secret.as_bytes()).to_vec()),
        created: clock.now(),
    };
    store.insert_identity_endpoint(row.clone()).await?;
    Ok((row, SecretString::from(secret)))
}

/// The Azure Arc endpoint of a managed identity, created on first use.
pub async fn arc_endpoint(
    store: &dyn Store,
    clock: &dyn Clock,
    principal_id: &str,
) -> Result<IdentityEndpointRow, DomainError> {
    require_managed(store, principal_id).await?;
    if let Some(e) = store
        .list_identity_endpoints(principal_id)
        .await?
        .into_iter()
        .find(|e| e.form == AZURE_ARC)
    {
        return Ok(e);
    }
    let row = IdentityEndpointRow {
        id: uuid::Uuid::new_v4().simple().to_string(),
        principal_id: principal_id.to_string(),
        form: AZURE_ARC.into(),
        secret_hash: None,
        created: clock.now(),
    };
    store.insert_identity_endpoint(row.clone()).await?;
    Ok(row)
}

async fn require_managed(store: &dyn Store, principal_id: &str) -> Result<(), DomainError> {
    if store.get_managed_identity(principal_id).await?.is_none() {
        return Err(DomainError::BadParameter(
            "Managed-identity endpoints exist only for managed identities.".into(),
        ));
    }
    Ok(())
}

/// A token for a managed identity, with what the response bodies echo.
#[derive(Debug)]
pub struct ManagedToken {
    pub token: TokenResponse,
    /// Unix seconds.
    pub expires_on: i64,
    pub not_before: i64,
    pub resource: String,
    pub principal: PrincipalRow,
    pub identity: ManagedIdentityRow,
}

impl ManagedToken {
    /// The identity's ARM id, for user-assigned identities (echoed as `msi_res_id`).
    pub fn resource_id(&self) -> Option<String> {
        (self.identity.kind == USER_ASSIGNED)
            .then(|| strongbox_domain::arm::display_scope(&self.identity.resource_id))
    }
}

/// A refused managed-identity token request. `status` 401 means "not authenticated".
#[derive(Debug)]
pub struct ManagedFailure {
    pub status: u16,
    pub error: &'static str,
    pub message: String,
}

fn failure(status: u16, error: &'static str, message: impl Into<String>) -> ManagedFailure {
    ManagedFailure {
        status,
        error,
        message: message.into(),
    }
}

fn internal(e: impl std::fmt::Display) -> ManagedFailure {
    tracing::error!(error = %e, "managed-identity token endpoint failed internally");
    failure(
        500,
        "server_error",
        "The token service encountered an internal error.",
    )
}

/// What the Arc endpoint answers.
#[derive(Debug)]
pub enum ArcOutcome {
    Token(Box<ManagedToken>),
    /// 401 with `WWW-Authenticate: Basic realm=<path>`.
    Challenge(std::path::PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Form {
    AppService,
    Arc,
}

/// Which identity a request names (`client_id`, `object_id`/`principal_id`, `msi_res_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Client(String),
    Object(String),
    Resource(String),
}

/// A validated managed-identity token query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub resource: String,
    pub selector: Option<Selector>,
}

/// Validates an Azure Arc form query (api-version, one `resource`, at most one selector); shared
/// with the edge agent's local endpoint.
pub fn parse_arc_query(pairs: &[(String, String)]) -> Result<Query, ManagedFailure> {
    parse_query(Form::Arc, pairs)
}

/// Validates the query: the form's api-version, one `resource`, at most one selector, nothing
/// else. Values are never echoed back in full.
fn parse_query(form: Form, pairs: &[(String, String)]) -> Result<Query, ManagedFailure> {
    let bad = |m: String| failure(400, "invalid_request", m);
    let mut api_version = None;
    let mut resource = None;
    let mut selector = None;
    for (k, v) in pairs {
        let slot = match (form, k.as_str()) {
            (_, "api-version") => &mut api_version,
            (_, "resource") => &mut resource,
            (_, "client_id") => {
                if selector.is_some() {
                    return Err(bad("Give at most one identity selector.".into()));
                }
                selector = Some(Selector::Client(v.clone()));
                continue;
            }
            (Form::AppService, "object_id" | "principal_id") | (Form::Arc, "object_id") => {
                if selector.is_some() {
                    return Err(bad("Give at most one identity selector.".into()));
                }
                selector = Some(Selector::Object(v.clone()));
                continue;
            }
            (Form::AppService, "mi_res_id") | (Form::Arc, "msi_res_id" | "mi_res_id") => {
                if selector.is_some() {
                    return Err(bad("Give at most one identity selector.".into()));
                }
                selector = Some(Selector::Resource(v.clone()));
                continue;
            }
            _ => {
                return Err(bad(format!(
                    "Unknown query parameter '{}'.",
                    k.chars().take(40).collect::<String>()
                )));
            }
        };
        if slot.replace(v.clone()).is_some() {
            return Err(bad(format!("The query parameter '{k}' is repeated.")));
        }
    }
    let versions = match form {
        Form::AppService => APP_SERVICE_API_VERSIONS,
        Form::Arc => ARC_API_VERSIONS,
    };
    match api_version.as_deref() {
        Some(v) if versions.contains(&v) => {}
        _ => {
            return Err(bad(format!(
                "The api-version is missing or unsupported: use {}.",
                versions.join(" or ")
            )));
        }
    }
    let resource = resource
        .filter(|r| !r.is_empty())
        .ok_or_else(|| bad("The 'resource' query parameter is required.".into()))?;
    Ok(Query { resource, selector })
}

impl TokenService {
    async fn managed_token(
        &self,
        endpoint: &IdentityEndpointRow,
        query: Query,
    ) -> Result<ManagedToken, ManagedFailure> {
        let (identity, principal) = self
            .store
            .get_managed_identity(&endpoint.principal_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| failure(400, "invalid_request", "The identity no longer exists."))?;
        if let Some(selector) = &query.selector {
            let matches = match selector {
                Selector::Client(c) => c.eq_ignore_ascii_case(&principal.client_id),
                Selector::Object(o) => o.eq_ignore_ascii_case(&principal.object_id),
                Selector::Resource(r) => {
                    identity.kind == USER_ASSIGNED
                        && r.trim_end_matches('/')
                            .eq_ignore_ascii_case(&identity.resource_id)
                }
            };
            if !matches {
                return Err(failure(
                    400,
                    "invalid_request",
                    "No managed identity matching the given client_id, object_id or resource id is available at this endpoint.",
                ));
            }
        }
        let resource = query.resource.trim_end_matches('/').to_string();
        let audience = self.audience_for(&resource).ok_or_else(|| {
            failure(
                400,
                "invalid_resource",
                format!(
                    "The resource is not valid: use '{}' for vaults or '{}' for management.",
                    self.audience(),
                    self.authority()
                ),
            )
        })?;
        let now = self.clock.now();
        let token = self
            .issue(&principal, &principal.tenant_id, audience)
            .map_err(|f| internal(f.body.error_description))?;
        tracing::info!(
            object_id = %principal.object_id,
            form = %endpoint.form,
            "managed-identity token issued"
        );
        Ok(ManagedToken {
            expires_on: now + token.expires_in,
            not_before: now,
            token,
            resource,
            principal,
            identity,
        })
    }

    /// The App Service form: `secret` is the `X-IDENTITY-HEADER` value.
    pub async fn app_service_token(
        &self,
        secret: Option<&str>,
        pairs: &[(String, String)],
    ) -> Result<ManagedToken, ManagedFailure> {
        let unauthorized = || {
            failure(
                401,
                "unauthorized_client",
                "The X-IDENTITY-HEADER is missing or not valid.",
            )
        };
        let secret = secret.filter(|s| !s.is_empty()).ok_or_else(unauthorized)?;
        let hash = self.keyring.mac(ENDPOINT_SECRET_MAC, secret.as_bytes());
        let endpoint = self
            .store
            .get_identity_endpoint_by_hash(&hash)
            .await
            .map_err(internal)?
            .filter(|e| e.form == APP_SERVICE)
            .ok_or_else(unauthorized)?;
        let query = parse_query(Form::AppService, pairs)?;
        self.managed_token(&endpoint, query).await
    }

    /// The Azure Arc form at endpoint `endpoint_id`. Without `basic` (the `Authorization: Basic`
    /// value) it issues a challenge; with it, it redeems one.
    pub async fn arc_token(
        &self,
        endpoint_id: &str,
        metadata: bool,
        basic: Option<&str>,
        pairs: &[(String, String)],
    ) -> Result<ArcOutcome, ManagedFailure> {
        let Some(arc) = &self.arc else {
            return Err(failure(
                404,
                "invalid_request",
                "The Azure Arc managed-identity endpoint is not enabled on this server (start it with --arc-token-dir).",
            ));
        };
        if !metadata {
            return Err(failure(
                400,
                "invalid_request",
                "Required metadata header not specified",
            ));
        }
        let endpoint = self
            .store
            .get_identity_endpoint(endpoint_id)
            .await
            .map_err(internal)?
            .filter(|e| e.form == AZURE_ARC)
            .ok_or_else(|| failure(404, "invalid_request", "No such identity endpoint."))?;
        let query = parse_query(Form::Arc, pairs)?;
        let now_ms = self.clock.now_ms();
        match basic {
            None => match arc.issue(&endpoint.id, now_ms) {
                Ok(path) => Ok(ArcOutcome::Challenge(path)),
                Err(crate::arc::ArcError::Busy) => Err(failure(
                    429,
                    "too_many_requests",
                    "Too many outstanding challenges; retry shortly.",
                )),
                Err(e) => Err(internal(e)),
            },
            Some(content) => {
                if !arc.redeem(&endpoint.id, content, now_ms) {
                    return Err(failure(
                        401,
                        "invalid_client",
                        "The challenge response is not valid (wrong, expired or already used).",
                    ));
                }
                Ok(ArcOutcome::Token(Box::new(
                    self.managed_token(&endpoint, query).await?,
                )))
            }
        }
    }
}
