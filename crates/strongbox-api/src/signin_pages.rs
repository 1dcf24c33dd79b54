//! The server-rendered sign-in pages of the token service: the authorization endpoint's sign-in
//! page (password, then a second factor if enrolled), the device code page, sign-out.
//!
//! Templates are minijinja, embedded in the binary and auto-escaped. Every page carries a strict
//! CSP (no script at all, `frame-ancestors 'none'`), every form a CSRF token (the keyed hash of a
//! random `__Host-` cookie, so a cross-site post has neither), and posts from another site are
//! refused by `Sec-Fetch-Site` too. The web session is a `__Host-` cookie (Secure, HttpOnly,
//! SameSite=Lax), rotated at each sign-in.

use crate::AppState;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use strongbox_identity::interactive::{
    AuthorizeError, ClientReturn, DeviceEntry, PendingFlow, SESSION_ABSOLUTE_SECS, SigninStep,
};
use strongbox_identity::signin::SigninContext;

const CSRF_COOKIE: &str = "__Host-strongbox-csrf";
const SESSION_COOKIE: &str = "__Host-strongbox-session";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/authorize", get(authorize))
        .route("/{tenant}/oauth2/v2.0/logout", get(logout).post(logout))
        .route("/devicelogin", get(device_page).post(device_code))
        .route("/login", post(login))
        .route("/login/mfa", post(login_mfa))
        .route("/static/strongbox.css", get(stylesheet))
        .route("/static/form-post.js", get(form_post_script))
}

fn templates() -> &'static minijinja::Environment<'static> {
    static ENV: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        for (name, source) in [
            (
                "layout.html",
                include_str!("../templates/signin/layout.html"),
            ),
            (
                "signin.html",
                include_str!("../templates/signin/signin.html"),
            ),
            ("mfa.html", include_str!("../templates/signin/mfa.html")),
            (
                "device.html",
                include_str!("../templates/signin/device.html"),
            ),
            (
                "message.html",
                include_str!("../templates/signin/message.html"),
            ),
            (
                "form_post.html",
                include_str!("../templates/signin/form_post.html"),
            ),
        ] {
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(error = %e, template = name, "sign-in template does not parse");
            }
        }
        env
    })
}

/// Who is asking: address and user agent (for throttling and the sign-in log) and cookies.
pub(crate) struct Visitor {
    pub(crate) ip: Option<String>,
    user_agent: Option<String>,
    cookies: HashMap<String, String>,
    cross_site: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Visitor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        let text = |name: header::HeaderName| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let mut cookies = HashMap::new();
        for value in parts.headers.get_all(header::COOKIE) {
            for pair in value.to_str().unwrap_or("").split(';') {
                if let Some((k, v)) = pair.trim().split_once('=') {
                    cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
        let cross_site = parts
            .headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| !matches!(v, "same-origin" | "none"));
        Ok(Visitor {
            ip,
            user_agent: text(header::USER_AGENT),
            cookies,
            cross_site,
        })
    }
}

impl Visitor {
    pub(crate) fn context(&self, flow: &str) -> SigninContext {
        SigninContext {
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
            client_id: None,
            flow: flow.into(),
        }
    }
}

/// A page under construction: template, values, extra cookies, and the origins its forms may
/// lead to (the client's loopback listener, for the authorization flow).
struct Page {
    status: StatusCode,
    template: &'static str,
    values: Vec<(&'static str, minijinja::Value)>,
    set_cookies: Vec<String>,
    form_targets: Vec<String>,
    /// Whether the page loads our own script (only the form_post page does).
    script: bool,
}

impl Page {
    fn new(template: &'static str, title: &str) -> Page {
        let values = vec![("title", minijinja::Value::from(title))];
        Page {
            status: StatusCode::OK,
            template,
            values,
            set_cookies: vec![],
            form_targets: vec![],
            script: false,
        }
    }

    fn message(status: StatusCode, title: &str, message: &str) -> Page {
        let mut page = Page::new("message.html", title).with("message", message);
        page.status = status;
        page
    }

    fn with(mut self, key: &'static str, value: impl Into<minijinja::Value>) -> Page {
        self.values.push((key, value.into()));
        self
    }

    /// Adds the CSRF token (and the cookie it derives from, if the visitor has none).
    fn csrf(mut self, app: &AppState, visitor: &Visitor) -> Page {
        let cookie = match visitor.cookies.get(CSRF_COOKIE) {
            Some(c) if c.len() == 43 => c.clone(),
            _ => {
                let fresh = random_token();
                self.set_cookies.push(format!(
                    "{CSRF_COOKIE}={fresh}; Path=/; Secure; HttpOnly; SameSite=Lax"
                ));
                fresh
            }
        };
        self.with("csrf", csrf_token(app, &cookie))
    }

