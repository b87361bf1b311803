//! The rules the server enforces on what clients send, stated in the
//! document's schemas so that generated clients and fuzzers learn them.
//!
//! The handlers check these fields themselves (in `domain/`), so that a field
//! breaking a rule is answered `422` with `errors` naming it; poem-openapi's
//! `validator` attributes would state the rules too, but would have poem
//! refuse the request itself, with a `400` and a body of its own. So the
//! generated schemas are finished here instead, from the same constants the
//! rules use.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::domain::{
    keys::{KEY_LEN, PREFIX},
    new_key::NAME_MAX,
    pages::{CURSOR_PATTERN, LIMIT_MAX},
    scopes::Scope,
    todos::TITLE_MAX,
    users::{EMAIL_MAX, PASSWORD_MAX, PASSWORD_MIN},
};

/// The characters `domain::todos::has_control` refuses (Unicode `Cc`), as
/// the body of a regular expression class.
const CONTROL: &str = r"\u0000-\u001F\u007F-\u009F";

/// The characters `str::trim` removes (Unicode `White_Space`), spelt out:
/// `\s` means slightly different sets in ECMA-262, Python and Rust.
const WHITESPACE: &str =
    r"\u0009-\u000D\u0020\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// Text of 1 to `max` characters once surrounding whitespace is trimmed,
/// with no control character inside. The length is in the pattern, not in
/// `maxLength`, because the whitespace around the text does not count.
fn trimmed_text(max: usize) -> Value {
    let (ws, cc) = (WHITESPACE, CONTROL);
    json!({
        "minLength": 1,
        "pattern": format!(
            "^[{ws}]*[^{ws}{cc}](?:[^{cc}]{{0,{inner}}}[^{ws}{cc}])?[{ws}]*$",
            inner = max - 2
        ),
    })
}

fn new_password() -> Value {
    // Not only whitespace: at least one character that is not.
    json!({
        "minLength": PASSWORD_MIN,
        "maxLength": PASSWORD_MAX,
        "pattern": format!("[^{WHITESPACE}]"),
    })
}

fn scope_names() -> Vec<&'static str> {
    Scope::ALL.iter().map(|s| s.as_str()).collect()
}

fn scope_list() -> Value {
    json!({ "items": { "enum": scope_names() } })
}

/// RFC 6749 §3.3: scopes separated by spaces.
fn scope_string() -> Value {
    json!({ "pattern": format!("^ *(?:(?:{}) *)*$", scope_names().join("|")) })
}

fn cursor() -> Value {
    json!({ "pattern": CURSOR_PATTERN })
}

fn api_key() -> Value {
    let body = KEY_LEN - PREFIX.len();
    json!({ "pattern": format!("^{PREFIX}[0-9A-Za-z]{{{body}}}$") })
}

/// Each rule: the schema, its property, and what to add to the property.
fn rules() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "NewUser",
            "email",
            json!({ "format": "email", "maxLength": EMAIL_MAX }),
        ),
        ("NewUser", "password", new_password()),
        ("PasswordChange", "new_password", new_password()),
        ("NewTodo", "title", trimmed_text(TITLE_MAX)),
        ("TodoPatch", "title", trimmed_text(TITLE_MAX)),
        ("NewKey", "name", trimmed_text(NAME_MAX)),
        (
            "NewKey",
            "scopes",
            json!({ "minItems": 1, "items": { "enum": scope_names() } }),
        ),
        (
            "TokenRequest",
            "grant_type",
            json!({ "enum": ["client_credentials", "password"] }),
        ),
        ("TokenRequest", "client_secret", api_key()),
        ("TokenRequest", "username", json!({ "format": "email" })),
        ("TokenRequest", "scope", scope_string()),
        ("IntrospectionRequest", "client_secret", api_key()),
        ("IntrospectionRequest", "token", json!({ "minLength": 1 })),
        ("RevocationRequest", "token", json!({ "minLength": 1 })),
        // What the server answers.
        ("Key", "scopes", scope_list()),
        ("CreatedKey", "scopes", scope_list()),
        ("CreatedKey", "key", api_key()),
        ("Me", "scopes", scope_list()),
        ("Introspection", "scope", scope_string()),
        ("TodoPage", "next_cursor", cursor()),
        ("UserPage", "next_cursor", cursor()),
        ("KeyPage", "next_cursor", cursor()),
        ("AccessToken", "scope", scope_string()),
    ]
}

/// The schemas whose properties the server requires although their Rust
/// fields are optional (it answers their absence with its own error).
const REQUIRED: [(&str, &str); 2] = [
    ("RevocationRequest", "token"),
    ("IntrospectionRequest", "token"),
];

