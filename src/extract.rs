//! Request extractors whose rejections are [`ApiError`]s, so that bad input is answered with a
//! problem+json body like every other error. Handlers never take bare `axum::Json`, `Path` or
//! `Query` as input.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use crate::error::{ApiError, FieldError};
use crate::json::ObjectsOnly;
use crate::store::is_valid_id;

/// A JSON request body: 415 without a JSON `Content-Type`, 400 if it is not JSON, 422 (with a
/// pointer to the field) if it does not fit `T`, 413 if it is too large.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(request.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "the body must be JSON, sent with Content-Type: application/json".to_owned(),
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(body_rejection)?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Whether the `Content-Type` is `application/json` or a `+json` type such as
/// `application/merge-patch+json`.
pub fn has_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Maps a failure to read the body: too large is 413, anything else a 400.
pub fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::BadRequest(format!(
            "the request body could not be read: {}",
            rejection.body_text()
        ))
    }
}

/// Parses a JSON body into `T`: syntax errors are 400, shape errors 422 with a JSON Pointer.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let result: Result<T, _> = serde_path_to_error::deserialize(ObjectsOnly(&mut deserializer));
    let value = result.map_err(|err| {
        let inner = err.inner();
        if inner.is_data() {
            let message = without_position(&inner.to_string());
            let mut pointer = to_pointer(err.path());
            // serde reports a missing field at its parent; point at the field itself.
            if let Some(field) = quoted_name(&message, "missing field `") {
                pointer = format!("{pointer}/{}", escape_pointer_token(field));
            }
            ApiError::Invalid(vec![FieldError::new(pointer, message)])
        } else {
            ApiError::BadRequest(format!("the body is not valid JSON: {inner}"))
        }
    })?;
    // Trailing characters after the value make the body something other than one JSON value.
    deserializer
        .end()
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

fn without_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

fn quoted_name<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message.strip_prefix(prefix)?.split('`').next()
}

fn to_pointer(path: &serde_path_to_error::Path) -> String {
    path.iter()
        .filter_map(|segment| match segment {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(escape_pointer_token(key)),
            Segment::Enum { variant } => Some(escape_pointer_token(variant)),
            Segment::Unknown => None,
        })
        .fold(String::new(), |pointer, token| pointer + "/" + &token)
}

fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Checks the form of a string id from a path: 400 if it is not `[A-Za-z0-9_-]{1,64}`.
pub fn check_id(kind: &str, id: &str) -> Result<(), ApiError> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "a {kind} id is 1 to 64 letters, digits, `_` or `-`"
        )))
    }
}

/// Path parameters; a value of the wrong form (`/books/abc`) is a 400.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        if rejection.status().is_server_error() {
            ApiError::Internal(anyhow::anyhow!("path extraction failed: {rejection}"))
        } else {
            ApiError::BadRequest(format!("invalid path: {}", rejection.body_text()))
        }
    }
}

/// Query parameters; values that cannot be read are a 400, and so is a query with a name or value
/// that is not UTF-8 once percent-decoded (`?message=%ff`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // axum decodes the query lossily, turning such bytes into U+FFFD: a message would come
        // back changed and a value would be read as something the client did not send.
        if !percent_decodes_to_utf8(parts.uri.query().unwrap_or_default()) {
            return Err(ApiError::BadRequest(
                "invalid query: a name or value is not UTF-8 once percent-decoded".to_owned(),
            ));
        }
        let Query(value) = Query::try_from_uri(&parts.uri)?;
        Ok(ApiQuery(value))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(format!("invalid query: {}", rejection.body_text()))
    }
}

/// Whether `text` is UTF-8 once its `%XX` escapes are decoded, the way `application/x-www-form-
/// urlencoded` decodes them (a `%` not followed by two hex digits stays as it is).
///
/// The whole query is decoded at once: `&`, `=` and `+` are ASCII, so it is UTF-8 exactly when
/// every name and value in it is.
fn percent_decodes_to_utf8(text: &str) -> bool {
    let mut decoded = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        match tail {
            [high, low, after @ ..]
                if byte == b'%' && high.is_ascii_hexdigit() && low.is_ascii_hexdigit() =>
            {
                decoded.push((hex_value(*high) << 4) | hex_value(*low));
                rest = after;
            }
            _ => {
                decoded.push(byte);
                rest = tail;
            }
        }
    }
    std::str::from_utf8(&decoded).is_ok()
}

/// The value of an ASCII hex digit; only called on one.
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        title: String,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        value: f64,
    }

    fn field_errors(body: &str) -> Vec<FieldError> {
        match parse_json::<Outer>(body.as_bytes()) {
            Err(ApiError::Invalid(errors)) => errors,
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn shape_errors_point_at_the_field() {
        assert_eq!(field_errors(r#"{"title": 5}"#)[0].pointer, "/title");
        assert_eq!(field_errors(r#"{}"#)[0].pointer, "/title");
        assert_eq!(
            field_errors(r#"{"title": "t", "inner": {"value": "x"}}"#)[0].pointer,
            "/inner/value"
        );
        assert_eq!(
            field_errors(r#"{"title": "t", "inner": {}}"#)[0].pointer,
            "/inner/value"
        );
        let unknown = &field_errors(r#"{"title": "t", "extra": 1}"#)[0];
        assert!(
            unknown.detail.contains("unknown field `extra`"),
            "{unknown:?}"
        );
        assert!(!unknown.detail.contains("line"), "{unknown:?}");
    }

    #[test]
    fn syntax_errors_and_trailing_garbage_are_bad_requests() {
        for body in ["{", "", "not json", r#"{"title": "t"} x"#] {
            assert!(
                matches!(
                    parse_json::<Outer>(body.as_bytes()),
                    Err(ApiError::BadRequest(_))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn queries_must_percent_decode_to_utf8() {
        for good in [
            "",
            "message=hi",
            "message=%C3%A9+%F0%9F%9A%80",
            "message=é",
            "a=%zz&b=%4",
            "a=%",
            "m=%e2%82%ac",
        ] {
            assert!(percent_decodes_to_utf8(good), "{good}");
        }
        for bad in [
            "%ff",
            "message=%FF",
            "message=abc%C3",
            "message=%C3&x=%A9",
            "message=%ED%A0%80",
            "message=%C0%AF",
            "x=%F4%90%80%80",
        ] {
            assert!(!percent_decodes_to_utf8(bad), "{bad}");
        }
    }

    #[test]
    fn json_content_types_are_recognised() {
        let headers = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            h
        };
        assert!(has_json_content_type(&headers("application/json")));
        assert!(has_json_content_type(&headers(
            "Application/JSON; charset=utf-8"
        )));
        assert!(has_json_content_type(&headers(
            "application/merge-patch+json"
        )));
        assert!(!has_json_content_type(&headers("text/plain")));
        assert!(!has_json_content_type(&HeaderMap::new()));
    }
}
