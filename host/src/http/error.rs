//! The one error type of the HTTP surface: every refusal is `{"error": "<message>", "code":
//! "<code>"}` with its status. The message is for people (and may change wording); the `code`
//! is for programs and is fixed by the status (see [`ErrorCode`]). Messages never carry secrets:
//! handlers log the details of internal failures and answer with a fixed sentence.

use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// What kind of refusal an [`ApiError`] is: the `code` of its body, one per status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request cannot be read (malformed JSON, query or id).
    BadRequest,
    /// 401: a missing or wrong token, key or signature.
    Unauthorized,
    /// 404: no such thing (integration, connector, version, event, key, route).
    NotFound,
    /// 409: the request contradicts the current state (exists, not that kind, replay).
    Conflict,
    /// 413: the body is over the configured limit.
    TooLarge,
    /// 422: well-formed but refused by validation; nothing was changed.
    Invalid,
    /// 500: the host or the connector failed.
    Internal,
    /// 502: a connector or upstream service the request depends on failed.
    BadGateway,
    /// 503: temporarily unable (storage, draining, not ready, disabled, busy); retry later.
    Unavailable,
}

impl ErrorCode {
    /// The code of `status` (other 4xx count as `bad_request`, other 5xx as `internal`).
    pub fn of(status: StatusCode) -> ErrorCode {
        match status {
            StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::CONFLICT => ErrorCode::Conflict,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
            StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::Invalid,
            StatusCode::BAD_GATEWAY => ErrorCode::BadGateway,
            StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
            s if s.is_server_error() => ErrorCode::Internal,
            _ => ErrorCode::BadRequest,
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// What went wrong, for programs.
    pub code: ErrorCode,
}

/// An HTTP error: a status and a message safe to show to the caller.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds for a `Retry-After` header, when the caller should come back.
    retry_after: Option<&'static str>,
}

/// Seconds a sender is asked to wait when the store cannot commit its request (the database
/// unreachable): short, since most outages of a shared database are a failover.
pub const STORAGE_RETRY_AFTER: &str = "5";

impl ApiError {
    /// An error answered with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    /// 422 `invalid`.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// 500 `internal`, with a fixed message (log the cause before).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 503 `unavailable`: the store cannot be reached (log the cause before).
    pub fn storage() -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
    }

    /// 503 of the intake routes (webhooks, callbacks, Gem's API) when the store fails: the
    /// sender is told to retry (`Retry-After`), and nothing of the request was stored.
    pub fn storage_retry_later() -> ApiError {
        ApiError {
            retry_after: Some(STORAGE_RETRY_AFTER),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable, retry later",
            )
        }
    }

    /// The status answered.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The body's `code`.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::of(self.status)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code(),
            error: self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(seconds),
            );
        }
        response
    }
}

/// An unreadable body (e.g. over the upload limit: 413 `too_large`).
impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> ApiError {
        ApiError::new(r.status(), r.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_body_keeps_the_message_and_adds_the_code_of_the_status() {
        let cases = [
            (StatusCode::BAD_REQUEST, "bad_request"),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            (StatusCode::NOT_FOUND, "not_found"),
            (StatusCode::CONFLICT, "conflict"),
            (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            (StatusCode::BAD_GATEWAY, "bad_gateway"),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        ];
        for (status, code) in cases {
            let response = ApiError::new(status, "no integration `acme`").into_response();
            assert_eq!(response.status(), status);
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap_or_default();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            assert_eq!(
                body,
                serde_json::json!({ "error": "no integration `acme`", "code": code })
            );
        }
    }
}
