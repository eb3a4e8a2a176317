//! The echo API: the shared key three ways, exact round trips, and no key in any answer.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestResponse, test_config};

pub const KEY: &str = "test-key-Zq8xV2mN4pL7rT1w";
const ECHO: &str = "/api/v1/echo";

pub async fn app_with_key() -> TestApp {
    let mut config = test_config();
    config.secret_key = Some(SecretString::from(KEY));
    TestApp::with_config(config).await
}

/// Percent-encodes everything but unreserved characters, as a careful client does.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn get(app: &TestApp, query: &str, header_key: Option<&str>) -> TestResponse {
    let mut request = Request::get(format!("{ECHO}?{query}"));
    if let Some(key) = header_key {
        request = request.header("x-server-key", key);
    }
    app.send(request.body(Body::empty()).unwrap()).await
}

async fn post(
    app: &TestApp,
    query: &str,
    content_type: &str,
    body: impl Into<Body>,
    header_key: Option<&str>,
) -> TestResponse {
    let mut request = Request::post(format!("{ECHO}?{query}")).header("content-type", content_type);
    if let Some(key) = header_key {
        request = request.header("x-server-key", key);
    }
    app.send(request.body(body.into()).unwrap()).await
}

#[tokio::test]
async fn get_echoes_the_message_with_the_key_in_the_header_or_the_query() {
    let app = app_with_key().await;
    let res = get(&app, "message=hello", Some(KEY)).await;
    assert_eq!(res.assert_json(StatusCode::OK), &json!({"echo": "hello"}));
    let res = get(&app, &format!("message=hi%20there&server_key={KEY}"), None).await;
    assert_eq!(
        res.assert_json(StatusCode::OK),
        &json!({"echo": "hi there"})
    );
}

