//! People's OAuth flows on the token service, in the Microsoft identity platform's shapes: the
//! device authorization grant (RFC 8628), the authorization code grant with PKCE (S256 only),
//! refresh tokens rotated on every use (a reuse revokes the whole family), ID tokens, delegated
//! access tokens, and the web sessions the sign-in pages keep.
//!
//! Every handle a client or browser holds (device code, authorization code, refresh token,
//! pending sign-in, session) is random and stored only as a keyed hash.

use crate::TokenService;
use crate::clients::public_client;
use crate::signin::{SigninContext, SigninRefusal, is_alias};
use crate::tokens::{OAuthFailure, TOKEN_LIFETIME_SECS, oauth};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use strongbox_domain::DomainError;
use strongbox_store::{GrantRow, RefreshOutcome, RefreshTokenRow, StoreError, UserRow};
use strongbox_types::token::{AccessClaims, DeviceCodeResponse, IdClaims, TokenResponse};

pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Entra's device code lifetime.
pub const DEVICE_CODE_LIFETIME_SECS: i64 = 15 * 60;
pub const DEVICE_POLL_INTERVAL_SECS: i64 = 5;
const AUTHORIZATION_CODE_LIFETIME_SECS: i64 = 5 * 60;
/// How long a sign-in page may sit between its steps.
const PENDING_SIGNIN_SECS: i64 = 15 * 60;
pub const REFRESH_TOKEN_LIFETIME_SECS: i64 = 90 * 86_400;
pub const SESSION_IDLE_SECS: i64 = 30 * 60;
pub const SESSION_ABSOLUTE_SECS: i64 = 8 * 3600;
/// Expired grants are kept this long, so a late poll hears "expired" rather than "unknown".
const GRANT_GRACE_SECS: i64 = 3600;
/// Letters of user codes: no vowels (no words), no look-alikes.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
const RESERVED_SCOPES: [&str; 3] = ["openid", "profile", "offline_access"];

/// How a person proved who they are, carried from sign-in to every token of the session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthContext {
    pub amr: Vec<String>,
    pub auth_time: i64,
}

/// A validated authorization request, kept server-side while the person signs in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    pub tenant: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    /// `query` (a redirect) or `form_post` (azure-identity's choice: a form the browser posts).
    pub response_mode: String,
}

/// How the browser goes back to the client with the code.
#[derive(Debug)]
pub enum ClientReturn {
    Redirect(String),
    FormPost {
        action: String,
        fields: Vec<(String, String)>,
    },
}

/// What a pending sign-in completes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "flow", rename_all = "snake_case")]
pub enum PendingFlow {
    Authorize(AuthorizeRequest),
    Device { grant_id: String, tenant: String },
}

#[derive(Serialize, Deserialize)]
struct DevicePayload {
    tenant: String,
    client_id: String,
    scope: String,
    auth: Option<AuthContext>,
}

#[derive(Serialize, Deserialize)]
struct CodePayload {
    request: AuthorizeRequest,
    auth: AuthContext,
}

#[derive(Serialize, Deserialize)]
struct SessionPayload {
    auth: AuthContext,
    absolute_expires: i64,
}

/// Why an authorization request is refused: on our own page (the client or its redirect URI is
/// not to be trusted), or back at the client's redirect URI.
#[derive(Debug)]
pub enum AuthorizeError {
    Page(String),
    Redirect(String),
}

/// Where a sign-in page stands after a step.
#[derive(Debug)]
pub enum SigninStep {
    /// The pending sign-in is unknown, used up or expired: start again.
    Gone,
    Refused(SigninRefusal),
    SecondFactor {
        upn: String,
    },
    Done(Box<Completion>),
}

#[derive(Debug)]
pub struct Completion {
    pub user: UserRow,
    /// The authorization flow's way back to the client (with `code` and `state`).
    pub back: Option<ClientReturn>,
    /// A new web session's handle, for the cookie.
    pub session: String,
}

/// What the person typed on the device page led to.
#[derive(Debug)]
pub enum DeviceEntry {
    /// A pending sign-in for that device code.
    Signin(String),
    Unknown,
    Expired,
    LockedOut,
}

fn random_handle() -> String {
    URL_SAFE_NO_PAD.encode(strongbox_crypto::random_bytes::<32>())
}

fn internal(e: impl std::fmt::Display) -> OAuthFailure {
    tracing::error!(error = %e, "token service error");
    oauth(
        500,
        "server_error",
        "The token service encountered an internal error.",
    )
}

fn store_err(e: StoreError) -> DomainError {
    e.into()
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// `XXXX-XXXX` as shown; stored without the dash.
fn normalize_user_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphabetic())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

pub fn display_user_code(code: &str) -> String {
    if code.len() == 8 {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code.to_string()
    }
}

fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let query = serde_urlencoded::to_string(pairs).unwrap_or_default();
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{query}")
}

fn field<'a>(form: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    form.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(strongbox_crypto::sha256(verifier.as_bytes()))
}

