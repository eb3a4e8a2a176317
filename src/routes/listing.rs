//! Lists sent in bounded memory, with the paging every list shares.
//!
//! A list is read from the store in chunks of at most [`CHUNK`] records, each chunk written as
//! JSON and sent before the next is read, so a request costs one chunk of memory however large
//! the list: 64 clients reading a million books hold 64 chunks, not 64 copies of the store, and
//! a client that stops reading stops the reading from the store (the body is pulled by the
//! connection, never pushed). The first chunk is read before the answer starts, so a missing
//! record is still a 404 and a list that fits in one chunk goes out whole with a
//! `Content-Length`.
//!
//! A streamed list is not a snapshot: each chunk is consistent, but a record created or deleted
//! while a long list is being sent may or may not be in it. Chunks continue after the last key
//! sent (keyset paging), so no record is sent twice and none that stayed is skipped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::routes::conditional::{list_etag, not_modified};
use crate::store::query::{Fields, Filter, Kind, ListQuery, Operand, SortKey, Test};
use crate::store::{Cursor, ID_PATTERN, Resource, Store, StoreError, is_valid_id};

/// Records read from the store, and written out, per chunk.
pub const CHUNK: usize = 256;

/// Records per chunk of a list in an order other than id order. Each chunk of such a list costs
/// a pass over the whole resource (the store keeps no index per sort field), so bigger chunks:
/// a sorted list of 200 000 books took 11 s in chunks of 256 and 1.4 s in chunks of 4096 (the
/// release build, in memory), for a client that stops reading holding about 250 kB, not 15 kB.
pub const SORTED_CHUNK: usize = 4096;

/// How many records each chunk of `query`'s list should hold.
pub fn chunk_for(query: &ListQuery) -> usize {
    if query.in_id_order() {
        CHUNK
    } else {
        SORTED_CHUNK
    }
}

/// Largest `limit` a list request may ask for.
pub const MAX_PAGE: usize = 1000;

/// Paging of a list: every list takes it.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// How many records to return at most (1–1000); all when absent.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// How many records to skip first.
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// A checked page: where a list starts and how many records it may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// Records to skip.
    pub offset: usize,
    /// Records to send at most; `usize::MAX` when no limit was asked for.
    pub limit: usize,
}

impl PageParams {
    /// Checks the parameters: `limit` from 1 to [`MAX_PAGE`], `offset` not negative (an offset
    /// past what this machine can index is past every record: an empty page).
    pub fn page(&self) -> Result<Page, ApiError> {
        let offset = match self.offset {
            None => 0,
            Some(offset) if offset < 0 => {
                return Err(ApiError::BadRequest(format!(
                    "offset must not be negative, got {offset}"
                )));
            }
            Some(offset) => usize::try_from(offset).unwrap_or(usize::MAX),
        };
        let limit = match self.limit {
            None => usize::MAX,
            Some(limit) if (1..=MAX_PAGE).contains(&limit) => limit,
            Some(limit) => {
                return Err(ApiError::BadRequest(format!(
                    "limit must be from 1 to {MAX_PAGE}, got {limit}"
                )));
            }
        };
        Ok(Page { offset, limit })
    }
}

/// A list request: a page of a query's list.
#[derive(Debug)]
pub struct ListRequest {
    /// Which part of the list.
    pub page: Page,
    /// Which records, in what order.
    pub query: ListQuery,
}

/// The query string's parameters, decoded: what list handlers extract.
pub type QueryPairs = ApiQuery<Vec<(String, String)>>;

impl ListRequest {
    /// Reads a list's parameters for a list of `fields`: `limit` and `offset`; `q`; `sort`;
    /// `field=value` for each field, and `field_gte=`/`field_lte=` for numbers. Anything else,
    /// a parameter given twice, or a value of the wrong form is a 400 naming it.
    pub fn parse(pairs: &[(String, String)], fields: Fields) -> Result<Self, ApiError> {
        let mut paging = PageParams::default();
        let mut query = ListQuery::all(fields);
        let mut sort = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (name, value) in pairs {
            if !seen.insert(name.as_str()) {
                return Err(bad(format!("`{name}` is given more than once")));
            }
            match name.as_str() {
                "limit" => {
                    let limit = value.parse().map_err(|_| {
                        bad(format!(
                            "limit must be a whole number from 1 to {MAX_PAGE}, got {value:?}"
                        ))
                    })?;
                    paging.limit = Some(limit);
                }
                "offset" => {
                    let offset = value.parse().map_err(|_| {
                        bad(format!("offset must be a whole number, got {value:?}"))
                    })?;
                    paging.offset = Some(offset);
                }
                "q" => query = query.search(value),
                "sort" => sort = sort_keys(value, fields)?,
                _ => query.filters.push(filter(name, value, fields)?),
            }
        }
        Ok(Self {
            page: paging.page()?,
            query: query.sorted(sort),
        })
    }
}

