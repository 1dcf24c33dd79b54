//! Interactive sign-in checks: password, then the second factor, with throttling and lockout per
//! user and per source address, and a sign-in log entry for every outcome (never a password or
//! a code).
//!
//! Numbers: 5 failures for one user name, or 20 from one address, within 15 minutes lock that
//! name (or address) for 15 minutes from the last failure; each failure is answered after a
//! delay of 250 ms per failure so far (at most 2 s). Names are counted whether or not a user
//! has them, and an unknown name costs the same Argon2id verification as a wrong password, so
//! the answers and their timing do not tell which names exist.

use crate::TokenService;
use std::sync::OnceLock;
use std::time::Duration;
use strongbox_domain::DomainError;
use strongbox_store::{SigninRow, UserRow};

pub const USER_LOCK_FAILURES: i64 = 5;
pub const ADDRESS_LOCK_FAILURES: i64 = 20;
pub const FAILURE_WINDOW_SECS: i64 = 15 * 60;
pub const LOCK_SECS: i64 = 15 * 60;
const SLOWDOWN_STEP_MS: u64 = 250;
const SLOWDOWN_MAX_MS: u64 = 2_000;

pub(crate) fn user_key(upn: &str) -> String {
    format!("user:{}", upn.trim().to_lowercase())
}

fn address_key(ip: &str) -> String {
    format!("ip:{ip}")
}

/// Where a sign-in attempt comes from, for throttling and the log.
#[derive(Debug, Clone, Default)]
pub struct SigninContext {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub client_id: Option<String>,
    /// `device_code`, `authorization_code`, `refresh_token`…
    pub flow: String,
}

/// Why a sign-in was refused. What the person sees is [`SigninRefusal::message`]; the log gets
/// [`SigninRefusal::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigninRefusal {
    UnknownUser,
    InvalidPassword,
    WrongTenant,
    LockedOut,
    UserDisabled,
    InvalidSecondFactor,
    MfaNotEnrolled,
}

impl SigninRefusal {
    pub fn reason(self) -> &'static str {
        match self {
            SigninRefusal::UnknownUser => "UnknownUser",
            SigninRefusal::InvalidPassword => "InvalidPassword",
            SigninRefusal::WrongTenant => "WrongTenant",
            SigninRefusal::LockedOut => "LockedOut",
            SigninRefusal::UserDisabled => "UserDisabled",
            SigninRefusal::InvalidSecondFactor => "InvalidSecondFactor",
            SigninRefusal::MfaNotEnrolled => "MfaRequiredNotEnrolled",
        }
    }

    /// The same words for an unknown name and a wrong password.
    pub fn message(self) -> &'static str {
        match self {
            SigninRefusal::UnknownUser
            | SigninRefusal::InvalidPassword
            | SigninRefusal::WrongTenant => "Your account or password is incorrect.",
            SigninRefusal::LockedOut => {
                "Your account is locked for a while after too many failed sign-ins. Try again later."
            }
            SigninRefusal::UserDisabled => "Your account is disabled. Contact your administrator.",
            SigninRefusal::InvalidSecondFactor => "The code is wrong or has been used already.",
            SigninRefusal::MfaNotEnrolled => {
                "Your organisation requires a second factor and your account has none. Ask your administrator to enrol one."
            }
        }
    }
}

/// A hash to verify unknown names against, so they cost what a real user does.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let random = hex::encode(strongbox_crypto::random_bytes::<16>());
        crate::principals::hash_password(&secrecy::SecretString::from(random)).unwrap_or_default()
    })
}

impl TokenService {
    /// Appends to the sign-in log. `refusal` is None for a success.
    pub async fn log_signin(
        &self,
        ctx: &SigninContext,
        user: Option<&UserRow>,
        outcome: Result<(), &str>,
    ) {
        let row = SigninRow {
            time_ms: self.clock.now_ms(),
            tenant_id: user.map(|u| u.tenant_id.clone()),
            user_id: user.map(|u| u.object_id.clone()),
            upn: user.map(|u| u.upn.clone()),
            client_id: ctx.client_id.clone(),
            flow: ctx.flow.clone(),
            result: if outcome.is_ok() {
                "Success"
            } else {
                "Failure"
            }
            .into(),
            reason: outcome.err().unwrap_or("").into(),
            ip: ctx.ip.clone(),
            user_agent: ctx
                .user_agent
                .as_ref()
                .map(|u| u.chars().take(256).collect()),
        };
        if let Err(e) = self.store.append_signin(row).await {
            tracing::error!(error = %e, "sign-in log append failed");
        }
    }

    async fn locked(&self, key: &str, threshold: i64) -> Result<bool, DomainError> {
        let now = self.clock.now();
        Ok(self
            .store
            .signin_failures(key)
            .await?
            .is_some_and(|f| f.failures >= threshold && now < f.last + LOCK_SECS))
    }

    async fn locked_out(&self, ctx: &SigninContext, upn: &str) -> Result<bool, DomainError> {
        Ok(self.locked(&user_key(upn), USER_LOCK_FAILURES).await?
            || self.address_locked(ctx).await?)
    }

