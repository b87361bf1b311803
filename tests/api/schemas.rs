//! What the server really sends, checked against what its spec promises: each
//! response's body against the schema documented for its operation, status
//! and content type. A client generated from the spec must be able to read
//! every one of them.

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp, TestUser};

/// Validates the response against the spec the server serves and returns
/// its body.
async fn conforms(app: &TestApp, method: Method, template: &str, resp: Response) -> Value {
    let spec: Value = serde_json::from_str(&latchkey::http::spec::json_at(&app.base)).unwrap();
    let status = resp.status().as_u16().to_string();
    let content_type = resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .trim()
        .to_owned();
    let body: Value = resp.json().await.unwrap();
    let op = &spec["paths"][template][method.as_str().to_lowercase()];
    assert!(op.is_object(), "{method} {template} is not in the spec");
    // Documented media types may carry parameters (`; charset=utf-8`).
    let schema = op["responses"][&status]["content"]
        .as_object()
        .into_iter()
        .flatten()
        .find(|(documented, _)| documented.split(';').next().unwrap().trim() == content_type)
        .map_or(&Value::Null, |(_, media)| &media["schema"]);
    assert!(
        schema.is_object(),
        "{method} {template} answered {status} {content_type}, which the spec does not document"
    );
    // The schema's references point into the spec's components.
    let mut root = json!({ "components": spec["components"], "allOf": [schema] });
    json_schema_nulls(&mut root);
    let validator = jsonschema::validator_for(&root).expect("the spec's schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {template} {status}: the body does not match the spec: {errors:#?}\nbody: {body}"
    );
    body
}

/// OpenAPI 3.0 says "may be null" with `nullable: true`, a keyword JSON Schema
/// does not have; its equivalent is a `null` alternative.
fn json_schema_nulls(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            map.values_mut().for_each(json_schema_nulls);
            if map.remove("nullable") == Some(Value::Bool(true)) {
                let inner = Value::Object(std::mem::take(map));
                map.insert("anyOf".into(), json!([inner, { "type": "null" }]));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(json_schema_nulls),
        _ => {}
    }
}

#[tokio::test]
async fn every_kind_of_response_matches_its_documented_schema() {
    // Arrange: an EdDSA server, so the key set has keys to check too.
    let app = spawn_app_with(|c| c.jwt_alg = latchkey::config::JwtAlg::EdDsa).await;
    let user = TestUser::generate();

    // Accounts and tokens.
    let resp = app.register(&user.email, &user.password).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    conforms(&app, Method::POST, "/users", resp).await;
    let resp = app.register(&user.email, &user.password).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    conforms(&app, Method::POST, "/users", resp).await;
    let resp = app.register("not an email", "short").await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    conforms(&app, Method::POST, "/users", resp).await;

    let resp = app.login_response(&user.email, &user.password).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let login = conforms(&app, Method::POST, "/auth/token", resp).await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let resp = app.login_response(&user.email, "wrong password").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    conforms(&app, Method::POST, "/auth/token", resp).await;
    let resp = app
        .token_form()
        .grant("client_credentials")
        .secret("lk_x")
        .send()
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    conforms(&app, Method::POST, "/auth/token", resp).await;

    let resp = app.get(&token, "/me").await;
    conforms(&app, Method::GET, "/me", resp).await;
    let resp = app.get("not-a-token", "/me").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    conforms(&app, Method::GET, "/me", resp).await;

    // Keys: one with every optional field set, one with none.
    let resp = app
        .create_key_response(
            &token,
            json!({ "name": "full", "scopes": ["todos:read"], "expires_at": "2999-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let full = conforms(&app, Method::POST, "/keys", resp).await;
    let key = app.create_key(&token, json!({ "name": "bare" })).await;
    let key_token = app.exchange(&key).await;
    let resp = app.get(&token, "/keys").await;
    conforms(&app, Method::GET, "/keys", resp).await;
    let resp = app
        .get(&token, &format!("/keys/{}", full["id"].as_str().unwrap()))
        .await;
    conforms(&app, Method::GET, "/keys/{id}", resp).await;
    let resp = app.get(&token, "/keys/not-a-uuid").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    conforms(&app, Method::GET, "/keys/{id}", resp).await;

    // Todos.
    let resp = app
        .post(&key_token, "/todos", json!({ "title": "check the schema" }))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let todo = conforms(&app, Method::POST, "/todos", resp).await;
    let id = todo["id"].as_str().unwrap();
    let resp = app
        .patch(
            &key_token,
            &format!("/todos/{id}"),
            json!({ "completed": true }),
        )
        .await;
    conforms(&app, Method::PATCH, "/todos/{id}", resp).await;
    let resp = app.get(&key_token, "/todos?limit=1").await;
    conforms(&app, Method::GET, "/todos", resp).await;
    let resp = app.get(&key_token, &format!("/todos/{id}")).await;
    conforms(&app, Method::GET, "/todos/{id}", resp).await;
    let resp = app.delete(&key_token, &format!("/todos/{id}")).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = app.get(&key_token, &format!("/todos/{id}")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    conforms(&app, Method::GET, "/todos/{id}", resp).await;
    let resp = app.post(&key_token, "/todos", json!({ "title": "" })).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    conforms(&app, Method::POST, "/todos", resp).await;
    let resp = app.get(&key_token, "/keys").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    conforms(&app, Method::GET, "/keys", resp).await;

    // Administration.
    let admin = app.admin().await;
    let resp = app.get(&admin.token, "/admin/users").await;
    conforms(&app, Method::GET, "/admin/users", resp).await;

    // Health and discovery.
    for path in [
        "/health",
        "/ready",
        "/.well-known/oauth-authorization-server",
        "/.well-known/jwks.json",
    ] {
        let resp = app.get_public(path).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        conforms(&app, Method::GET, path, resp).await;
    }
}

#[tokio::test]
async fn the_jwks_404_and_a_next_page_cursor_match_their_schemas() {
    // Arrange: an HS256 server, and more todos than one page.
    let app = crate::helpers::spawn_app().await;
    let token = app.user_token().await;
    app.create_todo(&token, "one").await;
    app.create_todo(&token, "two").await;

    // Act
    let jwks = app.get_public("/.well-known/jwks.json").await;
    let page = app.get(&token, "/todos?limit=1").await;

    // Assert
    assert_eq!(jwks.status(), StatusCode::NOT_FOUND);
    conforms(&app, Method::GET, "/.well-known/jwks.json", jwks).await;
    let page = conforms(&app, Method::GET, "/todos", page).await;
    assert!(page["next_cursor"].is_string());
}
