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

    // The audit log: changes, a tally of failures, and a refused filter.
    app.flush_audit().await;
    let resp = app.get(&admin.token, "/admin/audit?limit=100").await;
    let everything = conforms(&app, Method::GET, "/admin/audit", resp).await;
    let logged: Vec<&str> = everything["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(logged.contains(&"login.failed"), "{logged:?}");
    assert!(logged.contains(&"exchange.failed"), "{logged:?}");
    let resp = app.get(&admin.token, "/admin/audit?action=nope").await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    conforms(&app, Method::GET, "/admin/audit", resp).await;
    let resp = app.get(&token, "/me/audit?limit=1").await;
    let mine = conforms(&app, Method::GET, "/me/audit", resp).await;
    assert!(mine["next_cursor"].is_string(), "{mine}");

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

// ---- the rules the request schemas state ----

/// A validator for the request schema `name` of the served spec.
fn request_schema(app: &TestApp, name: &str) -> jsonschema::Validator {
    let spec: Value = serde_json::from_str(&latchkey::http::spec::json_at(&app.base)).unwrap();
    let mut root = json!({
        "components": spec["components"],
        "allOf": [{ "$ref": format!("#/components/schemas/{name}") }],
    });
    json_schema_nulls(&mut root);
    jsonschema::validator_for(&root).expect("the spec's schema compiles")
}

/// Sends each body with `send` and asserts that the server takes exactly
/// those the schema calls valid, and refuses the others with `422` naming
/// `field`.
async fn agree<F, Fut>(validator: &jsonschema::Validator, field: &str, bodies: &[Value], send: F)
where
    F: Fn(Value) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    for body in bodies {
        let valid = validator.is_valid(body);
        let resp = send(body.clone()).await;
        let status = resp.status();
        if valid {
            assert!(
                status.is_success(),
                "{body}: the schema takes it, the server answered {status}"
            );
        } else {
            let problem =
                crate::helpers::assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
            assert_eq!(crate::helpers::field_errors(&problem), [field], "{body}");
        }
    }
}

/// Text at and around the bounds of a rule of `max` characters once trimmed.
fn texts(field: &str, max: usize) -> Vec<Value> {
    let x = |n: usize| "x".repeat(n);
    [
        "milk".to_owned(),
        x(max),
        format!("  {}\u{3000}", x(max)),
        x(max + 1),
        "é".repeat(max),
        String::new(),
        "   ".to_owned(),
        "\u{2003}\u{85}".to_owned(),
        "\tmilk\n".to_owned(),
        "mi\tlk".to_owned(),
        "milk\u{1b}".to_owned(),
        "\u{1c}milk".to_owned(),
        "line\u{2028}separator".to_owned(),
    ]
    .into_iter()
    .map(|text| json!({ field: text }))
    .collect()
}

#[tokio::test]
async fn the_title_and_key_name_rules_the_spec_states_take_exactly_what_the_server_takes() {
    // Arrange
    let app = crate::helpers::spawn_app().await;
    let token = app.user_token().await;
    let new_todo = request_schema(&app, "NewTodo");
    let todo_patch = request_schema(&app, "TodoPatch");
    let new_key = request_schema(&app, "NewKey");
    let todo = app.create_todo(&token, "to change").await;
    let todo_path = format!("/todos/{}", todo["id"].as_str().unwrap());

    // Act and assert
    agree(&new_todo, "title", &texts("title", 500), |body| {
        app.post(&token, "/todos", body)
    })
    .await;
    agree(&todo_patch, "title", &texts("title", 500), |body| {
        app.patch(&token, &todo_path, body)
    })
    .await;
    agree(&new_key, "name", &texts("name", 100), |body| {
        app.post(&token, "/keys", body)
    })
    .await;
}

