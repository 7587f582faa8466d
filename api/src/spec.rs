//! The OpenAPI document as served and committed, with what poem-openapi cannot say itself
//! written in, and the `Allow` header that 405 answers owe (RFC 9110), read off the same
//! document so it never disagrees with the routes.
//!
//! poem-openapi 5 has no way to declare `additionalProperties: false` for a body that
//! rejects unknown fields, nor `nullable` for an `Option` field that is sent as `null`;
//! without both, the spec would promise what the server refuses, or forbid what it sends.

use poem::http::{HeaderValue, StatusCode, header};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};
use serde_json::Value;

/// Request bodies declared `deny_unknown_fields`: the server answers 400 to extra fields.
const CLOSED_BODIES: &[&str] = &["NewPost", "NewLike", "NewComment"];
/// (schema, field) pairs always present, `null` when there is no value.
const NULLABLE_FIELDS: &[(&str, &str)] = &[
    ("Post", "event_id"),
    ("Like", "event_id"),
    ("Comment", "event_id"),
    ("LikersPage", "next_cursor"),
    ("CommentsPage", "next_cursor"),
];

/// Completes the document poem-openapi generated (see the module docs).
pub fn finish(generated: &str) -> String {
    let Ok(mut spec) = serde_json::from_str::<Value>(generated) else {
        return generated.to_owned();
    };
    let schemas = &mut spec["components"]["schemas"];
    for name in CLOSED_BODIES {
        if let Some(schema) = schemas.get_mut(*name).and_then(Value::as_object_mut) {
            schema.insert("additionalProperties".into(), Value::Bool(false));
            // An optional field may also be sent as null, which the server reads as absent.
            let required: Vec<Value> = schema
                .get("required")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
                for (field, property) in properties.iter_mut() {
                    if !required.iter().any(|r| r == field.as_str())
                        && let Some(property) = property.as_object_mut()
                    {
                        property.insert("nullable".into(), Value::Bool(true));
                    }
                }
            }
        }
    }
    for (name, field) in NULLABLE_FIELDS {
        if let Some(property) = schemas
            .get_mut(*name)
            .and_then(|schema| schema.get_mut("properties"))
            .and_then(|properties| properties.get_mut(*field))
            .and_then(Value::as_object_mut)
        {
            property.insert("nullable".into(), Value::Bool(true));
        }
        if let Some(required) = schemas
            .get_mut(*name)
            .and_then(|schema| schema.as_object_mut())
            .map(|schema| {
                schema
                    .entry("required")
                    .or_insert_with(|| Value::Array(Vec::new()))
            })
            .and_then(Value::as_array_mut)
            && !required.iter().any(|f| f == field)
        {
            required.push(Value::String((*field).to_owned()));
        }
    }
    serde_json::to_string_pretty(&spec).unwrap_or_else(|_| generated.to_owned())
}

/// Every path template of the document with the methods it serves.
#[derive(Debug, Clone, Default)]
pub struct AllowedMethods {
    routes: Vec<(Vec<String>, String)>,
}

impl AllowedMethods {
    pub fn from_spec(spec: &str) -> Self {
        let spec: Value = serde_json::from_str(spec).unwrap_or_default();
        let mut routes = Vec::new();
        if let Some(paths) = spec["paths"].as_object() {
            for (path, operations) in paths {
                let mut methods: Vec<String> = operations
                    .as_object()
                    .map(|ops| ops.keys().map(|m| m.to_ascii_uppercase()).collect())
                    .unwrap_or_default();
                if methods.iter().any(|m| m == "GET") {
                    methods.push("HEAD".into());
                }
                methods.sort();
                routes.push((segments(path), methods.join(", ")));
            }
        }
        routes.push((segments("/openapi.json"), "GET, HEAD".into()));
        Self { routes }
    }