impl TokenService {
    fn grant_id(&self, kind: &str, handle: &str) -> String {
        hex::encode(
            self.keyring
                .mac(&format!("grant-{kind}"), handle.as_bytes()),
        )
    }

    fn refresh_id(&self, handle: &str) -> String {
        hex::encode(self.keyring.mac("refresh-token", handle.as_bytes()))
    }

    async fn grant(&self, kind: &str, handle: &str) -> Result<Option<GrantRow>, StoreError> {
        Ok(self
            .store
            .get_grant(&self.grant_id(kind, handle))
            .await?
            .filter(|g| g.kind == kind))
    }

    /// The audience a delegated scope asks for: every non-OpenID scope must name the same
    /// resource, as `{resource}/.default` or `{resource}/user_impersonation`.
    fn delegated_audience(&self, scope: &str) -> Result<String, OAuthFailure> {
        let invalid = || {
            oauth(
                400,
                "invalid_scope",
                format!(
                    "AADSTS70011: The provided scope is not valid: ask for '{}/.default' (vaults) or '{}/.default' (management), with openid, profile and offline_access if wanted.",
                    self.audience(),
                    self.authority()
                ),
            )
        };
        let mut audience: Option<String> = None;
        for s in scope.split_whitespace() {
            if RESERVED_SCOPES.contains(&s) {
                continue;
            }
            let (resource, permission) = s.rsplit_once('/').ok_or_else(invalid)?;
            if !matches!(permission, ".default" | "user_impersonation") {
                return Err(invalid());
            }
            let a = self.audience_for(resource).ok_or_else(invalid)?;
            match &audience {
                Some(existing) if *existing != a => return Err(invalid()),
                _ => audience = Some(a),
            }
        }
        audience.ok_or_else(invalid)
    }

    /// Access token, ID token and refresh token for a person.
    #[allow(clippy::too_many_arguments)]
    async fn user_tokens(
        &self,
        user: &UserRow,
        client_id: &str,
        scope: &str,
        auth: &AuthContext,
        nonce: Option<String>,
        refresh_token: String,
    ) -> Result<TokenResponse, OAuthFailure> {
        let audience = self.delegated_audience(scope)?;
        let now = self.clock.now();
        let access = AccessClaims {
            aud: audience,
            iss: self.issuer(&user.tenant_id),
            iat: now,
            nbf: now,
            exp: now + TOKEN_LIFETIME_SECS,
            oid: user.object_id.clone(),
            sub: user.object_id.clone(),
            tid: user.tenant_id.clone(),
            appid: client_id.to_string(),
            azp: client_id.to_string(),
            ver: "2.0".into(),
            idtyp: "user".into(),
            uti: strongbox_crypto::random_hex_id(),
            scp: Some("user_impersonation".into()),
            upn: Some(user.upn.clone()),
            preferred_username: Some(user.upn.clone()),
            unique_name: Some(user.upn.clone()),
            name: Some(user.display_name.clone()),
            appidacr: Some("0".into()),
            amr: Some(auth.amr.clone()),
        };
        let id = IdClaims {
            aud: client_id.to_string(),
            iss: self.issuer(&user.tenant_id),
            iat: now,
            nbf: now,
            exp: now + TOKEN_LIFETIME_SECS,
            sub: user.object_id.clone(),
            oid: user.object_id.clone(),
            tid: user.tenant_id.clone(),
            preferred_username: user.upn.clone(),
            name: user.display_name.clone(),
            nonce,
            auth_time: auth.auth_time,
            ver: "2.0".into(),
        };
        let client_info = URL_SAFE_NO_PAD
            .encode(serde_json::json!({"uid": user.object_id, "utid": user.tenant_id}).to_string());
        Ok(TokenResponse {
            token_type: "Bearer".into(),
            expires_in: TOKEN_LIFETIME_SECS,
            ext_expires_in: TOKEN_LIFETIME_SECS,
            access_token: self.sign(&access)?,
            refresh_token: Some(refresh_token),
            id_token: Some(self.sign(&id)?),
            scope: Some(scope.to_string()),
            client_info: Some(client_info),
        })
    }

    fn refresh_row(
        &self,
        user_id: &str,
        client_id: &str,
        auth: &AuthContext,
    ) -> (String, RefreshTokenRow) {
        let handle = format!("sbr~{}", random_handle());
        let now = self.clock.now();
        let row = RefreshTokenRow {
            id: self.refresh_id(&handle),
            family_id: uuid::Uuid::new_v4().to_string(),
            user_id: user_id.to_string(),
            client_id: client_id.to_string(),
            payload: to_json(auth),
            created: now,
            expires: now + REFRESH_TOKEN_LIFETIME_SECS,
            used: None,
            revoked: false,
        };
        (handle, row)
    }

    /// Tokens at the end of a sign-in: a new refresh-token family.
    async fn first_tokens(
        &self,
        user: &UserRow,
        client_id: &str,
        scope: &str,
        auth: &AuthContext,
        nonce: Option<String>,
    ) -> Result<TokenResponse, OAuthFailure> {
        // Check the scope before anything is stored.
        self.delegated_audience(scope)?;
        let (handle, row) = self.refresh_row(&user.object_id, client_id, auth);
        self.store
            .insert_refresh_token(row)
            .await
            .map_err(internal)?;
        self.user_tokens(user, client_id, scope, auth, nonce, handle)
            .await
    }

