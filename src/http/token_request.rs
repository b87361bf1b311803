//! A token request as RFC 6749 reads it: which grant, the client's
//! credentials (HTTP Basic, §2.3.1, or the body), the scope asked for. Pure:
//! the body and the headers in, a grant to try or a refusal out.

use base64::{engine::general_purpose::STANDARD, Engine};
use poem::http::{header, HeaderMap};
use poem_openapi::{
    payload::{Form, Json},
    ApiRequest, Object,
};
use serde::Deserialize;

use super::fields;
use crate::{
    domain::scopes::{Scope, Scopes},
    telemetry::metrics::Exchange,
};

/// An RFC 6749 token request. Send it form-encoded (the standard) or as JSON.
// No `Debug`: it holds a key or a password.
#[derive(Object, Deserialize)]
pub struct TokenRequest {
    /// `client_credentials` (trade an API key) or `password` (log in).
    #[oai(deserialize_with = "fields::grant_type")]
    pub grant_type: String,
    /// For `client_credentials`: the key's id (optional; checked when sent).
    #[oai(deserialize_with = "fields::client_id")]
    pub client_id: Option<String>,
    /// For `client_credentials`: the API key, unless sent by HTTP Basic.
    #[oai(write_only, deserialize_with = "fields::client_secret")]
    pub client_secret: Option<String>,
    /// For `password`: the account's email.
    #[oai(deserialize_with = "fields::username")]
    pub username: Option<String>,
    /// For `password`: the account's password.
    #[oai(write_only, deserialize_with = "fields::login_password")]
    pub password: Option<String>,
    /// Space-separated scopes. The token gets those of them the key or role
    /// allows (the response's `scope` names them), all of those when left
    /// out; `invalid_scope` if it allows none of them.
    #[oai(deserialize_with = "fields::scope")]
    pub scope: Option<String>,
}

#[derive(ApiRequest)]
pub enum TokenRequestBody {
    // No explicit content type: the payload's own check accepts parameters
    // such as `; charset=UTF-8`, which browsers and Node's fetch send.
    Form(Form<TokenRequest>),
    Json(Json<TokenRequest>),
}

impl TokenRequestBody {
    pub fn into_inner(self) -> TokenRequest {
        match self {
            TokenRequestBody::Form(Form(b)) | TokenRequestBody::Json(Json(b)) => b,
        }
    }
}

/// The credentials a request offers.
// No `Debug`: it holds a key or a password.
pub enum Grant {
    ClientCredentials {
        secret: String,
        client_id: Option<String>,
    },
    Password {
        username: String,
        password: String,
    },
}

/// A request worth trying.
pub struct Parsed {
    pub grant: Grant,
    /// `None` asks for everything the key or role holds.
    pub scope: Option<Scopes>,
    /// Whether a failed client authentication gets a Basic challenge.
    pub challenge: bool,
}

/// Why a request is refused before any credential is looked at: an RFC 6749
/// §5.2 error code and a sentence.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `invalid_request`, `invalid_client`, `unsupported_grant_type` or `invalid_scope`.
    pub error: &'static str,
    pub description: String,
    /// For `invalid_client`: whether it carries a Basic challenge.
    pub challenge: bool,
}

impl Refusal {
    /// How the exchange counts it.
    pub fn outcome(&self) -> Exchange {
        match self.error {
            "invalid_client" => Exchange::InvalidClient,
            "unsupported_grant_type" => Exchange::UnsupportedGrantType,
            "invalid_scope" => Exchange::InvalidScope,
            _ => Exchange::InvalidRequest,
        }
    }

    fn new(error: &'static str, description: impl Into<String>) -> Refusal {
        Refusal {
            error,
            description: description.into(),
            challenge: false,
        }
    }
}

/// Reads a token request. The checks come in the order a client can act on:
/// the Basic header, then the grant type (with an unknown one nothing else
/// matters), the scope, and the grant's own parameters.
pub fn parse(body: TokenRequest, headers: &HeaderMap) -> Result<Parsed, Refusal> {
    let (basic, challenge) = basic_and_challenge(headers)?;
    let password_grant = match body.grant_type.as_str() {
        "client_credentials" => false,
        "password" => true,
        "" => {
            return Err(Refusal::new(
                "invalid_request",
                "grant_type is empty; use client_credentials or password.",
            ))
        }
        _ => {
            return Err(Refusal::new(
                "unsupported_grant_type",
                "This server supports grant_type client_credentials and password.",
            ))
        }
    };
    // An empty `scope` (Swagger UI sends one when no box is ticked) asks
    // for the default grant, as if it were left out.
    let scope = body
        .scope
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(Scopes::parse)
        .transpose()
        .map_err(|e| {
            Refusal::new(
                "invalid_scope",
                format!("{e}; known scopes are {}", Scope::listed()),
            )
        })?;
    let grant = if password_grant {
        let (Some(username), Some(password)) = (body.username, body.password) else {
            return Err(Refusal::new(
                "invalid_request",
                "The password grant needs username (the account's email) and password.",
            ));
        };
        Grant::Password { username, password }
    } else {
        let client = combine(basic, body.client_id, body.client_secret)?;
        Grant::ClientCredentials {
            secret: client.secret,
            client_id: client.client_id,
        }
    };
    Ok(Parsed {
        grant,
        scope,
        challenge,
    })
}