    /// The methods served at `path`, when a route matches it.
    fn for_path(&self, path: &str) -> Option<&str> {
        let wanted = segments(path);
        self.routes
            .iter()
            .find(|(template, _)| {
                template.len() == wanted.len()
                    && template
                        .iter()
                        .zip(&wanted)
                        .all(|(t, w)| t == w || (t.starts_with('{') && t.ends_with('}')))
            })
            .map(|(_, methods)| methods.as_str())
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl<E: Endpoint> Middleware<E> for AllowedMethods {
    type Output = AllowHeaderEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        AllowHeaderEndpoint {
            inner,
            allowed: self.clone(),
        }
    }
}

/// Adds `Allow` to 405 answers.
#[derive(Debug)]
pub struct AllowHeaderEndpoint<E> {
    inner: E,
    allowed: AllowedMethods,
}

impl<E: Endpoint> Endpoint for AllowHeaderEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        // A Uri clone shares its bytes: no copy of the path on the hot path.
        let uri = req.uri().clone();
        let mut response = match self.inner.call(req).await {
            Ok(output) => output.into_response(),
            Err(err) => err.into_response(),
        };
        if response.status() == StatusCode::METHOD_NOT_ALLOWED
            && let Some(methods) = self.allowed.for_path(uri.path())
            && let Ok(value) = HeaderValue::from_str(methods)
        {
            response.headers_mut().insert(header::ALLOW, value);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_concrete_paths_and_nothing_else() {
        let allowed = AllowedMethods::from_spec(
            r#"{"paths":{"/v1/likes/{post_id}":{"delete":{}},"/v1/posts":{"post":{},"get":{}}}}"#,
        );
        assert_eq!(allowed.for_path("/v1/likes/abc"), Some("DELETE"));
        assert_eq!(allowed.for_path("/v1/posts"), Some("GET, HEAD, POST"));
        assert_eq!(allowed.for_path("/v1/nope"), None);
    }

    /// What the spec owes its readers: every operation an id, a tag, a summary and a
    /// description; every parameter, response, schema and field a description; every
    /// parameter and schema an example.
    #[test]
    fn every_operation_field_and_parameter_is_documented_with_examples() {
        let spec: Value = serde_json::from_str(&crate::spec_json()).unwrap_or_default();
        let mut missing = Vec::new();
        for (path, operations) in spec["paths"].as_object().into_iter().flatten() {
            for (method, op) in operations.as_object().into_iter().flatten() {
                let at = format!("{method} {path}");
                for key in ["operationId", "summary", "description", "tags"] {
                    if op.get(key).is_none() {
                        missing.push(format!("{at}: {key}"));
                    }
                }
                for param in op["parameters"].as_array().into_iter().flatten() {
                    let name = &param["name"];
                    if param.get("description").is_none() {
                        missing.push(format!("{at}: description of {name}"));
                    }
                    if param["schema"].get("example").is_none() {
                        missing.push(format!("{at}: example of {name}"));
                    }
                }
                for (status, response) in op["responses"].as_object().into_iter().flatten() {
                    if response.get("description").is_none() {
                        missing.push(format!("{at}: description of {status}"));
                    }
                }
            }
        }
        for (name, schema) in spec["components"]["schemas"]
            .as_object()
            .into_iter()
            .flatten()
        {
            for key in ["description", "example"] {
                if schema.get(key).is_none() {
                    missing.push(format!("schema {name}: {key}"));
                }
            }
            for (field, property) in schema["properties"].as_object().into_iter().flatten() {
                if property.get("description").is_none() {
                    missing.push(format!("schema {name}: description of {field}"));
                }
            }
        }
        assert!(missing.is_empty(), "undocumented: {missing:#?}");
    }

    #[test]
    fn closed_bodies_and_nullable_fields_are_declared() {
        let spec = finish(
            r#"{"components":{"schemas":{"NewLike":{"type":"object"},
                "Like":{"type":"object","required":["post_id"],
                        "properties":{"event_id":{"type":"string"}}}}}}"#,
        );
        let spec: Value = serde_json::from_str(&spec).unwrap_or_default();
        let schemas = &spec["components"]["schemas"];
        assert_eq!(schemas["NewLike"]["additionalProperties"], false);
        assert_eq!(schemas["Like"]["properties"]["event_id"]["nullable"], true);
        assert_eq!(schemas["Like"]["required"][1], "event_id");
    }
}