    /// The token endpoint for every grant type.
    pub async fn token_grant(
        &self,
        tenant: &str,
        form: &HashMap<String, String>,
        ctx: &SigninContext,
    ) -> Result<TokenResponse, OAuthFailure> {
        let flow = |name: &str| SigninContext {
            flow: name.into(),
            client_id: field(form, "client_id").map(|c| c.chars().take(64).collect()),
            ..ctx.clone()
        };
        match field(form, "grant_type") {
            Some("authorization_code") => {
                self.redeem_code(tenant, form, &flow("authorization_code"))
                    .await
            }
            Some("refresh_token") => {
                self.redeem_refresh(tenant, form, &flow("refresh_token"))
                    .await
            }
            Some(DEVICE_CODE_GRANT) => self.redeem_device(tenant, form, &flow("device_code")).await,
            _ => self.token(tenant, form).await,
        }
    }

    fn public_client_of(&self, form: &HashMap<String, String>) -> Result<String, OAuthFailure> {
        let client_id = field(form, "client_id").ok_or_else(|| {
            oauth(
                400,
                "invalid_request",
                "AADSTS900144: The request body must contain 'client_id'.",
            )
        })?;
        public_client(client_id)
            .map(|c| c.client_id.to_string())
            .ok_or_else(|| {
                oauth(
                    400,
                    "unauthorized_client",
                    format!(
                        "AADSTS700016: Application with identifier '{}' was not found in the directory.",
                        client_id.chars().take(64).collect::<String>()
                    ),
                )
            })
    }

    /// The user a grant names, if it still may sign in at this tenant segment.
    async fn grant_user(
        &self,
        tenant: &str,
        user_id: &str,
        ctx: &SigninContext,
    ) -> Result<UserRow, OAuthFailure> {
        let user = self.store.get_user(user_id).await.map_err(internal)?;
        let Some(user) = user else {
            return Err(oauth(
                400,
                "invalid_grant",
                "AADSTS50034: The user account does not exist.",
            ));
        };
        if !user.enabled {
            self.log_signin(ctx, Some(&user), Err("UserDisabled")).await;
            return Err(oauth(
                400,
                "invalid_grant",
                "AADSTS50057: The user account is disabled.",
            ));
        }
        if !is_alias(tenant) && !tenant.eq_ignore_ascii_case(&user.tenant_id) {
            return Err(oauth(
                400,
                "invalid_grant",
                "AADSTS50020: The user account does not belong to this tenant.",
            ));
        }
        Ok(user)
    }

    // --- device authorization grant

    /// `POST /{tenant}/oauth2/v2.0/devicecode`.
    pub async fn device_authorization(
        &self,
        tenant: &str,
        form: &HashMap<String, String>,
    ) -> Result<DeviceCodeResponse, OAuthFailure> {
        let client_id = self.public_client_of(form)?;
        let scope = field(form, "scope").ok_or_else(|| {
            oauth(
                400,
                "invalid_request",
                "AADSTS900144: The request body must contain 'scope'.",
            )
        })?;
        self.delegated_audience(scope)?;
        let now = self.clock.now();
        let device_code = random_handle();
        let raw = strongbox_crypto::random_bytes::<8>();
        let user_code: String = raw
            .iter()
            .map(|b| USER_CODE_ALPHABET[usize::from(*b) % USER_CODE_ALPHABET.len()] as char)
            .collect();
        let grant = GrantRow {
            id: self.grant_id("device", &device_code),
            kind: "device".into(),
            user_code: Some(user_code.clone()),
            user_id: None,
            state: "pending".into(),
            payload: to_json(&DevicePayload {
                tenant: tenant.to_string(),
                client_id,
                scope: scope.to_string(),
                auth: None,
            }),
            expires: now + DEVICE_CODE_LIFETIME_SECS,
            touched: now,
        };
        self.store
            .insert_grant(grant, now - GRANT_GRACE_SECS)
            .await
            .map_err(internal)?;
        let verification_uri = format!("{}/devicelogin", self.authority());
        let shown = display_user_code(&user_code);
        Ok(DeviceCodeResponse {
            message: format!(
                "To sign in, use a web browser to open the page {verification_uri} and enter the code {shown} to authenticate."
            ),
            device_code,
            user_code: shown,
            verification_uri,
            expires_in: DEVICE_CODE_LIFETIME_SECS,
            interval: DEVICE_POLL_INTERVAL_SECS,
        })
    }

