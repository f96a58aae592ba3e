//! `GET /api/openapi.json`: the relay's HTTP API as an OpenAPI 3.1 document.
//!
//! The document is the hand-written `openapi.json` beside this file, built into the binary.
//! Every route of the relay must be in it: the end-to-end test `openapi` (tests/openapi.rs)
//! compares it with the `.route(...)` calls of the relay's source, validates it with
//! `openapi-spec-validator` and calls every operation on a running relay, checking that the
//! status is one the document lists. Change the document with the route.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

pub async fn document() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        DOCUMENT,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_json_of_openapi_3() {
        let v: serde_json::Value = serde_json::from_str(DOCUMENT).expect("openapi.json is JSON");
        assert!(
            v["openapi"].as_str().is_some_and(|s| s.starts_with("3.")),
            "{}",
            v["openapi"]
        );
        assert!(v["paths"]["/api/openapi.json"]["get"].is_object());
    }
}
