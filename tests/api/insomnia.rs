//! The Insomnia export `insomnia/latchkey.json`: every request is an operation
//! of the spec, the requests that need a token fetch it with OAuth 2.0 client
//! credentials from the token endpoint, and the base environment defines what
//! the requests use, with no secrets committed.

use serde_json::Value;

/// What every request URL starts with.
const BASE_URL: &str = "{{ _.base_url }}";

/// The requests that must not need a token: signing up, and getting one.
const NO_TOKEN: [(&str, &str); 2] = [("POST", "/users"), ("POST", "/auth/token")];

/// The flow the export walks a user through, as (method, spec path).
const FLOW: [(&str, &str); 12] = [
    ("POST", "/users"),
    ("POST", "/auth/token"),
    ("GET", "/me"),
    ("GET", "/todos"),
    ("POST", "/todos"),
    ("GET", "/todos/{id}"),
    ("PATCH", "/todos/{id}"),
    ("DELETE", "/todos/{id}"),
    ("GET", "/keys"),
    ("POST", "/keys"),
    ("GET", "/keys/{id}"),
    ("DELETE", "/keys/{id}"),
];

/// What the base environment must define.
const ENVIRONMENT: [&str; 5] = ["base_url", "api_key", "key_id", "email", "password"];

/// Environment variables whose committed value must stay empty.
const SECRETS: [&str; 2] = ["api_key", "password"];

fn export() -> Value {
    let path = format!("{}/insomnia/latchkey.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

fn spec() -> Value {
    serde_json::from_str(&latchkey::http::spec::json()).expect("the spec is JSON")
}

fn resources<'a>(export: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    export["resources"]
        .as_array()
        .expect("the export has a resources array")
        .iter()
        .filter(move |r| r["_type"] == kind)
}

/// A request of the export, its URL taken apart.
struct Request<'a> {
    name: &'a str,
    method: String,
    /// The URL after `{{ _.base_url }}`.
    path: &'a str,
    resource: &'a Value,
}

fn requests(export: &Value) -> Vec<Request<'_>> {
    resources(export, "request")
        .map(|r| {
            let name = r["name"].as_str().unwrap_or("(unnamed)");
            let url = r["url"]
                .as_str()
                .unwrap_or_else(|| panic!("request {name:?} has no url"));
            let path = url.strip_prefix(BASE_URL).unwrap_or_else(|| {
                panic!("request {name:?}: url {url:?} does not start with {BASE_URL:?}")
            });
            let method = r["method"]
                .as_str()
                .unwrap_or_else(|| panic!("request {name:?} has no method"))
                .to_ascii_uppercase();
            Request {
                name,
                method,
                path,
                resource: r,
            }
        })
        .collect()
}

/// The variable a template such as `{{ _.todo_id }}` reads, if it is one.
fn template_variable(text: &str) -> Option<&str> {
    text.strip_prefix("{{")?
        .strip_suffix("}}")?
        .trim()
        .strip_prefix("_.")
}

/// Every variable that `{{ _.name }}` templates in `text` read.
fn variables_used(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        let template = &rest[start..start + end + 2];
        if let Some(name) = template_variable(template) {
            names.push(name);
        }
        rest = &rest[start + end + 2..];
    }
    names
}

/// The spec path a request path stands for: literal segments equal, and a
/// template where the spec has a `{parameter}`.
fn spec_path<'s>(spec: &'s Value, path: &str) -> Option<&'s str> {
    let segments: Vec<&str> = path.split('/').collect();
    spec["paths"]
        .as_object()
        .expect("the spec has paths")
        .keys()
        .map(String::as_str)
        .find(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == segments.len()
                && parts.iter().zip(&segments).all(|(part, segment)| {
                    if part.starts_with('{') && part.ends_with('}') {
                        template_variable(segment).is_some()
                    } else {
                        part == segment
                    }
                })
        })
}

/// The spec operation a request stands for, as (method, spec path, operation).
fn operation<'s>(spec: &'s Value, request: &Request<'_>) -> Option<(&'s str, &'s Value)> {
    let template = spec_path(spec, request.path)?;
    let op = &spec["paths"][template][request.method.to_ascii_lowercase()];
    op.is_object().then_some((template, op))
}

fn needs_no_token(method: &str, template: &str) -> bool {
    NO_TOKEN.contains(&(method, template))
}

#[track_caller]
fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