    async fn redeem_device(
        &self,
        tenant: &str,
        form: &HashMap<String, String>,
        ctx: &SigninContext,
    ) -> Result<TokenResponse, OAuthFailure> {
        let client_id = self.public_client_of(form)?;
        let device_code = field(form, "device_code")
            .or_else(|| field(form, "code"))
            .ok_or_else(|| {
                oauth(
                    400,
                    "invalid_request",
                    "AADSTS900144: The request body must contain 'device_code'.",
                )
            })?;
        let grant = self.grant("device", device_code).await.map_err(internal)?;
        let Some(grant) = grant else {
            return Err(oauth(
                400,
                "bad_verification_code",
                "AADSTS70019: The device code is not known.",
            ));
        };
        let payload: DevicePayload = serde_json::from_str(&grant.payload).map_err(internal)?;
        if payload.client_id != client_id {
            return Err(oauth(
                400,
                "invalid_grant",
                "AADSTS70000: The device code was issued to another application.",
            ));
        }
        let now = self.clock.now();
        if now >= grant.expires {
            self.log_signin(ctx, None, Err("DeviceCodeExpired")).await;
            return Err(oauth(
                400,
                "expired_token",
                "AADSTS70019: The device code has expired. Start the sign-in again.",
            ));
        }
        match grant.state.as_str() {
            "pending" => {
                let now_ms = self.clock.now_ms();
                let mut polls = self.polls.lock().expect("lock");
                if polls.len() > 10_000 {
                    polls.clear();
                }
                let last = polls.insert(grant.id.clone(), now_ms);
                let too_fast =
                    last.is_some_and(|t| now_ms - t < DEVICE_POLL_INTERVAL_SECS * 1000 / 2);
                return Err(if too_fast {
                    oauth(
                        400,
                        "slow_down",
                        "Polling too often: wait the interval between requests.",
                    )
                } else {
                    oauth(
                        400,
                        "authorization_pending",
                        "AADSTS70016: The user has not yet finished signing in.",
                    )
                });
            }
            "denied" => {
                return Err(oauth(
                    400,
                    "access_denied",
                    "AADSTS70000: The user declined the sign-in.",
                ));
            }
            "approved" => {}
            _ => {
                return Err(oauth(
                    400,
                    "invalid_grant",
                    "AADSTS70000: The device code has been redeemed already.",
                ));
            }
        }
        let redeemed = GrantRow {
            state: "redeemed".into(),
            touched: now,
            ..grant.clone()
        };
        if !self
            .store
            .update_grant(&redeemed, "approved")
            .await
            .map_err(internal)?
        {
            return Err(oauth(
                400,
                "invalid_grant",
                "AADSTS70000: The device code has been redeemed already.",
            ));
        }
        let user_id = grant.user_id.clone().unwrap_or_default();
        let user = self.grant_user(tenant, &user_id, ctx).await?;
        let auth = payload
            .auth
            .ok_or_else(|| internal("approved grant without auth"))?;
        // MSAL Python sends no scope on polls: the start call's scope is the one granted.
        let scope = field(form, "scope").unwrap_or(&payload.scope).to_string();
        self.first_tokens(&user, &client_id, &scope, &auth, None)
            .await
    }

    /// The device page: the code the person typed. Wrong codes count against the address like
    /// failed sign-ins (they are guesses at someone's pending sign-in).
    pub async fn device_entry(
        &self,
        ctx: &SigninContext,
        typed: &str,
    ) -> Result<DeviceEntry, DomainError> {
        if self.address_locked(ctx).await? {
            self.log_signin(ctx, None, Err("LockedOut")).await;
            return Ok(DeviceEntry::LockedOut);
        }
        let code = normalize_user_code(typed);
        let grant = if code.len() == 8 {
            self.store
                .get_grant_by_user_code(&code)
                .await?
                .filter(|g| g.kind == "device")
        } else {
            None
        };
        let now = self.clock.now();
        match grant {
            Some(g) if g.state == "pending" && now < g.expires => {
                let payload: DevicePayload = serde_json::from_str(&g.payload)
                    .map_err(|e| DomainError::Internal(e.to_string()))?;
                let handle = self
                    .start_signin(PendingFlow::Device {
                        grant_id: g.id,
                        tenant: payload.tenant,
                    })
                    .await?;
                Ok(DeviceEntry::Signin(handle))
            }
            Some(g) if g.state == "pending" => {
                self.log_signin(ctx, None, Err("DeviceCodeExpired")).await;
                Ok(DeviceEntry::Expired)
            }
            _ => {
                self.note_address_failure(ctx).await?;
                self.log_signin(ctx, None, Err("UnknownUserCode")).await;
                Ok(DeviceEntry::Unknown)
            }
        }
    }

    // --- authorization code grant with PKCE