#[tokio::test]
async fn post_echoes_json_and_plain_text_with_the_key_any_of_three_ways() {
    let app = app_with_key().await;
    let json_body = json!({"message": "from json"}).to_string();
    let res = post(&app, "", "application/json", json_body.clone(), Some(KEY)).await;
    assert_eq!(
        res.assert_json(StatusCode::OK),
        &json!({"echo": "from json"})
    );
    let res = post(
        &app,
        &format!("server_key={KEY}"),
        "application/json",
        json_body,
        None,
    )
    .await;
    assert_eq!(
        res.assert_json(StatusCode::OK),
        &json!({"echo": "from json"})
    );
    let in_body = json!({"message": "key inside", "server_key": KEY}).to_string();
    let res = post(&app, "", "application/json", in_body, None).await;
    assert_eq!(
        res.assert_json(StatusCode::OK),
        &json!({"echo": "key inside"})
    );

    let res = post(
        &app,
        "",
        "text/plain; charset=utf-8",
        "plain words",
        Some(KEY),
    )
    .await;
    assert_eq!(
        res.assert_json(StatusCode::OK),
        &json!({"echo": "plain words"})
    );
    let res = post(&app, &format!("server_key={KEY}"), "text/plain", "q", None).await;
    assert_eq!(res.assert_json(StatusCode::OK), &json!({"echo": "q"}));
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_403_and_the_answer_never_shows_a_key() {
    let app = app_with_key().await;
    let wrong = "wrong-key-0000";
    let cases = [
        get(&app, "message=x", None).await,
        get(&app, "message=x", Some(wrong)).await,
        get(&app, &format!("message=x&server_key={wrong}"), None).await,
        get(&app, "message=x&server_key=", None).await,
        get(&app, "message=x", Some(&KEY[..KEY.len() - 1])).await,
        post(&app, "", "application/json", r#"{"message": "x"}"#, None).await,
        post(
            &app,
            "",
            "application/json",
            json!({"message": "x", "server_key": wrong}).to_string(),
            None,
        )
        .await,
        // The header wins over a right key in the body.
        post(
            &app,
            "",
            "application/json",
            json!({"message": "x", "server_key": KEY}).to_string(),
            Some(wrong),
        )
        .await,
        post(&app, "", "text/plain", "x", None).await,
        post(&app, "", "application/json", "{not json", None).await,
    ];
    for res in cases {
        res.assert_problem(StatusCode::FORBIDDEN, ECHO);
        assert!(
            !res.text.contains(wrong) && !res.text.contains(KEY),
            "{}",
            res.text
        );
    }
}

#[tokio::test]
async fn without_a_configured_key_the_echo_is_503_saying_so() {
    let app = TestApp::new().await;
    for res in [
        get(&app, "message=x", Some(KEY)).await,
        post(&app, "", "text/plain", "x", Some(KEY)).await,
    ] {
        let problem = res.assert_problem(StatusCode::SERVICE_UNAVAILABLE, ECHO);
        assert!(problem["detail"].as_str().unwrap().contains("SECRET_KEY"));
    }
}

#[tokio::test]
async fn bad_requests_with_the_right_key_are_told_what_is_wrong() {
    let app = app_with_key().await;
    get(&app, "", Some(KEY))
        .await
        .assert_problem(StatusCode::BAD_REQUEST, ECHO);
    post(&app, "", "application/json", "{oops", Some(KEY))
        .await
        .assert_problem(StatusCode::BAD_REQUEST, ECHO);
    let res = post(&app, "", "application/json", r#"{"text": "x"}"#, Some(KEY)).await;
    res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, ECHO);
    let res = post(&app, "", "application/json", r#"{"message": 5}"#, Some(KEY)).await;
    assert_eq!(res.error_pointers(), ["/message"]);
    // Not the message in an array: serde would take it as the struct's first field.
    let res = post(&app, "", "application/json", r#"["hello"]"#, Some(KEY)).await;
    res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, ECHO);
    post(&app, "", "application/xml", "<m/>", Some(KEY))
        .await
        .assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, ECHO);
    post(&app, "", "text/plain", vec![0xff_u8, 0xfe], Some(KEY))
        .await
        .assert_problem(StatusCode::BAD_REQUEST, ECHO);
}

#[tokio::test]
async fn a_message_or_key_that_is_not_utf8_is_400_saying_so() {
    let app = app_with_key().await;
    // Percent-escapes that decode to bytes that are not UTF-8: a stray byte, a cut-off
    // sequence, an encoded surrogate, an overlong form; in the message, the key or elsewhere.
    for query in [
        "message=%ff",
        "message=%FF%FE",
        "message=abc%C3",
        "message=%ED%A0%80",
        "message=%C0%AF",
        "message=ok&server_key=%ff",
        "message=ok&other=%80",
        "%ff=x&message=ok",
    ] {
        let res = get(&app, query, Some(KEY)).await;
        let problem = res.assert_problem(StatusCode::BAD_REQUEST, ECHO);
        assert!(
            problem["detail"].as_str().unwrap().contains("UTF-8"),
            "{query}: {problem}"
        );
        assert!(!res.text.contains('\u{fffd}'), "{query}: {}", res.text);
    }
    let res = post(&app, "server_key=%ff", "text/plain", "hi", None).await;
    res.assert_problem(StatusCode::BAD_REQUEST, ECHO);
    for body in [
        &b"\xff"[..],
        b"abc\xff",
        b"\xc3",
        b"\xed\xa0\x80",
        b"\xc0\xaf",
    ] {
        let res = post(&app, "", "text/plain", body.to_vec(), Some(KEY)).await;
        let problem = res.assert_problem(StatusCode::BAD_REQUEST, ECHO);
        assert!(problem["detail"].as_str().unwrap().contains("UTF-8"));
    }
    // JSON strings: a lone surrogate escape, or raw bytes that are not UTF-8.
    for body in [
        &br#"{"message": "\ud800"}"#[..],
        br#"{"message": "a\udc00b"}"#,
        b"{\"message\": \"\xff\"}",
    ] {
        let res = post(&app, "", "application/json", body.to_vec(), Some(KEY)).await;
        res.assert_problem(StatusCode::BAD_REQUEST, ECHO);
    }
    // A valid surrogate pair is one character and comes back as it.
    let res = post(
        &app,
        "",
        "application/json",
        r#"{"message": "\ud83d\ude80"}"#,
        Some(KEY),
    )
    .await;
    assert_eq!(res.assert_json(StatusCode::OK)["echo"], "🚀");
}

#[tokio::test]
async fn other_methods_are_405_with_allow_get_and_post() {
    let app = app_with_key().await;
    for method in [Method::PUT, Method::PATCH, Method::DELETE] {
        let res = app.send_body(method, ECHO, None, "").await;
        res.assert_problem(StatusCode::METHOD_NOT_ALLOWED, ECHO);
        let allow = res.header("allow").unwrap();
        assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    }
}

/// Sends `message` all three ways and returns the three echoes.
async fn round_trips(app: &TestApp, message: &str) -> [TestResponse; 3] {
    [
        get(app, &format!("message={}", encode(message)), Some(KEY)).await,
        post(
            app,
            "",
            "application/json",
            json!({ "message": message }).to_string(),
            Some(KEY),
        )
        .await,
        post(app, "", "text/plain", message.to_owned(), Some(KEY)).await,
    ]
}

#[track_caller]
fn assert_echoes(responses: &[TestResponse; 3], message: &str) {
    for res in responses {
        assert_eq!(res.status, StatusCode::OK, "{message:?}: {}", res.text);
        let echoed: Value = serde_json::from_str(&res.text).unwrap();
        assert_eq!(
            echoed["echo"].as_str().unwrap().as_bytes(),
            message.as_bytes()
        );
    }
}

#[tokio::test]
async fn awkward_messages_come_back_byte_for_byte() {
    let app = app_with_key().await;
    for message in [
        "",
        " ",
        "emoji 👩‍👩‍👧‍👦🚀",
        "RTL: שלום עולם مرحبا",
        "control \u{0}\u{1}\u{7}\u{1b}[31m\t\r\n",
        "quotes \" ' ` and \\ backslashes \\\\",
        "<script>alert('x')</script>",
        "'; DROP TABLE users; --",
        "%41 + plus & amp = equals ? question # hash",
        "\u{202e}reversed\u{200f}",
        "\u{feff}BOM",
    ] {
        assert_echoes(&round_trips(&app, message).await, message);
    }
}

#[tokio::test]
async fn a_text_body_up_to_the_limit_comes_back_and_one_byte_more_is_413() {
    let mut config = test_config();
    config.secret_key = Some(SecretString::from(KEY));
    config.max_body_bytes = 4096;
    let app = TestApp::with_config(config).await;
    let message = "é".repeat(2048); // 4096 bytes
    let res = post(&app, "", "text/plain", message.clone(), Some(KEY)).await;
    assert_eq!(res.assert_json(StatusCode::OK)["echo"], message);
    let res = post(&app, "", "text/plain", format!("{message}x"), Some(KEY)).await;
    res.assert_problem(StatusCode::PAYLOAD_TOO_LARGE, ECHO);
}

#[test]
fn any_unicode_message_round_trips_exactly() {
    // One app for every case: the echo API keeps nothing, and a fresh store per case would
    // cost a database schema each on the PostgreSQL run.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(app_with_key());
    let messages = prop_oneof![
        any::<String>(),
        "[\\x00-\\x1f\"\\\\<>&'%+#?=/]{0,40}",
        "\\PC{0,200}",
    ];
    // What `proptest!` does, so that the saved failures in tests/proptest-regressions are rerun.
    let config = ProptestConfig {
        source_file: Some(file!()),
        ..ProptestConfig::with_cases(200)
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let outcome = runner.run(&messages, |message| {
        let responses = runtime.block_on(round_trips(&app, &message));
        for res in &responses {
            prop_assert_eq!(res.status, StatusCode::OK);
            let echoed: Value = serde_json::from_str(&res.text).unwrap();
            prop_assert_eq!(
                echoed["echo"].as_str().unwrap().as_bytes(),
                message.as_bytes()
            );
        }
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}\n{runner}");
    }
}