/// A client's credentials: its API key and the key id it claims.
// No `Debug`: it holds a key.
pub struct Client {
    pub secret: String,
    pub client_id: Option<String>,
    /// Whether a failed authentication gets a Basic challenge.
    pub challenge: bool,
}

/// The client credentials of a request to an endpoint that authenticates
/// clients (RFC 6749 §2.3.1): by HTTP Basic or in the body, not both.
pub fn client(
    headers: &HeaderMap,
    client_id: Option<String>,
    client_secret: Option<String>,
) -> Result<Client, Refusal> {
    let (basic, challenge) = basic_and_challenge(headers)?;
    combine(basic, client_id, client_secret)
        .map(|client| Client {
            challenge,
            ..client
        })
        .map_err(|refusal| Refusal {
            challenge: challenge && refusal.error == "invalid_client",
            ..refusal
        })
}

fn combine(
    basic: Option<(String, String)>,
    client_id: Option<String>,
    client_secret: Option<String>,
) -> Result<Client, Refusal> {
    let (client_id, secret) = match (basic, client_secret) {
        (Some(_), Some(_)) => {
            return Err(Refusal::new(
                "invalid_request",
                "Send the client credentials once: by HTTP Basic or in the body, not both.",
            ))
        }
        (Some((id, secret)), None) => {
            if client_id.as_ref().is_some_and(|b| *b != id) {
                return Err(Refusal::new(
                    "invalid_request",
                    "client_id in the body differs from the one sent by HTTP Basic.",
                ));
            }
            (Some(id), secret)
        }
        (None, Some(secret)) => (client_id, secret),
        (None, None) => {
            return Err(Refusal::new(
                "invalid_client",
                "Send the API key as client_secret, in the body or by HTTP Basic.",
            ))
        }
    };
    Ok(Client {
        secret,
        client_id: client_id.filter(|id| !id.is_empty()),
        challenge: false,
    })
}

/// The Basic credentials, if sent, and whether a failure gets a challenge.
#[allow(clippy::type_complexity)]
fn basic_and_challenge(headers: &HeaderMap) -> Result<(Option<(String, String)>, bool), Refusal> {
    let basic = basic_credentials(headers).map_err(|description| Refusal {
        challenge: challenge(headers, true),
        ..Refusal::new("invalid_client", description)
    })?;
    let challenge = challenge(headers, basic.is_some());
    Ok((basic, challenge))
}

/// Whether a failed Basic authentication gets its RFC 6749 §5.2 challenge.
/// Not for a page's script (Swagger UI marks its token requests with
/// `X-Requested-With: XMLHttpRequest`): a browser meeting `WWW-Authenticate:
/// Basic` on a script's request opens its own login prompt, and the page never
/// sees the `invalid_client` error it should show.
fn challenge(headers: &HeaderMap, used_basic: bool) -> bool {
    let from_script = headers
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"));
    used_basic && !from_script
}

/// RFC 6749 §2.3.1: HTTP Basic with the client id and secret, each
/// form-urlencoded before they are joined. `None` when no Basic header was sent.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, &'static str> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    const BAD: &str = "The Authorization header is not valid HTTP Basic credentials.";
    let value = value.to_str().map_err(|_| BAD)?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(BAD);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err("Client credentials are taken by HTTP Basic only.");
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| BAD)?;
    let decoded = String::from_utf8(decoded).map_err(|_| BAD)?;
    let (id, secret) = decoded.split_once(':').ok_or(BAD)?;
    Ok(Some((
        form_decode(id).ok_or(BAD)?,
        form_decode(secret).ok_or(BAD)?,
    )))
}

