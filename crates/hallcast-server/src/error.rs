//! One error type for every handler: a status and a message meant for the client.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hallcast_rtc::EngineError;

/// An HTTP error with a readable message. Logged once, when turned into a response.
#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub message: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl AppError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        AppError {
            status,
            message: message.into(),
            headers: vec![],
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl From<EngineError> for AppError {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::BadSdp(_) | EngineError::BadAnswer(_) => StatusCode::BAD_REQUEST,
            EngineError::NotOffering => StatusCode::CONFLICT,
            EngineError::NoSupportedCodec | EngineError::CodecMismatch(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            EngineError::NotLive => {
                return AppError::new(StatusCode::CONFLICT, e.to_string())
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("2"));
            }
            EngineError::AlreadyLive => StatusCode::CONFLICT,
            EngineError::UnknownSession => StatusCode::NOT_FOUND,
            EngineError::Stopped => StatusCode::INTERNAL_SERVER_ERROR,
        };
        AppError::new(status, e.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, "{}", self.message);
        } else {
            tracing::debug!(status = %self.status, "{}", self.message);
        }
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.message),
        )
            .into_response();
        for (k, v) in self.headers {
            r.headers_mut().insert(k, v);
        }
        r
    }
}