#[test]
fn every_insomnia_request_is_an_operation_of_the_spec() {
    // Arrange
    let export = export();
    let spec = spec();

    // Act
    let problems: Vec<String> = requests(&export)
        .iter()
        .filter(|r| operation(&spec, r).is_none())
        .map(|r| {
            format!(
                "{:?}: {} {} is in no path of the spec",
                r.name, r.method, r.path
            )
        })
        .collect();

    // Assert
    assert_no_problems("Insomnia requests the spec does not have", &problems);
}

#[test]
fn the_insomnia_export_walks_the_whole_flow() {
    // Arrange
    let export = export();
    let spec = spec();

    // Act
    let covered: Vec<(String, &str)> = requests(&export)
        .iter()
        .filter_map(|r| operation(&spec, r).map(|(template, _)| (r.method.clone(), template)))
        .collect();

    // Assert
    let missing: Vec<String> = FLOW
        .iter()
        .filter(|(method, template)| {
            !covered
                .iter()
                .any(|(m, t)| m.as_str() == *method && t == template)
        })
        .map(|(method, template)| format!("{method} {template}"))
        .collect();
    assert_no_problems(
        "operations the Insomnia export has no request for",
        &missing,
    );
}

#[test]
fn insomnia_requests_that_need_a_token_get_it_by_client_credentials() {
    // Arrange
    let export = export();
    let spec = spec();
    let token_url = spec["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]
        ["tokenUrl"]
        .as_str()
        .expect("the oauth2 scheme has a clientCredentials flow with a tokenUrl");
    assert!(
        token_url.ends_with("/auth/token"),
        "the spec's token URL is {token_url:?}, not the token endpoint"
    );

    // Act
    let mut problems = Vec::new();
    for request in requests(&export) {
        let Some((template, op)) = operation(&spec, &request) else {
            continue; // reported by every_insomnia_request_is_an_operation_of_the_spec
        };
        let name = request.name;
        let auth = &request.resource["authentication"];
        let spec_wants_oauth2 = op["security"]
            .as_array()
            .is_some_and(|reqs| reqs.iter().any(|r| r.get("oauth2").is_some()));

        if needs_no_token(&request.method, template) {
            if spec_wants_oauth2 {
                problems.push(format!("{name:?}: the spec asks a token for {template}"));
            }
            if auth["type"] == "oauth2" || auth["type"] == "bearer" {
                problems.push(format!(
                    "{name:?} needs no token but its auth fetches or sends one"
                ));
            }
            continue;
        }
        if !spec_wants_oauth2 {
            problems.push(format!(
                "{name:?}: the spec has no oauth2 security on {template}"
            ));
        }
        let expected = [
            ("type", "oauth2"),
            ("grantType", "client_credentials"),
            ("clientId", "{{ _.key_id }}"),
            ("clientSecret", "{{ _.api_key }}"),
        ];
        for (field, value) in expected {
            if auth[field] != value {
                problems.push(format!(
                    "{name:?}: authentication.{field} is {}, expected {value:?}",
                    auth[field]
                ));
            }
        }
        let access_token_url = auth["accessTokenUrl"].as_str().unwrap_or_default();
        if !(access_token_url.starts_with(BASE_URL) && access_token_url.ends_with("/auth/token")) {
            problems.push(format!(
                "{name:?}: authentication.accessTokenUrl is {access_token_url:?}, \
                 expected {BASE_URL}/auth/token"
            ));
        }
    }

    // Assert
    assert_no_problems("Insomnia requests with the wrong auth", &problems);
}

#[test]
fn the_insomnia_base_environment_defines_what_the_requests_use() {
    // Arrange
    let export = export();
    let workspaces: Vec<&Value> = resources(&export, "workspace").collect();
    assert_eq!(workspaces.len(), 1, "the export should hold one workspace");
    let workspace_id = &workspaces[0]["_id"];
    let bases: Vec<&Value> = resources(&export, "environment")
        .filter(|e| &e["parentId"] == workspace_id)
        .collect();
    assert_eq!(
        bases.len(),
        1,
        "the workspace should have one base environment"
    );
    let data = bases[0]["data"]
        .as_object()
        .expect("the base environment has data");

    // Act
    let mut problems = Vec::new();
    for name in ENVIRONMENT {
        if !data.contains_key(name) {
            problems.push(format!("{name} is not defined"));
        }
    }
    for name in SECRETS {
        if data.get(name).is_some_and(|v| v != "") {
            problems.push(format!("{name} holds a value; secrets are committed empty"));
        }
    }
    for request in requests(&export) {
        let text = request.resource.to_string();
        for name in variables_used(&text) {
            if !data.contains_key(name) {
                problems.push(format!(
                    "{:?} uses {name}, which is not defined",
                    request.name
                ));
            }
        }
    }

    // Assert
    assert_no_problems("the Insomnia base environment", &problems);
}
