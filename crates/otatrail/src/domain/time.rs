//! Time as the domain sees it: milliseconds since the Unix epoch, taken from a [`Clock`].

use std::sync::Arc;

/// Milliseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Millis(pub i64);

impl Millis {
    /// Epoch seconds with millisecond precision, as AWS JSON protocols send timestamps.
    pub fn as_epoch_seconds(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    pub fn to_offset_datetime(self) -> ::time::OffsetDateTime {
        ::time::OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000_000)
            .unwrap_or(::time::OffsetDateTime::UNIX_EPOCH)
    }
}

/// A source of the current time; tests substitute a fixed or offset clock.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Millis;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Millis(d.as_millis() as i64)
    }
}

pub type SharedClock = Arc<dyn Clock>;
