//! The management API, shaped like Azure Resource Manager so the official `azure-mgmt-*` SDKs
//! drive it: `/subscriptions/{sub}/resourceGroups/{rg}/providers/…`. Tokens for the management
//! plane (audience: our authority, or ARM's own names) are checked here; authorization is by
//! role assignments (Owner, Contributor, …) at the resource's scope or above.
//!
//! Each resource family lives in its own module and adds its routes in [`routes`].

mod insights;

use crate::AppState;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use std::sync::Arc;
use strongbox_domain::{Caller, DomainError, rbac};
use strongbox_identity::Plane;
use strongbox_types::ErrorCode;

mod context;
mod devices;
mod graph;
mod identities;
mod locks;
mod role_assignments;
mod subscriptions;
mod vaults;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .merge(vaults::routes())
        .merge(locks::routes())
        .merge(role_assignments::routes())
        .merge(identities::routes())
        .merge(insights::routes())
        .merge(devices::routes())
        .merge(subscriptions::routes())
        .merge(graph::routes())
}

/// An error in ARM's shape: `{"error":{"code","message"}}`.
#[derive(Debug)]
pub struct ArmError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ArmError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ArmError {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        ArmError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ArmError::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ArmError::new(StatusCode::CONFLICT, code, message)
    }
    pub fn bad_request_code(code: &'static str, message: impl Into<String>) -> Self {
        ArmError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl From<DomainError> for ArmError {
    fn from(e: DomainError) -> Self {
        let status =
            StatusCode::from_u16(e.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if let DomainError::Internal(detail) = &e {
            tracing::error!(error = %detail, "internal error");
        }
        let code = match &e {
            DomainError::BadParameter(_) => "BadRequest",
            DomainError::NotFound(_) => "ResourceNotFound",
            DomainError::Forbidden { inner, .. } => inner.unwrap_or("Forbidden"),
            DomainError::Conflict { inner, .. } => inner.unwrap_or("Conflict"),
            DomainError::TooLarge(_) => "RequestEntityTooLarge",
            DomainError::CursorExpired(_) => "CursorExpired",
            DomainError::Throttled(_) => "TooManyRequests",
            DomainError::Unavailable(_) => "ServiceUnavailable",
            DomainError::Internal(_) => "InternalServerError",
        };
        ArmError {
            status,
            code,
            message: e.client_message(),
        }
    }
}

impl From<strongbox_store::StoreError> for ArmError {
    fn from(e: strongbox_store::StoreError) -> Self {
        DomainError::from(e).into()
    }
}

impl IntoResponse for ArmError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut r = (self.status, Json(body)).into_response();
        let code = match self.status {
            StatusCode::TOO_MANY_REQUESTS => Some(ErrorCode::Throttled),
            StatusCode::SERVICE_UNAVAILABLE => Some(ErrorCode::ServiceUnavailable),
            _ => None,
        };
        if let Some(secs) = code.and_then(crate::errors::retry_after) {
            r.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\", error_description=\"The access token is missing or invalid.\""),
            );
        }
        r
    }
}

/// The caller of a request whose bearer token is valid for `plane`, or the 401 to answer.
async fn verified_caller(parts: &Parts, app: &AppState, plane: Plane) -> Result<Caller, ArmError> {
    let unauthorized =
        |m: String| ArmError::new(StatusCode::UNAUTHORIZED, "AuthenticationFailed", m);
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            unauthorized("Authentication failed. The 'Authorization' header is missing.".into())
        })?;
    app.tokens
        .verify(token, plane)
        .await
        .map_err(|e| unauthorized(e.to_string()))
}

/// Requires that the caller holds `action` at `scope` (an ARM id) through a role assignment at
/// that scope or above.
pub async fn require(
    app: &AppState,
    caller: &Caller,
    scope: &str,
    action: &str,
) -> Result<(), ArmError> {
    let assignments = app
        .store
        .list_role_assignments_for_principal(&caller.object_id)
        .await?;
    if rbac::permits(&assignments, scope, action, false) {
        Ok(())
    } else {
        Err(ArmError::new(
            StatusCode::FORBIDDEN,
            "AuthorizationFailed",
            format!(
                "The client '{}' with object id '{}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid.",
                caller.app_id, caller.object_id
            ),
        ))
    }
}
