//! Restart policies (`--restart`), as docker has them, kept by a detached container's
//! supervisor: `no`, `on-failure[:N]` (a non-zero exit, at most N times when N is given),
//! `always` and `unless-stopped` (any exit). A container stopped with `img stop` is never
//! restarted. Between runs the supervisor waits docker's back-off: 100 ms, doubled after
//! each restart up to a minute, back to 100 ms once a run lasted 10 seconds.

use std::time::Duration;

use crate::{Error, Result};

/// A `--restart` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Never (docker's default).
    #[default]
    No,
    /// After a non-zero exit; at most this many times when given.
    OnFailure(Option<u32>),
    /// After any exit.
    Always,
    /// After any exit (the same as `always` here: there is no daemon to restart).
    UnlessStopped,
}

impl RestartPolicy {
    /// Parse docker's spelling.
    ///
    /// ```
    /// use img_run::restart::RestartPolicy;
    /// assert_eq!(RestartPolicy::parse("on-failure:3").unwrap(), RestartPolicy::OnFailure(Some(3)));
    /// assert_eq!(RestartPolicy::parse("always").unwrap(), RestartPolicy::Always);
    /// assert!(RestartPolicy::parse("sometimes").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<RestartPolicy> {
        let bad = || {
            Error::Config(format!(
                "invalid restart policy {text:?}: expected no, on-failure[:N], always or unless-stopped"
            ))
        };
        Ok(match text.split_once(':') {
            None => match text {
                "no" | "" => RestartPolicy::No,
                "on-failure" => RestartPolicy::OnFailure(None),
                "always" => RestartPolicy::Always,
                "unless-stopped" => RestartPolicy::UnlessStopped,
                _ => return Err(bad()),
            },
            Some(("on-failure", n)) => {
                RestartPolicy::OnFailure(Some(n.parse().map_err(|_| bad())?))
            }
            Some(_) => return Err(bad()),
        })
    }

    /// docker's spelling of it.
    pub fn as_string(&self) -> String {
        match self {
            RestartPolicy::No => "no".into(),
            RestartPolicy::OnFailure(None) => "on-failure".into(),
            RestartPolicy::OnFailure(Some(n)) => format!("on-failure:{n}"),
            RestartPolicy::Always => "always".into(),
            RestartPolicy::UnlessStopped => "unless-stopped".into(),
        }
    }

    /// Whether a container that exited with `code`, restarted `count` times so far and not
    /// stopped by `img stop` (`stopped`), runs again.
    pub fn restarts(&self, code: i32, count: u32, stopped: bool) -> bool {
        if stopped {
            return false;
        }
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure(max) => code != 0 && max.is_none_or(|m| count < m),
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }
}

/// How long to wait before restart number `count + 1`, after a run that lasted `ran`.
pub fn backoff(count: u32, ran: Duration) -> Duration {
    if ran >= Duration::from_secs(10) {
        return Duration::from_millis(100);
    }
    Duration::from_millis(100u64.saturating_mul(1 << count.min(10))).min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_decide_as_dockers() {
        let p = RestartPolicy::OnFailure(Some(2));
        assert!(p.restarts(1, 0, false) && p.restarts(1, 1, false));
        assert!(!p.restarts(1, 2, false) && !p.restarts(0, 0, false));
        assert!(RestartPolicy::OnFailure(None).restarts(3, 1000, false));
        assert!(RestartPolicy::Always.restarts(0, 5, false));
        assert!(!RestartPolicy::Always.restarts(0, 5, true));
        assert!(!RestartPolicy::No.restarts(1, 0, false));
        assert_eq!(
            RestartPolicy::parse("on-failure:2").unwrap().as_string(),
            "on-failure:2"
        );
        assert!(RestartPolicy::parse("on-failure:x").is_err());
    }

    #[test]
    fn back_off_doubles_to_a_minute_and_resets_after_a_long_run() {
        let short = Duration::from_secs(1);
        assert_eq!(backoff(0, short), Duration::from_millis(100));
        assert_eq!(backoff(3, short), Duration::from_millis(800));
        assert_eq!(backoff(30, short), Duration::from_secs(60));
        assert_eq!(
            backoff(30, Duration::from_secs(11)),
            Duration::from_millis(100)
        );
    }
}
