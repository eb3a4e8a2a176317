//! Conditional requests (RFC 9110 §8.8.3, §13): entity tags made from record versions, `304 Not
//! Modified` for a read whose `If-None-Match` matches, and the precondition a write carries to the
//! store, which checks it in the same step as the write.
//!
//! A record's tag is strong, `"<epoch>-<version>"` (hex; see `store/versions.rs`); a list's is
//! weak, `W/"<epoch>-l<version>"`: it moves with every change to the resource, whatever the
//! query. The epoch is the store's: a tag from a restarted in-memory store or from another
//! database never matches.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::store::{Precondition, Version, Versions};

/// The strong tag of a record at `version` in the store of `epoch`.
pub fn etag(epoch: u64, version: Version) -> HeaderValue {
    HeaderValue::try_from(format!("\"{epoch:x}-{version}\"")).expect("hex digits and dots")
}

/// The weak tag of a list whose resource is at `version` (hex digits and dots) in the store of
/// `epoch`.
pub fn list_etag(epoch: u64, version: impl std::fmt::LowerHex) -> HeaderValue {
    HeaderValue::try_from(format!("W/\"{epoch:x}-l{version:x}\"")).expect("hex digits")
}

/// `304 Not Modified` with the tag, if the request's `If-None-Match` names `etag` (weak
/// comparison) or is `*`: what a read answers instead of the representation. A header that is
/// not a list of entity tags is a 400, as on a write.
pub fn not_modified(headers: &HeaderMap, etag: &HeaderValue) -> Result<Option<Response>, ApiError> {
    let matched = match tags(headers, &header::IF_NONE_MATCH)? {
        Some(Tags::Any) => true,
        Some(Tags::Listed(listed)) => {
            let (_, opaque) = split_weak(etag.as_bytes());
            listed.iter().any(|tag| tag.opaque == opaque)
        }
        None => false,
    };
    let answer = (StatusCode::NOT_MODIFIED, [(header::ETAG, etag.clone())]);
    Ok(matched.then(|| answer.into_response()))
}

/// The answer to a read of something tagged `etag`: [`not_modified`], else `answer` with the
/// tag.
pub fn tagged_read(
    headers: &HeaderMap,
    etag: HeaderValue,
    answer: impl IntoResponse,
) -> Result<Response, ApiError> {
    Ok(not_modified(headers, &etag)?.unwrap_or_else(|| {
        let mut response = answer.into_response();
        response.headers_mut().insert(header::ETAG, etag);
        response
    }))
}

/// `answer` with the tag of the record it carries.
pub fn tagged(epoch: u64, version: Version, answer: impl IntoResponse) -> Response {
    let mut response = answer.into_response();
    response
        .headers_mut()
        .insert(header::ETAG, etag(epoch, version));
    response
}

/// What the request's `If-Match` and `If-None-Match` require of the record a write changes, in
/// the store of `epoch`. `If-Match` compares strongly (a weak tag never matches); a tag of
/// another store, or of a list, names no version here. A header that is not a list of entity
/// tags is a 400 naming it.
pub fn precondition(headers: &HeaderMap, epoch: u64) -> Result<Precondition, ApiError> {
    let versions = |name: &HeaderName, strong: bool| {
        tags(headers, name).map(|tags| {
            tags.map(|tags| match tags {
                Tags::Any => Versions::Any,
                Tags::Listed(listed) => Versions::Listed(
                    listed
                        .iter()
                        .filter(|tag| !(strong && tag.weak))
                        .filter_map(|tag| version_in(tag.opaque, epoch))
                        .collect(),
                ),
            })
        })
    };
    Ok(Precondition {
        if_match: versions(&header::IF_MATCH, true)?,
        if_none_match: versions(&header::IF_NONE_MATCH, false)?,
    })
}

/// The version a tag's opaque part (`"<epoch>-<version>"`, quotes included) names in the store
/// of `epoch`, if any.
fn version_in(opaque: &[u8], epoch: u64) -> Option<Version> {
    let inner = std::str::from_utf8(opaque.strip_prefix(b"\"")?.strip_suffix(b"\"")?).ok()?;
    let (tag_epoch, version) = inner.split_once('-')?;
    (tag_epoch == format!("{epoch:x}"))
        .then(|| Version::parse(version))
        .flatten()
}

/// An entity tag as sent: whether it is weak, and its opaque part with the quotes.
struct Tag<'a> {
    weak: bool,
    opaque: &'a [u8],
}

