//! `Retry-After` (seconds or an HTTP date) and the backoff it feeds. Oracles: no panic; no wait
//! longer than the policy's `max`, whatever the header says.
#![no_main]

use std::time::Duration;

use img_registry::RetryPolicy;
use libfuzzer_sys::fuzz_target;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

fuzz_target!(|data: &[u8]| {
    let Some((&attempt, value)) = data.split_first() else {
        return;
    };
    let Ok(value) = HeaderValue::from_bytes(value) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(RETRY_AFTER, value);
    let _ = img_registry::fuzzing::retry_after(&headers);
    for policy in [
        RetryPolicy::default(),
        RetryPolicy {
            tries: 1,
            base: Duration::ZERO,
            max: Duration::ZERO,
        },
        RetryPolicy {
            tries: u32::MAX,
            base: Duration::from_secs(3600),
            max: Duration::from_secs(86400),
        },
    ] {
        let wait = policy.delay(u32::from(attempt), Some(&headers));
        assert!(wait <= policy.max, "{wait:?} > {:?}", policy.max);
        let backoff = policy.delay(u32::from(attempt), None);
        assert!(backoff <= policy.max, "{backoff:?} > {:?}", policy.max);
        let _ = policy.again(u32::from(attempt));
    }
});
