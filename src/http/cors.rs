//! Cross-origin calls from browser apps (the Fetch standard's CORS protocol):
//! the origins `--cors-origins` lists may call the API and the token
//! endpoint; every other page gets no grant, so the browser keeps the answer
//! from it.
//!
//! poem's own `Cors` middleware does not fit: it refuses (`403`) every
//! request whose `Origin` it does not list, which would break this server's
//! own Swagger UI (a browser sends `Origin` on a same-origin `POST`); it
//! treats an empty list as "every origin"; it sends no `Vary: Origin` for an
//! origin it lists exactly, nor on answers to requests without `Origin`; and
//! it takes any `OPTIONS` with an `Origin` for a preflight.
//!
//! No credentials mode: tokens travel in `Authorization`, never in cookies,
//! so `Access-Control-Allow-Credentials` is never sent.

use std::sync::Arc;

use poem::{
    http::{header, HeaderValue, Method, StatusCode},
    Endpoint, IntoResponse, Request, Response,
};

use crate::error::Error;

/// The methods the API's operations take.
const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";

/// The request headers a browser app may send beyond the CORS-safelisted
/// ones: a bearer token or Basic client credentials, a JSON body, a request
/// id to correlate with the server's log, and the marker that keeps a failed
/// Basic exchange from raising the browser's own login prompt.
const ALLOW_HEADERS: &str = "Authorization, Content-Type, X-Request-Id, X-Requested-With";

/// The response headers a browser app may read beyond the CORS-safelisted
/// ones: where a new todo is, when to retry after a `429` or `503`, why a
/// token was refused, and the id the log knows the request by.
const EXPOSE_HEADERS: &str = "Location, Retry-After, WWW-Authenticate, X-Request-Id";

/// How long a browser may reuse a preflight's answer (Chromium caps it at
/// two hours).
const MAX_AGE_SECS: &str = "3600";

const REFUSED: &str = "This page's origin may not call the API from a browser: the server's \
     --cors-origins does not list it";

/// An origin as a browser sends it in `Origin`: scheme, host and port, in
/// the browser's spelling (lower case, the host in IDNA ASCII form, no
/// default port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String);

impl Origin {
    /// Parses one origin of `--cors-origins`: an http or https URL with a host
    /// and at most a port. A path (even `/`), a query, a fragment, user
    /// information and `*` are refused, each saying how to write it.
    pub fn parse(s: &str) -> Result<Origin, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err(
                "an empty origin: separate origins with single commas, or leave the \
                 setting out for none"
                    .into(),
            );
        }
        if s == "*" {
            return Err(
                "`*` would let every web page call the API with its visitors' tokens: list the \
                 exact origins of your browser apps, such as https://app.example.com"
                    .into(),
            );
        }
        let example = "such as https://app.example.com or http://localhost:3000";
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(format!("`{s}` is not an origin {example}"));
        };
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(format!("`{s}` is not an http or https origin {example}"));
        }
        if let Some(at) = rest.find(['/', '?', '#', '@']) {
            let bare = format!("{scheme}://{}", &rest[..at]);
            return Err(format!(
                "`{s}` is more than an origin: an origin is a scheme, a host and an optional \
                 port, with no path (not even a trailing `/`), query or user (`{bare}`)"
            ));
        }
        let url =
            url::Url::parse(s).map_err(|e| format!("`{s}` is not an origin ({e}) {example}"))?;
        match url.origin() {
            origin @ url::Origin::Tuple(..) => Ok(Origin(origin.ascii_serialization())),
            url::Origin::Opaque(_) => Err(format!("`{s}` is not an origin {example}")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The origins browser apps may call from; none by default.
pub struct Cors {
    origins: Vec<HeaderValue>,
}

impl Cors {
    pub fn new(origins: &[Origin]) -> Cors {
        Cors {
            origins: origins
                .iter()
                .map(|o| {
                    HeaderValue::from_str(o.as_str())
                        .expect("an origin's ASCII serialisation is a header's text")
                })
                .collect(),
        }
    }

    /// The request's `Origin`, if it is one listed.
    fn allowed<'a>(&self, req: &'a Request) -> Option<&'a HeaderValue> {
        req.headers()
            .get(header::ORIGIN)
            .filter(|origin| self.origins.contains(origin))
    }

    /// With a list, every answer depends on the request's `Origin` (a grant
    /// or none), so caches must key on it; without one, none does.
    fn varies(&self) -> bool {
        !self.origins.is_empty()
    }
}

/// A CORS preflight, as a browser sends one before a request that is not
/// "simple": `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
/// Any other `OPTIONS` is an ordinary request (and answered `405`).
fn is_preflight(req: &Request) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Answers preflights itself, before routing: a listed origin gets `204`
/// with the methods, request headers and lifetime it may use; any other
/// gets `403` problem+json with no grant, which the browser reports as a
/// failed preflight. Other requests go on; a listed origin's answers (errors
/// included) get `Access-Control-Allow-Origin` and the exposed headers.
pub async fn cors<E: Endpoint>(next: E, req: Request, cors: Arc<Cors>) -> poem::Result<Response> {
    let origin = cors.allowed(&req).cloned();
    let mut resp = if is_preflight(&req) {
        match &origin {
            Some(origin) => preflight(origin),
            None => poem::error::ResponseError::as_response(&Error::Forbidden(REFUSED)),
        }
    } else {
        let mut resp = next.get_response(req).await;
        if let Some(origin) = origin {
            let headers = resp.headers_mut();
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE_HEADERS),
            );
        }
        resp
    };
    if cors.varies() {
        resp.headers_mut()
            .append(header::VARY, HeaderValue::from_static("Origin"));
    }
    Ok(resp)
}

fn preflight(origin: &HeaderValue) -> Response {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin)
        .header(header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS)
        .header(header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS)
        .header(header::ACCESS_CONTROL_MAX_AGE, MAX_AGE_SECS)
        .finish()
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> Result<String, String> {
        Origin::parse(s).map(|o| o.0)
    }

    #[test]
    fn an_origin_is_kept_in_the_spelling_browsers_send() {
        assert_eq!(
            parsed("https://app.example.com"),
            Ok("https://app.example.com".into())
        );
        assert_eq!(
            parsed("http://localhost:3000"),
            Ok("http://localhost:3000".into())
        );
        assert_eq!(
            parsed(" HTTPS://App.Example.COM:443 "),
            Ok("https://app.example.com".into())
        );
        assert_eq!(
            parsed("https://exämple.com"),
            Ok("https://xn--exmple-cua.com".into())
        );
        assert_eq!(parsed("http://[::1]:8080"), Ok("http://[::1]:8080".into()));
    }

    #[test]
    fn anything_but_an_origin_is_refused_saying_what_to_write() {
        for (given, says) in [
            ("*", "exact origins"),
            ("", "empty origin"),
            ("null", "not an origin"),
            ("app.example.com", "not an origin"),
            ("ftp://app.example.com", "http or https"),
            ("https://app.example.com/", "`https://app.example.com`"),
            ("https://app.example.com/app", "no path"),
            ("https://app.example.com?x=1", "query"),
            ("https://user@app.example.com", "user"),
            ("https://app.example.com:99999", "not an origin"),
            ("https://", "not an origin"),
        ] {
            let refused = parsed(given).expect_err(given);
            assert!(refused.contains(says), "{given}: {refused}");
        }
    }
}
