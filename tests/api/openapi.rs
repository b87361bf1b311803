//! The OpenAPI document: committed copy up to date, served copies identical,
//! every operation documented, the security schemes that let Swagger UI,
//! Postman and Insomnia fetch tokens, and Swagger UI itself.

use std::collections::{BTreeSet, HashSet};

use poem_openapi::{types::ParseFromYAML, Object};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app};

const REGENERATE: &str = "regenerate it with `openapi/regenerate.sh` and commit the result";

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every operation of the design's HTTP contract.
const CONTRACT: [(&str, &str); 26] = [
    ("post", "/users"),
    ("post", "/auth/token"),
    ("post", "/auth/revoke"),
    ("post", "/auth/introspect"),
    ("get", "/me"),
    ("post", "/me/sign-out"),
    ("put", "/me/password"),
    ("get", "/me/audit"),
    ("get", "/keys"),
    ("post", "/keys"),
    ("get", "/keys/{id}"),
    ("delete", "/keys/{id}"),
    ("get", "/todos"),
    ("post", "/todos"),
    ("get", "/todos/{id}"),
    ("patch", "/todos/{id}"),
    ("delete", "/todos/{id}"),
    ("get", "/admin/users"),
    ("patch", "/admin/users/{id}"),
    ("get", "/admin/users/{id}/keys"),
    ("delete", "/admin/keys/{id}"),
    ("get", "/admin/audit"),
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/.well-known/oauth-authorization-server"),
    ("get", "/.well-known/jwks.json"),
];

/// The operations anyone may call without a token.
const PUBLIC: [(&str, &str); 8] = [
    ("post", "/users"),
    ("post", "/auth/token"),
    ("post", "/auth/revoke"),
    // Authenticated as a client, by its API key, not by a bearer token.
    ("post", "/auth/introspect"),
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/.well-known/oauth-authorization-server"),
    ("get", "/.well-known/jwks.json"),
];

/// The endpoints that answer RFC 6749 §5.2 errors.
const OAUTH: [&str; 3] = ["/auth/token", "/auth/revoke", "/auth/introspect"];

/// The four scopes the design names.
const SCOPES: [&str; 4] = ["todos:read", "todos:write", "keys:manage", "admin"];

fn committed(file: &str) -> String {
    let path = format!("{}/openapi/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}; {REGENERATE}"))
}

/// The first line where two texts differ, to point at the stale part.
fn first_difference(a: &str, b: &str) -> String {
    a.lines()
        .zip(b.lines())
        .enumerate()
        .find(|(_, (x, y))| x != y)
        .map(|(n, (x, y))| format!("line {}: committed {x:?}, generated {y:?}", n + 1))
        .unwrap_or_else(|| "one is a prefix of the other".to_owned())
}

fn spec() -> Value {
    serde_json::from_str(&latchkey::http::spec::json()).expect("the spec is JSON")
}

/// Every operation as (method, path, operation).
fn operations(spec: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            if METHODS.contains(&method.as_str()) {
                ops.push((method.clone(), path.clone(), op.clone()));
            }
        }
    }
    ops
}

/// The top level of an OpenAPI document, so the YAML can be parsed with the
/// YAML reader poem-openapi already carries (no extra dependency).
#[derive(Debug, Object)]
struct YamlDocument {
    openapi: String,
    info: Value,
    servers: Option<Value>,
    tags: Option<Value>,
    paths: Value,
    components: Option<Value>,
}

// ---- the committed spec ----

#[test]
fn the_committed_openapi_json_is_up_to_date() {
    // Arrange
    let generated = latchkey::http::spec::json();

    // Act
    let committed = committed("openapi.json");

    // Assert
    assert!(
        committed.trim() == generated.trim(),
        "openapi/openapi.json is stale ({}); {REGENERATE}",
        first_difference(committed.trim(), generated.trim())
    );
    assert!(
        committed.ends_with('\n'),
        "openapi/openapi.json should end with the newline `latchkey openapi` prints; {REGENERATE}"
    );
}

#[test]
fn the_committed_openapi_yaml_is_up_to_date() {
    // Arrange
    let generated = latchkey::http::spec::yaml();

    // Act
    let committed = committed("openapi.yaml");

    // Assert
    assert!(
        committed.trim() == generated.trim(),
        "openapi/openapi.yaml is stale ({}); {REGENERATE}",
        first_difference(committed.trim(), generated.trim())
    );
}

// ---- the served spec ----

#[tokio::test]
async fn get_openapi_json_serves_the_generated_spec_naming_this_server() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.get_public("/openapi.json").await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let text = resp.text().await.unwrap();
    assert_eq!(text, latchkey::http::spec::json_at(&app.base));
    let served: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(served["servers"][0]["url"], app.base.as_str());
}

