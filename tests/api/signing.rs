//! Signing keys: EdDSA tokens and their JWK Set, `latchkey signing-key rotate`
//! on a running server, and the RFC 8414 metadata that points clients at both.

use std::{
    process::{Command, Output},
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use latchkey::{
    config::{Config, JwtAlg},
    domain::signing::{SigningAlg, SigningKey},
};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, jwt_parts, kid_of, spawn_app, spawn_app_with, TestApp};

async fn eddsa_app() -> TestApp {
    spawn_app_with(|c| c.jwt_alg = JwtAlg::EdDsa).await
}

pub async fn jwks(app: &TestApp) -> Value {
    let resp = app.get_public("/.well-known/jwks.json").await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

pub fn kids(set: &Value) -> Vec<String> {
    set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Runs the real binary against the app's keyring (its data directory's, or
/// on PostgreSQL its database's), as an operator would, with the secrets in
/// the environment rather than on the command line.
pub fn latchkey(app: &TestApp, args: &[&str]) -> Output {
    latchkey_with(&app.config, args)
}

/// Runs the real binary with the settings of `config` that name a keyring.
pub fn latchkey_with(config: &Config, args: &[&str]) -> Output {
    let alg = SigningAlg::from(config.jwt_alg).as_str();
    let ttl = format!("{}s", config.token_ttl.as_secs());
    let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    command
        .args(args)
        .args(["--jwt-alg", alg, "--token-ttl", &ttl, "--data-dir"])
        .arg(&config.data_dir)
        .env_clear();
    if let Some(file) = &config.jwt_key_file {
        command.arg("--jwt-key-file").arg(file);
    }
    if let Some(url) = &config.database_url {
        command.env("LATCHKEY_DATABASE_URL", url);
    }
    if let Some(secret) = &config.keyring_secret {
        command.env("LATCHKEY_KEYRING_SECRET", secret);
    }
    command.output().expect("the latchkey binary runs")
}

pub fn rotate(app: &TestApp) -> String {
    let out = latchkey(app, &["signing-key", "rotate"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "rotate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Polls `/me` with a fresh token until it is signed by a key other than
/// `old_kid`: the server has picked up the rotation.
pub async fn wait_for_new_signing_key(app: &TestApp, old_kid: &str) -> String {
    let start = Instant::now();
    loop {
        let token = app.user_token().await;
        if kid_of(&token) != old_kid {
            return token;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the server did not switch keys"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---- EdDSA and the JWK Set ----

#[tokio::test]
async fn an_eddsa_token_verifies_against_the_published_jwk_like_another_service_would() {
    // Arrange
    let app = eddsa_app().await;
    let token = app.user_token().await;

    // Act
    let resp = app.get_public("/.well-known/jwks.json").await;

    // Assert: one Ed25519 key, cacheable, named by the token's kid.
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "public, max-age=60");
    let set: Value = resp.json().await.unwrap();
    let keys = set["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let jwk = &keys[0];
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert_eq!(jwk["alg"], "EdDSA");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["kid"], kid_of(&token));
    assert!(jwk.get("d").is_none(), "the private key is never published");
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);

    // A verifier holding only the JWK accepts the token...
    let key = DecodingKey::from_ed_components(jwk["x"].as_str().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["latchkey"]);
    let claims = jsonwebtoken::decode::<Value>(&token, &key, &validation)
        .expect("the token verifies with the published key")
        .claims;
    assert!(claims["sub"].is_string());
    // ...and so does the server.
    assert_eq!(app.get(&token, "/me").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_hs256_token_keyed_with_the_public_key_is_refused() {
    // Arrange: the classic algorithm confusion: sign HS256 with what the
    // server publishes, naming the server's own kid.
    let app = eddsa_app().await;
    let genuine = app.user_token().await;
    let set = jwks(&app).await;
    let x = set["keys"][0]["x"].as_str().unwrap();
    let (_, claims) = jwt_parts(&genuine);
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid_of(&genuine));

    for secret in [
        URL_SAFE_NO_PAD.decode(x).unwrap(),
        x.as_bytes().to_vec(),
        set["keys"][0].to_string().into_bytes(),
    ] {
        let forged =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret)).unwrap();

        // Act
        let resp = app.get(&forged, "/me").await;

        // Assert
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains(r#"error="invalid_token""#));
    }
}

#[tokio::test]
async fn with_hs256_the_jwks_is_a_404_problem() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.get_public("/.well-known/jwks.json").await;

    // Assert
    let body = assert_problem(resp, StatusCode::NOT_FOUND).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("HS256"), "{detail}");
    assert!(!detail.ends_with(".."), "{detail}");
}

#[tokio::test]
async fn a_configured_ed25519_pem_signs_the_tokens_and_is_published() {
    // Arrange
    let key = SigningKey::generate(SigningAlg::EdDSA).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("signing.pem");
    std::fs::write(&pem, key.private_text()).unwrap();
    let app = spawn_app_with(|c| {
        c.jwt_alg = JwtAlg::EdDsa;
        c.jwt_key_file = Some(pem);
    })
    .await;

    // Act
    let token = app.user_token().await;

    // Assert
    assert_eq!(kid_of(&token), key.kid());
    assert_eq!(kids(&jwks(&app).await), vec![key.kid().to_owned()]);
    assert!(!app
        .config
        .data_dir
        .join(latchkey::keyring::KEYRING_FILE)
        .exists());
    // The keyring CLI leaves a configured key alone, and says so.
    let out = latchkey(&app, &["signing-key", "rotate"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--jwt-key-file"));
}

// ---- rotation ----

#[tokio::test]
async fn after_an_eddsa_rotation_old_tokens_verify_and_both_keys_are_published() {
    // Arrange
    let app = eddsa_app().await;
    let before = app.user_token().await;
    let old_kid = kid_of(&before);

    // Act: rotate with the server running.
    let printed = rotate(&app);
    let after = wait_for_new_signing_key(&app, &old_kid).await;

    // Assert
    let new_kid = kid_of(&after);
    assert!(printed.contains(&new_kid), "{printed}");
    assert!(printed.contains(&old_kid), "{printed}");
    assert_eq!(app.get(&before, "/me").await.status(), StatusCode::OK);
    assert_eq!(app.get(&after, "/me").await.status(), StatusCode::OK);
    let published = kids(&jwks(&app).await);
    assert_eq!(published, vec![new_kid.clone(), old_kid.clone()]);

    let listed = latchkey(&app, &["signing-key", "list"]);
    assert_listed_as_rotated(
        &String::from_utf8(listed.stdout).unwrap(),
        &new_kid,
        &old_kid,
    );
}

/// `signing-key list` after a rotation: the new key current, the old one
/// verifying for its grace period, no private material.
pub fn assert_listed_as_rotated(listed: &str, new_kid: &str, old_kid: &str) {
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(new_kid) && l.ends_with("current")),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(old_kid) && l.contains("verifying until")),
        "{listed}"
    );
    assert!(!listed.contains("PRIVATE KEY"), "{listed}");
}

#[tokio::test]
async fn after_an_hs256_rotation_old_tokens_still_verify() {
    // Arrange
    let app = spawn_app().await;
    let before = app.user_token().await;
    let old_kid = kid_of(&before);

    // Act
    rotate(&app);
    let after = wait_for_new_signing_key(&app, &old_kid).await;

    // Assert
    assert_ne!(kid_of(&after), old_kid);
    assert_eq!(app.get(&before, "/me").await.status(), StatusCode::OK);
    assert_eq!(app.get(&after, "/me").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_replaced_key_is_dropped_once_its_tokens_have_expired_and_not_before() {
    // Arrange: one-second tokens, so the grace period is the lifetime plus
    // the five seconds' leeway plus two reload intervals: eight seconds.
    let app = spawn_app_with(|c| {
        c.jwt_alg = JwtAlg::EdDsa;
        c.token_ttl = Duration::from_secs(1);
    })
    .await;
    let before = app.user_token().await;
    let old_kid = kid_of(&before);
    let rotated = Instant::now();
    rotate(&app);
    let new_kid = kid_of(&wait_for_new_signing_key(&app, &old_kid).await);

    // Act + Assert: four seconds on, the last token of the old key is past
    // its `exp` but within the leeway, and still verifies.
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(rotated.elapsed())).await;
    assert_eq!(kids(&jwks(&app).await), vec![new_kid.clone(), old_kid]);
    assert_eq!(app.get(&before, "/me").await.status(), StatusCode::OK);

    while kids(&jwks(&app).await).len() > 1 {
        assert!(
            rotated.elapsed() < Duration::from_secs(20),
            "the replaced key is still published"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        rotated.elapsed() >= Duration::from_secs(7),
        "the key was dropped after {:?}",
        rotated.elapsed()
    );
    assert_eq!(kids(&jwks(&app).await), vec![new_kid]);
    assert_eq!(
        app.get(&before, "/me").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn switching_algorithms_refuses_the_other_algorithm_s_tokens_and_publishes_no_secret() {
    // Arrange: an HS256 token, then a restart on the same data as EdDSA
    // (with a fixed issuer, so the restart's new port changes nothing else).
    let mut app = spawn_app_with(|c| c.issuer = Some("http://issuer.test".into())).await;
    let hs256 = app.user_token().await;
    app.config.jwt_alg = JwtAlg::EdDsa;

    // Act
    let app = app.restart().await;

    // Assert
    assert_eq!(
        app.get(&hs256, "/me").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let set = jwks(&app).await;
    let keys = set["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "OKP");
    assert_ne!(keys[0]["kid"], kid_of(&hs256).as_str());
    assert_eq!(
        jsonwebtoken::decode_header(app.user_token().await)
            .unwrap()
            .alg,
        Algorithm::EdDSA
    );
}

#[tokio::test]
async fn a_token_that_has_verified_before_is_refused_once_its_key_is_gone() {
    // Arrange: a token verified (and so remembered) by a server whose
    // configured secret is then replaced, on the same thread of this process.
    let first_secret = SigningKey::generate(SigningAlg::HS256).unwrap();
    let mut app = spawn_app_with(|c| {
        c.issuer = Some("http://issuer.test".into());
        c.jwt_secret = Some(first_secret.private_text());
    })
    .await;
    let token = app.user_token().await;
    for _ in 0..3 {
        assert_eq!(app.get(&token, "/me").await.status(), StatusCode::OK);
    }
    app.config.jwt_secret = Some(
        SigningKey::generate(SigningAlg::HS256)
            .unwrap()
            .private_text(),
    );

    // Act
    let app = app.restart().await;

    // Assert
    assert_eq!(
        app.get(&token, "/me").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let new_token = app.user_token().await;
    assert_ne!(kid_of(&new_token), kid_of(&token));
    assert_eq!(app.get(&new_token, "/me").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_restart_keeps_the_rotated_key_current() {
    // Arrange
    let app = eddsa_app().await;
    let old_kid = kid_of(&app.user_token().await);
    rotate(&app);
    let new_kid = kid_of(&wait_for_new_signing_key(&app, &old_kid).await);

    // Act
    let app = app.restart().await;

    // Assert
    assert_eq!(kid_of(&app.user_token().await), new_kid);
}

// ---- discovery ----

#[tokio::test]
async fn the_server_metadata_points_at_the_token_endpoint_and_the_keys() {
    // Arrange
    let app = eddsa_app().await;

    // Act
    let resp = app
        .get_public("/.well-known/oauth-authorization-server")
        .await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["cache-control"]
        .to_str()
        .unwrap()
        .starts_with("public, max-age="));
    let meta: Value = resp.json().await.unwrap();
    assert_eq!(meta["issuer"], app.base.as_str());
    assert_eq!(meta["token_endpoint"], app.url("/auth/token"));
    assert_eq!(meta["jwks_uri"], app.url("/.well-known/jwks.json"));
    assert_eq!(
        meta["grant_types_supported"],
        json!(["client_credentials", "password"])
    );
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(
        meta["scopes_supported"],
        json!(["todos:read", "todos:write", "keys:manage", "admin"])
    );
    // The advertised endpoints answer.
    let token = app
        .client
        .post(meta["token_endpoint"].as_str().unwrap())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), StatusCode::UNAUTHORIZED);
    let keys = app
        .client
        .get(meta["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(keys.status(), StatusCode::OK);
}

#[tokio::test]
async fn with_hs256_the_metadata_names_no_jwks() {
    // Arrange
    let app = spawn_app_with(|c| c.issuer = Some("https://auth.example.com".into())).await;

    // Act
    let meta: Value = app
        .get_public("/.well-known/oauth-authorization-server")
        .await
        .json()
        .await
        .unwrap();

    // Assert
    assert_eq!(meta["issuer"], "https://auth.example.com");
    assert_eq!(
        meta["token_endpoint"],
        "https://auth.example.com/auth/token"
    );
    assert!(meta.get("jwks_uri").is_none());
}
