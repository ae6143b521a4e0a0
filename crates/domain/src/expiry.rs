//! Password expiry: which reminder is due for a password, and how a report groups what
//! expires when. Pure functions of the expiry time, the clock and the configured days.

use crate::clock::UnixTime;

pub const DAY: i64 = 86_400;

/// Whole days left before `expires_at`, rounded up: a password that expires in 30 hours has
/// 2 days left, one that expires in an hour has 1; 0 or less once it has expired.
pub fn days_left(expires_at: UnixTime, now: UnixTime) -> i64 {
    let secs = expires_at - now;
    if secs <= 0 {
        return 0;
    }
    (secs + DAY - 1) / DAY
}

/// The reminder due now: the smallest of `days` that is at least the days left. `None` when
/// the password expires later than the largest, or has expired (a reminder cannot help then;
/// the report counts it). Run daily with `[14, 7, 3, 1]`, a password gets the 14-day reminder,
/// then the 7-, 3- and 1-day ones; a job that first runs 5 days before sends only the 7-day one.
pub fn due_reminder(expires_at: UnixTime, now: UnixTime, days: &[u32]) -> Option<u32> {
    let left = days_left(expires_at, now);
    if left <= 0 {
        return None;
    }
    days.iter().copied().filter(|d| i64::from(*d) >= left).min()
}

/// The report's row for a password: `expired`, or the smallest of `days` it falls within
/// (`"7"`: within 7 days, more than the next smaller), or `None` past the largest.
pub fn bucket(expires_at: UnixTime, now: UnixTime, days: &[u32]) -> Option<String> {
    if expires_at <= now {
        return Some("expired".into());
    }
    due_reminder(expires_at, now, days).map(|d| d.to_string())
}

/// The configured days, each checked: what is wrong, in words, or the days sorted largest
/// first without repeats.
pub fn check_days(days: &[u32]) -> Result<Vec<u32>, String> {
    if days.is_empty() {
        return Err(
            "reminders.days is empty: list the days before expiry to remind on, e.g. [14, 7, 3, 1]"
                .into(),
        );
    }
    if let Some(bad) = days.iter().find(|d| **d == 0 || **d > 365) {
        return Err(format!(
            "reminders.days: {bad} is not between 1 and 365 days"
        ));
    }
    let mut out = days.to_vec();
    out.sort_unstable_by(|a, b| b.cmp(a));
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const DAYS: [u32; 4] = [14, 7, 3, 1];

    #[test]
    fn days_left_round_up() {
        assert_eq!(days_left(NOW + 30 * 3600, NOW), 2);
        assert_eq!(days_left(NOW + 3600, NOW), 1);
        assert_eq!(days_left(NOW + DAY, NOW), 1);
        assert_eq!(days_left(NOW, NOW), 0);
        assert_eq!(days_left(NOW - DAY, NOW), 0);
    }

    #[test]
    fn each_threshold_is_due_in_its_own_window() {
        assert_eq!(due_reminder(NOW + 20 * DAY, NOW, &DAYS), None);
        assert_eq!(due_reminder(NOW + 14 * DAY, NOW, &DAYS), Some(14));
        assert_eq!(due_reminder(NOW + 8 * DAY, NOW, &DAYS), Some(14));
        assert_eq!(due_reminder(NOW + 7 * DAY, NOW, &DAYS), Some(7));
        assert_eq!(due_reminder(NOW + 5 * DAY, NOW, &DAYS), Some(7));
        assert_eq!(due_reminder(NOW + 2 * DAY, NOW, &DAYS), Some(3));
        assert_eq!(due_reminder(NOW + 3600, NOW, &DAYS), Some(1));
        assert_eq!(due_reminder(NOW, NOW, &DAYS), None, "expired");
    }

    #[test]
    fn the_report_groups_by_threshold() {
        assert_eq!(bucket(NOW - 1, NOW, &DAYS).as_deref(), Some("expired"));
        assert_eq!(bucket(NOW + 2 * DAY, NOW, &DAYS).as_deref(), Some("3"));
        assert_eq!(bucket(NOW + 40 * DAY, NOW, &DAYS), None);
    }

    #[test]
    fn configured_days_are_checked_and_sorted() {
        assert_eq!(check_days(&[1, 14, 7, 7, 3]), Ok(vec![14, 7, 3, 1]));
        assert!(check_days(&[]).unwrap_err().contains("e.g. [14, 7, 3, 1]"));
        assert!(check_days(&[0]).unwrap_err().contains("between 1 and 365"));
    }
}