#[tokio::test]
async fn get_openapi_yaml_serves_yaml_that_parses_to_the_same_document() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.get_public("/openapi.yaml").await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/yaml"));
    let text = resp.text().await.unwrap();
    assert_eq!(text, latchkey::http::spec::yaml_at(&app.base));
    let doc = YamlDocument::parse_from_yaml_string(&text)
        .unwrap_or_else(|e| panic!("/openapi.yaml does not parse: {}", e.message()));
    let json: Value = serde_json::from_str(&latchkey::http::spec::json_at(&app.base)).unwrap();
    let top: BTreeSet<_> = json.as_object().unwrap().keys().cloned().collect();
    assert!(
        top.is_subset(
            &["openapi", "info", "servers", "tags", "paths", "components"]
                .map(String::from)
                .into()
        ),
        "the JSON spec has top-level keys the YAML check does not compare: {top:?}"
    );
    assert_eq!(doc.openapi, json["openapi"]);
    assert!(doc.openapi.starts_with("3."));
    assert_eq!(doc.info, json["info"]);
    assert_eq!(doc.servers.unwrap_or(Value::Null), json["servers"]);
    assert_eq!(doc.tags.unwrap_or(Value::Null), json["tags"]);
    assert_eq!(doc.paths, json["paths"]);
    assert_eq!(doc.components.unwrap_or(Value::Null), json["components"]);
}

// ---- what every operation documents ----

#[test]
fn the_spec_has_every_contract_operation_each_with_an_id_a_tag_and_a_summary() {
    // Arrange
    let spec = spec();
    let declared_tags: HashSet<_> = spec["tags"]
        .as_array()
        .expect("the spec declares its tags")
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    let mut ids = HashSet::new();

    // Act
    let ops = operations(&spec);

    // Assert
    let found: BTreeSet<_> = ops
        .iter()
        .map(|(method, path, _)| (method.as_str(), path.as_str()))
        .collect();
    assert_eq!(found, BTreeSet::from(CONTRACT), "the spec's operations");
    for (method, path, op) in &ops {
        let id = op["operationId"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "{method} {path} has no operationId");
        assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        let tags = op["tags"].as_array().map(Vec::as_slice).unwrap_or_default();
        assert!(!tags.is_empty(), "{method} {path} has no tag");
        for tag in tags {
            assert!(
                declared_tags.contains(tag.as_str().unwrap()),
                "{method} {path}: tag {tag} is not declared"
            );
        }
        let summary = op["summary"].as_str().unwrap_or_default();
        assert!(!summary.trim().is_empty(), "{method} {path} has no summary");
    }
}

#[test]
fn every_operation_documents_an_error_response() {
    // Arrange
    let spec = spec();

    // Act
    let ops = operations(&spec);

    // Assert
    for (method, path, op) in &ops {
        let responses = op["responses"].as_object().unwrap();
        let errors: Vec<_> = responses
            .keys()
            .filter(|s| s.starts_with('4') || s.starts_with('5'))
            .collect();
        assert!(
            !errors.is_empty(),
            "{method} {path} documents no 4xx/5xx response"
        );
        // The connection answers 431 before any route, with no body.
        for status in errors.into_iter().filter(|s| *s != "431") {
            let response = &responses[status];
            assert!(
                !response["description"]
                    .as_str()
                    .unwrap_or_default()
                    .is_empty(),
                "{method} {path} {status} has no description"
            );
            // The OAuth endpoints answer RFC 6749 bodies; everything else
            // RFC 9457 problems.
            let content = response["content"].as_object().unwrap();
            if OAUTH.contains(&path.as_str()) {
                assert!(content.keys().all(|c| c.starts_with("application/json")));
            } else {
                assert!(
                    content.contains_key("application/problem+json"),
                    "{method} {path} {status} is not documented as problem+json"
                );
            }
        }
    }
}

#[test]
fn every_operation_documents_the_request_timeouts_503_with_retry_after() {
    // Arrange
    let spec = spec();

    // Act
    let ops = operations(&spec);

    // Assert
    for (method, path, op) in &ops {
        let unavailable = &op["responses"]["503"];
        let description = unavailable["description"].as_str().unwrap_or_default();
        assert!(
            description.contains("--request-timeout"),
            "{method} {path} does not document the request timeout: {unavailable}"
        );
        let headers = unavailable["headers"].as_object().unwrap();
        assert!(
            headers
                .keys()
                .any(|h| h.eq_ignore_ascii_case("retry-after")),
            "{method} {path} 503 has no Retry-After"
        );
    }
}

