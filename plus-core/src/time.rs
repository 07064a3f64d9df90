use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::time::{Duration, Instant};

/// A point in monotonic time, as the duration since an origin the host chose.
///
/// This is the time convention of every sans-IO core in `plus`: cores never read a clock; every
/// input that depends on time carries a `Timestamp`, and every core reports its next deadline as
/// one. A simulation starts at [`Timestamp::ZERO`] and advances it by hand; a tokio driver maps
/// its clock onto timestamps with [`MonotonicClock`]. Only differences between timestamps mean
/// anything, so two hosts need not agree on the origin.
///
/// In serde it is the duration since the host's origin, meaningful only to that host.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Timestamp(Duration);

impl Timestamp {
    /// The origin.
    pub const ZERO: Timestamp = Timestamp(Duration::ZERO);

    /// The timestamp `since_origin` after the origin.
    #[must_use]
    pub const fn from_duration(since_origin: Duration) -> Self {
        Self(since_origin)
    }

    /// The timestamp `millis` milliseconds after the origin.
    #[must_use]
    pub const fn from_millis(millis: u64) -> Self {
        Self(Duration::from_millis(millis))
    }

    /// Time since the origin.
    #[must_use]
    pub const fn since_origin(self) -> Duration {
        self.0
    }

    /// Whole milliseconds since the origin (saturating at `u64::MAX`).
    #[must_use]
    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    /// `self - earlier`, or zero when `earlier` is later.
    #[must_use]
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// `self + d`, or `None` on overflow.
    #[must_use]
    pub fn checked_add(self, d: Duration) -> Option<Timestamp> {
        self.0.checked_add(d).map(Timestamp)
    }

    /// The wall clock now, with the Unix epoch as the origin (zero if the clock is set before
    /// it). Hosts that start and restore their cores at this origin share one time line: the
    /// events of a release read as wall-clock times, one audit log spans a controller's
    /// failover, and deadlines saved by one process mean the same to the next (within the
    /// machines' clock skew).
    #[must_use]
    pub fn since_unix_epoch() -> Self {
        Self(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default())
    }

    /// This timestamp as a wall-clock time, when its origin is the Unix epoch (see
    /// [`Timestamp::since_unix_epoch`]).
    #[must_use]
    pub fn as_system_time(self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + self.0
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    /// Saturates instead of panicking: a deadline past the end of time is simply never reached.
    fn add(self, rhs: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(rhs))
    }
}

impl AddAssign<Duration> for Timestamp {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl Sub for Timestamp {
    type Output = Duration;
    /// Saturates at zero, like [`Timestamp::saturating_duration_since`].
    fn sub(self, rhs: Timestamp) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{:?}", self.0)
    }
}

/// Maps a real monotonic clock onto [`Timestamp`]s, for drivers.
///
/// Cores never hold one; a driver reads `now()` and passes the value in. The origin is the moment
/// the clock was created.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    #[must_use]
    pub fn new() -> Self {
        Self { origin: Instant::now() }
    }

    /// A clock whose origin is `origin` (for drivers that share an origin with tokio's clock).
    #[must_use]
    pub fn with_origin(origin: Instant) -> Self {
        Self { origin }
    }

    /// The current time.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        self.at(Instant::now())
    }

    /// The timestamp of `instant` (the origin for instants before it).
    #[must_use]
    pub fn at(&self, instant: Instant) -> Timestamp {
        Timestamp(instant.saturating_duration_since(self.origin))
    }

    /// The instant of `timestamp`, for arming a real timer at a core's deadline.
    #[must_use]
    pub fn instant(&self, timestamp: Timestamp) -> Instant {
        self.origin
            .checked_add(timestamp.0)
            .unwrap_or(self.origin + Duration::from_secs(86_400 * 365 * 30))
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_wall_clock_origin_round_trips_to_system_time() {
        let before = std::time::SystemTime::now();
        let now = Timestamp::since_unix_epoch();
        let after = std::time::SystemTime::now();
        let wall = now.as_system_time();
        assert!(before <= wall && wall <= after, "{wall:?} not within {before:?}..{after:?}");
        assert!(now.as_millis() > 1_600_000_000_000, "after 2020: {now:?}");
    }

    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_millis(1_500);
        assert_eq!(t.as_millis(), 1_500);
        assert_eq!(Timestamp::ZERO - t, Duration::ZERO);
        assert_eq!(t - Timestamp::ZERO, Duration::from_millis(1_500));
        let end = Timestamp::from_duration(Duration::MAX) + Duration::from_secs(1);
        assert_eq!(end.since_origin(), Duration::MAX);
        assert_eq!(
            Timestamp::from_duration(Duration::MAX).checked_add(Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn clock_round_trips_instants() {
        let clock = MonotonicClock::new();
        let later = clock.instant(Timestamp::from_millis(250));
        assert_eq!(clock.at(later), Timestamp::from_millis(250));
        assert!(clock.now() >= Timestamp::ZERO);
    }
}