/// States the rules in `doc`. A rule whose schema or property the document
/// lacks is a bug (a renamed type or field): it panics, and so fails the
/// tests, rather than leave a rule unstated.
pub fn state(doc: &mut Value) {
    let requests = request_schemas(doc);
    let schemas = &mut doc["components"]["schemas"];
    for (schema, property, rule) in rules() {
        let target = schemas
            .pointer_mut(&format!("/{schema}/properties/{property}"))
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("the spec has no {schema}.{property} to state a rule on"));
        for (keyword, value) in rule.as_object().into_iter().flatten() {
            match (target.get_mut(keyword), value) {
                (Some(Value::Object(inner)), Value::Object(more)) => {
                    inner.extend(more.clone());
                }
                _ => {
                    target.insert(keyword.clone(), value.clone());
                }
            }
        }
    }
    for (schema, property) in REQUIRED {
        let required = schemas
            .get_mut(schema)
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("the spec has no {schema}"))
            .entry("required")
            .or_insert_with(|| json!([]));
        if let Some(list) = required.as_array_mut() {
            list.push(json!(property));
        }
    }
    for name in &requests {
        if let Some(schema) = schemas.get_mut(name) {
            optional_may_be_null(schema);
        }
    }
    nullable_references_state_their_type(schemas);
    state_page_parameters(doc);
}

/// The schemas a request body is made of.
fn request_schemas(doc: &Value) -> BTreeSet<String> {
    let bodies = doc["paths"]
        .as_object()
        .into_iter()
        .flat_map(|paths| paths.values())
        .filter_map(Value::as_object)
        .flat_map(|ops| ops.values())
        .filter_map(|op| op["requestBody"]["content"].as_object())
        .flat_map(|content| content.values());
    bodies
        .filter_map(|media| media["schema"]["$ref"].as_str())
        .filter_map(|r| r.strip_prefix("#/components/schemas/"))
        .map(str::to_owned)
        .collect()
}

/// poem reads a JSON `null` in an optional field as the field left out, and
/// so does every field parser in `fields`: say so, or clients and fuzzers
/// take `null` for a mistake the server should refuse.
fn optional_may_be_null(schema: &mut Value) {
    let required: BTreeSet<String> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    let properties = schema["properties"].as_object_mut().into_iter().flatten();
    for (_, property) in properties.filter(|(name, _)| !required.contains(*name)) {
        let Some(fields) = property.as_object_mut() else {
            continue;
        };
        // OpenAPI 3.0 ignores whatever stands beside a `$ref`.
        if let Some(reference) = fields.remove("$ref") {
            fields.insert("allOf".into(), json!([{ "$ref": reference }]));
        }
        fields.insert("nullable".into(), json!(true));
    }
}

/// OpenAPI 3.0 reads `nullable` only beside a `type`, so a nullable property
/// that is a reference (`allOf: [{$ref}]`, as poem-openapi and
/// `optional_may_be_null` write it) states the referenced schema's type, and
/// loses the bare `{nullable: true}` item poem-openapi adds to its `allOf`.
fn nullable_references_state_their_type(schemas: &mut Value) {
    let types: Vec<(String, Value)> = schemas
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, schema)| Some((name.clone(), schema.get("type")?.clone())))
        .collect();
    let properties = schemas
        .as_object_mut()
        .into_iter()
        .flat_map(|schemas| schemas.values_mut())
        .filter_map(|schema| schema.get_mut("properties")?.as_object_mut())
        .flat_map(|properties| properties.values_mut())
        .filter_map(Value::as_object_mut)
        .filter(|p| p.get("nullable") == Some(&json!(true)) && !p.contains_key("type"));
    for property in properties {
        let Some(all_of) = property.get_mut("allOf").and_then(Value::as_array_mut) else {
            continue;
        };
        all_of.retain(|item| item != &json!({ "nullable": true }));
        let kind = all_of
            .iter()
            .filter_map(|item| item["$ref"].as_str())
            .filter_map(|r| r.strip_prefix("#/components/schemas/"))
            .find_map(|name| types.iter().find(|(n, _)| n == name))
            .map(|(_, kind)| kind.clone());
        if let Some(kind) = kind {
            property.insert("type".into(), kind);
        }
    }
}

/// Every list takes its page as `limit`, 1 to 100 (its default, which differs
/// between lists, is the handler's own), and `cursor`, a `next_cursor` it gave
/// out.
fn state_page_parameters(doc: &mut Value) {
    let operations = doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|ops| ops.values_mut());
    for op in operations {
        let parameters = op
            .get_mut("parameters")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query");
        for parameter in parameters {
            let rule = match parameter["name"].as_str() {
                Some("limit") => json!({ "minimum": 1, "maximum": LIMIT_MAX }),
                Some("cursor") => cursor(),
                _ => continue,
            };
            if let (Some(schema), Some(rule)) =
                (parameter["schema"].as_object_mut(), rule.as_object())
            {
                schema.extend(rule.clone());
            }
        }
    }
}
