//! Public clients known to every tenant, so the unmodified tools sign people in: the Azure CLI
//! (whose id azure-identity also uses as its default for interactive credentials:
//! `DEVELOPER_SIGN_ON_CLIENT_ID` in azure-identity's `_constants.py`, `DeveloperSignOnClientId`
//! in @azure/identity) and Azure PowerShell. Native clients listen on a loopback port the OS
//! picks, so their loopback redirect URIs match on any port (RFC 8252 §7.3).

pub struct PublicClient {
    pub client_id: &'static str,
    pub name: &'static str,
    /// Redirect URIs matched exactly, besides loopback ones.
    pub redirect_uris: &'static [&'static str],
}

pub const AZURE_CLI: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

pub const PUBLIC_CLIENTS: &[PublicClient] = &[
    PublicClient {
        client_id: AZURE_CLI,
        name: "Microsoft Azure CLI",
        redirect_uris: &[],
    },
    PublicClient {
        client_id: "1950a258-227b-4e31-a9cf-717495945fc2",
        name: "Microsoft Azure PowerShell",
        redirect_uris: &[],
    },
];

pub fn public_client(client_id: &str) -> Option<&'static PublicClient> {
    PUBLIC_CLIENTS
        .iter()
        .find(|c| c.client_id.eq_ignore_ascii_case(client_id))
}

impl PublicClient {
    /// Whether the client may be sent back to `uri`: one of its registered URIs exactly, or
    /// `http://localhost|127.0.0.1|[::1]` with any port and no path beyond `/`, no query, no
    /// fragment, no user info.
    pub fn redirect_allowed(&self, uri: &str) -> bool {
        self.redirect_uris.contains(&uri) || is_loopback_redirect(uri)
    }
}

fn is_loopback_redirect(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("http://") else {
        return false;
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if !(path.is_empty() || path == "/") {
        return false;
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let port_ok = match port {
        None => true,
        Some(p) => {
            !p.is_empty()
                && p.len() <= 5
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
        }
    };
    matches!(host, "localhost" | "127.0.0.1" | "[::1]") && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_match_on_any_port_only() {
        let cli = public_client(AZURE_CLI).expect("cli");
        for ok in [
            "http://localhost:53211",
            "http://localhost",
            "http://127.0.0.1:8400/",
            "http://[::1]:9000",
        ] {
            assert!(cli.redirect_allowed(ok), "{ok}");
        }
        for bad in [
            "https://localhost:53211",
            "http://localhost.evil.example:80",
            "http://localhost:80@evil.example",
            "http://evil.example/?localhost",
            "http://localhost:99999",
            "http://localhost:80/callback",
            "http://localhost:80?x=1",
            "http://127.0.0.2:80",
            "http://localhost:",
        ] {
            assert!(!cli.redirect_allowed(bad), "{bad}");
        }
    }
}
