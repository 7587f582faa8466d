//! What a request that poem or poem-openapi refused before any handler ran did wrong, said in
//! the caller's terms: which parameter or body field, and what it must be.
//!
//! poem-openapi's own messages name its internal types and validators (`failed to parse
//! "string_uuid" … (occurred while parsing "optional_string_uuid")`, `pattern("^[^\x00]*…")`,
//! path parameters as `param0`). Its errors keep the parameter's name, and a body error keeps
//! the chain of types it passed through, which is enough to find the field: every field of a
//! body has a type of its own there. The texts below say what each parameter and field must
//! be; a test holds them to the spec, so a new parameter or field without one fails it.

use poem_openapi::error::{
    ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError,
};

/// A parameter's rule: (name, where it goes, what it must be).
const PARAMETERS: &[(&str, &str, &str)] = &[
    (
        "ids",
        "query",
        "1 to 100 post ids (UUIDs), comma-separated: ids=a,b,c",
    ),
    (
        "after_event",
        "query",
        "an event id (a UUID), as a write's answer gave it",
    ),
    ("limit", "query", "a whole number from 1 to 100"),
    (
        "cursor",
        "query",
        "the `next_cursor` of a page of this same list; omit it for the first page",
    ),
    (
        "Last-Event-ID",
        "header",
        "the `id` of the last event received, as an EventSource sends it",
    ),
    (
        "traceparent",
        "header",
        "a W3C trace context (00-<32 hex digits>-<16 hex digits>-<2 hex digits>)",
    ),
    (
        "If-None-Match",
        "header",
        "entity tags (\"…\", comma-separated) from earlier answers' `ETag`, or *",
    ),
];

/// A JSON body field's rule.
#[derive(Debug, Clone, Copy)]
struct Field {
    /// The body's schema, as the spec names it.
    body: &'static str,
    name: &'static str,
    required: bool,
    /// poem-openapi's name for the field's type (`string_uuid`), as its errors say it.
    ty: &'static str,
    must: &'static str,
}

const FIELDS: &[Field] = &[
    Field {
        body: "NewPost",
        name: "id",
        required: false,
        ty: "string_uuid",
        must: "a UUID (omit it and the server picks one)",
    },
    Field {
        body: "NewLike",
        name: "post_id",
        required: true,
        ty: "string_uuid",
        must: "the id of the post to like, a UUID",
    },
    Field {
        body: "NewLike",
        name: "user_id",
        required: false,
        ty: "string",
        must: "a string of 1 to 128 characters, the caller's own user id",
    },
    Field {
        body: "NewComment",
        name: "id",
        required: false,
        ty: "string_uuid",
        must: "a UUID (omit it and the server picks one)",
    },
    Field {
        body: "NewComment",
        name: "body",
        required: true,
        ty: "string",
        must: "a string of 1 to 2000 characters that is not blank",
    },
];

/// The detail of a problem for `err`, an error poem or poem-openapi raised.
pub fn detail(err: &poem::Error) -> String {
    if let Some(err) = err.downcast_ref::<ParseParamError>() {
        return parameter(err.name);
    }
    if err.is::<ParsePathError>() {
        // Every path of this api has one parameter, an id (a test holds the spec to that).
        return "the id in the path must be a UUID, such as 0193c3a4-7f1e-7cc0-8d3a-1a2b3c4d5e6f"
            .to_owned();
    }
    if let Some(err) = err.downcast_ref::<ParseRequestPayloadError>() {
        return body(&err.reason);
    }
    if let Some(err) = err.downcast_ref::<ContentTypeError>() {
        return match err {
            ContentTypeError::NotSupported { content_type } => format!(
                "the body must be sent as `application/json`, not `{}`",
                content_type.escape_default()
            ),
            ContentTypeError::ExpectContentType => {
                "the request has no `Content-Type`: send the body as `application/json`".to_owned()
            }
        };
    }
    if err.is::<poem::error::NotFoundError>() {
        return "there is nothing at this path; the api's paths are listed in /openapi.json"
            .to_owned();
    }
    if err.is::<poem::error::MethodNotAllowedError>() {
        return "this path does not take this method; the `Allow` header lists those it does"
            .to_owned();
    }
    err.to_string()
}

fn parameter(name: &str) -> String {
    match PARAMETERS.iter().find(|(n, _, _)| *n == name) {
        Some((name, "header", must)) => format!("the header `{name}` must be {must}"),
        Some((name, _, must)) => format!("the query parameter `{name}` must be {must}"),
        None => format!("the parameter `{name}` is not valid; the spec says what it takes"),
    }
}

/// A parse message split into the type it is about, the message, and the types it was
/// propagated through (innermost first, the body's own schema last).
struct Parsed<'a> {
    types: Vec<&'a str>,
    message: &'a str,
}

fn parse(reason: &str) -> Option<Parsed<'_>> {
    let (first, rest) = ["failed to parse \"", "Expected input type \"", "Type \""]
        .iter()
        .find_map(|prefix| reason.strip_prefix(prefix))?
        .split_once('"')?;
    let mut message = rest;
    let mut outer = Vec::new();
    while let Some(head) = message.strip_suffix("\")") {
        let Some((head, ty)) = head.rsplit_once(" (occurred while parsing \"") else {
            break;
        };
        outer.push(ty);
        message = head;
    }
    let mut types = vec![first];
    types.extend(outer.into_iter().rev());
    Some(Parsed { types, message })
}

