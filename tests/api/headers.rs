//! The security headers on every kind of answer: `nosniff` everywhere,
//! `no-store` where a secret or a token is answered, Swagger UI's Content
//! Security Policy, and HSTS behind an https issuer.

use latchkey::config::JwtAlg;
use reqwest::{Method, Response, StatusCode};
use serde_json::json;

use crate::helpers::{header, holder, spawn_app, spawn_app_with, TestApp};

/// One answer of each kind the server gives, named, with the status that
/// shows it is that kind.
async fn one_answer_of_each_kind(app: &TestApp) -> Vec<(&'static str, StatusCode, Response)> {
    let holder = holder(app).await;
    let send = |method: Method, path: &str| app.request(method, path, None);
    vec![
        (
            "a JSON success",
            StatusCode::OK,
            app.get(&holder.from_key, "/todos").await,
        ),
        (
            "a problem+json error",
            StatusCode::UNAUTHORIZED,
            app.get_public("/todos").await,
        ),
        (
            "the framework's rejection of malformed JSON",
            StatusCode::BAD_REQUEST,
            app.request(Method::POST, "/todos", Some(&holder.from_key))
                .header("content-type", "application/json")
                .body("{")
                .send()
                .await
                .unwrap(),
        ),
        (
            "an unknown route",
            StatusCode::NOT_FOUND,
            app.get_public("/no-such-route").await,
        ),
        (
            "a wrong method",
            StatusCode::METHOD_NOT_ALLOWED,
            send(Method::DELETE, "/health").send().await.unwrap(),
        ),
        ("/health", StatusCode::OK, app.get_public("/health").await),
        (
            "the docs page",
            StatusCode::OK,
            app.get_public("/docs/").await,
        ),
        (
            "a Swagger UI file",
            StatusCode::OK,
            app.get_public("/docs/swagger-ui-bundle.js").await,
        ),
        (
            "the docs redirect",
            StatusCode::PERMANENT_REDIRECT,
            app.get_public("/docs").await,
        ),
        (
            "the spec",
            StatusCode::OK,
            app.get_public("/openapi.json").await,
        ),
        (
            "a token",
            StatusCode::OK,
            app.exchange_response(&holder.key.id, &holder.key.key).await,
        ),
        (
            "a token endpoint error",
            StatusCode::BAD_REQUEST,
            app.token_form().grant("authorization_code").send().await,
        ),
    ]
}

#[tokio::test]
async fn every_kind_of_answer_forbids_content_sniffing() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let answers = one_answer_of_each_kind(&app).await;

    // Assert
    for (what, status, resp) in answers {
        assert_eq!(resp.status(), status, "{what}");
        assert_eq!(
            header(&resp, "x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(
            header(&resp, "strict-transport-security"),
            None,
            "{what}: the issuer is http"
        );
    }
}

#[tokio::test]
async fn answers_that_carry_a_secret_or_a_token_must_not_be_stored() {
    // Arrange
    let app = spawn_app().await;
    let holder = holder(&app).await;

    // Act
    let answers = [
        (
            "a new key",
            StatusCode::CREATED,
            app.create_key_response(&holder.login, json!({ "name": "shown once" }))
                .await,
        ),
        (
            "a refused new key",
            StatusCode::UNPROCESSABLE_ENTITY,
            app.create_key_response(&holder.login, json!({ "name": "" }))
                .await,
        ),
        (
            "a token",
            StatusCode::OK,
            app.exchange_response(&holder.key.id, &holder.key.key).await,
        ),
        (
            "a token endpoint error",
            StatusCode::UNAUTHORIZED,
            app.exchange_response(&holder.key.id, "lk_wrong").await,
        ),
        (
            "the framework's rejection at the token endpoint",
            StatusCode::PAYLOAD_TOO_LARGE,
            app.request(Method::POST, "/auth/token", None)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(vec![b'a'; 65 * 1024])
                .send()
                .await
                .unwrap(),
        ),
        (
            "a token's claims",
            StatusCode::OK,
            app.get(&holder.from_key, "/me").await,
        ),
        (
            "an introspection",
            StatusCode::OK,
            app.request(Method::POST, "/auth/introspect", None)
                .basic_auth(&holder.key.id, Some(&holder.key.key))
                .form(&[("token", &holder.login)])
                .send()
                .await
                .unwrap(),
        ),
    ];

    // Assert
    for (what, status, resp) in answers {
        assert_eq!(resp.status(), status, "{what}");
        assert_eq!(header(&resp, "cache-control"), Some("no-store"), "{what}");
    }
}

