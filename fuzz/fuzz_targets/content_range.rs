//! Where a resumed blob download continues: the `Content-Range` of a `206` answer to our
//! `Range: bytes=N-` request. Oracles: no panic; a start is found only in a `206` answer whose
//! value begins `bytes ` and the start's digits; anything else (another status, no header)
//! means "not resumed".
#![no_main]

use img_registry::fuzzing::resume_start;
use libfuzzer_sys::fuzz_target;
use reqwest::header::{CONTENT_RANGE, HeaderValue};

fn response(status: u16, value: Option<HeaderValue>) -> reqwest::Response {
    let mut builder = http::Response::builder().status(status);
    if let Some(v) = value {
        builder = builder.header(CONTENT_RANGE, v);
    }
    reqwest::Response::from(builder.body(Vec::<u8>::new()).expect("a valid response"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let start = resume_start(&response(206, Some(value.clone())));
    if let Some(start) = start {
        let text = value.to_str().expect("a start was read from text");
        let rest = text
            .strip_prefix("bytes ")
            .expect("a start comes after \"bytes \"");
        assert!(
            rest.trim_start().starts_with(&start.to_string())
                || rest.trim_start().starts_with('+')
                || rest.trim_start().starts_with('0'),
            "{text:?} read as {start}"
        );
    }
    assert_eq!(resume_start(&response(200, Some(value))), None);
    assert_eq!(resume_start(&response(206, None)), None);
});