fn bad(detail: String) -> ApiError {
    ApiError::BadRequest(detail)
}

/// The parameters a list of `fields` takes, for a 400's text.
fn parameters_taken(fields: Fields) -> String {
    let mut names = vec!["limit".to_owned(), "offset".to_owned(), "q".to_owned()];
    names.push("sort".to_owned());
    for field in fields {
        names.push(field.name.to_owned());
        if field.ranged() {
            names.push(format!("{}_gte", field.name));
            names.push(format!("{}_lte", field.name));
        }
    }
    names.join(", ")
}

/// `sort=title,-id`: field names, each optionally after `-` for descending.
fn sort_keys(text: &str, fields: Fields) -> Result<Vec<SortKey>, ApiError> {
    text.split(',')
        .map(|part| {
            let (name, descending) = match part.strip_prefix('-') {
                Some(name) => (name, true),
                None => (part, false),
            };
            let field = fields
                .iter()
                .position(|field| field.name == name)
                .ok_or_else(|| {
                    let names: Vec<&str> = fields.iter().map(|field| field.name).collect();
                    bad(format!(
                        "sort: unknown field {name:?}; this list sorts by {}, each optionally \
                         after `-` for descending, separated by commas",
                        names.join(", ")
                    ))
                })?;
            Ok(SortKey { field, descending })
        })
        .collect()
}

/// `name=value`: a filter on a field of the list, or a 400.
fn filter(name: &str, value: &str, fields: Fields) -> Result<Filter, ApiError> {
    let position = |name: &str| fields.iter().position(|field| field.name == name);
    let (field, test) = match position(name) {
        Some(field) => (field, Test::Equal),
        None => {
            let ranged = [("_gte", Test::AtLeast), ("_lte", Test::AtMost)]
                .into_iter()
                .find_map(|(suffix, test)| {
                    let field = position(name.strip_suffix(suffix)?)?;
                    fields[field].ranged().then_some((field, test))
                });
            ranged.ok_or_else(|| {
                bad(format!(
                    "unknown parameter {name:?}; this list takes {}",
                    parameters_taken(fields)
                ))
            })?
        }
    };
    let spec = fields[field];
    let wrong = |what: &str| bad(format!("{name} must be {what}, got {value:?}"));
    let operand = match spec.kind {
        _ if value.is_empty() && spec.optional && test == Test::Equal => Operand::Null,
        // Any run of digits is a whole number; one above every id is above every record's.
        Kind::Integer if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
            value.parse().map_or(Operand::AboveAll, Operand::Integer)
        }
        Kind::Integer => return Err(wrong("a whole number")),
        Kind::Number => match value.parse::<f64>() {
            Ok(number) if number.is_finite() => Operand::Number(number),
            _ => return Err(wrong("a number")),
        },
        Kind::Id if is_valid_id(value) => Operand::Text(value.to_owned()),
        Kind::Id => return Err(wrong("an id of 1 to 64 letters, digits, `_` or `-`")),
        Kind::Text if value.is_empty() => return Err(wrong("a text that is not empty")),
        Kind::Text => Operand::Text(value.to_owned()),
    };
    Ok(Filter {
        field,
        test,
        operand,
    })
}