    fn render(self) -> Response {
        let values: std::collections::BTreeMap<&str, minijinja::Value> =
            self.values.into_iter().collect();
        let values = minijinja::Value::from(values);
        let body = templates()
            .get_template(self.template)
            .and_then(|t| t.render(values));
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "sign-in page rendering failed");
                return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
            }
        };
        let form_action = std::iter::once("'self'".to_string())
            .chain(self.form_targets)
            .collect::<Vec<_>>()
            .join(" ");
        let script = if self.script {
            "script-src 'self'; "
        } else {
            ""
        };
        let csp = format!(
            "default-src 'none'; {script}style-src 'self'; img-src 'self'; \
             form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
        );
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        insert(headers, header::CONTENT_SECURITY_POLICY, &csp);
        page_headers(headers);
        for cookie in self.set_cookies {
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                headers.append(header::SET_COOKIE, v);
            }
        }
        response
    }
}

fn insert(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Headers of every page: no framing, no sniffing, no referrer, no caching, HTTPS only.
fn page_headers(headers: &mut HeaderMap) {
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
}

fn random_token() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(strongbox_crypto::random_bytes::<32>())
}

fn csrf_token(app: &AppState, cookie: &str) -> String {
    app.tokens.csrf_token(cookie)
}

/// A form body; anything that does not parse is an empty form (which no check passes).
fn form(body: &Bytes) -> HashMap<String, String> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

/// Whether a form post carries the token that belongs to the visitor's CSRF cookie and comes
/// from our own pages.
fn csrf_ok(app: &AppState, visitor: &Visitor, form: &HashMap<String, String>) -> bool {
    let (Some(cookie), Some(sent)) = (visitor.cookies.get(CSRF_COOKIE), form.get("csrf")) else {
        return false;
    };
    !visitor.cross_site
        && strongbox_crypto::constant_time_eq(csrf_token(app, cookie).as_bytes(), sent.as_bytes())
}

async fn csrf_refused(app: &AppState, visitor: &Visitor) -> Response {
    app.tokens
        .log_signin(&visitor.context("form_post"), None, Err("CsrfRejected"))
        .await;
    Page::message(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "The form was not sent from this sign-in page, or it has expired. Go back to your application and start the sign-in again.",
    )
    .render()
}

fn internal_error(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "sign-in page error");
    Page::message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Sorry, there is a problem",
        "The sign-in service had an internal error. Try again later.",
    )
    .render()
}

fn gone() -> Response {
    Page::message(
        StatusCode::BAD_REQUEST,
        "This sign-in has expired",
        "The sign-in took too long or has been completed already. Go back to your application and start again.",
    )
    .render()
}

/// `scheme://host[:port]` of a URI, for the CSP's `form-action`.
fn origin(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    Some(format!("{scheme}://{host}"))
}

/// The sign-in page of a pending flow.
async fn signin_page(
    app: &AppState,
    visitor: &Visitor,
    handle: &str,
    flow: &PendingFlow,
    error: Option<&str>,
    username: &str,
) -> Page {
    let mut page = Page::new("signin.html", "Sign in")
        .with("flow", handle)
        .with("username", username)
        .csrf(app, visitor);
    match flow {
        PendingFlow::Authorize(request) => {
            let name = strongbox_identity::clients::public_client(&request.client_id)
                .map(|c| c.name)
                .unwrap_or("an application");
            page = page.with("purpose", format!("to continue to {name}"));
            page.form_targets.extend(origin(&request.redirect_uri));
        }
        PendingFlow::Device { .. } => {
            page = page.with("device", true).with(
                "purpose",
                "An application on another device asked to sign in as you. Only continue if you started it yourself.",
            );
        }
    }
    if let Some(session) = visitor.cookies.get(SESSION_COOKIE)
        && let Ok(Some((user, _))) = app.tokens.session_user(session).await
    {
        page = page.with("session_upn", user.upn);
    }
    if let Some(e) = error {
        page = page.with("error", e).with("error_field", "username");
        page.status = StatusCode::BAD_REQUEST;
    }
    page
}