fn body(reason: &str) -> String {
    let Some(parsed) = parse(reason) else {
        // Not one of poem-openapi's messages: serde_json's, about the JSON text itself.
        return format!("the body is not valid JSON: {reason}");
    };
    let schema = parsed.types.last().copied().unwrap_or_default();
    let fields: Vec<&Field> = FIELDS.iter().filter(|f| f.body == schema).collect();
    if fields.is_empty() {
        return format!("the body does not match the `{schema}` schema of the spec");
    }
    let named = match parsed.types.len() {
        // About the body itself: an unknown field, a field's validator, or not an object.
        1 => {
            if let Some(unknown) = between(parsed.message, ": unknown field `", "`") {
                return format!(
                    "the body has a field `{}` that {schema} does not take; it takes {}",
                    unknown.escape_default(),
                    names(&fields)
                );
            }
            between(parsed.message, ": field `", "`")
                .and_then(|name| fields.iter().find(|f| f.name == name))
        }
        // About the value of the field whose type is the one just inside the body's.
        n => {
            let ty = parsed.types[n - 2];
            let ty = ty.strip_prefix("optional_").unwrap_or(ty);
            let mut of_type = fields.iter().filter(|f| f.ty == ty);
            match (of_type.next(), of_type.next()) {
                (Some(field), None) => Some(field),
                _ => None,
            }
        }
    };
    match named {
        Some(field) => format!("the body's `{}` must be {}", field.name, field.must),
        None => format!("the body must be a JSON object: {}", shape(&fields)),
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

fn names(fields: &[&Field]) -> String {
    let names: Vec<String> = fields.iter().map(|f| format!("`{}`", f.name)).collect();
    names.join(" and ")
}

fn shape(fields: &[&Field]) -> String {
    let rules: Vec<String> = fields
        .iter()
        .map(|f| {
            let optional = if f.required { "" } else { " (optional)" };
            format!("`{}`{optional} must be {}", f.name, f.must)
        })
        .collect();
    rules.join("; ")
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn spec() -> Value {
        serde_json::from_str(&crate::spec_json()).expect("the spec is JSON")
    }

    fn operations(spec: &Value) -> Vec<(String, &Value)> {
        let mut operations = Vec::new();
        for (path, ops) in spec["paths"].as_object().into_iter().flatten() {
            for op in ops.as_object().into_iter().flatten().map(|(_, op)| op) {
                operations.push((path.clone(), op));
            }
        }
        operations
    }

    #[test]
    fn every_query_and_header_parameter_has_a_rule_and_every_path_one_id() {
        let spec = spec();
        for (path, op) in operations(&spec) {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let in_path: Vec<&Value> = params.iter().filter(|p| p["in"] == "path").collect();
            assert!(in_path.len() <= 1, "{path} has several path parameters");
            for param in in_path {
                assert_eq!(param["schema"]["format"], "uuid", "{path}");
            }
            for param in params.iter().filter(|p| p["in"] != "path") {
                let name = param["name"].as_str().unwrap_or_default();
                assert!(
                    PARAMETERS
                        .iter()
                        .any(|(n, at, _)| *n == name && param["in"] == *at),
                    "{path}: no rule for the {} parameter `{name}`",
                    param["in"]
                );
            }
        }
    }

    #[test]
    fn every_body_field_has_a_rule_and_a_type_of_its_own() {
        let spec = spec();
        for (path, op) in operations(&spec) {
            let Some(schema) = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .and_then(|r| r.rsplit('/').next())
            else {
                continue;
            };
            let body = &spec["components"]["schemas"][schema];
            let required = body["required"].as_array().cloned().unwrap_or_default();
            let mut types = Vec::new();
            for (name, property) in body["properties"].as_object().into_iter().flatten() {
                let field = FIELDS
                    .iter()
                    .find(|f| f.body == schema && f.name == name)
                    .unwrap_or_else(|| panic!("{path}: no rule for {schema}.{name}"));
                let ty = match property["format"].as_str() {
                    Some(format) => format!("{}_{format}", property["type"].as_str().unwrap_or("")),
                    None => property["type"].as_str().unwrap_or("").to_owned(),
                };
                assert_eq!(field.ty, ty, "{schema}.{name}");
                assert_eq!(field.required, required.iter().any(|r| r == name.as_str()));
                assert!(!types.contains(&ty), "{schema} has two fields of type {ty}");
                types.push(ty);
            }
        }
    }

    #[test]
    fn poem_openapi_messages_become_rules_of_the_field() {
        for (reason, detail) in [
            (
                r#"failed to parse "string_uuid": invalid character: found `x` at 0 (occurred while parsing "NewLike")"#,
                "the body's `post_id` must be the id of the post to like, a UUID",
            ),
            (
                r#"failed to parse "string_uuid": invalid character: found `n` at 0 (occurred while parsing "optional_string_uuid") (occurred while parsing "NewPost")"#,
                "the body's `id` must be a UUID (omit it and the server picks one)",
            ),
            (
                r#"Expected input type "string", found 7. (occurred while parsing "optional_string") (occurred while parsing "NewLike")"#,
                "the body's `user_id` must be a string of 1 to 128 characters, the caller's own user id",
            ),
            (
                r#"failed to parse "NewComment": field `body` verification failed. pattern("^[^\x00]*$")"#,
                "the body's `body` must be a string of 1 to 2000 characters that is not blank",
            ),
            (
                r#"failed to parse "NewLike": unknown field `author_id`."#,
                "the body has a field `author_id` that NewLike does not take; it takes `post_id` and `user_id`",
            ),
            (
                r#"Expected input type "NewPost", found []."#,
                "the body must be a JSON object: `id` (optional) must be a UUID (omit it and the server picks one)",
            ),
            (
                "EOF while parsing an object at line 1 column 1",
                "the body is not valid JSON: EOF while parsing an object at line 1 column 1",
            ),
        ] {
            assert_eq!(body(reason), detail, "{reason}");
        }
    }
}
