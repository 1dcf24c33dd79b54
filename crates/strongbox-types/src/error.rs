//! The one table of error codes. Every refusal the data plane sends is one of these, in the
//! Azure shape `{"error":{"code","message","innererror"?}}`.

use serde::Serialize;

macro_rules! error_codes {
    ($($variant:ident => $status:literal, $wire:literal;)*) => {
        /// An Azure Key Vault error code, as sent in `error.code`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            /// The HTTP status this code is sent with.
            pub fn status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }
            /// The code as it appears on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $wire,)* }
            }
        }
    };
}

error_codes! {
    BadParameter => 400, "BadParameter";
    Unauthorized => 401, "Unauthorized";
    Forbidden => 403, "Forbidden";
    SecretNotFound => 404, "SecretNotFound";
    VaultNotFound => 404, "VaultNotFound";
    NotFound => 404, "NotFound";
    MethodNotAllowed => 405, "MethodNotAllowed";
    Conflict => 409, "Conflict";
    CursorExpired => 410, "CursorExpired";
    RequestTooLarge => 413, "RequestEntityTooLarge";
    Throttled => 429, "Throttled";
    InternalError => 500, "InternalError";
    ServiceUnavailable => 503, "ServiceUnavailable";
}

/// The body of every error response.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub innererror: Option<InnerError>,
}

#[derive(Debug, Serialize)]
pub struct InnerError {
    pub code: &'static str,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>, inner: Option<&'static str>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.as_str(),
                message: message.into(),
                innererror: inner.map(|code| InnerError { code }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_the_azure_shape() {
        let body = ErrorBody::new(
            ErrorCode::Conflict,
            "taken",
            Some("ObjectIsDeletedButRecoverable"),
        );
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "Conflict", "message": "taken",
                "innererror": {"code": "ObjectIsDeletedButRecoverable"}}})
        );
        assert_eq!(ErrorCode::SecretNotFound.status(), 404);
        assert_eq!(ErrorCode::RequestTooLarge.status(), 413);
    }
}