/// The query parameters of a list of `fields`, for the OpenAPI document.
pub fn list_parameters(fields: Fields) -> Vec<Parameter> {
    let mut parameters = PageParams::into_params(|| Some(ParameterIn::Query));
    let names: Vec<&str> = fields.iter().map(|field| field.name).collect();
    let searched: Vec<&str> = fields
        .iter()
        .filter(|field| field.searched())
        .map(|field| field.name)
        .collect();
    let string = |pattern: Option<String>| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(pattern)
            .build()
    };
    let query_parameter = |name: String, description: String, schema: Object| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(description))
            .schema(Some(schema))
            .build()
    };
    parameters.push(query_parameter(
        "q".to_owned(),
        format!(
            "Only records where some text field ({}) contains this, ignoring case",
            searched.join(", ")
        ),
        string(None),
    ));
    let one = format!("-?(?:{})", names.join("|"));
    parameters.push(query_parameter(
        "sort".to_owned(),
        format!(
            "Order by these fields ({}), comma-separated, each after `-` for descending; ties \
             by id. Text sorts by code point; a missing value sorts last (first descending).",
            names.join(", ")
        ),
        string(Some(format!("^{one}(?:,{one})*$"))),
    ));
    for field in fields {
        let whole = || {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .build()
        };
        let exact = match field.kind {
            Kind::Integer => whole(),
            Kind::Number => ObjectBuilder::new().schema_type(Type::Number).build(),
            Kind::Id if field.optional => string(Some(format!("^$|{ID_PATTERN}"))),
            Kind::Id => string(Some(ID_PATTERN.to_owned())),
            Kind::Text => ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length((!field.optional).then_some(1))
                .build(),
        };
        let none = if field.optional {
            "; empty: records without one"
        } else {
            ""
        };
        parameters.push(query_parameter(
            field.name.to_owned(),
            format!("Only records whose `{}` is exactly this{none}", field.name),
            exact,
        ));
        if field.ranged() {
            for (suffix, bound) in [("gte", "at least"), ("lte", "at most")] {
                let schema = match field.kind {
                    Kind::Integer => whole(),
                    _ => ObjectBuilder::new().schema_type(Type::Number).build(),
                };
                parameters.push(query_parameter(
                    format!("{}_{suffix}", field.name),
                    format!("Only records whose `{}` is {bound} this", field.name),
                    schema,
                ));
            }
        }
    }
    parameters
}

/// Declares `$name`, the OpenAPI parameters of a list of `$fields` (`params($name)`).
macro_rules! list_params {
    ($name:ident, $fields:expr) => {
        /// The parameters of this list, for the OpenAPI document.
        pub struct $name;

        impl utoipa::IntoParams for $name {
            fn into_params(
                _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
            ) -> Vec<utoipa::openapi::path::Parameter> {
                $crate::routes::listing::list_parameters($fields)
            }
        }
    };
}
pub(crate) use list_params;

/// The headers of a list requested at `uri`: `X-Total-Count`, and for a page (a `limit` was
/// asked for) an RFC 8288 `Link` to the `first`, `prev`, `next` and `last` pages, where they
/// exist, as relative URLs that keep every other parameter where it was.
pub fn list_headers(uri: &Uri, page: Page, total: usize) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-total-count", HeaderValue::from(total));
    if page.limit != usize::MAX {
        let links = PageLinks::new(page, total);
        let target = |offset| page_uri(uri, offset);
        let mut value = format!("<{}>; rel=\"first\"", target(0));
        for (rel, offset) in [
            ("prev", links.prev),
            ("next", links.next),
            ("last", Some(links.last)),
        ] {
            if let Some(offset) = offset {
                value.push_str(&format!(", <{}>; rel=\"{rel}\"", target(offset)));
            }
        }
        // Always valid: `page_uri` writes visible ASCII only.
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(header::LINK, value);
        }
    }
    headers
}

/// The offsets of the pages a page links to (the first page's is always 0).
#[derive(Debug, PartialEq, Eq)]
struct PageLinks {
    prev: Option<usize>,
    next: Option<usize>,
    last: usize,
}

impl PageLinks {
    /// Pages keep the stride of the one asked for: from `offset=5&limit=10`, `next` is 15 and
    /// `last` the final page of that stride, so following `next` ends at `last`. Past the end,
    /// `prev` is `last`.
    fn new(page: Page, total: usize) -> Self {
        let Page { offset, limit } = page;
        let phase = offset % limit;
        let last = if total > phase {
            phase + (total - 1 - phase) / limit * limit
        } else {
            0
        };
        Self {
            prev: (offset > 0).then(|| offset.saturating_sub(limit).min(last)),
            next: offset.checked_add(limit).filter(|&next| next < total),
            last,
        }
    }
}