    /// Checks `GET /{tenant}/oauth2/v2.0/authorize`. Until the client and its redirect URI are
    /// known good, errors are shown on our page, never sent anywhere (no open redirect).
    pub async fn authorize_request(
        &self,
        tenant: &str,
        query: &HashMap<String, String>,
        ctx: &SigninContext,
    ) -> Result<AuthorizeRequest, AuthorizeError> {
        let client_id = field(query, "client_id").unwrap_or("");
        let Some(client) = public_client(client_id) else {
            return Err(AuthorizeError::Page(format!(
                "AADSTS700016: Application with identifier '{}' was not found in the directory.",
                client_id.chars().take(64).collect::<String>()
            )));
        };
        let redirect_uri = field(query, "redirect_uri").unwrap_or("");
        if !client.redirect_allowed(redirect_uri) {
            let ctx = SigninContext {
                client_id: Some(client.client_id.into()),
                ..ctx.clone()
            };
            self.log_signin(&ctx, None, Err("RedirectUriMismatch"))
                .await;
            return Err(AuthorizeError::Page(format!(
                "AADSTS50011: The redirect URI '{}' does not match the redirect URIs registered for {}.",
                redirect_uri.chars().take(200).collect::<String>(),
                client.name
            )));
        }
        let state = field(query, "state").map(str::to_string);
        let back = |error: &str, description: &str| {
            let mut pairs = vec![("error", error), ("error_description", description)];
            if let Some(s) = &state {
                pairs.push(("state", s));
            }
            AuthorizeError::Redirect(with_query(redirect_uri, &pairs))
        };
        if field(query, "response_type") != Some("code") {
            return Err(back(
                "unsupported_response_type",
                "AADSTS70005: Only response_type=code is supported.",
            ));
        }
        let response_mode = field(query, "response_mode").unwrap_or("query");
        if !matches!(response_mode, "query" | "form_post") {
            return Err(back(
                "invalid_request",
                "AADSTS900352: response_mode must be query or form_post.",
            ));
        }
        let challenge = field(query, "code_challenge").unwrap_or("");
        if field(query, "code_challenge_method") != Some("S256")
            || challenge.len() != 43
            || !challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(back(
                "invalid_request",
                "AADSTS9002325: Proof Key for Code Exchange with code_challenge_method=S256 is required.",
            ));
        }
        if field(query, "prompt") == Some("none") {
            return Err(back(
                "login_required",
                "AADSTS50058: A silent sign-in was requested but the user must sign in.",
            ));
        }
        let scope = field(query, "scope").unwrap_or("");
        if let Err(f) = self.delegated_audience(scope) {
            return Err(back("invalid_scope", &f.body.error_description));
        }
        let nonce = field(query, "nonce").map(str::to_string);
        if state.as_ref().is_some_and(|s| s.len() > 2048)
            || nonce.as_ref().is_some_and(|n| n.len() > 2048)
        {
            return Err(back(
                "invalid_request",
                "state and nonce are limited to 2048 characters.",
            ));
        }
        Ok(AuthorizeRequest {
            tenant: tenant.to_string(),
            client_id: client.client_id.to_string(),
            redirect_uri: redirect_uri.to_string(),
            scope: scope.to_string(),
            state,
            nonce,
            code_challenge: challenge.to_string(),
            response_mode: response_mode.to_string(),
        })
    }

    async fn redeem_code(
        &self,
        tenant: &str,
        form: &HashMap<String, String>,
        ctx: &SigninContext,
    ) -> Result<TokenResponse, OAuthFailure> {
        let client_id = self.public_client_of(form)?;
        let code = field(form, "code").ok_or_else(|| {
            oauth(
                400,
                "invalid_request",
                "AADSTS900144: The request body must contain 'code'.",
            )
        })?;
        let gone = || {
            oauth(
                400,
                "invalid_grant",
                "AADSTS54005: The authorization code is unknown, expired or redeemed already.",
            )
        };
        let grant = self
            .grant("code", code)
            .await
            .map_err(internal)?
            .ok_or_else(gone)?;
        let now = self.clock.now();
        // Single use: the first redemption, right or wrong, spends the code.
        let spent = GrantRow {
            state: "redeemed".into(),
            touched: now,
            ..grant.clone()
        };
        if now >= grant.expires
            || !self
                .store
                .update_grant(&spent, "issued")
                .await
                .map_err(internal)?
        {
            return Err(gone());
        }
        let payload: CodePayload = serde_json::from_str(&grant.payload).map_err(internal)?;
        let request = payload.request;
        let user_id = grant.user_id.clone().unwrap_or_default();
        let user = self.store.get_user(&user_id).await.map_err(internal)?;
        if request.client_id != client_id {
            return Err(oauth(
                400,
                "invalid_grant",
                "AADSTS70000: The authorization code was issued to another application.",
            ));
        }
        if field(form, "redirect_uri") != Some(request.redirect_uri.as_str()) {
            self.log_signin(ctx, user.as_ref(), Err("RedirectUriMismatch"))
                .await;
            return Err(oauth(
                400,
                "invalid_grant",
                "AADSTS50148: The redirect_uri does not match the one of the authorization request.",
            ));
        }
        let verifier = field(form, "code_verifier").unwrap_or("");
        let verifier_ok = (43..=128).contains(&verifier.len())
            && strongbox_crypto::constant_time_eq(
                s256(verifier).as_bytes(),
                request.code_challenge.as_bytes(),
            );
        if !verifier_ok {
            self.log_signin(ctx, user.as_ref(), Err("PkceMismatch"))
                .await;
            return Err(oauth(
                400,
                "invalid_grant",
                "AADSTS501481: The code_verifier does not match the code_challenge of the authorization request.",
            ));
        }
        let user = self.grant_user(tenant, &user_id, ctx).await?;
        let scope = field(form, "scope").unwrap_or(&request.scope).to_string();
        self.first_tokens(&user, &client_id, &scope, &payload.auth, request.nonce)
            .await
    }

    // --- refresh tokens

    async fn redeem_refresh(
        &self,
        tenant: &str,
        form: &HashMap<String, String>,
        ctx: &SigninContext,
    ) -> Result<TokenResponse, OAuthFailure> {
        let client_id = self.public_client_of(form)?;
        let handle = field(form, "refresh_token").ok_or_else(|| {
            oauth(
                400,
                "invalid_request",
                "AADSTS900144: The request body must contain 'refresh_token'.",
            )
        })?;
        let scope = field(form, "scope").ok_or_else(|| {
            oauth(
                400,
                "invalid_request",
                "AADSTS900144: The request body must contain 'scope'.",
            )
        })?;
        self.delegated_audience(scope)?;
        let bad = |text: &str| oauth(400, "invalid_grant", text.to_string());
        let id = self.refresh_id(handle);
        let row = self.store.get_refresh_token(&id).await.map_err(internal)?;
        let Some(row) = row else {
            return Err(bad("AADSTS9002313: The refresh token is not valid."));
        };
        if row.client_id != client_id {
            return Err(bad(
                "AADSTS70000: The refresh token was issued to another application.",
            ));
        }
        let user = self.store.get_user(&row.user_id).await.map_err(internal)?;
        if row.revoked && row.used.is_none() {
            self.log_signin(ctx, user.as_ref(), Err("RefreshTokenRevoked"))
                .await;
            return Err(bad(
                "AADSTS50173: The refresh token was revoked. Sign in again.",
            ));
        }
        let user = self.grant_user(tenant, &row.user_id, ctx).await?;
        let auth: AuthContext = serde_json::from_str(&row.payload).map_err(internal)?;
        let (next_handle, next) = self.refresh_row(&user.object_id, &client_id, &auth);
        let now = self.clock.now();
        match self
            .store
            .rotate_refresh_token(&id, next, now)
            .await
            .map_err(internal)?
        {
            RefreshOutcome::Rotated(_) => {
                self.user_tokens(&user, &client_id, scope, &auth, None, next_handle)
                    .await
            }
            RefreshOutcome::Reused(_) => {
                self.log_signin(ctx, Some(&user), Err("RefreshTokenReused"))
                    .await;
                Err(bad(
                    "AADSTS50173: The refresh token was used before; every token of that sign-in is now revoked. Sign in again.",
                ))
            }
            RefreshOutcome::Expired => Err(bad(
                "AADSTS700082: The refresh token has expired. Sign in again.",
            )),
            RefreshOutcome::Unknown => Err(bad("AADSTS9002313: The refresh token is not valid.")),
        }
    }

    // --- the sign-in pages' steps

    /// Remembers a flow while its sign-in page is shown; returns the page's handle.
    pub async fn start_signin(&self, flow: PendingFlow) -> Result<String, DomainError> {
        let handle = random_handle();
        let now = self.clock.now();
        self.store
            .insert_grant(
                GrantRow {
                    id: self.grant_id("signin", &handle),
                    kind: "signin".into(),
                    user_code: None,
                    user_id: None,
                    state: "pending".into(),
                    payload: to_json(&flow),
                    expires: now + PENDING_SIGNIN_SECS,
                    touched: now,
                },
                now - GRANT_GRACE_SECS,
            )
            .await?;
        Ok(handle)
    }

    /// The flow behind a sign-in page, if it is still open.
    pub async fn pending_flow(&self, handle: &str) -> Result<Option<PendingFlow>, DomainError> {
        let Some(grant) = self.grant("signin", handle).await? else {
            return Ok(None);
        };
        if self.clock.now() >= grant.expires || grant.state == "done" {
            return Ok(None);
        }
        Ok(serde_json::from_str(&grant.payload).ok())
    }

    /// The user whose password step of this sign-in passed (for the second-factor page).
    pub async fn pending_user(&self, handle: &str) -> Result<Option<String>, DomainError> {
        let Some(grant) = self.grant("signin", handle).await? else {
            return Ok(None);
        };
        if grant.state != "password" {
            return Ok(None);
        }
        let user_id = grant.user_id.unwrap_or_default();
        Ok(self.store.get_user(&user_id).await?.map(|u| u.upn))
    }

    /// The CSRF token of the sign-in pages' forms for a visitor's CSRF cookie.
    pub fn csrf_token(&self, cookie: &str) -> String {
        hex::encode(self.keyring.mac("csrf", cookie.as_bytes()))
    }

    /// Name and password on a sign-in page.
    pub async fn signin_password(
        &self,
        ctx: &SigninContext,
        handle: &str,
        upn: &str,
        password: &str,
    ) -> Result<SigninStep, DomainError> {
        let Some(grant) = self.grant("signin", handle).await? else {
            return Ok(SigninStep::Gone);
        };
        let Ok(flow) = serde_json::from_str::<PendingFlow>(&grant.payload) else {
            return Ok(SigninStep::Gone);
        };
        if grant.state != "pending" || self.clock.now() >= grant.expires {
            return Ok(SigninStep::Gone);
        }
        let ctx = flow_context(ctx, &flow);
        let tenant = match &flow {
            PendingFlow::Authorize(r) => r.tenant.clone(),
            PendingFlow::Device { tenant, .. } => tenant.clone(),
        };
        let (user, needs_mfa) = match self.check_password(&ctx, &tenant, upn, password).await? {
            Ok(found) => found,
            Err(refusal) => return Ok(SigninStep::Refused(refusal)),
        };
        if needs_mfa {
            let next = GrantRow {
                state: "password".into(),
                user_id: Some(user.object_id.clone()),
                touched: self.clock.now(),
                ..grant.clone()
            };
            if !self.store.update_grant(&next, "pending").await? {
                return Ok(SigninStep::Gone);
            }
            return Ok(SigninStep::SecondFactor { upn: user.upn });
        }
        self.complete(&ctx, grant, "pending", flow, user, vec!["pwd".into()])
            .await
    }

    /// The second factor on a sign-in page whose password step passed.
    pub async fn signin_second_factor(
        &self,
        ctx: &SigninContext,
        handle: &str,
        code: &str,
    ) -> Result<SigninStep, DomainError> {
        let Some(grant) = self.grant("signin", handle).await? else {
            return Ok(SigninStep::Gone);
        };
        let Ok(flow) = serde_json::from_str::<PendingFlow>(&grant.payload) else {
            return Ok(SigninStep::Gone);
        };
        if grant.state != "password" || self.clock.now() >= grant.expires {
            return Ok(SigninStep::Gone);
        }
        let ctx = flow_context(ctx, &flow);
        let user_id = grant.user_id.clone().unwrap_or_default();
        let Some(user) = self.store.get_user(&user_id).await? else {
            return Ok(SigninStep::Gone);
        };
        if let Err(refusal) = self.check_second_factor(&ctx, &user, code).await? {
            return Ok(SigninStep::Refused(refusal));
        }
        self.complete(
            &ctx,
            grant,
            "password",
            flow,
            user,
            vec!["pwd".into(), "mfa".into()],
        )
        .await
    }

    /// Signs the person in with their web session instead of a password ("Continue as …").
    pub async fn signin_with_session(
        &self,
        ctx: &SigninContext,
        handle: &str,
        session: &str,
    ) -> Result<SigninStep, DomainError> {
        let Some(grant) = self.grant("signin", handle).await? else {
            return Ok(SigninStep::Gone);
        };
        let Ok(flow) = serde_json::from_str::<PendingFlow>(&grant.payload) else {
            return Ok(SigninStep::Gone);
        };
        if grant.state != "pending" || self.clock.now() >= grant.expires {
            return Ok(SigninStep::Gone);
        }
        let Some((user, auth)) = self.session_user(session).await? else {
            return Ok(SigninStep::Gone);
        };
        let ctx = SigninContext {
            flow: format!("{}+session", flow_context(ctx, &flow).flow),
            ..flow_context(ctx, &flow)
        };
        let tenant = match &flow {
            PendingFlow::Authorize(r) => r.tenant.clone(),
            PendingFlow::Device { tenant, .. } => tenant.clone(),
        };
        if !is_alias(&tenant) && !tenant.eq_ignore_ascii_case(&user.tenant_id) {
            return Ok(SigninStep::Refused(SigninRefusal::WrongTenant));
        }
        self.complete(&ctx, grant, "pending", flow, user, auth.amr)
            .await
    }

    /// Declines a device sign-in ("This isn't me").
    pub async fn decline_device(&self, handle: &str) -> Result<(), DomainError> {
        let Some(grant) = self.grant("signin", handle).await? else {
            return Ok(());
        };
        if let Ok(PendingFlow::Device { grant_id, .. }) = serde_json::from_str(&grant.payload)
            && let Some(device) = self.store.get_grant(&grant_id).await?
        {
            let denied = GrantRow {
                state: "denied".into(),
                touched: self.clock.now(),
                ..device
            };
            self.store.update_grant(&denied, "pending").await?;
        }
        self.store.delete_grant(&grant.id).await?;
        Ok(())
    }

    /// The end of a sign-in: the flow gets its code (or its device grant is approved), the
    /// person a new web session, the log a success.
    async fn complete(
        &self,
        ctx: &SigninContext,
        grant: GrantRow,
        from_state: &str,
        flow: PendingFlow,
        user: UserRow,
        amr: Vec<String>,
    ) -> Result<SigninStep, DomainError> {
        let now = self.clock.now();
        let done = GrantRow {
            state: "done".into(),
            user_id: Some(user.object_id.clone()),
            touched: now,
            ..grant
        };
        if !self.store.update_grant(&done, from_state).await? {
            return Ok(SigninStep::Gone);
        }
        let auth = AuthContext {
            amr,
            auth_time: now,
        };
        let back = match flow {
            PendingFlow::Authorize(request) => {
                let code = random_handle();
                self.store
                    .insert_grant(
                        GrantRow {
                            id: self.grant_id("code", &code),
                            kind: "code".into(),
                            user_code: None,
                            user_id: Some(user.object_id.clone()),
                            state: "issued".into(),
                            payload: to_json(&CodePayload {
                                request: request.clone(),
                                auth: auth.clone(),
                            }),
                            expires: now + AUTHORIZATION_CODE_LIFETIME_SECS,
                            touched: now,
                        },
                        now - GRANT_GRACE_SECS,
                    )
                    .await?;
                let mut pairs = vec![("code", code.as_str())];
                if let Some(s) = &request.state {
                    pairs.push(("state", s));
                }
                Some(if request.response_mode == "form_post" {
                    ClientReturn::FormPost {
                        action: request.redirect_uri.clone(),
                        fields: pairs
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                    }
                } else {
                    ClientReturn::Redirect(with_query(&request.redirect_uri, &pairs))
                })
            }
            PendingFlow::Device { grant_id, .. } => {
                let Some(device) = self.store.get_grant(&grant_id).await? else {
                    return Ok(SigninStep::Gone);
                };
                let mut payload: DevicePayload = serde_json::from_str(&device.payload)
                    .map_err(|e| DomainError::Internal(e.to_string()))?;
                if now >= device.expires {
                    return Ok(SigninStep::Gone);
                }
                payload.auth = Some(auth.clone());
                let approved = GrantRow {
                    state: "approved".into(),
                    user_id: Some(user.object_id.clone()),
                    payload: to_json(&payload),
                    touched: now,
                    ..device
                };
                if !self.store.update_grant(&approved, "pending").await? {
                    return Ok(SigninStep::Gone);
                }
                None
            }
        };
        let session = self.create_session(&user, &auth).await?;
        self.log_signin(ctx, Some(&user), Ok(())).await;
        Ok(SigninStep::Done(Box::new(Completion {
            user,
            back,
            session,
        })))
    }

    // --- web sessions

    async fn create_session(
        &self,
        user: &UserRow,
        auth: &AuthContext,
    ) -> Result<String, DomainError> {
        let handle = random_handle();
        let now = self.clock.now();
        self.store
            .insert_grant(
                GrantRow {
                    id: self.grant_id("session", &handle),
                    kind: "session".into(),
                    user_code: None,
                    user_id: Some(user.object_id.clone()),
                    state: "active".into(),
                    payload: to_json(&SessionPayload {
                        auth: auth.clone(),
                        absolute_expires: now + SESSION_ABSOLUTE_SECS,
                    }),
                    expires: now + SESSION_IDLE_SECS,
                    touched: now,
                },
                now - GRANT_GRACE_SECS,
            )
            .await?;
        Ok(handle)
    }

    /// The person behind a session cookie, if the session is live (idle and absolute timeouts)
    /// and the user enabled; each use extends the idle timeout.
    pub async fn session_user(
        &self,
        handle: &str,
    ) -> Result<Option<(UserRow, AuthContext)>, DomainError> {
        let Some(grant) = self.grant("session", handle).await? else {
            return Ok(None);
        };
        let Ok(payload) = serde_json::from_str::<SessionPayload>(&grant.payload) else {
            return Ok(None);
        };
        let now = self.clock.now();
        if grant.state != "active" || now >= grant.expires || now >= payload.absolute_expires {
            return Ok(None);
        }
        let user_id = grant.user_id.clone().unwrap_or_default();
        let Some(user) = self.store.get_user(&user_id).await?.filter(|u| u.enabled) else {
            return Ok(None);
        };
        let touched = GrantRow {
            expires: (now + SESSION_IDLE_SECS).min(payload.absolute_expires),
            touched: now,
            ..grant
        };
        self.store.update_grant(&touched, "active").await?;
        Ok(Some((user, payload.auth)))
    }

    /// Signs out: the session is gone.
    pub async fn end_session(&self, handle: &str) -> Result<(), DomainError> {
        self.store
            .delete_grant(&self.grant_id("session", handle))
            .await
            .map_err(store_err)
    }
}

/// The log context of a page step: which flow, which client.
fn flow_context(ctx: &SigninContext, flow: &PendingFlow) -> SigninContext {
    match flow {
        PendingFlow::Authorize(r) => SigninContext {
            flow: "authorization_code".into(),
            client_id: Some(r.client_id.clone()),
            ..ctx.clone()
        },
        PendingFlow::Device { .. } => SigninContext {
            flow: "device_code".into(),
            ..ctx.clone()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636_example() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn user_codes_ignore_case_dashes_and_spaces() {
        assert_eq!(normalize_user_code(" bcdf-ghjk "), "BCDFGHJK");
        assert_eq!(display_user_code("BCDFGHJK"), "BCDF-GHJK");
    }
}
