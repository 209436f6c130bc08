//! The one response body type the BFF's handlers return: a boxed stream of bytes, so a proxied
//! PostgREST body and a small JSON body the BFF writes itself travel the same way.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn json(value: &serde_json::Value) -> Body {
    full(serde_json::to_vec(value).expect("JSON values serialize"))
}
