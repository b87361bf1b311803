//! The security headers every answer gets, whichever part of the app made
//! it: the operations, the framework's own rejections, Swagger UI's files.

use std::sync::Arc;

use poem::{
    http::{header, HeaderValue, Method},
    Endpoint, Request, Response,
};

use super::oauth::{self, NO_STORE};

/// Where Swagger UI is served.
const DOCS: &str = "/docs";

/// A year: browsers then refuse plain HTTP to the host for that long.
/// `includeSubDomains` is left out: other hosts of the domain are not this
/// server's to decide for.
const HSTS: &str = "max-age=31536000";

/// What the headers depend on, decided once at start.
pub struct SecurityHeaders {
    hsts: bool,
    docs_policy: HeaderValue,
}

impl SecurityHeaders {
    /// For a server whose public base URL is `issuer`: HSTS when it is
    /// https, and Swagger UI allowed to call it.
    pub fn new(issuer: &str) -> SecurityHeaders {
        let issuer = url::Url::parse(issuer).ok();
        SecurityHeaders {
            hsts: issuer.as_ref().is_some_and(|u| u.scheme() == "https"),
            docs_policy: docs_policy(issuer.map(|u| u.origin().ascii_serialization())),
        }
    }
}

/// The one inline `<style>` of the vendored Swagger UI: the SVG of its top
/// bar's logo, allowed by the hash of its text rather than by
/// `'unsafe-inline'`. `tests/api/headers.rs` recomputes it from the served
/// files, so an upgrade of Swagger UI that changes it fails there.
const SWAGGER_UI_LOGO_STYLE: &str = "'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='";

/// Swagger UI's Content Security Policy: its vendored script, styles and
/// images from this server (its stylesheet inlines icons as `data:` URLs),
/// its calls to this server (the spec, "Try it out", the token endpoint)
/// and to the issuer the spec names, which a proxy may put at another
/// origin; nothing else, no eval, no inline script, and no framing. Its
/// bootstrap is a served file (`swagger-initializer.js`), not inline.
fn docs_policy(issuer: Option<String>) -> HeaderValue {
    let connect = match issuer {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_owned(),
    };
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self' {SWAGGER_UI_LOGO_STYLE}; \
         img-src 'self' data:; connect-src {connect}; form-action 'self'; base-uri 'none'; \
         frame-ancestors 'none'"
    );
    HeaderValue::try_from(policy).expect("an origin's ASCII serialisation is a header's text")
}

/// Whether answers to this request carry a secret or a token (a new key's
/// plaintext, an access token, a token's claims), and so must not be kept
/// by any cache, error answers included.
fn carries_secret(method: &Method, path: &str) -> bool {
    oauth::is_endpoint(path) || path == "/me" || (method == Method::POST && path == "/keys")
}

/// Sets `X-Content-Type-Options: nosniff` on every answer, so a browser never
/// runs a JSON body as a script or page; `Strict-Transport-Security` when the
/// issuer is https; Swagger UI's Content Security Policy under `/docs`; and
/// `Cache-Control: no-store` where a secret is answered, unless the endpoint
/// chose its own caching.
pub async fn security_headers<E: Endpoint>(
    next: E,
    req: Request,
    headers: Arc<SecurityHeaders>,
) -> poem::Result<Response> {
    let secret = carries_secret(req.method(), req.uri().path());
    let docs = req
        .uri()
        .path()
        .strip_prefix(DOCS)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    let mut resp = next.get_response(req).await;
    let set = resp.headers_mut();
    set.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if headers.hsts {
        set.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    if docs {
        set.insert(header::CONTENT_SECURITY_POLICY, headers.docs_policy.clone());
    }
    if secret && !set.contains_key(header::CACHE_CONTROL) {
        set.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
    }
    Ok(resp)
}