/// Oversized headers are answered before any route sees the request, so
/// every operation can answer `431`.
#[test]
fn every_operation_documents_the_431_of_oversized_headers() {
    let spec = spec();

    for (method, path, op) in &operations(&spec) {
        let too_large = &op["responses"]["431"];
        let description = too_large["description"].as_str().unwrap_or_default();
        assert!(
            description.contains("16 KiB"),
            "{method} {path} does not document the header cap: {too_large}"
        );
        assert!(
            too_large.get("content").is_none(),
            "{method} {path}: 431 has no body"
        );
    }
}

/// The media type and schema a documented response's body has.
fn documented_body(response: &Value) -> Option<(&str, &str)> {
    let (media, content) = response["content"].as_object()?.iter().next()?;
    Some((media.as_str(), content["schema"]["$ref"].as_str()?))
}

#[test]
fn every_operation_that_takes_a_body_documents_413_and_the_answer_to_a_wrong_content_type() {
    // Arrange
    let spec = spec();

    // Act
    let with_body: Vec<_> = operations(&spec)
        .into_iter()
        .filter(|(_, _, op)| op.get("requestBody").is_some())
        .collect();

    // Assert
    assert!(with_body.len() >= 9, "the operations that take a body");
    for (method, path, op) in &with_body {
        let responses = &op["responses"];
        let too_large = documented_body(&responses["413"]);
        if OAUTH.contains(&path.as_str()) {
            // RFC 6749 bodies, and a form or JSON: a wrong type is `invalid_request`.
            assert_eq!(
                too_large,
                Some((
                    "application/json; charset=utf-8",
                    "#/components/schemas/OAuthError"
                )),
                "{method} {path} 413"
            );
            assert!(responses["400"].is_object(), "{method} {path} 400");
            assert!(responses.get("415").is_none(), "{method} {path} 415");
        } else {
            for status in ["413", "415"] {
                assert_eq!(
                    documented_body(&responses[status]),
                    Some(("application/problem+json", "#/components/schemas/Problem")),
                    "{method} {path} {status}"
                );
            }
        }
    }
}

#[test]
fn every_operation_that_parses_a_parameter_or_a_body_documents_400() {
    // Arrange
    let spec = spec();

    // Act
    let parsing = operations(&spec).into_iter().filter(|(_, _, op)| {
        op.get("requestBody").is_some()
            || op["parameters"].as_array().is_some_and(|p| !p.is_empty())
    });

    // Assert
    for (method, path, op) in parsing {
        let malformed = &op["responses"]["400"];
        assert!(
            !malformed["description"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{method} {path} documents no 400"
        );
    }
}

#[test]
fn every_operation_that_takes_a_token_documents_the_503_of_a_stale_revocation_feed() {
    // Arrange
    let spec = spec();

    // Act
    let secured = operations(&spec)
        .into_iter()
        .filter(|(_, _, op)| op["security"].as_array().is_some_and(|s| !s.is_empty()));

    // Assert
    for (method, path, op) in secured {
        let description = op["responses"]["503"]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(
            description.contains("--revocation-max-lag"),
            "{method} {path}: {description}"
        );
    }
}

#[test]
fn every_list_states_the_bounds_and_default_of_its_page_and_the_form_of_its_cursor() {
    // Arrange
    let spec = spec();
    let lists = [
        ("/todos", 20),
        ("/admin/users", 20),
        ("/keys", 100),
        ("/admin/users/{id}/keys", 100),
    ];

    for (path, default) in lists {
        // Act
        let parameters = spec["paths"][path]["get"]["parameters"].as_array().unwrap();
        let named = |name: &str| {
            parameters
                .iter()
                .find(|p| p["name"] == name && p["in"] == "query")
                .map(|p| p["schema"].clone())
                .unwrap_or_else(|| panic!("GET {path} takes no {name}"))
        };

        // Assert
        let limit = named("limit");
        assert_eq!(limit["minimum"], 1, "GET {path}");
        assert_eq!(limit["maximum"], 100, "GET {path}");
        assert_eq!(limit["default"], default, "GET {path}");
        assert_eq!(
            named("cursor")["pattern"],
            latchkey::domain::pages::CURSOR_PATTERN,
            "GET {path}"
        );
    }
}

#[test]
fn every_operation_but_the_public_ones_needs_a_token_and_documents_401() {
    // Arrange
    let spec = spec();

    // Act: public operations say so with an empty list.
    let (secured, public): (Vec<_>, Vec<_>) = operations(&spec)
        .into_iter()
        .partition(|(_, _, op)| op["security"].as_array().is_some_and(|s| !s.is_empty()));

    // Assert
    let found: BTreeSet<_> = secured
        .iter()
        .map(|(method, path, _)| (method.as_str(), path.as_str()))
        .collect();
    let expected: BTreeSet<_> = CONTRACT
        .into_iter()
        .filter(|op| !PUBLIC.contains(op))
        .collect();
    assert_eq!(found, expected, "the operations that need a token");
    for (method, path, op) in &public {
        assert_eq!(op["security"], json!([]), "{method} {path} security");
    }
    for (method, path, op) in &secured {
        let schemes: HashSet<_> = op["security"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|req| req.as_object().unwrap().keys().cloned())
            .collect();
        assert_eq!(
            schemes,
            HashSet::from(["oauth2".to_owned(), "bearer".to_owned()]),
            "{method} {path}"
        );
        let unauthorized = &op["responses"]["401"];
        assert!(unauthorized.is_object(), "{method} {path} documents no 401");
        assert!(
            unauthorized["headers"]
                .as_object()
                .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("www-authenticate"))),
            "{method} {path}: the 401 does not document WWW-Authenticate"
        );
    }
}