    pub(crate) async fn address_locked(&self, ctx: &SigninContext) -> Result<bool, DomainError> {
        match &ctx.ip {
            Some(ip) => self.locked(&address_key(ip), ADDRESS_LOCK_FAILURES).await,
            None => Ok(false),
        }
    }

    pub(crate) async fn note_address_failure(
        &self,
        ctx: &SigninContext,
    ) -> Result<(), DomainError> {
        if let Some(ip) = &ctx.ip {
            self.store
                .note_signin_failure(&address_key(ip), self.clock.now(), FAILURE_WINDOW_SECS)
                .await?;
        }
        Ok(())
    }

    /// Counts a failure against the name and the address, logs it, and waits the slowdown.
    async fn fail(
        &self,
        ctx: &SigninContext,
        upn: &str,
        user: Option<&UserRow>,
        refusal: SigninRefusal,
    ) -> Result<SigninRefusal, DomainError> {
        let now = self.clock.now();
        let count = self
            .store
            .note_signin_failure(&user_key(upn), now, FAILURE_WINDOW_SECS)
            .await?;
        self.note_address_failure(ctx).await?;
        self.log_signin(ctx, user, Err(refusal.reason())).await;
        let delay = (count.failures.max(0) as u64 * SLOWDOWN_STEP_MS).min(SLOWDOWN_MAX_MS);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        Ok(refusal)
    }

    /// Checks name and password. `tenant` is the tenant segment of the request (a GUID, or an
    /// alias such as `organizations`). On success returns the user and whether a second factor
    /// must follow; every refusal is logged.
    pub async fn check_password(
        &self,
        ctx: &SigninContext,
        tenant: &str,
        upn: &str,
        password: &str,
    ) -> Result<Result<(UserRow, bool), SigninRefusal>, DomainError> {
        let upn = upn.trim().to_lowercase();
        if self.locked_out(ctx, &upn).await? {
            let user = self.store.get_user_by_upn(&upn).await?;
            self.log_signin(ctx, user.as_ref(), Err(SigninRefusal::LockedOut.reason()))
                .await;
            return Ok(Err(SigninRefusal::LockedOut));
        }
        let user = if upn.is_empty() || upn.len() > 256 {
            None
        } else {
            self.store.get_user_by_upn(&upn).await?
        };
        let Some(user) = user else {
            // Same work as a real check: one Argon2id verification.
            let _ = crate::principals::password_matches(decoy_hash(), password);
            return self
                .fail(ctx, &upn, None, SigninRefusal::UnknownUser)
                .await
                .map(Err);
        };
        if !crate::principals::password_matches(&user.password_hash, password) {
            return self
                .fail(ctx, &upn, Some(&user), SigninRefusal::InvalidPassword)
                .await
                .map(Err);
        }
        if !is_alias(tenant) && !tenant.eq_ignore_ascii_case(&user.tenant_id) {
            return self
                .fail(ctx, &upn, Some(&user), SigninRefusal::WrongTenant)
                .await
                .map(Err);
        }
        if !user.enabled {
            self.log_signin(ctx, Some(&user), Err(SigninRefusal::UserDisabled.reason()))
                .await;
            return Ok(Err(SigninRefusal::UserDisabled));
        }
        let needs_mfa = user.totp_sealed.is_some();
        if !needs_mfa && self.store.require_mfa(&user.tenant_id).await? {
            self.log_signin(
                ctx,
                Some(&user),
                Err(SigninRefusal::MfaNotEnrolled.reason()),
            )
            .await;
            return Ok(Err(SigninRefusal::MfaNotEnrolled));
        }
        if !needs_mfa {
            self.store.clear_signin_failures(&user_key(&upn)).await?;
        }
        Ok(Ok((user, needs_mfa)))
    }

    /// Checks the second factor of a user whose password was right.
    pub async fn check_second_factor(
        &self,
        ctx: &SigninContext,
        user: &UserRow,
        code: &str,
    ) -> Result<Result<(), SigninRefusal>, DomainError> {
        if self.locked_out(ctx, &user.upn).await? {
            self.log_signin(ctx, Some(user), Err(SigninRefusal::LockedOut.reason()))
                .await;
            return Ok(Err(SigninRefusal::LockedOut));
        }
        let now = self.clock.now();
        if !crate::mfa::verify(&*self.store, &self.keyring, user, code, now).await? {
            return self
                .fail(
                    ctx,
                    &user.upn,
                    Some(user),
                    SigninRefusal::InvalidSecondFactor,
                )
                .await
                .map(Err);
        }
        self.store
            .clear_signin_failures(&user_key(&user.upn))
            .await?;
        Ok(Ok(()))
    }
}

/// Tenant segments that stand for "the user's own tenant".
pub fn is_alias(tenant: &str) -> bool {
    ["organizations", "common"]
        .iter()
        .any(|a| a.eq_ignore_ascii_case(tenant))
}
