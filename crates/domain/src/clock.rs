//! Time, injected. Everything that expires or counts within a window asks a [`Clock`].

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds since the Unix epoch, UTC.
pub type UnixTime = i64;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> UnixTime;
}

/// The server's clock: Unix seconds that follow the monotonic clock and only drift towards the
/// wall clock, at most one second per ten. A wall-clock step (an administrator setting the
/// date, NTP stepping, a VM resumed) therefore neither revives an expired code nor empties a
/// rate-limit window: set back an hour, the server's time keeps running forward and catches
/// up with the wall clock over ten hours. It never runs backwards.
pub struct SystemClock {
    wall: Box<dyn Fn() -> f64 + Send + Sync>,
    mono: Box<dyn Fn() -> f64 + Send + Sync>,
    /// (monotonic seconds, server seconds) at the last reading.
    last: std::sync::Mutex<Option<(f64, f64)>>,
}

impl std::fmt::Debug for SystemClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemClock").finish_non_exhaustive()
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemClock {
    pub fn new() -> Self {
        let origin = std::time::Instant::now();
        Self::with_sources(
            || {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0)
            },
            move || origin.elapsed().as_secs_f64(),
        )
    }

    /// With the wall and monotonic readings handed in (tests).
    pub fn with_sources(
        wall: impl Fn() -> f64 + Send + Sync + 'static,
        mono: impl Fn() -> f64 + Send + Sync + 'static,
    ) -> Self {
        Self {
            wall: Box::new(wall),
            mono: Box::new(mono),
            last: std::sync::Mutex::new(None),
        }
    }
}

/// At most this share of elapsed time is spent catching up with the wall clock.
const SLEW: f64 = 0.1;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        let (wall, mono) = ((self.wall)(), (self.mono)());
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = match *last {
            None => wall,
            Some((m0, t0)) => {
                let dt = (mono - m0).max(0.0);
                let predicted = t0 + dt;
                let max = dt * SLEW;
                predicted + (wall - predicted).clamp(-max, max)
            }
        };
        *last = Some((mono, now));
        now.floor() as i64
    }
}

/// A clock that only moves when told to; shared between a test and the code under test.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: UnixTime) -> Self {
        Self(Arc::new(AtomicI64::new(start)))
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
    pub fn set(&self, t: UnixTime) {
        self.0.store(t, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}

/// RFC 3339 UTC rendering, for logs and exports.
pub fn rfc3339(t: UnixTime) -> String {
    // Civil-from-days (Howard Hinnant); avoids a date crate in the pure core.
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// Parses `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ` (UTC) into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<UnixTime> {
    let s = s.trim();
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, t.trim_end_matches('Z')),
        None => (s, "00:00:00"),
    };
    let mut dp = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (dp.next()??, dp.next()??, dp.next()??);
    let mut tp = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (
        tp.next()??,
        tp.next().flatten().unwrap_or(0),
        tp.next().flatten().unwrap_or(0),
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake wall and monotonic clock for [`SystemClock`].
    fn fake() -> (Arc<std::sync::Mutex<(f64, f64)>>, SystemClock) {
        let t = Arc::new(std::sync::Mutex::new((1_000_000.0, 0.0)));
        let (a, b) = (t.clone(), t.clone());
        let c = SystemClock::with_sources(
            move || a.lock().map(|g| g.0).unwrap_or(0.0),
            move || b.lock().map(|g| g.1).unwrap_or(0.0),
        );
        (t, c)
    }

    fn tick(t: &std::sync::Mutex<(f64, f64)>, secs: f64) {
        let mut g = t.lock().unwrap();
        g.0 += secs;
        g.1 += secs;
    }

    #[test]
    fn a_wall_clock_set_back_an_hour_does_not_turn_the_server_clock_back() {
        let (t, c) = fake();
        let start = c.now();
        tick(&t, 60.0);
        assert_eq!(c.now(), start + 60);
        t.lock().unwrap().0 -= 3900.0;
        let mut prev = c.now();
        for _ in 0..600 {
            tick(&t, 1.0);
            let now = c.now();
            assert!(now >= prev, "never backwards");
            prev = now;
        }
        // Ten minutes later the server's clock has moved forward at least 9 of them.
        assert!(prev >= start + 60 + 540, "{prev} vs {start}");
    }

    #[test]
    fn a_wall_clock_set_forward_a_day_moves_the_server_clock_a_tenth_faster_at_most() {
        let (t, c) = fake();
        let start = c.now();
        t.lock().unwrap().0 += 86_400.0;
        for _ in 0..600 {
            tick(&t, 1.0);
        }
        let now = c.now();
        assert!(now <= start + 660, "{now} vs {start}: at most 10% faster");
        assert!(now >= start + 600);
    }

    #[test]
    fn the_server_clock_catches_up_with_a_corrected_wall_clock() {
        let (t, c) = fake();
        c.now();
        t.lock().unwrap().0 -= 30.0;
        for _ in 0..400 {
            tick(&t, 1.0);
            c.now();
        }
        let wall = t.lock().unwrap().0 as i64;
        assert!((c.now() - wall).abs() <= 1);
    }

    #[test]
    fn rfc3339_round_trips() {
        for t in [0, 951_782_400, 1_700_000_000, 4_102_444_799] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("2024-02-29"), Some(1_709_164_800));
        assert_eq!(parse_rfc3339("2024-13-01"), None);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(100);
        assert_eq!(c.now(), 100);
        c.advance(5);
        assert_eq!(c.now(), 105);
    }
}
