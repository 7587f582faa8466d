//! A JSON answer serialized before it is returned, so the handler can derive its `ETag`
//! from the exact bytes sent and answer `If-None-Match` without serializing twice. In the
//! spec it is the same as `Json<T>`: `application/json` with `T`'s schema.

use std::marker::PhantomData;

use bytes::Bytes;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ToJSON, Type};

/// `T` as JSON bytes.
pub struct JsonBytes<T> {
    bytes: Bytes,
    kind: PhantomData<fn() -> T>,
}

impl<T: ToJSON> JsonBytes<T> {
    pub fn new(value: &T) -> Self {
        Self::from_bytes(Bytes::from(value.to_json_string()))
    }
}

impl<T> JsonBytes<T> {
    /// Bytes already known to be `T` as JSON.
    pub fn from_bytes(bytes: Bytes) -> Self {
        Self {
            bytes,
            kind: PhantomData,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl<T> std::fmt::Debug for JsonBytes<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonBytes")
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// As `Json<T>` says it.
const CONTENT_TYPE: &str = "application/json; charset=utf-8";

impl<T: Type> Payload for JsonBytes<T> {
    const CONTENT_TYPE: &'static str = CONTENT_TYPE;

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Send> IntoResponse for JsonBytes<T> {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type(CONTENT_TYPE)
            .body(self.bytes)
    }
}
