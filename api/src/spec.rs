//! The OpenAPI document as served and committed, with what poem-openapi cannot say itself
//! written in, and the `Allow` header that 405 answers owe (RFC 9110), read off the same
//! document so it never disagrees with the routes.
//!
//! poem-openapi 5 has no way to declare `additionalProperties: false` for a body that
//! rejects unknown fields, nor `nullable` for an `Option` field that is sent as `null`;
//! without both, the spec would promise what the server refuses, or forbid what it sends.
//! Nor can it declare response `links`, which tell clients (and schemathesis's stateful
//! phase) which operations take the id a response hands out, nor the 408 a middleware
//! answers before an operation runs.

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

/// Where a link puts the id it carries on.
#[derive(Debug, Clone, Copy)]
enum LinkTo {
    /// A path parameter of that name.
    Parameter(&'static str),
    /// A field of that name in the request body.
    BodyField(&'static str),
}

/// A response link: the 200 and 201 answers of `from` hand out, at `value` (a runtime
/// expression), the id that operation `to` takes at `at`.
#[derive(Debug, Clone, Copy)]
struct Link {
    from: &'static str,
    name: &'static str,
    to: &'static str,
    at: LinkTo,
    value: &'static str,
    description: &'static str,
}

const POST_ID: &str = "$response.body#/id";
const LIKED_POST_ID: &str = "$response.body#/post_id";

const LINKS: &[Link] = &[
    Link {
        from: "createPost",
        name: "GetPost",
        to: "getPost",
        at: LinkTo::Parameter("post_id"),
        value: POST_ID,
        description: "Read the post, with its counts.",
    },
    Link {
        from: "createPost",
        name: "LikePost",
        to: "likePost",
        at: LinkTo::BodyField("post_id"),
        value: POST_ID,
        description: "Like the post.",
    },
    Link {
        from: "createPost",
        name: "UnlikePost",
        to: "unlikePost",
        at: LinkTo::Parameter("post_id"),
        value: POST_ID,
        description: "Take back a like of the post.",
    },
    Link {
        from: "createPost",
        name: "ToggleLike",
        to: "toggleLike",
        at: LinkTo::Parameter("post_id"),
        value: POST_ID,
        description: "Flip the caller's like of the post.",
    },
    Link {
        from: "createPost",
        name: "ListLikers",
        to: "listLikers",
        at: LinkTo::Parameter("post_id"),
        value: POST_ID,
        description: "Who liked the post.",
    },
    Link {
        from: "createPost",
        name: "AddComment",
        to: "addComment",
        at: LinkTo::Parameter("post_id"),
        value: POST_ID,
        description: "Comment on the post.",
    },
    Link {
        from: "createPost",
        name: "ListComments",
        to: "listComments",
        at: LinkTo::Parameter("post_id"),
        value: POST_ID,
        description: "The post's comments.",
    },
    Link {
        from: "createPost",
        name: "DeletePost",
        to: "deletePost",
        at: LinkTo::Parameter("post_id"),
        value: POST_ID,
        description: "Delete the post (its author only).",
    },
    Link {
        from: "likePost",
        name: "GetPost",
        to: "getPost",
        at: LinkTo::Parameter("post_id"),
        value: LIKED_POST_ID,
        description: "Read the liked post.",
    },
    Link {
        from: "likePost",
        name: "UnlikePost",
        to: "unlikePost",
        at: LinkTo::Parameter("post_id"),
        value: LIKED_POST_ID,
        description: "Take the like back.",
    },
    Link {
        from: "addComment",
        name: "DeleteComment",
        to: "deleteComment",
        at: LinkTo::Parameter("comment_id"),
        value: POST_ID,
        description: "Delete the comment (its author or the post's).",
    },
];

/// Writes [`LINKS`] into the 200 and 201 responses of their operations.
fn add_links(spec: &mut Value) {
    let Some(paths) = spec["paths"].as_object_mut() else {
        return;
    };
    for operation in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|ops| ops.values_mut())
    {
        let Some(id) = operation["operationId"].as_str().map(str::to_owned) else {
            continue;
        };
        for link in LINKS.iter().filter(|link| link.from == id) {
            let mut target = serde_json::json!({
                "operationId": link.to,
                "description": link.description,
            });
            match link.at {
                LinkTo::Parameter(name) => {
                    target["parameters"] = serde_json::json!({ name: link.value })
                }
                LinkTo::BodyField(name) => {
                    target["requestBody"] = serde_json::json!({ name: link.value })
                }
            }
            for status in ["200", "201"] {
                if let Some(response) = operation["responses"]
                    .get_mut(status)
                    .and_then(Value::as_object_mut)
                {
                    let links = response
                        .entry("links")
                        .or_insert_with(|| serde_json::json!({}));
                    links[link.name] = target.clone();
                }
            }
        }
    }
}

/// Declares the 408 of every operation that takes a body: a body not in full by the request's
/// deadline is answered before the operation runs (see `body_limit`).
fn add_request_timeouts(spec: &mut Value) {
    let Some(paths) = spec["paths"].as_object_mut() else {
        return;
    };
    let timeout = serde_json::json!({
        "description": "The request was not received in full within \
            `TALLY_HTTP_READ_TIMEOUT_SECS` of its start; the connection is closed after it.",
        "content": {
            "application/problem+json": {
                "schema": { "$ref": "#/components/schemas/Problem" }
            }
        }
    });
    for operation in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|ops| ops.values_mut())
        .filter(|op| op.get("requestBody").is_some())
    {
        if let Some(responses) = operation["responses"].as_object_mut() {
            responses.insert("408".into(), timeout.clone());
        }
    }
}

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
    add_links(&mut spec);
    add_request_timeouts(&mut spec);
    // poem-openapi declares an event stream as an array of its data; say what each event is.
    if let Some(stream) =
        spec.pointer_mut("/paths/~1v1~1live/get/responses/200/content/text~1event-stream")
    {
        stream["schema"] = crate::live::events::stream_schema();
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

    /// Every link leads from an operation to one that takes the id where the link puts it,
    /// and each lands on both of its operation's success answers.
    #[test]
    fn every_link_names_real_operations_and_the_parameter_or_field_they_take() {
        let spec: Value = serde_json::from_str(&crate::spec_json()).unwrap_or_default();
        let operations: Vec<&Value> = spec["paths"]
            .as_object()
            .into_iter()
            .flat_map(|paths| paths.values())
            .filter_map(Value::as_object)
            .flat_map(|ops| ops.values())
            .collect();
        let by_id = |id: &str| {
            operations
                .iter()
                .find(|op| op["operationId"] == id)
                .copied()
                .unwrap_or_else(|| panic!("no operation {id}"))
        };
        for link in LINKS {
            let from = by_id(link.from);
            for status in ["200", "201"] {
                assert_eq!(
                    from["responses"][status]["links"][link.name]["operationId"], link.to,
                    "{} {status} lacks the link {}",
                    link.from, link.name
                );
            }
            let to = by_id(link.to);
            match link.at {
                LinkTo::Parameter(name) => assert!(
                    to["parameters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|p| p["name"] == name && p["in"] == "path"),
                    "{} has no path parameter {name}",
                    link.to
                ),
                LinkTo::BodyField(name) => {
                    let schema = to["requestBody"]["content"]
                        .as_object()
                        .and_then(|content| content.values().next())
                        .and_then(|media| media["schema"]["$ref"].as_str())
                        .and_then(|r| r.rsplit('/').next())
                        .unwrap_or_else(|| panic!("{} takes no JSON body", link.to));
                    assert!(
                        spec["components"]["schemas"][schema]["properties"]
                            .get(name)
                            .is_some(),
                        "{schema} has no field {name}"
                    );
                }
            }
        }
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