fn form_decode(s: &str) -> Option<String> {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use poem::http::HeaderValue;

    use super::*;

    fn body(grant_type: &str) -> TokenRequest {
        TokenRequest {
            grant_type: grant_type.into(),
            client_id: None,
            client_secret: None,
            username: None,
            password: None,
            scope: None,
        }
    }

    fn with_secret(secret: &str) -> TokenRequest {
        TokenRequest {
            client_secret: Some(secret.into()),
            ..body("client_credentials")
        }
    }

    fn basic(id: &str, secret: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let encoded = STANDARD.encode(format!("{id}:{secret}"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap(),
        );
        headers
    }

    fn refusal(result: Result<Parsed, Refusal>) -> Refusal {
        match result {
            Ok(_) => panic!("the request should be refused"),
            Err(refusal) => refusal,
        }
    }

    fn client_credentials(parsed: Parsed) -> (String, Option<String>) {
        match parsed.grant {
            Grant::ClientCredentials { secret, client_id } => (secret, client_id),
            Grant::Password { .. } => panic!("a client-credentials grant was expected"),
        }
    }

    #[test]
    fn the_key_comes_from_the_body_with_an_optional_client_id() {
        let parsed = parse(with_secret("lk_x"), &HeaderMap::new()).unwrap();
        assert!(!parsed.challenge);
        assert_eq!(client_credentials(parsed), ("lk_x".into(), None));

        let mut request = with_secret("lk_x");
        request.client_id = Some("id".into());
        let parsed = parse(request, &HeaderMap::new()).unwrap();
        assert_eq!(
            client_credentials(parsed),
            ("lk_x".into(), Some("id".into()))
        );
    }

    #[test]
    fn the_key_comes_from_http_basic_form_decoded_with_an_empty_id_as_none() {
        let parsed = parse(body("client_credentials"), &basic("a%2Bb", "lk_x+y")).unwrap();
        assert!(parsed.challenge);
        assert_eq!(
            client_credentials(parsed),
            ("lk_x y".into(), Some("a+b".into()))
        );

        let parsed = parse(body("client_credentials"), &basic("", "lk_x")).unwrap();
        assert_eq!(client_credentials(parsed), ("lk_x".into(), None));
    }

    #[test]
    fn a_page_s_script_gets_no_basic_challenge() {
        let mut headers = basic("id", "lk_x");
        headers.insert(
            "x-requested-with",
            HeaderValue::from_static("XMLHttpRequest"),
        );
        assert!(
            !parse(body("client_credentials"), &headers)
                .unwrap()
                .challenge
        );
    }

    #[test]
    fn credentials_sent_twice_or_differing_ids_are_invalid_requests() {
        let both = refusal(parse(with_secret("lk_x"), &basic("id", "lk_x")));
        assert_eq!(both.error, "invalid_request");
        let mut request = body("client_credentials");
        request.client_id = Some("other".into());
        assert_eq!(
            refusal(parse(request, &basic("id", "lk_x"))).error,
            "invalid_request"
        );
    }

    #[test]
    fn no_key_at_all_is_invalid_client_without_a_challenge() {
        let none = refusal(parse(body("client_credentials"), &HeaderMap::new()));
        assert_eq!(none.error, "invalid_client");
        assert!(!none.challenge);
    }

    #[test]
    fn a_malformed_or_foreign_authorization_header_is_invalid_client_with_a_challenge() {
        let mut headers = HeaderMap::new();
        for value in ["Basic !!!", "Basic", "Bearer abc"] {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            let refused = refusal(parse(with_secret("lk_x"), &headers));
            assert_eq!(refused.error, "invalid_client", "{value}");
            assert!(refused.challenge, "{value}");
        }
    }

    #[test]
    fn the_grant_type_is_checked_before_the_scope() {
        let mut request = body("authorization_code");
        request.scope = Some("nonsense".into());
        assert_eq!(
            refusal(parse(request, &HeaderMap::new())).error,
            "unsupported_grant_type"
        );
        assert_eq!(
            refusal(parse(body(""), &HeaderMap::new())).error,
            "invalid_request"
        );
    }

    #[test]
    fn an_unknown_scope_is_invalid_scope_and_an_empty_one_asks_for_everything() {
        let mut request = with_secret("lk_x");
        request.scope = Some("todos:read todos:delete".into());
        let refused = refusal(parse(request, &HeaderMap::new()));
        assert_eq!(refused.error, "invalid_scope");
        assert!(refused.description.contains(&Scope::listed()));

        let mut request = with_secret("lk_x");
        request.scope = Some("  ".into());
        assert_eq!(parse(request, &HeaderMap::new()).unwrap().scope, None);

        let mut request = with_secret("lk_x");
        request.scope = Some("todos:read".into());
        assert_eq!(
            parse(request, &HeaderMap::new()).unwrap().scope,
            Some(Scopes::of(&[Scope::TodosRead]))
        );
    }

    #[test]
    fn the_password_grant_needs_both_username_and_password() {
        let mut request = body("password");
        request.username = Some("ada@example.com".into());
        assert_eq!(
            refusal(parse(request, &HeaderMap::new())).error,
            "invalid_request"
        );
        let mut request = body("password");
        request.username = Some("ada@example.com".into());
        request.password = Some("pw".into());
        assert!(matches!(
            parse(request, &HeaderMap::new()).unwrap().grant,
            Grant::Password { .. }
        ));
    }
}
