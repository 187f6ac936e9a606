//! Kubernetes-style `Status` errors.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use porin_model::ManifestError;
use porin_store::StoreError;
use serde_json::{Value, json};

#[derive(Debug)]
pub struct ApiError {
    pub code: StatusCode,
    pub reason: &'static str,
    pub message: String,
    pub causes: Vec<Value>,
}

impl ApiError {
    pub fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), causes: vec![] }
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", m)
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", m)
    }
    pub fn already_exists(m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "AlreadyExists", m)
    }
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", m)
    }
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", m)
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", m)
    }
    /// 422 with one cause per validation error (field path + message).
    pub fn invalid(errors: &[ManifestError]) -> Self {
        let message = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
        let causes = errors
            .iter()
            .map(|e| json!({"reason": "FieldValueInvalid", "field": e.path, "message": e.to_string()}))
            .collect();
        ApiError { code: StatusCode::UNPROCESSABLE_ENTITY, reason: "Invalid", message, causes }
    }
    pub fn to_json(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": {"causes": self.causes},
            "code": self.code.as_u16(),
        })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let msg = error_chain(&e);
        match e {
            StoreError::Unavailable { .. } | StoreError::Closed => {
                ApiError::unavailable(format!("datastore unavailable, serving read-only: {msg}"))
            }
            StoreError::Conflict { .. } => ApiError::conflict(msg),
            // A watch from a revision whose history is gone: Kubernetes' "too old resource version" (clients list again).
            StoreError::Compacted { .. } => Self::new(StatusCode::GONE, "Expired", msg),
            StoreError::NotFound { .. } => ApiError::not_found(msg),
            StoreError::TooManyOps { .. } => Self::new(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", msg),
            StoreError::DuplicateKey { .. } | StoreError::InvalidKey { .. } => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", msg),
            // Nothing was written; reads keep working. The message names the file and the OS error.
            StoreError::Full { .. } => {
                Self::new(StatusCode::INSUFFICIENT_STORAGE, "InsufficientStorage", format!("{msg}; nothing was written"))
            }
            StoreError::Io { .. } => ApiError::unavailable(format!("{msg}; nothing was written")),
            _ => ApiError::internal(msg),
        }
    }
}

pub(crate) use crate::error_chain;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code, Json(self.to_json())).into_response()
    }
}
