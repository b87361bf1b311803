//! The audit log: your own events, and (scope `admin`) everyone's.

use std::{collections::BTreeMap, sync::Arc};

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{param::Query, payload::Json, ApiResponse, Enum, Object, OpenApi};
use serde_json::Value;
use uuid::Uuid;

use super::ApiTags;
use crate::{
    domain::{
        audit::{self, Filter, TargetKind},
        pages::page_params,
        scopes::Scope,
    },
    error,
    http::{
        auth::Auth,
        documented::{documented, Failure},
        types::Lenient,
    },
    service::audit::{self as log, Page},
    state::AppState,
};

#[derive(Default)]
pub struct AuditApi;

/// What an event records. Changes: `user.registered` (`POST /users`,
/// `latchkey admin create`), `user.updated` (an admin's change of role or
/// `disabled`), `user.password_changed`, `user.signed_out`, `key.created`,
/// `key.revoked` (by its owner, an admin, or its holder at
/// `/auth/revoke`), `token.revoked`, `signing_key.created` (a keyring's
/// first key of an algorithm), `signing_key.rotated`. Tallied per client
/// address and minute, with a `count` in `details`: `login.failed`,
/// `exchange.failed`, `request.throttled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(remote = "audit::Action")]
pub enum AuditAction {
    #[oai(rename = "user.registered")]
    UserRegistered,
    #[oai(rename = "user.updated")]
    UserUpdated,
    #[oai(rename = "user.password_changed")]
    UserPasswordChanged,
    #[oai(rename = "user.signed_out")]
    UserSignedOut,
    #[oai(rename = "key.created")]
    KeyCreated,
    #[oai(rename = "key.revoked")]
    KeyRevoked,
    #[oai(rename = "token.revoked")]
    TokenRevoked,
    #[oai(rename = "signing_key.created")]
    SigningKeyCreated,
    #[oai(rename = "signing_key.rotated")]
    SigningKeyRotated,
    #[oai(rename = "login.failed")]
    LoginFailed,
    #[oai(rename = "exchange.failed")]
    ExchangeFailed,
    #[oai(rename = "request.throttled")]
    RequestThrottled,
}