/// `GET /{tenant}/oauth2/v2.0/authorize`.
async fn authorize(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    visitor: Visitor,
) -> Response {
    match app.tokens.tenant_exists(&tenant).await {
        Ok(true) => {}
        Ok(false) => {
            return Page::message(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                &format!(
                    "AADSTS90002: Tenant '{}' not found.",
                    tenant.chars().take(64).collect::<String>()
                ),
            )
            .render();
        }
        Err(e) => return internal_error(e),
    }
    let request = match app
        .tokens
        .authorize_request(&tenant, &query, &visitor.context("authorization_code"))
        .await
    {
        Ok(r) => r,
        Err(AuthorizeError::Page(message)) => {
            return Page::message(StatusCode::BAD_REQUEST, "Sign-in failed", &message).render();
        }
        Err(AuthorizeError::Redirect(location)) => return redirect(&location, vec![]),
    };
    let flow = PendingFlow::Authorize(request);
    match app.tokens.start_signin(flow.clone()).await {
        Ok(handle) => signin_page(&app, &visitor, &handle, &flow, None, "")
            .await
            .render(),
        Err(e) => internal_error(e),
    }
}

fn redirect(location: &str, cookies: Vec<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    insert(headers, header::LOCATION, location);
    page_headers(headers);
    for cookie in cookies {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, v);
        }
    }
    response
}

/// `GET /devicelogin`: the code entry page.
async fn device_page(State(app): State<Arc<AppState>>, visitor: Visitor) -> Response {
    Page::new("device.html", "Enter code")
        .csrf(&app, &visitor)
        .render()
}

/// `POST /devicelogin`: the code, then the sign-in page for it.
async fn device_code(State(app): State<Arc<AppState>>, visitor: Visitor, body: Bytes) -> Response {
    let form = form(&body);
    if !csrf_ok(&app, &visitor, &form) {
        return csrf_refused(&app, &visitor).await;
    }
    let typed = form.get("code").map(String::as_str).unwrap_or("");
    let entry = app
        .tokens
        .device_entry(&visitor.context("device_code"), typed)
        .await;
    let error = match entry {
        Ok(DeviceEntry::Signin(handle)) => {
            return match app.tokens.pending_flow(&handle).await {
                Ok(Some(flow)) => signin_page(&app, &visitor, &handle, &flow, None, "")
                    .await
                    .render(),
                Ok(None) => gone(),
                Err(e) => internal_error(e),
            };
        }
        Ok(DeviceEntry::Unknown) => "That code is not right. Check it and enter it again.",
        Ok(DeviceEntry::Expired) => {
            "That code has expired. Start the sign-in on your device again to get a new code."
        }
        Ok(DeviceEntry::LockedOut) => {
            "Too many wrong codes were entered from your network. Try again later."
        }
        Err(e) => return internal_error(e),
    };
    let mut page = Page::new("device.html", "Enter code")
        .with("error", error)
        .with("error_field", "code")
        .csrf(&app, &visitor);
    page.status = StatusCode::BAD_REQUEST;
    page.render()
}

/// Where a finished sign-in goes: back to the client (authorization flow) or a confirmation.
fn finished(back: Option<ClientReturn>, session: String) -> Response {
    let cookie = format!(
        "{SESSION_COOKIE}={session}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={SESSION_ABSOLUTE_SECS}"
    );
    match back {
        Some(ClientReturn::Redirect(location)) => redirect(&location, vec![cookie]),
        Some(ClientReturn::FormPost { action, fields }) => {
            // A form the browser posts to the client's listener: submitted by our own script,
            // or by the button when scripts are off.
            let fields: Vec<minijinja::Value> = fields
                .into_iter()
                .map(|(k, v)| minijinja::Value::from(vec![k, v]))
                .collect();
            let mut page = Page::new("form_post.html", "Returning to your application")
                .with("action", action.clone())
                .with("fields", fields);
            page.form_targets.extend(origin(&action));
            page.script = true;
            page.set_cookies.push(cookie);
            page.render()
        }
        None => {
            let mut page = Page::new("message.html", "You are signed in")
                .with("success", true)
                .with(
                    "message",
                    "You have signed in to the application on your device. You can close this window.",
                );
            page.set_cookies.push(cookie);
            page.render()
        }
    }
}

/// Ends the visitor's previous session, if any: each sign-in gets a new one.
async fn end_previous_session(app: &AppState, visitor: &Visitor) {
    if let Some(old) = visitor.cookies.get(SESSION_COOKIE)
        && let Err(e) = app.tokens.end_session(old).await
    {
        tracing::warn!(error = %e, "ending the previous session failed");
    }
}

