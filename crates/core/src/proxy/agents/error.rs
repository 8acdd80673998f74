//! Which API a route speaks, what a request may hold, and each API's own error body: a refusal on
//! `/v1/messages` reads like Anthropic's, one on `/v1/responses` like OpenAI's, whatever produced it.

/// The agent APIs the proxy translates to chat completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Anthropic Messages: `POST /v1/messages`.
    Anthropic,
    /// OpenAI Responses: `POST /v1/responses`.
    Responses,
}

/// What a path under an agent API's root asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/messages`, `POST /v1/responses`.
    Create,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
    /// `GET` / `DELETE /v1/responses/{id}`: a stored response.
    Stored(String),
    /// `GET /v1/responses/{id}/input_items`: the input items a stored response was given.
    InputItems(String),
    /// Anything else under the root: answered 404 in the API's shape.
    Other,
}

impl Api {
    /// The API a path belongs to (`/v1/messages`, `/v1/responses` and what lies under them: a sub-route
    /// mlx-box does not serve is still answered in that API's shape), and what it asks for.
    pub fn of(path: &str) -> Option<(Api, Route)> {
        let path = path.strip_suffix('/').unwrap_or(path);
        for (root, api) in [
            ("/v1/messages", Api::Anthropic),
            ("/v1/responses", Api::Responses),
        ] {
            if path == root {
                return Some((api, Route::Create));
            }
            if let Some(rest) = path.strip_prefix(root).and_then(|r| r.strip_prefix('/')) {
                let route = match (api, rest) {
                    (Api::Anthropic, "count_tokens") => Route::CountTokens,
                    (Api::Responses, id) if !id.is_empty() && !id.contains('/') => {
                        Route::Stored(id.to_string())
                    }
                    (Api::Responses, rest) => match rest.strip_suffix("/input_items") {
                        Some(id) if !id.is_empty() && !id.contains('/') => {
                            Route::InputItems(id.to_string())
                        }
                        _ => Route::Other,
                    },
                    _ => Route::Other,
                };
                return Some((api, route));
            }
        }
        None
    }

    pub fn path(self) -> &'static str {
        match self {
            Api::Anthropic => "/v1/messages",
            Api::Responses => "/v1/responses",
        }
    }
}

/// Messages, content blocks, input items and tools a request may hold, all together.
pub const MAX_PARTS: usize = 10_000;
/// The largest tool schema (serialized JSON) a request may carry.
pub const MAX_SCHEMA: usize = 1 << 20;

/// Why a request cannot be translated: each becomes a 400 in the API's shape.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AgentError {
    #[error("the request body is not valid JSON: {0}")]
    Json(String),
    #[error("the request body must be a JSON object")]
    NotObject,
    #[error("`{0}` is required")]
    Missing(String),
    #[error("`{path}` must be {want}")]
    Type { path: String, want: &'static str },
    #[error("`{path}` has an unknown value `{value}`")]
    Value { path: String, value: String },
    #[error(
        "the request holds more than {MAX_PARTS} messages, content blocks, input items and tools"
    )]
    TooMany,
    #[error("the schema of tool `{0}` is larger than {MAX_SCHEMA} bytes")]
    SchemaTooLarge(String),
    #[error("`{path}`: {why}")]
    Unsupported { path: String, why: &'static str },
    #[error("no stored response `{0}` for this API key (it was not stored, was deleted, expired, or another key made it): send the whole conversation in `input`")]
    NoPrevious(String),
}

impl AgentError {
    /// The request field the error is about (OpenAI's `param`).
    pub fn param(&self) -> Option<&str> {
        match self {
            AgentError::Missing(p)
            | AgentError::Type { path: p, .. }
            | AgentError::Value { path: p, .. }
            | AgentError::Unsupported { path: p, .. } => Some(p),
            AgentError::SchemaTooLarge(_) => Some("tools"),
            AgentError::NoPrevious(_) => Some("previous_response_id"),
            _ => None,
        }
    }

    /// Its HTTP status: 404 for a stored response that is not there, else 400.
    pub fn status(&self) -> u16 {
        match self {
            AgentError::NoPrevious(_) => 404,
            _ => 400,
        }
    }
}

/// Anthropic's error `type` for an HTTP status.
pub fn anthropic_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// OpenAI's error `type` and `code` for an HTTP status.
pub fn openai_type(status: u16) -> (&'static str, Option<&'static str>) {
    match status {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        403 => ("invalid_request_error", Some("permission_denied")),
        404 => ("invalid_request_error", Some("not_found")),
        429 => ("rate_limit_exceeded", Some("rate_limit_exceeded")),
        400..=499 => ("invalid_request_error", None),
        503 => ("server_error", Some("service_unavailable")),
        _ => ("server_error", Some("server_error")),
    }
}

/// An error body in `api`'s shape: Anthropic `{"type":"error","error":{"type","message"}}`, OpenAI
/// `{"error":{"message","type","param","code"}}`.
pub fn error_body(api: Api, status: u16, message: &str, param: Option<&str>) -> Vec<u8> {
    let v = match api {
        Api::Anthropic => serde_json::json!({
            "type": "error",
            "error": {"type": anthropic_type(status), "message": message},
        }),
        Api::Responses => {
            let (kind, code) = openai_type(status);
            serde_json::json!({
                "error": {"message": message, "type": kind, "param": param, "code": code},
            })
        }
    };
    serde_json::to_vec(&v).unwrap_or_default()
}
