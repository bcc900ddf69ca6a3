use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};

/// How far a backup's time may run ahead of this host's clock before it counts as dated in
/// the future: hosts sharing a bucket disagree by seconds (and a simulated clock restarts at
/// the same time in every process); a skewed or forged one by more.
pub const SKEW_ALLOWANCE: chrono::Duration = chrono::Duration::minutes(5);

/// Whether `t` is dated in the future, seen from `now`.
pub fn is_future(t: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    t > now + SKEW_ALLOWANCE
}

/// The variable that starts a simulated clock (see [`Clock::from_env`]).
pub const ENV: &str = "LIFEBOAT_NOW";

/// Wall-clock time for ids and records. A simulated clock starts at a chosen time and then
/// runs at real speed, so the demo can build a history with true durations and tests can pin
/// time.
#[derive(Debug, Clone, Default)]
pub struct Clock(Option<Arc<Mutex<Anchor>>>);

/// A simulated time and the real instant it was read at.
type Anchor = (DateTime<Utc>, Instant);

impl Clock {
    pub fn system() -> Self {
        Clock(None)
    }

    /// The system clock, unless `LIFEBOAT_NOW` (RFC 3339) names a starting time: tests and
    /// reproducible demos pin "now" through it, the way `SOURCE_DATE_EPOCH` pins builds.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(ENV) {
            Ok(v) if !v.is_empty() => DateTime::parse_from_rfc3339(&v)
                .map(|t| Clock::starting_at(t.with_timezone(&Utc)))
                .map_err(|e| format!("{ENV}={v:?} is not an RFC 3339 time: {e}")),
            _ => Ok(Clock::system()),
        }
    }

    /// A clock that reads `at` now and runs on from there.
    pub fn starting_at(at: DateTime<Utc>) -> Self {
        Clock(Some(Arc::new(Mutex::new((at, Instant::now())))))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            None => Utc::now(),
            Some(t) => {
                let (base, since) = *t.lock().unwrap_or_else(|e| e.into_inner());
                base + since.elapsed()
            }
        }
    }

    /// Moves a simulated clock; a no-op on the system clock.
    pub fn set(&self, at: DateTime<Utc>) {
        if let Some(t) = &self.0 {
            *t.lock().unwrap_or_else(|e| e.into_inner()) = (at, Instant::now());
        }
    }
}