#[tokio::test]
async fn the_password_rules_the_spec_states_take_exactly_what_the_server_takes() {
    // Arrange: none of these is among the common passwords.
    let app = crate::helpers::spawn_app().await;
    let new_user = request_schema(&app, "NewUser");
    let passwords = [
        "q7#vLm2!".to_owned(),
        "q7#vLm2".to_owned(),
        "q".repeat(128),
        "q".repeat(129),
        "\u{3000}".repeat(8),
        " \u{a0}\u{2028}\t    ".to_owned(),
        "\u{1c}".repeat(8),
        "     q7#v ".to_owned(),
    ];
    let bodies: Vec<Value> = passwords
        .iter()
        .enumerate()
        .map(|(n, password)| json!({ "email": format!("rule-{n}@example.com"), "password": password }))
        .collect();

    // Act and assert
    let app = &app;
    agree(&new_user, "password", &bodies, |body| async move {
        let request = app.request(Method::POST, "/users", None).json(&body);
        request.send().await.unwrap()
    })
    .await;
}

#[tokio::test]
async fn null_in_an_optional_field_is_taken_as_left_out_as_the_spec_states() {
    // Arrange
    let app = crate::helpers::spawn_app().await;
    let token = app.user_token().await;
    let todo_patch = request_schema(&app, "TodoPatch");
    let todo = app.create_todo(&token, "stays").await;
    let body = json!({ "title": null, "completed": null });

    // Act
    let resp = app
        .patch(
            &token,
            &format!("/todos/{}", todo["id"].as_str().unwrap()),
            body.clone(),
        )
        .await;

    // Assert
    assert!(todo_patch.is_valid(&body));
    assert_eq!(resp.status(), StatusCode::OK);
    let after: Value = resp.json().await.unwrap();
    assert_eq!(
        (after["title"].as_str(), after["completed"].as_bool()),
        (Some("stays"), Some(false))
    );
}

#[tokio::test]
async fn the_page_rules_the_spec_states_take_exactly_what_the_server_takes() {
    // Arrange
    let app = crate::helpers::spawn_app().await;
    let token = app.user_token().await;
    let spec: Value = serde_json::from_str(&latchkey::http::spec::json_at(&app.base)).unwrap();
    let parameter = |name: &str| {
        let schema = spec["paths"]["/todos"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["schema"]
            .clone();
        jsonschema::validator_for(&schema).unwrap()
    };
    let (limit, cursor) = (parameter("limit"), parameter("cursor"));
    let given_out = latchkey::domain::pages::Cursor(uuid::Uuid::now_v7()).encode();
    let mut cases: Vec<(&str, Value)> = [0, 1, 100, 101, -5]
        .into_iter()
        .map(|n| ("limit", json!(n)))
        .collect();
    for text in [
        given_out.clone(),
        format!("{}B", &given_out[..21]),
        given_out[..21].to_owned(),
        format!("{given_out}A"),
        format!("{}+", &given_out[..21]),
        String::new(),
    ] {
        cases.push(("cursor", json!(text)));
    }

    for (name, value) in cases {
        // Act
        let query = match &value {
            Value::String(s) => format!("{name}={s}"),
            other => format!("{name}={other}"),
        };
        let resp = app.get(&token, &format!("/todos?{query}")).await;

        // Assert
        let valid = if name == "limit" { &limit } else { &cursor }.is_valid(&value);
        if valid {
            assert_eq!(resp.status(), StatusCode::OK, "{query}");
        } else {
            let problem =
                crate::helpers::assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
            assert_eq!(crate::helpers::field_errors(&problem), [name], "{query}");
        }
    }
}

/// The title pattern and `TodoTitle::parse` judge every character alike: the
/// pattern's whitespace and control classes are the server's, whichever
/// regular expression engine reads them.
#[test]
fn the_title_pattern_judges_every_character_as_the_server_does() {
    // Arrange
    let spec: Value = serde_json::from_str(&latchkey::http::spec::json()).unwrap();
    let pattern = spec["components"]["schemas"]["NewTodo"]["properties"]["title"].clone();
    let validator = jsonschema::validator_for(&pattern).unwrap();

    for c in (0..=0xFFFF_u32).filter_map(char::from_u32) {
        for text in [format!("{c}x"), format!("x{c}x"), c.to_string()] {
            // Act
            let server = latchkey::domain::todos::TodoTitle::parse(&text).is_ok();

            // Assert
            assert_eq!(validator.is_valid(&json!(text)), server, "{:?}", text);
        }
    }
}
