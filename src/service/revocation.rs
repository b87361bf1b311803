//! RFC 7009 revocation and RFC 7662 introspection: what `/auth/revoke` and
//! `/auth/introspect` do with the token they are given.

use super::{
    keys::{self, Revoker},
    token::{self, ExchangeError},
};
use crate::{
    db,
    domain::{
        audit::{self, Action, Actor, Event, ExchangeFailure, Failure, Limit, Target},
        keys::ApiKey,
        tokens::Claims,
    },
    error::Error,
    revocations::{Refusal, TOKEN_REVOCATIONS_PER_ACCOUNT},
    state::AppState,
    telemetry::metrics::Revocation,
    throttle::ClientAddress,
};

/// Revokes what `token` is: an API key (recognised by its format) with every
/// token it minted, or one access token. Whatever is not a live credential of
/// this server is left alone: RFC 7009 §2.2 answers the same either way, so
/// the endpoint tells nobody whether a guess was right. A key that is not
/// found counts as a failed client authentication of `address`, and an
/// address over that budget is refused before a key is looked up. Whoever
/// holds a token or key acts as its owner in the audit log.
pub async fn revoke(state: &AppState, token: &str, address: ClientAddress) -> Result<(), Error> {
    if let Ok(key) = ApiKey::parse(token) {
        let throttled = || state.failures.refused(address, Limit::KeyFailures, None);
        state
            .throttle
            .check_key(address)
            .map_err(throttled())
            .map_err(Error::Throttled)?;
        let hash = key.hash();
        match db::keys::find_by_hash(&state.db, &hash).await? {
            Some((key_id, owner)) => {
                let holder = Actor::key_holder(key_id, owner, address);
                match keys::revoke(state, key_id, Revoker::Holder, holder).await {
                    Ok(()) | Err(Error::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            None => {
                let fingerprint = Some(hash.fingerprint());
                let failure = Failure::exchange(ExchangeFailure::UnknownKey, None, fingerprint);
                state.failures.failed(address, failure);
                state
                    .throttle
                    .key_failed(address)
                    .map_err(throttled())
                    .map_err(Error::Throttled)?;
            }
        }
        return Ok(());
    }
    let Ok(claims) = state.tokens.verify(token) else {
        return Ok(());
    };
    if state.revocations.check(&claims) == Err(Refusal::Revoked) {
        return Ok(());
    }
    let event = |whole_account| {
        Event::now(
            Action::TokenRevoked,
            Actor::holder(&claims, address),
            Some(Target::token(claims.jti, claims.user_id)),
            audit::token_revoked(whole_account),
        )
    };
    let change = db::changes::revoke_token(
        &state.db,
        claims.user_id,
        claims.jti,
        state.revocations.lifetime(),
        TOKEN_REVOCATIONS_PER_ACCOUNT,
        event,
    )
    .await?;
    state.revocations.committed(vec![change]).await;
    state.metrics.revocation(Revocation::Token);
    Ok(())
}

/// What introspection found: the claims of an active token, or nothing.
pub struct Introspected {
    pub claims: Option<Claims>,
    pub issuer: String,
    pub audience: String,
}

/// RFC 7662: the caller authenticates with an API key; the token is active
/// if it verifies here and no revocation covers it.
pub async fn introspect(
    state: &AppState,
    secret: &str,
    client_id: Option<&str>,
    token: &str,
    address: ClientAddress,
) -> Result<Introspected, ExchangeError> {
    token::authenticate(state, secret, client_id, db::now(), address).await?;
    let claims = match state.tokens.verify(token) {
        Ok(claims) => match state.revocations.check(&claims) {
            Ok(()) => Some(claims),
            Err(Refusal::Revoked) => None,
            Err(Refusal::Stale) => {
                return Err(ExchangeError::Unavailable(anyhow::anyhow!(
                    "out of touch with the revocation feed"
                )))
            }
        },
        Err(_) => None,
    };
    Ok(Introspected {
        claims,
        issuer: state.tokens.issuer().to_owned(),
        audience: state.tokens.audience().to_owned(),
    })
}