#[test]
fn the_spec_declares_oauth2_flows_and_a_bearer_scheme() {
    // Arrange
    let spec = spec();

    // Act
    let schemes = &spec["components"]["securitySchemes"];

    // Assert
    let oauth2 = schemes
        .as_object()
        .unwrap()
        .values()
        .find(|s| s["type"] == "oauth2")
        .expect("an oauth2 security scheme");
    // Importers set up the first flow only: it must be the API key's.
    let flows: Vec<_> = oauth2["flows"].as_object().unwrap().keys().collect();
    assert_eq!(flows, ["clientCredentials", "password"]);
    for flow in ["clientCredentials", "password"] {
        let flow_spec = &oauth2["flows"][flow];
        // Absolute: importers copy it as it stands.
        assert_eq!(
            flow_spec["tokenUrl"],
            format!("{}/auth/token", latchkey::http::spec::DEFAULT_BASE_URL),
            "{flow}"
        );
        let scopes: BTreeSet<_> = flow_spec["scopes"]
            .as_object()
            .unwrap_or_else(|| panic!("{flow} lists scopes"))
            .iter()
            .map(|(name, description)| {
                assert!(!description.as_str().unwrap().is_empty());
                name.as_str()
            })
            .collect();
        assert_eq!(scopes, BTreeSet::from(SCOPES), "{flow}");
    }
    let bearer = schemes
        .as_object()
        .unwrap()
        .values()
        .find(|s| s["type"] == "http")
        .expect("an http security scheme");
    assert!(bearer["scheme"]
        .as_str()
        .unwrap()
        .eq_ignore_ascii_case("bearer"));
    assert_eq!(bearer["bearerFormat"], "JWT");
}

// ---- Swagger UI ----

#[tokio::test]
async fn docs_serves_swagger_ui_html() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.get_public("/docs/").await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = resp.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(html.contains("swagger-initializer.js"));
}

#[tokio::test]
async fn docs_without_a_slash_redirects_to_docs_slash() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.get_public("/docs").await;

    // Assert
    assert!(resp.status().is_redirection(), "{}", resp.status());
    assert_eq!(resp.headers()["location"], "/docs/");
}

#[tokio::test]
async fn the_swagger_initializer_points_at_openapi_json() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.get_public("/docs/swagger-initializer.js").await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
    let js = resp.text().await.unwrap();
    assert!(js.contains("/openapi.json"), "{js}");
}

#[tokio::test]
async fn the_swagger_ui_assets_are_served() {
    // Arrange
    let app = spawn_app().await;

    for (file, kind) in [
        ("swagger-ui.css", "text/css"),
        ("swagger-ui-bundle.js", "javascript"),
    ] {
        // Act
        let resp = app.get_public(&format!("/docs/{file}")).await;

        // Assert
        assert_eq!(resp.status(), StatusCode::OK, "{file}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .contains(kind),
            "{file}"
        );
        assert!(!resp.bytes().await.unwrap().is_empty(), "{file}");
    }
}

#[tokio::test]
async fn an_unknown_docs_file_is_a_404_problem() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.get_public("/docs/nope.js").await;

    // Assert
    let problem = assert_problem(resp, StatusCode::NOT_FOUND).await;
    assert!(problem["detail"].as_str().unwrap().contains("nope.js"));
}

/// Where in `value` a schema says `nullable` without a `type` beside it,
/// which OpenAPI 3.0 does not allow (linters refuse it, and tools that read
/// the document strictly ignore the `nullable`).
fn nullable_without_type(value: &Value, at: String, found: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            if fields.get("nullable") == Some(&Value::Bool(true)) && !fields.contains_key("type") {
                found.push(at.clone());
            }
            for (name, inner) in fields {
                nullable_without_type(inner, format!("{at}/{name}"), found);
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                nullable_without_type(inner, format!("{at}/{i}"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn every_nullable_schema_states_its_type() {
    let mut found = Vec::new();
    nullable_without_type(&spec(), String::new(), &mut found);
    assert!(found.is_empty(), "nullable without a type at {found:?}");
}
