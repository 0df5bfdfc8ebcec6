//! When and how long to wait before trying a request again.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::client::Log;

/// How persistent to be with a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1). For a blob download, attempts that made no progress.
    pub tries: u32,
    /// The first backoff; each next one doubles, with jitter.
    pub base: Duration,
    /// The longest backoff, and the longest `Retry-After` honoured.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            tries: 5,
            base: Duration::from_millis(250),
            max: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Whether attempt number `attempt` (0-based) may be followed by another.
    pub fn again(&self, attempt: u32) -> bool {
        attempt + 1 < self.tries.max(1)
    }

    /// How long to wait after failed attempt number `attempt` (0-based): the server's
    /// `Retry-After` when it gave one, else exponential backoff with jitter (50–100%).
    pub fn delay(&self, attempt: u32, headers: Option<&HeaderMap>) -> Duration {
        if let Some(wait) = headers.and_then(retry_after) {
            return wait.min(self.max);
        }
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.max);
        exp.mul_f64(0.5 + 0.5 * jitter())
    }
}

/// The one retry loop's state, shared by every request img makes (manifests, blobs, tokens,
/// uploads): counts failed attempts against a [`RetryPolicy`], says why it tries again, and
/// waits the backoff (or the server's `Retry-After`).
#[derive(Debug)]
pub(crate) struct Backoff {
    policy: RetryPolicy,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(policy: RetryPolicy) -> Backoff {
        Backoff {
            policy,
            failures: 0,
        }
    }

    /// After a failure: `false` when the policy allows no more attempts; else say so on `log`
    /// (`WHAT: WHY; trying again in Ns`), wait, and return `true`.
    pub(crate) async fn again(
        &mut self,
        log: &Log,
        what: &str,
        why: impl std::fmt::Display,
        headers: Option<&HeaderMap>,
    ) -> bool {
        if !self.policy.again(self.failures) {
            return false;
        }
        let wait = self.policy.delay(self.failures, headers);
        self.failures += 1;
        log.say(&format!(
            "{what}: {why}; trying again in {:.1}s",
            wait.as_secs_f64()
        ));
        tokio::time::sleep(wait).await;
        true
    }

    /// Like [`Backoff::again`], without a word on the log.
    pub(crate) async fn again_quietly(&mut self, headers: Option<&HeaderMap>) -> bool {
        self.again(&Log::default(), "", "", headers).await
    }

    /// The attempt made progress: the next failure starts the count afresh.
    pub(crate) fn progressed(&mut self) {
        self.failures = 0;
    }
}

/// Statuses worth another try: rate limiting, timeouts and server errors.
pub fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let now = jiff::Timestamp::now();
    let wait = when.as_millisecond() - now.as_millisecond();
    Some(Duration::from_millis(u64::try_from(wait).unwrap_or(0)))
}

/// A number in [0, 1) that differs between processes and calls; enough to spread retries.
fn jitter() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()).rotate_left(32);
    let mut x = STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) ^ seed;
    // splitmix64
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn honours_retry_after_in_both_forms() {
        let policy = RetryPolicy::default();
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(policy.delay(0, Some(&h)), Duration::from_secs(2));
        h.insert(RETRY_AFTER, HeaderValue::from_static("3600"));
        assert_eq!(policy.delay(0, Some(&h)), policy.max);
        let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(5);
        let date = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&soon)
            .unwrap();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        let wait = policy.delay(0, Some(&h));
        assert!(
            wait > Duration::from_secs(3) && wait <= Duration::from_secs(5),
            "{wait:?} for {date}"
        );
    }

    #[test]
    fn backs_off_exponentially_with_jitter() {
        let policy = RetryPolicy::default();
        for attempt in 0..6 {
            let full = policy.base * 2u32.pow(attempt);
            let d = policy.delay(attempt, None);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        assert!(policy.delay(30, None) <= policy.max);
        assert!(policy.again(3) && !policy.again(4));
        assert!(retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(retryable(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!retryable(StatusCode::NOT_FOUND));
    }
}