/// `uri`'s path and query with `offset` set to `offset`, in place if it was there, else last.
/// Characters that a URI in a `Link` header must not hold raw (`<`, `>`, `"`, spaces, controls,
/// non-ASCII) are percent-encoded, so that the header stays well formed whatever the request.
fn page_uri(uri: &Uri, offset: usize) -> String {
    let mut out = String::new();
    push_escaped(&mut out, uri.path());
    let mut separator = '?';
    let mut placed = false;
    let pairs = uri.query().unwrap_or_default().split('&');
    for pair in pairs.filter(|pair| !pair.is_empty()) {
        let is_offset = url::form_urlencoded::parse(pair.as_bytes())
            .next()
            .is_some_and(|(key, _)| key == "offset");
        if is_offset && placed {
            continue;
        }
        out.push(separator);
        separator = '&';
        if is_offset {
            out.push_str(&format!("offset={offset}"));
            placed = true;
        } else {
            push_escaped(&mut out, pair);
        }
    }
    if !placed {
        out.push(separator);
        out.push_str(&format!("offset={offset}"));
    }
    out
}

fn push_escaped(out: &mut String, text: &str) {
    for byte in text.bytes() {
        if byte.is_ascii_graphic()
            && !matches!(
                byte,
                b'<' | b'>' | b'"' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
            )
        {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

/// JSON text produced part by part.
#[async_trait]
pub trait JsonSource: Send + 'static {
    /// Appends the next part of the document to `out`; `Ok(false)` once it is complete.
    async fn fill(&mut self, out: &mut Vec<u8>) -> Result<bool, StoreError>;
}

/// Bytes reserved for each part of a streamed document: a chunk of short records fits without
/// the buffer growing (and being copied) several times.
const PART_CAPACITY: usize = 8 * 1024;

/// A 200 with `headers` and the JSON `source` writes: the first part is read now, so that a
/// store error is answered as a problem; the rest is streamed as the client reads.
pub async fn json_response(
    mut source: impl JsonSource,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut first = Vec::with_capacity(PART_CAPACITY);
    let more = source.fill(&mut first).await?;
    let body = if more {
        let rest = futures_util::stream::unfold(Some(source), |source| async move {
            let mut source = source?;
            let mut out = Vec::with_capacity(PART_CAPACITY);
            match source.fill(&mut out).await {
                Ok(more) => Some((Ok(Bytes::from(out)), more.then_some(source))),
                Err(e) => {
                    // The status is sent already: all that is left is to cut the body short,
                    // which the client sees as an incomplete response.
                    tracing::error!(error = %e, "a streamed list failed midway");
                    Some((Err(e), None))
                }
            }
        });
        Body::from_stream(futures_util::stream::iter([Ok(Bytes::from(first))]).chain(rest))
    } else {
        Body::from(first)
    };
    let content_type = HeaderValue::from_static("application/json");
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        headers,
        body,
    )
        .into_response())
}

/// A boxed future of a chunk of records.
pub type ChunkFuture<T> = Pin<Box<dyn Future<Output = Result<Vec<T>, StoreError>> + Send>>;

/// Reads a list's chunks from the store and writes them between `open` and `close` text, each
/// record as `write` says, separated by commas.
pub struct ListSource<T, K> {
    fetch: Box<dyn Fn(Cursor<K>, usize) -> ChunkFuture<T> + Send + Sync>,
    key_of: fn(&T) -> K,
    write: fn(&mut Vec<u8>, &T),
    open: Option<Vec<u8>>,
    close: &'static str,
    /// The first chunk, when it was read before the list started (with what precedes it).
    first: Option<Vec<T>>,
    next: Cursor<K>,
    remaining: usize,
    written: usize,
    chunk: usize,
}

impl<T: Send + 'static, K: Send + 'static> ListSource<T, K> {
    /// A list of at most `page.limit` records from `page.offset`, read by `fetch`.
    pub fn new(
        page: Page,
        fetch: impl Fn(Cursor<K>, usize) -> ChunkFuture<T> + Send + Sync + 'static,
        key_of: fn(&T) -> K,
        write: fn(&mut Vec<u8>, &T),
    ) -> Self {
        Self {
            fetch: Box::new(fetch),
            key_of,
            write,
            open: None,
            close: "",
            first: None,
            next: Cursor::Offset(page.offset),
            remaining: page.limit,
            written: 0,
            chunk: CHUNK,
        }
    }

