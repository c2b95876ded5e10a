use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Everything that can go wrong in the `serve` crate: starting the server, and each request's
/// failure, which becomes a JSON `{"error": "..."}` answer with the status that says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Model(#[from] models::Error),
    #[error(transparent)]
    Infer(#[from] infer::Error),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    #[error("cannot read the model folder {path}: {source}")]
    ModelDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Runtime(String),

    /// A parameter or part of the request is wrong (400).
    #[error("{0}")]
    BadRequest(String),
    /// The bearer token is missing or wrong (401).
    #[error("this server needs `Authorization: Bearer <token>`")]
    Unauthorized,
    /// No such route or style (404).
    #[error("{0}")]
    NotFound(String),
    /// The body or the image is larger than the server accepts (413).
    #[error("{0}")]
    TooLarge(String),
    /// The body is not an image format the server reads (415).
    #[error("{0}")]
    UnsupportedMedia(String),
    /// The queue is full, or the request waited past the timeout (503, with `Retry-After`).
    #[error("{0}")]
    Busy(String),
    /// The network worker stopped (500).
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Seconds a client is told to wait after a 503.
pub const RETRY_AFTER_SECONDS: u32 = 1;

impl Error {
    /// The same failure, its message naming the part of the request it is about.
    pub fn about(self, what: &str) -> Self {
        match self {
            Error::BadRequest(m) => Error::BadRequest(format!("{what}: {m}")),
            Error::TooLarge(m) => Error::TooLarge(format!("{what}: {m}")),
            Error::UnsupportedMedia(m) => Error::UnsupportedMedia(format!("{what}: {m}")),
            other => other,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            // A style selection or size the network refuses is the request's fault.
            Error::Infer(infer::Error::Style(_) | infer::Error::Invalid(_)) => {
                StatusCode::BAD_REQUEST
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({ "error": self.to_string() }).to_string();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match status {
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            }
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}