async fn step_response(
    app: &AppState,
    visitor: &Visitor,
    handle: &str,
    step: SigninStep,
    username: &str,
    on_mfa_error: bool,
) -> Response {
    match step {
        SigninStep::Gone => gone(),
        SigninStep::Done(done) => {
            end_previous_session(app, visitor).await;
            finished(done.back, done.session)
        }
        SigninStep::SecondFactor { upn } => mfa_page(app, visitor, handle, &upn, None).await,
        SigninStep::Refused(refusal) => {
            let flow = match app.tokens.pending_flow(handle).await {
                Ok(Some(flow)) => flow,
                Ok(None) => return gone(),
                Err(e) => return internal_error(e),
            };
            if on_mfa_error {
                return mfa_page(app, visitor, handle, username, Some(refusal.message())).await;
            }
            signin_page(
                app,
                visitor,
                handle,
                &flow,
                Some(refusal.message()),
                username,
            )
            .await
            .render()
        }
    }
}

async fn mfa_page(
    app: &AppState,
    visitor: &Visitor,
    handle: &str,
    upn: &str,
    error: Option<&str>,
) -> Response {
    let mut page = Page::new("mfa.html", "Enter your code")
        .with("flow", handle)
        .with("upn", upn)
        .csrf(app, visitor);
    if let Ok(Some(PendingFlow::Authorize(request))) = app.tokens.pending_flow(handle).await {
        page.form_targets.extend(origin(&request.redirect_uri));
    }
    if let Some(e) = error {
        page = page.with("error", e).with("error_field", "code");
        page.status = StatusCode::BAD_REQUEST;
    }
    page.render()
}

/// `POST /login`: password, "continue as" with the session, or declining a device sign-in.
async fn login(State(app): State<Arc<AppState>>, visitor: Visitor, body: Bytes) -> Response {
    let form = form(&body);
    if !csrf_ok(&app, &visitor, &form) {
        return csrf_refused(&app, &visitor).await;
    }
    let handle = form.get("flow").map(String::as_str).unwrap_or("");
    let ctx = visitor.context("");
    let username = form.get("username").map(String::as_str).unwrap_or("");
    let step = match form.get("action").map(String::as_str) {
        Some("decline") => {
            return match app.tokens.decline_device(handle).await {
                Ok(()) => Page::message(
                    StatusCode::OK,
                    "Sign-in declined",
                    "Nobody was signed in. The application on the other device has been told.",
                )
                .render(),
                Err(e) => internal_error(e),
            };
        }
        Some("continue") => {
            let session = visitor
                .cookies
                .get(SESSION_COOKIE)
                .cloned()
                .unwrap_or_default();
            app.tokens.signin_with_session(&ctx, handle, &session).await
        }
        _ => {
            let password = form.get("password").map(String::as_str).unwrap_or("");
            app.tokens
                .signin_password(&ctx, handle, username, password)
                .await
        }
    };
    match step {
        Ok(step) => step_response(&app, &visitor, handle, step, username, false).await,
        Err(e) => internal_error(e),
    }
}

/// `POST /login/mfa`: the second factor.
async fn login_mfa(State(app): State<Arc<AppState>>, visitor: Visitor, body: Bytes) -> Response {
    let form = form(&body);
    if !csrf_ok(&app, &visitor, &form) {
        return csrf_refused(&app, &visitor).await;
    }
    let handle = form.get("flow").map(String::as_str).unwrap_or("");
    let code = form.get("code").map(String::as_str).unwrap_or("");
    let ctx = visitor.context("");
    match app.tokens.signin_second_factor(&ctx, handle, code).await {
        Ok(SigninStep::Refused(refusal)) => {
            let upn = match app.tokens.pending_user(handle).await {
                Ok(Some(upn)) => upn,
                Ok(None) => return gone(),
                Err(e) => return internal_error(e),
            };
            step_response(
                &app,
                &visitor,
                handle,
                SigninStep::Refused(refusal),
                &upn,
                true,
            )
            .await
        }
        Ok(step) => step_response(&app, &visitor, handle, step, "", true).await,
        Err(e) => internal_error(e),
    }
}

/// `GET|POST /{tenant}/oauth2/v2.0/logout`: ends the web session. It never redirects anywhere
/// (no open redirect through `post_logout_redirect_uri`).
async fn logout(State(app): State<Arc<AppState>>, visitor: Visitor) -> Response {
    end_previous_session(&app, &visitor).await;
    let mut page = Page::message(
        StatusCode::OK,
        "You have signed out",
        "Your Strongbox session has ended. You can close this window.",
    );
    page.set_cookies.push(format!(
        "{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"
    ));
    page.render()
}

async fn stylesheet() -> Response {
    static_file(
        include_str!("../static/strongbox.css"),
        "text/css; charset=utf-8",
    )
}

async fn form_post_script() -> Response {
    static_file(
        include_str!("../static/form-post.js"),
        "text/javascript; charset=utf-8",
    )
}

fn static_file(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