    /// Reads `n` records per chunk instead of [`CHUNK`].
    pub fn chunks_of(mut self, n: usize) -> Self {
        self.chunk = n;
        self
    }

    /// Starts with `chunk`, read already (by `fetch`'s rules) together with something that
    /// must agree with it; the next read goes on after it.
    pub fn starting_with(mut self, chunk: Vec<T>) -> Self {
        self.first = Some(chunk);
        self
    }

    /// Text before the first record and after the last, such as `[` and `]`.
    pub fn enclosed(mut self, open: impl Into<Vec<u8>>, close: &'static str) -> Self {
        self.open = Some(open.into());
        self.close = close;
        self
    }
}

#[async_trait]
impl<T: Send + 'static, K: Send + 'static> JsonSource for ListSource<T, K> {
    async fn fill(&mut self, out: &mut Vec<u8>) -> Result<bool, StoreError> {
        if let Some(open) = self.open.take() {
            out.extend_from_slice(&open);
        }
        let wanted = self.remaining.min(self.chunk);
        let chunk = if let Some(first) = self.first.take() {
            first
        } else if wanted == 0 {
            Vec::new()
        } else {
            let from = std::mem::replace(&mut self.next, Cursor::Offset(0));
            (self.fetch)(from, wanted).await?
        };
        for record in &chunk {
            if self.written > 0 {
                out.push(b',');
            }
            (self.write)(out, record);
            self.written += 1;
        }
        self.remaining -= chunk.len();
        match chunk.last() {
            Some(last) if chunk.len() == wanted => {
                self.next = Cursor::After((self.key_of)(last));
                Ok(true)
            }
            _ => {
                out.extend_from_slice(self.close.as_bytes());
                Ok(false)
            }
        }
    }
}

/// Reads a chunk of a query's list from the store.
pub type Finder<T> = fn(Store, Arc<ListQuery>, Cursor<T>, usize) -> ChunkFuture<T>;

/// How one resource's list is read and written.
pub struct RecordList<T> {
    /// Which records, for the count.
    pub what: Resource,
    /// Their fields, for the query.
    pub fields: Fields,
    /// Reads a chunk.
    pub find: Finder<T>,
    /// Writes one record.
    pub write: fn(&mut Vec<u8>, &T),
    /// Text before the first record and after the last (`[`/`]`, `{`/`}`).
    pub enclosed: (&'static str, &'static str),
}

impl<T: Clone + Send + 'static> RecordList<T> {
    /// The answer to a request for this list at `uri` with the query `pairs`.
    pub async fn respond(
        &self,
        store: &Store,
        uri: &Uri,
        headers: &HeaderMap,
        pairs: &[(String, String)],
    ) -> Result<Response, ApiError> {
        let ListRequest { page, query } = ListRequest::parse(pairs, self.fields)?;
        let etag = list_etag(store.epoch(), store.list_version(self.what).await?);
        if let Some(not_modified) = not_modified(headers, &etag)? {
            return Ok(not_modified);
        }
        let total = store.count_matching(self.what, &query).await?;
        let chunk = chunk_for(&query);
        let (store, query, find) = (store.clone(), Arc::new(query), self.find);
        let records = ListSource::new(
            page,
            move |from, n| find(store.clone(), query.clone(), from, n),
            T::clone,
            self.write,
        )
        .chunks_of(chunk)
        .enclosed(self.enclosed.0, self.enclosed.1);
        let mut headers = list_headers(uri, page, total);
        headers.insert(header::ETAG, etag);
        json_response(records, headers).await
    }
}

/// Writes `value` as JSON; the types written here cannot fail to serialize.
pub fn write_json(out: &mut Vec<u8>, value: &impl Serialize) {
    serde_json::to_writer(out, value).expect("records serialize to JSON");
}

