//! The speed reference for `benches/request_path.py`: a bare axum handler answering every request with a
//! static 30-byte JSON body (201 to a POST, whose body it reads), on the same tokio runtime and
//! release profile as monolith, with no middleware at all.
//!
//!     cargo build --release --example reference_server
//!     PORT=8081 target/release/examples/reference_server

use axum::Router;
use axum::body::Bytes;
use axum::http::{Method, StatusCode, header};
use axum::response::IntoResponse;

const BODY: &str = r#"{"id":1,"title":"A Java book"}"#;

async fn answer(method: Method, _body: Bytes) -> impl IntoResponse {
    let status = if method == Method::POST {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, [(header::CONTENT_TYPE, "application/json")], BODY)
}

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8081);
    // The runtime monolith's main.rs builds: tokio's multi-threaded default.
    tokio::runtime::Runtime::new()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        axum::serve(listener, Router::new().fallback(answer)).await
    })
}
