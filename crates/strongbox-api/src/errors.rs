use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use strongbox_domain::DomainError;
use strongbox_types::{ErrorBody, ErrorCode};

/// An error on its way to the client, in the Azure shape.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub inner: Option<&'static str>,
    /// Set on 401s: the Bearer challenge the SDKs follow.
    pub challenge: Option<String>,
    /// Retry-After seconds, when not the code's usual one.
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            inner: None,
            challenge: None,
            retry_after: None,
        }
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        if let DomainError::Internal(detail) = &e {
            tracing::error!(error = %detail, "internal error");
        }
        ApiError {
            code: e.code(),
            message: e.client_message(),
            inner: e.inner(),
            challenge: None,
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody::new(self.code, self.message, self.inner);
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(c) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        if let Some(secs) = self.retry_after.or_else(|| retry_after(self.code)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// The Retry-After (seconds) an error carries: the SDKs wait that long before they retry.
pub fn retry_after(code: ErrorCode) -> Option<u32> {
    match code {
        ErrorCode::Throttled => Some(1),
        ErrorCode::ServiceUnavailable => Some(strongbox_domain::DISK_FULL_RETRY_AFTER_SECS),
        _ => None,
    }
}

/// A JSON body error that says where and what kind, but never quotes the input (it may be a
/// secret value).
pub fn json_error(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io | Category::Eof => "the body ended early",
        Category::Syntax => "the body is not valid JSON",
        Category::Data => "a field is missing or has the wrong type",
    };
    ApiError::new(
        ErrorCode::BadParameter,
        format!(
            "The request body is invalid: {what} (line {}, column {}).",
            e.line(),
            e.column()
        ),
    )
}