/// Writes `"key":value`, an entry of an object keyed by id.
pub fn write_entry(out: &mut Vec<u8>, key: &str, value: &impl Serialize) {
    write_json(out, &key);
    out.push(b':');
    write_json(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(total: u64, page: Page) -> ListSource<u64, u64> {
        ListSource::new(
            page,
            move |from, n| {
                let start = match from {
                    Cursor::Offset(offset) => offset as u64,
                    Cursor::After(last) => last + 1,
                };
                let chunk: Vec<u64> = (start..total).take(n).collect();
                Box::pin(async move { Ok(chunk) })
            },
            |n| *n,
            write_json,
        )
        .enclosed("[", "]")
    }

    async fn text(mut source: impl JsonSource) -> (String, usize) {
        let mut out = Vec::new();
        let mut fills = 1;
        while source.fill(&mut out).await.unwrap() {
            fills += 1;
        }
        (String::from_utf8(out).unwrap(), fills)
    }

    #[tokio::test]
    async fn lists_are_written_whole_in_chunks() {
        let all = Page {
            offset: 0,
            limit: usize::MAX,
        };
        let (json, fills) = text(numbers(600, all)).await;
        let parsed: Vec<u64> = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed, (0..600).collect::<Vec<_>>());
        assert_eq!(fills, 3, "600 records in chunks of 256");
        assert_eq!(text(numbers(0, all)).await.0, "[]");
        // Exactly one chunk's worth needs one more (empty) read to know the list ended.
        let (json, fills) = text(numbers(256, all)).await;
        assert_eq!(serde_json::from_str::<Vec<u64>>(&json).unwrap().len(), 256);
        assert_eq!(fills, 2);
    }

    #[tokio::test]
    async fn pages_stop_at_their_limit() {
        let page = Page {
            offset: 10,
            limit: 300,
        };
        let parsed: Vec<u64> = serde_json::from_str(&text(numbers(1000, page)).await.0).unwrap();
        assert_eq!(parsed, (10..310).collect::<Vec<_>>());
        let page = Page {
            offset: 998,
            limit: 5,
        };
        assert_eq!(text(numbers(1000, page)).await.0, "[998,999]");
    }

    #[test]
    fn page_links_keep_the_stride_of_the_page_asked_for() {
        let links = |offset, limit, total| PageLinks::new(Page { offset, limit }, total);
        let expect = |prev, next, last| PageLinks { prev, next, last };
        assert_eq!(links(0, 10, 25), expect(None, Some(10), 20));
        assert_eq!(links(10, 10, 25), expect(Some(0), Some(20), 20));
        assert_eq!(links(20, 10, 25), expect(Some(10), None, 20));
        // Out of step: pages from 5 go 5, 15; the one before 5 is the first ten.
        assert_eq!(links(5, 10, 25), expect(Some(0), Some(15), 15));
        // Past the end, `prev` is the last page; an empty list's only page is the first.
        assert_eq!(links(1000, 10, 25), expect(Some(20), None, 20));
        assert_eq!(links(0, 10, 0), expect(None, None, 0));
        assert_eq!(links(usize::MAX, 1000, 3), expect(Some(0), None, 0));
    }

    #[test]
    fn page_uris_change_only_the_offset_and_stay_well_formed() {
        let uri = |text: &str, offset| page_uri(&text.parse::<Uri>().unwrap(), offset);
        assert_eq!(uri("/books?limit=5", 10), "/books?limit=5&offset=10");
        assert_eq!(uri("/books?offset=3&limit=5", 0), "/books?offset=0&limit=5");
        // A percent-encoded `offset` is the same parameter; a repeat is dropped.
        assert_eq!(uri("/b?off%73et=1&x=1&offset=2", 7), "/b?offset=7&x=1");
        // What a URI should not hold raw (http lets some through) is encoded; what is encoded
        // stays so.
        assert_eq!(uri("/b?q=%3E&x={|}", 0), "/b?q=%3E&x=%7B%7C%7D&offset=0");
    }

    #[test]
    fn paging_parameters_follow_the_books_rules() {
        let page = |limit, offset| PageParams { limit, offset }.page();
        assert_eq!(
            page(None, None).unwrap(),
            Page {
                offset: 0,
                limit: usize::MAX
            }
        );
        assert_eq!(page(Some(1000), Some(5)).unwrap().limit, 1000);
        assert!(page(Some(0), None).is_err());
        assert!(page(Some(1001), None).is_err());
        assert!(page(None, Some(-1)).is_err());
        assert_eq!(page(None, Some(i64::MAX)).unwrap().offset as i64, i64::MAX);
    }
}
