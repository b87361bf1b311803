//! The OpenAPI document: generated from the operations, then finished where
//! poem-openapi leaves importers guessing.

use std::sync::OnceLock;

use poem_openapi::{LicenseObject, OpenApi, OpenApiService, ServerObject};
use serde_json::Value;

use super::api::{
    admin::AdminApi, audit::AuditApi, discovery::DiscoveryApi, health::HealthApi, keys::KeysApi,
    password::PasswordApi, revocation::RevocationApi, todos::TodosApi, token::TokenApi,
    users::UsersApi,
};

/// The base URL the committed spec names: where `cargo run --release` serves.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:8080";

/// Every operation, in the order the document lists their tags.
pub type Apis = (
    UsersApi,
    TokenApi,
    RevocationApi,
    PasswordApi,
    KeysApi,
    TodosApi,
    AdminApi,
    AuditApi,
    HealthApi,
    DiscoveryApi,
);

/// The OpenAPI service: the operations and the document generated from them,
/// naming `base_url` as the server, so that a client importing the document
/// (Postman, Insomnia) sends its requests there.
pub fn service(base_url: &str) -> OpenApiService<Apis, ()> {
    OpenApiService::new(Apis::default(), "latchkey", env!("CARGO_PKG_VERSION"))
        .description(
            "Create an account, log in, create an API key, trade it at `/auth/token` for a \
         one-minute JWT, and call the Todo API with it. Errors are RFC 9457 \
         `application/problem+json`, except on `/auth/token`, which answers RFC 6749 \
         error bodies, and bearer failures carry RFC 6750 `WWW-Authenticate`.",
        )
        .license(LicenseObject::new("MIT OR Apache-2.0"))
        .server(ServerObject::new(base_url).description("latchkey"))
}

/// The document for a server at `base_url`:
/// - operations anyone may call say so with an empty `security` list, or
///   linters and importers cannot tell them from ones whose security was
///   forgotten;
/// - token URLs are absolute, because Postman and Insomnia copy them as they
///   stand and cannot fetch a relative one;
/// - the client-credentials flow comes first, because those importers set up
///   only the first flow, and an API key is what this service is for;
/// - the answers any operation may give whatever its handler does are
///   documented on each (see `documented::document_shared`);
/// - the schemas state the rules the server enforces (see `schema_rules`).
pub fn document(base_url: &str) -> Value {
    let mut doc: Value =
        serde_json::from_str(&service(base_url).spec()).expect("poem-openapi writes JSON");
    let schemes = doc
        .pointer_mut("/components/securitySchemes")
        .and_then(Value::as_object_mut);
    for scheme in schemes.into_iter().flat_map(|s| s.values_mut()) {
        let Some(flows) = scheme.get_mut("flows").and_then(Value::as_object_mut) else {
            continue;
        };
        for flow in flows.values_mut() {
            if let Some(url) = flow.get_mut("tokenUrl") {
                if let Some(path) = url.as_str().filter(|u| u.starts_with('/')) {
                    *url = Value::String(format!("{}{path}", base_url.trim_end_matches('/')));
                }
            }
        }
        if let Some(first) = flows.shift_remove("clientCredentials") {
            let rest = std::mem::take(flows);
            flows.insert("clientCredentials".into(), first);
            flows.extend(rest);
        }
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for operation in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in operation.values_mut().filter_map(Value::as_object_mut) {
                op.entry("security")
                    .or_insert_with(|| Value::Array(Vec::new()));
            }
        }
    }
    super::documented::document_shared(&mut doc);
    super::schema_rules::state(&mut doc);
    doc
}

/// Every path template the operations answer and the methods each takes,
/// upper-case: what the document lists, read from the operations' own
/// metadata, so that a server knows its routes without generating the
/// document.
pub fn operations() -> Vec<(String, Vec<String>)> {
    Apis::meta()
        .into_iter()
        .flat_map(|api| api.paths)
        .map(|path| {
            let methods = path
                .operations
                .iter()
                .map(|op| op.method.as_str().to_uppercase())
                .collect();
            (path.path, methods)
        })
        .collect()
}

pub fn to_json(doc: &Value) -> String {
    serde_json::to_string_pretty(doc).expect("a JSON value serialises")
}

pub fn to_yaml(doc: &Value) -> String {
    serde_yaml::to_string(doc).expect("a JSON value serialises as YAML")
}

/// The document a server serves, made when it is first asked for: many
/// servers are never asked, and making it touches code and memory that
/// would otherwise stay with the process from its start.
pub struct Spec {
    base_url: String,
    json: OnceLock<String>,
    yaml: OnceLock<String>,
}

impl Spec {
    pub fn new(base_url: String) -> Spec {
        Spec {
            base_url,
            json: OnceLock::new(),
            yaml: OnceLock::new(),
        }
    }

    pub fn json(&self) -> &str {
        self.json.get_or_init(|| json_at(&self.base_url))
    }

    pub fn yaml(&self) -> &str {
        self.yaml.get_or_init(|| yaml_at(&self.base_url))
    }
}

/// The spec as JSON for a server at `base_url`, as that server serves it.
pub fn json_at(base_url: &str) -> String {
    to_json(&document(base_url))
}

/// The spec as YAML for a server at `base_url`, as that server serves it.
pub fn yaml_at(base_url: &str) -> String {
    to_yaml(&document(base_url))
}

/// The spec as JSON, as committed in `openapi/openapi.json`.
pub fn json() -> String {
    json_at(DEFAULT_BASE_URL)
}

/// The spec as YAML, as committed in `openapi/openapi.yaml`.
pub fn yaml() -> String {
    yaml_at(DEFAULT_BASE_URL)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn the_operations_are_what_the_document_lists() {
        let doc = document(DEFAULT_BASE_URL);
        let listed: BTreeMap<String, Vec<String>> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(template, ops)| {
                let mut methods: Vec<String> = ops
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(|m| m.to_uppercase())
                    .collect();
                methods.sort();
                (template.clone(), methods)
            })
            .collect();
        let known: BTreeMap<String, Vec<String>> = operations()
            .into_iter()
            .map(|(template, mut methods)| {
                methods.sort();
                (template, methods)
            })
            .collect();
        assert_eq!(known, listed);
    }
}
