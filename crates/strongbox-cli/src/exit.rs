//! Exit codes and the one-line error report.

use std::process::ExitCode;

pub const CHECK_FAILED: u8 = 1;
pub const USAGE: u8 = 2;
pub const ERROR: u8 = 3;
pub const NOT_FOUND: u8 = 4;
pub const FORBIDDEN: u8 = 5;
pub const CONFLICT: u8 = 6;

/// A mistake in how the command was called that clap cannot see (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Usage(message.into()).into()
}

/// A refusal the CLI reports itself, as if the server had answered `status` with `code`: a
/// delete that found nothing (ARM answers such deletes with 204), a create that would replace.
pub fn refused(status: u16, code: &str, message: impl Into<String>) -> anyhow::Error {
    strongbox_client::Error::Http {
        status,
        code: code.into(),
        message: message.into(),
    }
    .into()
}

/// The exit code and the `CODE` for an error.
pub fn classify(e: &anyhow::Error) -> (u8, String, String) {
    if let Some(c) = e.downcast_ref::<strongbox_client::Error>() {
        let code = match c.status() {
            Some(404) => NOT_FOUND,
            Some(401) | Some(403) => FORBIDDEN,
            Some(409) => CONFLICT,
            _ => ERROR,
        };
        let message = match c {
            strongbox_client::Error::Http { message, .. }
            | strongbox_client::Error::Auth { message, .. } => message.clone(),
            other => other
                .to_string()
                .split_once(": ")
                .map_or_else(|| other.to_string(), |(_, m)| m.to_string()),
        };
        return (code, c.code().to_string(), message);
    }
    if let Some(u) = e.downcast_ref::<Usage>() {
        return (USAGE, "Usage".into(), u.0.clone());
    }
    (ERROR, "Error".into(), format!("{e:#}"))
}

/// Prints `error: <CODE>: <message>` on one line and returns the exit code.
pub fn report(e: &anyhow::Error) -> ExitCode {
    let (code, name, message) = classify(e);
    let one_line: String = message
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    eprintln!("error: {name}: {one_line}");
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_refusals_map_to_exit_codes() {
        let http = |status: u16, code: &str| -> anyhow::Error {
            strongbox_client::Error::Http {
                status,
                code: code.into(),
                message: "m\nx".into(),
            }
            .into()
        };
        assert_eq!(classify(&http(404, "SecretNotFound")).0, NOT_FOUND);
        assert_eq!(classify(&http(403, "Forbidden")).0, FORBIDDEN);
        assert_eq!(classify(&http(401, "Unauthorized")).0, FORBIDDEN);
        assert_eq!(classify(&http(409, "Conflict")).0, CONFLICT);
        assert_eq!(
            classify(&http(400, "BadParameter")),
            (ERROR, "BadParameter".into(), "m\nx".into())
        );
        assert_eq!(classify(&usage("no")).0, USAGE);
        assert_eq!(classify(&anyhow::anyhow!("boom")).1, "Error");
    }
}