#[tokio::test]
async fn an_endpoint_s_own_caching_is_kept() {
    // Arrange
    let app = spawn_app_with(|c| c.jwt_alg = JwtAlg::EdDsa).await;

    // Act
    let jwks = app.get_public("/.well-known/jwks.json").await;

    // Assert
    assert_eq!(jwks.status(), StatusCode::OK);
    assert_eq!(header(&jwks, "cache-control"), Some("public, max-age=60"));
    assert_eq!(header(&jwks, "x-content-type-options"), Some("nosniff"));
}

/// The directives of a Content Security Policy, by name.
fn directives(policy: &str) -> Vec<(String, Vec<String>)> {
    policy
        .split(';')
        .filter_map(|d| {
            let mut words = d.split_whitespace().map(str::to_owned);
            Some((words.next()?, words.collect()))
        })
        .collect()
}

fn sources<'a>(policy: &'a [(String, Vec<String>)], name: &str) -> &'a [String] {
    policy
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s.as_slice())
        .unwrap_or_else(|| panic!("the policy has no {name}: {policy:?}"))
}

#[tokio::test]
async fn swagger_ui_is_served_under_a_strict_content_security_policy() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let page = app.get_public("/docs/").await;

    // Assert
    assert_eq!(page.status(), StatusCode::OK);
    let policy = directives(header(&page, "content-security-policy").expect("a policy"));
    assert_eq!(sources(&policy, "default-src"), ["'none'"]);
    assert_eq!(sources(&policy, "script-src"), ["'self'"]);
    assert_eq!(sources(&policy, "style-src")[0], "'self'");
    assert_eq!(sources(&policy, "img-src"), ["'self'", "data:"]);
    assert_eq!(sources(&policy, "frame-ancestors"), ["'none'"]);
    assert_eq!(
        sources(&policy, "connect-src"),
        ["'self'", app.base.as_str()]
    );
    for (name, sources) in &policy {
        for unsafe_source in ["'unsafe-eval'", "'unsafe-inline'", "*"] {
            assert!(!sources.iter().any(|s| s == unsafe_source), "{name}");
        }
    }

    // No inline script for the policy to block: every script is a file the
    // server serves from /docs/.
    let html = page.text().await.unwrap();
    let scripts: Vec<&str> = html.split("<script").skip(1).collect();
    assert!(!scripts.is_empty());
    for script in scripts {
        let (attributes, body) = script.split_once('>').unwrap();
        let body = body.split("</script>").next().unwrap();
        assert!(body.trim().is_empty(), "an inline script: {body}");
        let src = attributes
            .split("src=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| panic!("a script without src: {attributes}"));
        let file = app
            .get_public(&format!("/docs/{}", src.trim_start_matches("./")))
            .await;
        assert_eq!(file.status(), StatusCode::OK, "{src}");
    }
}

/// The hash source (CSP3 §8.4) of every `<style>` element Swagger UI's
/// served scripts create, as React writes them: `createElement("style",
/// null, "…")`.
async fn inline_styles_of_swagger_ui(app: &TestApp) -> Vec<String> {
    use base64::{engine::general_purpose::STANDARD, Engine};
    use sha2::{Digest, Sha256};

    const OPENING: &str = "createElement(\"style\",null,\"";
    let mut hashes = Vec::new();
    for file in ["swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"] {
        let script = app
            .get_public(&format!("/docs/{file}"))
            .await
            .text()
            .await
            .unwrap();
        for (at, _) in script.match_indices(OPENING) {
            let text = script[at + OPENING.len()..].split('"').next().unwrap();
            assert!(
                !text.contains('\\'),
                "an escape to decode in {file}: {text}"
            );
            let hash = STANDARD.encode(Sha256::digest(text.as_bytes()));
            hashes.push(format!("'sha256-{hash}'"));
        }
    }
    hashes
}

#[tokio::test]
async fn swagger_ui_s_own_inline_styles_and_no_others_are_allowed_by_their_hashes() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let page = app.get_public("/docs/").await;
    let styles = inline_styles_of_swagger_ui(&app).await;

    // Assert
    let policy = directives(header(&page, "content-security-policy").unwrap());
    assert_eq!(sources(&policy, "style-src")[1..], styles[..]);
}

#[tokio::test]
async fn behind_an_https_issuer_every_answer_asks_for_https_only() {
    // Arrange
    let app = spawn_app_with(|c| c.issuer = Some("https://keys.example.test".into())).await;

    // Act
    let answers = one_answer_of_each_kind(&app).await;
    let docs = app.get_public("/docs/").await;

    // Assert
    for (what, status, resp) in answers {
        assert_eq!(resp.status(), status, "{what}");
        assert_eq!(
            header(&resp, "strict-transport-security"),
            Some("max-age=31536000"),
            "{what}"
        );
    }
    // Swagger UI calls the server at the issuer the spec names.
    let policy = directives(header(&docs, "content-security-policy").unwrap());
    assert_eq!(
        sources(&policy, "connect-src"),
        ["'self'", "https://keys.example.test"]
    );
}