/// Who caused the event.
#[derive(Debug, Object)]
pub struct AuditActor {
    /// The account acting, when a token or key of one did.
    #[oai(nullable)]
    pub user_id: Option<Uuid>,
    /// The key id the acting token came from, `password` for a login's
    /// token, `cli` for the command line, `server` for the server itself.
    #[oai(nullable)]
    pub client_id: Option<String>,
    /// The client address the request came from (an IPv6 client as its
    /// /64), as the abuse limits count it.
    #[oai(nullable)]
    pub address: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case", remote = "TargetKind")]
pub enum AuditTargetType {
    User,
    Key,
    Token,
    SigningKey,
}

/// What the event is about.
#[derive(Debug, Object)]
pub struct AuditTarget {
    #[oai(rename = "type")]
    pub kind: AuditTargetType,
    /// An account's, key's or token's (`jti`) UUID, or a signing key's `kid`.
    pub id: String,
}

/// One entry of the audit log. It never holds a key, token or password: an
/// unknown API key is named by a fingerprint, the first 16 hex digits of its
/// blake3 hash.
#[derive(Debug, Object)]
pub struct AuditEvent {
    /// Sorts with `at`.
    pub id: Uuid,
    /// When it happened; for a tally, its first failure.
    pub at: DateTime<Utc>,
    pub action: AuditAction,
    pub actor: AuditActor,
    #[oai(nullable)]
    pub target: Option<AuditTarget>,
    /// More about the event, by action: `role` for `user.registered`; what
    /// changed (`from`, `to`) for `user.updated`; `name`, `scopes`,
    /// `expires_at` for `key.created`; `by` (`owner`, `admin` or `holder`)
    /// and `owner` (the account's id) for `key.revoked`; `covers` (`token`, or `account` when it signed the
    /// account out) for `token.revoked`; `alg` and `replaced` for signing
    /// keys. A tally has `count`, `last_at` and `reasons` (a count by
    /// reason), and may list `targets` (when it names several), the
    /// `fingerprints` of unknown keys, and how many more went `unlisted`.
    pub details: BTreeMap<String, Value>,
}

impl From<audit::Event> for AuditEvent {
    fn from(e: audit::Event) -> Self {
        let details = match e.details {
            Value::Object(details) => details.into_iter().collect(),
            _ => BTreeMap::new(),
        };
        AuditEvent {
            id: e.id,
            at: e.at,
            action: e.action.into(),
            actor: AuditActor {
                user_id: e.actor.user_id,
                client_id: e.actor.client_id,
                address: e.actor.address,
            },
            target: e.target.map(|t| AuditTarget {
                kind: t.kind.into(),
                id: t.id,
            }),
            details,
        }
    }
}

/// A page of events.
#[derive(Debug, Object)]
pub struct AuditPage {
    /// Newest first.
    pub items: Vec<AuditEvent>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

impl AuditPage {
    fn of((events, next_cursor): Page) -> AuditPage {
        AuditPage {
            items: events.into_iter().map(AuditEvent::from).collect(),
            next_cursor,
        }
    }
}

#[derive(ApiResponse)]
pub enum AuditResponse {
    /// A page of events, newest first.
    #[oai(status = 200)]
    Ok(Json<AuditPage>),
}

documented! {
    AdminAuditErrors {
        400 => "`limit` is not an integer.",
        401 => "No bearer token, or an invalid, expired or revoked one.",
        403 => "The token lacks the `admin` scope, or its account is no longer an admin.",
        422 => "`limit` is out of range, `cursor` is not one this API gave out, `action` is not one of the actions, `user_id` is not a UUID or `since` is not an RFC 3339 time; `errors` names which.",
        500 => "The server failed; the error has been logged.",
        503 => "The database cannot answer now; nothing was changed. Try again after `Retry-After` seconds."
    }
    MyAuditErrors {
        400 => "`limit` is not an integer.",
        401 => "No bearer token, or an invalid, expired or revoked one.",
        403 => "The token lacks the `keys:manage` scope.",
        422 => "`limit` is out of range, `cursor` is not one this API gave out, `action` is not one of the actions or `since` is not an RFC 3339 time; `errors` names which.",
        500 => "The server failed; the error has been logged.",
        503 => "The database cannot answer now; nothing was changed. Try again after `Retry-After` seconds."
    }
}

// poem-openapi documents a query parameter only as an argument of its own.
#[allow(clippy::too_many_arguments)]
#[OpenApi(tag = "ApiTags::Audit")]
impl AuditApi {
    /// Read the audit log
    ///
    /// Every event, newest first, `limit` (1 to 100, default 20) at a time;
    /// follow `next_cursor` for more. Changes are recorded as they commit;
    /// failed logins and exchanges and throttled requests are tallied per
    /// client address and minute, and show within a few seconds. Needs
    /// `admin`.
    #[oai(
        path = "/admin/audit",
        method = "get",
        operation_id = "listAuditEvents"
    )]
    async fn list_audit_events(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        /// Page size, 1 to 100.
        limit: Query<Option<i64>>,
        /// `next_cursor` from the previous page.
        cursor: Query<Option<String>>,
        /// Only events of this action.
        action: Query<Option<Lenient<AuditAction>>>,
        /// Only events whose actor is this account, or whose target is it or
        /// one of its keys or tokens.
        user_id: Query<Option<Lenient<Uuid>>>,
        /// Only events at or after this time (RFC 3339).
        since: Query<Option<Lenient<DateTime<Utc>>>>,
    ) -> Result<AuditResponse, Failure<AdminAuditErrors>> {
        let claims = auth.require(Scope::Admin)?;
        let ((limit, cursor), filter) = error::together(
            page_params(limit.0, cursor.0.as_deref()),
            Filter::parse(
                Lenient::text(&action),
                Lenient::text(&user_id),
                Lenient::text(&since),
            ),
        )?;
        let page = log::everyone(&state, claims, filter, limit, cursor).await?;
        Ok(AuditResponse::Ok(Json(AuditPage::of(page))))
    }

    /// Read your audit log
    ///
    /// The events whose actor or target is your account, or one of its keys
    /// or tokens: what you and your keys did, what an admin did to your
    /// account, and the failed logins of your account and exchanges of your
    /// keys. Newest first, paged as `GET /admin/audit` is. Needs
    /// `keys:manage`.
    #[oai(path = "/me/audit", method = "get", operation_id = "listMyAuditEvents")]
    async fn list_my_audit_events(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        /// Page size, 1 to 100.
        limit: Query<Option<i64>>,
        /// `next_cursor` from the previous page.
        cursor: Query<Option<String>>,
        /// Only events of this action.
        action: Query<Option<Lenient<AuditAction>>>,
        /// Only events at or after this time (RFC 3339).
        since: Query<Option<Lenient<DateTime<Utc>>>>,
    ) -> Result<AuditResponse, Failure<MyAuditErrors>> {
        let claims = auth.require(Scope::KeysManage)?;
        let ((limit, cursor), filter) = error::together(
            page_params(limit.0, cursor.0.as_deref()),
            Filter::parse(Lenient::text(&action), None, Lenient::text(&since)),
        )?;
        let page = log::mine(&state, claims, filter, limit, cursor).await?;
        Ok(AuditResponse::Ok(Json(AuditPage::of(page))))
    }
}