enum Tags<'a> {
    Any,
    Listed(Vec<Tag<'a>>),
}

/// `(weak, opaque)` of one tag's bytes.
fn split_weak(tag: &[u8]) -> (bool, &[u8]) {
    match tag.strip_prefix(b"W/") {
        Some(opaque) => (true, opaque),
        None => (false, tag),
    }
}

/// The entity tags of every `name` header line: `*`, a list, or (absent) `None`.
fn tags<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<Tags<'a>>, ApiError> {
    let mut lines = headers.get_all(name).iter().peekable();
    if lines.peek().is_none() {
        return Ok(None);
    }
    let malformed = || {
        ApiError::BadRequest(format!(
            "{name} must be `*` or a comma-separated list of entity tags such as \"abc\" or W/\"abc\""
        ))
    };
    let mut listed = Vec::new();
    for line in lines {
        let text = line.as_bytes();
        if text.trim_ascii() == b"*" {
            return Ok(Some(Tags::Any));
        }
        let mut rest = text;
        loop {
            rest = rest.trim_ascii_start();
            if rest.is_empty() {
                break;
            }
            // Empty list elements are allowed (RFC 9110 §5.6.1).
            if let Some(after) = rest.strip_prefix(b",") {
                rest = after;
                continue;
            }
            let (weak, quoted) = split_weak(rest);
            let Some(body) = quoted.strip_prefix(b"\"") else {
                return Err(malformed());
            };
            let end = body.iter().position(|&b| b == b'"').ok_or_else(malformed)?;
            if !body[..end]
                .iter()
                .all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
            {
                return Err(malformed());
            }
            let opaque = &quoted[..end + 2];
            listed.push(Tag { weak, opaque });
            rest = body[end + 1..].trim_ascii_start();
            match rest.split_first() {
                None => break,
                Some((b',', after)) => rest = after,
                Some(_) => return Err(malformed()),
            }
        }
    }
    Ok(Some(Tags::Listed(listed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: HeaderName, values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn if_match_compares_strongly_and_only_within_this_store() {
        let tag = etag(0xab, Version::of(7));
        assert_eq!(tag, "\"ab-7\"");
        let versions = |values: &[&str]| {
            precondition(&headers(header::IF_MATCH, values), 0xab)
                .unwrap()
                .if_match
        };
        let seven = Some(Versions::Listed(vec![Version::of(7)]));
        assert_eq!(versions(&["\"ab-7\""]), seven);
        assert_eq!(versions(&["\"x\", \"ab-7\""]), seven);
        assert_eq!(versions(&["\"x\"", " , \"ab-7\" ,"]), seven);
        assert_eq!(versions(&["W/\"ab-7\""]), Some(Versions::Listed(vec![])));
        assert_eq!(versions(&["\"cd-7\""]), Some(Versions::Listed(vec![])));
        assert_eq!(versions(&["W/\"ab-l7\""]), Some(Versions::Listed(vec![])));
        assert_eq!(versions(&[" * "]), Some(Versions::Any));
        assert_eq!(versions(&[]), None);
        for bad in ["ab-7", "\"ab-7", "\"a\" \"b\"", "W/ab", "\"a\"b"] {
            let headers = headers(header::IF_MATCH, &[bad]);
            assert!(precondition(&headers, 0xab).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_answer_304_when_if_none_match_names_the_tag_weakly() {
        let tag = etag(1, Version::of(2));
        let status = |values: &[&str]| {
            let headers = headers(header::IF_NONE_MATCH, values);
            match tagged_read(&headers, tag.clone(), "body") {
                Ok(response) => response.status(),
                Err(_) => StatusCode::BAD_REQUEST,
            }
        };
        assert_eq!(status(&["\"1-2\""]), StatusCode::NOT_MODIFIED);
        assert_eq!(status(&["W/\"1-2\""]), StatusCode::NOT_MODIFIED);
        assert_eq!(status(&["\"1-3\", \"1-2\""]), StatusCode::NOT_MODIFIED);
        assert_eq!(status(&["*"]), StatusCode::NOT_MODIFIED);
        assert_eq!(status(&["\"1-3\""]), StatusCode::OK);
        assert_eq!(status(&["garbage"]), StatusCode::BAD_REQUEST);
        assert_eq!(status(&[]), StatusCode::OK);
        // An empty list names no tag.
        assert_eq!(status(&[""]), StatusCode::OK);
    }
}
