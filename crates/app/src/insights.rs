//! Usage and insights for the admin pages (modelled on Azure AD SSPR's "Usage & insights"):
//! resets and unlocks per day, verifications by method, registrations by method, users who
//! were blocked or rate limited. Pure functions over audit events; the caller reads the log
//! and passes the clock's `now`.
//!
//! How the reset service records a flow (see `reset.rs`), and so how it is counted here:
//!
//! * `ResetStarted` / `UnlockStarted` open a flow and carry its `flow_id`; they tell which kind
//!   of flow a later event belongs to.
//! * `MethodVerified` (success) and `VerificationFailed` (failure) carry
//!   `details = {"method": "<name>"}`: these make up [`Insights::by_method`].
//! * A flow **succeeded** when it has a `ResetPassword` (or `UnlockAccount`) success.
//! * A flow **failed** when it has no success but a `ResetPassword` / `UnlockAccount` failure,
//!   a `PasswordRejected` failure, or a `BlockedFromReset` (whatever its outcome: the block
//!   recorded after too many wrong guesses is written with the outcome of the triggering
//!   event). Several failures of one flow (three rejected passwords, say) count once, on the
//!   day of the last one; a flow that failed and then succeeded counts as a success only.
//!   Events without a `flow_id` count one each.
//! * A `BlockedFromReset` at the very start of a flow has no `ResetStarted`/`UnlockStarted`
//!   beside it (the start event *became* the block), so its kind is unknown unless its
//!   details name one (`{"kind": "unlock"}`); it then counts as a reset, as its name says.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use sspr_domain::audit::{Activity, AuditEvent, ClientType, Outcome};
use sspr_domain::clock::UnixTime;
use sspr_domain::{FlowKind, Method};

/// The longest window [`compute`] accepts, in days; longer requests are cut to this.
pub const MAX_DAYS: u32 = 366;

const DAY: i64 = 86_400;

/// One UTC day of the window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DayRow {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub resets_ok: u32,
    pub resets_failed: u32,
    pub unlocks_ok: u32,
    pub unlocks_failed: u32,
}

/// A user (as entered, canonical form) who was blocked or rate limited in the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockedRow {
    pub target: String,
    /// How many `BlockedFromReset` and `RateLimited` events named this user.
    pub count: u32,
    /// When the latest of them happened (Unix seconds).
    pub last_at: UnixTime,
    /// The latest one's activity (`BlockedFromReset` or `RateLimited`).
    pub last_activity: Activity,
    /// The latest one's reason (`blocked`, `start_rate`, `5 failed verifications`…).
    pub last_reason: String,
}

/// Sums over the whole window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub resets_ok: u32,
    pub resets_failed: u32,
    pub unlocks_ok: u32,
    pub unlocks_failed: u32,
    /// `MethodVerified` successes.
    pub verifications_ok: u32,
    /// `VerificationFailed` events.
    pub verifications_failed: u32,
    /// `BlockedFromReset` events.
    pub blocked_events: u32,
    /// `RateLimited` events.
    pub rate_limited_events: u32,
    /// Flows that expired unfinished (`ResetAbandoned`, `UnlockAbandoned`).
    pub abandoned: u32,
}

/// Everything the usage and insights page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Insights {
    /// Start of the window: 00:00 UTC of its first day (inclusive).
    pub from: UnixTime,
    /// End of the window: 00:00 UTC after the day of `now` (exclusive).
    pub until: UnixTime,
    /// Every day of the window, oldest first, zero-filled.
    pub days: Vec<DayRow>,
    /// Verifications by method: `(method, successes, failures)`. Every known method in
    /// [`Method::ALL`] order (zero-filled), then any other name found in the log, sorted.
    pub by_method: Vec<(String, u32, u32)>,
    /// Users registered for each method, in [`Method::ALL`] order (zero-filled).
    pub registrations_by_method: Vec<(String, u32)>,
    /// Distinct users with at least one registered method.
    pub registered_users: u32,
    /// Blocked or rate-limited users, the most recent first.
    pub blocked: Vec<BlockedRow>,
    /// Successful resets and unlocks by the client that finished them, in
    /// [`ClientType::ALL`] order (zero-filled).
    pub by_client: Vec<(String, u32)>,
    pub totals: Totals,
}

/// `YYYY-MM-DD` (UTC) of a Unix time.
pub fn day_label(t: UnixTime) -> String {
    let s = sspr_domain::clock::rfc3339(t);
    match s.split_once('T') {
        Some((day, _)) => day.to_owned(),
        None => s,
    }
}

/// Computes the page's figures for the `days` UTC days ending with the day of `now`
/// (`days` is clamped to `1..=MAX_DAYS`). `events` may be in any order and may reach
/// outside the window: only events inside it are counted, but all of them help tell which
/// flow was a reset and which an unlock. `registrations` lists each user's registered
/// methods; a user listed twice is counted once.
pub fn compute(
    events: &[AuditEvent],
    registrations: &[(String, Vec<Method>)],
    now: UnixTime,
    days: u32,
) -> Insights {
    let days = days.clamp(1, MAX_DAYS);
    let today = now.div_euclid(DAY);
    let first = today - i64::from(days - 1);
    let from = first * DAY;
    let until = (today + 1) * DAY;
    let in_window = |e: &&AuditEvent| e.at >= from && e.at < until;

    let mut rows: Vec<DayRow> = (0..i64::from(days))
        .map(|i| DayRow {
            day: day_label((first + i) * DAY),
            ..DayRow::default()
        })
        .collect();
    let abandoned = events
        .iter()
        .filter(in_window)
        .filter(|e| {
            matches!(
                e.activity,
                Activity::ResetAbandoned | Activity::UnlockAbandoned
            )
        })
        .count();
    let mut totals = Totals {
        abandoned: u32::try_from(abandoned).unwrap_or(u32::MAX),
        ..Totals::default()
    };

    // Flow outcomes.
    let kinds = flow_kinds(events);
    let mut flows: HashMap<(&str, Kind), FlowEnd<'_>> = HashMap::new();
    let mut loose: Vec<(Kind, bool, &AuditEvent)> = Vec::new();
    for e in events.iter().filter(in_window) {
        let Some((implied, ok)) = terminal(e) else {
            continue;
        };
        let kind = e
            .flow_id
            .as_deref()
            .and_then(|f| kinds.get(f).copied())
            .or_else(|| kind_in_details(e))
            .unwrap_or(implied);
        match e.flow_id.as_deref() {
            Some(f) if !f.is_empty() => flows.entry((f, kind)).or_default().add(ok, e),
            _ => loose.push((kind, ok, e)),
        }
    }
    let decided = flows
        .into_iter()
        .filter_map(|((_, kind), end)| end.decided().map(|(ok, e)| (kind, ok, e)))
        .chain(loose);
    // Resets and unlocks come from clients; sspr's own jobs make none.
    let mut by_client: Vec<(String, u32)> = ClientType::ALL
        .iter()
        .filter(|c| **c != ClientType::System)
        .map(|c| (c.as_str().to_owned(), 0))
        .collect();
    for (kind, ok, e) in decided {
        let Some(row) = usize::try_from(e.at.div_euclid(DAY) - first)
            .ok()
            .and_then(|i| rows.get_mut(i))
        else {
            continue;
        };
        let (day, total) = match (kind, ok) {
            (Kind::Reset, true) => (&mut row.resets_ok, &mut totals.resets_ok),
            (Kind::Reset, false) => (&mut row.resets_failed, &mut totals.resets_failed),
            (Kind::Unlock, true) => (&mut row.unlocks_ok, &mut totals.unlocks_ok),
            (Kind::Unlock, false) => (&mut row.unlocks_failed, &mut totals.unlocks_failed),
        };
        *day += 1;
        *total += 1;
        // Completions only.
        if let Some(c) = by_client
            .iter_mut()
            .find(|c| ok && c.0 == e.client_type.as_str())
        {
            c.1 += 1;
        }
    }

    // Verifications by method.
    let mut methods: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for e in events.iter().filter(in_window) {
        let ok = match (e.activity, e.outcome) {
            (Activity::MethodVerified, Outcome::Success) => true,
            (Activity::MethodVerified, Outcome::Failure) | (Activity::VerificationFailed, _) => {
                false
            }
            _ => continue,
        };
        let name = e
            .details
            .get("method")
            .and_then(|m| m.as_str())
            .filter(|m| !m.is_empty())
            .unwrap_or("unknown");
        let slot = methods.entry(name.to_owned()).or_default();
        if ok {
            slot.0 += 1;
            totals.verifications_ok += 1;
        } else {
            slot.1 += 1;
            totals.verifications_failed += 1;
        }
    }
    let mut by_method: Vec<(String, u32, u32)> = Method::ALL
        .iter()
        .map(|m| {
            let (ok, failed) = methods.remove(m.as_str()).unwrap_or_default();
            (m.as_str().to_owned(), ok, failed)
        })
        .collect();
    by_method.extend(methods.into_iter().map(|(m, (ok, failed))| (m, ok, failed)));

    // Registrations.
    let mut users: BTreeMap<&str, BTreeSet<Method>> = BTreeMap::new();
    for (user, ms) in registrations {
        users.entry(user.as_str()).or_default().extend(ms);
    }
    users.retain(|_, ms| !ms.is_empty());
    let registered_users = u32::try_from(users.len()).unwrap_or(u32::MAX);
    let registrations_by_method = Method::ALL
        .iter()
        .map(|m| {
            let n = users.values().filter(|ms| ms.contains(m)).count();
            (m.as_str().to_owned(), u32::try_from(n).unwrap_or(u32::MAX))
        })
        .collect();

    // Blocked and rate-limited users.
    let mut blocked: BTreeMap<&str, BlockedRow> = BTreeMap::new();
    for e in events.iter().filter(in_window) {
        match e.activity {
            Activity::BlockedFromReset => totals.blocked_events += 1,
            Activity::RateLimited => totals.rate_limited_events += 1,
            _ => continue,
        }
        if e.target.is_empty() {
            continue;
        }
        let row = blocked
            .entry(e.target.as_str())
            .or_insert_with(|| BlockedRow {
                target: e.target.clone(),
                count: 0,
                last_at: e.at,
                last_activity: e.activity,
                last_reason: e.reason.clone(),
            });
        row.count += 1;
        if e.at > row.last_at {
            row.last_at = e.at;
            row.last_activity = e.activity;
            row.last_reason.clone_from(&e.reason);
        }
    }
    let mut blocked: Vec<BlockedRow> = blocked.into_values().collect();
    blocked.sort_by(|a, b| {
        b.last_at
            .cmp(&a.last_at)
            .then_with(|| a.target.cmp(&b.target))
    });

    Insights {
        from,
        until,
        days: rows,
        by_method,
        registrations_by_method,
        registered_users,
        blocked,
        by_client,
        totals,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Reset,
    Unlock,
}

impl Kind {
    /// A change of a known password is no self-service recovery: the insights leave it out.
    fn of(k: FlowKind) -> Option<Kind> {
        match k {
            FlowKind::Reset => Some(Kind::Reset),
            FlowKind::Unlock => Some(Kind::Unlock),
            FlowKind::Change | FlowKind::Invite => None,
        }
    }
}

/// Which flows were resets and which unlocks, from the events that say so.
fn flow_kinds(events: &[AuditEvent]) -> HashMap<&str, Kind> {
    let mut kinds = HashMap::new();
    for e in events {
        let kind = match e.activity {
            Activity::ResetStarted => Kind::Reset,
            Activity::UnlockStarted => Kind::Unlock,
            _ => continue,
        };
        if let Some(f) = e.flow_id.as_deref().filter(|f| !f.is_empty()) {
            kinds.insert(f, kind);
        }
    }
    kinds
}

/// A `{"kind": "reset" | "unlock"}` in the event's details.
fn kind_in_details(e: &AuditEvent) -> Option<Kind> {
    e.details
        .get("kind")
        .and_then(|k| k.as_str())
        .and_then(FlowKind::parse)
        .and_then(Kind::of)
}

/// Whether the event ends a flow: its implied kind and whether it succeeded.
fn terminal(e: &AuditEvent) -> Option<(Kind, bool)> {
    let ok = e.outcome == Outcome::Success;
    match e.activity {
        Activity::ResetPassword => Some((Kind::Reset, ok)),
        Activity::UnlockAccount => Some((Kind::Unlock, ok)),
        Activity::PasswordRejected if !ok => Some((Kind::Reset, false)),
        Activity::BlockedFromReset => Some((Kind::Reset, false)),
        Activity::ResetAbandoned => Some((Kind::Reset, false)),
        Activity::UnlockAbandoned => Some((Kind::Unlock, false)),
        _ => None,
    }
}

/// The first success and the last failure seen for one flow.
#[derive(Default)]
struct FlowEnd<'a> {
    success: Option<&'a AuditEvent>,
    failure: Option<&'a AuditEvent>,
}

impl<'a> FlowEnd<'a> {
    fn add(&mut self, ok: bool, e: &'a AuditEvent) {
        let key = |x: &AuditEvent| (x.at, x.id);
        if ok {
            if self.success.is_none_or(|s| key(e) < key(s)) {
                self.success = Some(e);
            }
        } else if self.failure.is_none_or(|f| key(e) >= key(f)) {
            self.failure = Some(e);
        }
    }

    /// A success wins over any failure.
    fn decided(&self) -> Option<(bool, &'a AuditEvent)> {
        match (self.success, self.failure) {
            (Some(s), _) => Some((true, s)),
            (None, Some(f)) => Some((false, f)),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2024-03-10T12:00:00Z.
    const NOW: i64 = 1_710_072_000;
    /// 00:00 UTC of NOW's day.
    const TODAY: i64 = NOW - 12 * 3600;

    fn ev(at: i64, activity: Activity, outcome: Outcome, flow: &str, target: &str) -> AuditEvent {
        let mut e = AuditEvent::new(at, activity, outcome);
        if !flow.is_empty() {
            e.flow_id = Some(flow.into());
        }
        e.target = target.into();
        e
    }

    fn with_method(mut e: AuditEvent, m: &str) -> AuditEvent {
        e.details = json!({ "method": m });
        e
    }

    fn day(ins: &Insights, label: &str) -> DayRow {
        ins.days
            .iter()
            .find(|d| d.day == label)
            .cloned()
            .unwrap_or_else(|| panic!("no row for {label}"))
    }

    #[test]
    fn window_is_zero_filled_oldest_first() {
        let ins = compute(&[], &[], NOW, 7);
        let labels: Vec<&str> = ins.days.iter().map(|d| d.day.as_str()).collect();
        assert_eq!(
            labels,
            [
                "2024-03-04",
                "2024-03-05",
                "2024-03-06",
                "2024-03-07",
                "2024-03-08",
                "2024-03-09",
                "2024-03-10"
            ]
        );
        assert!(ins.days.iter().all(|d| *d
            == DayRow {
                day: d.day.clone(),
                ..DayRow::default()
            }));
        assert_eq!(ins.from, TODAY - 6 * DAY);
        assert_eq!(ins.until, TODAY + DAY);
        assert_eq!(ins.totals, Totals::default());
        assert!(ins.blocked.is_empty());
        assert_eq!(ins.registered_users, 0);
        assert_eq!(
            ins.by_method,
            [
                ("email".to_owned(), 0, 0),
                ("sms".to_owned(), 0, 0),
                ("questions".to_owned(), 0, 0),
                ("totp".to_owned(), 0, 0),
                ("recovery_code".to_owned(), 0, 0),
                ("passkey".to_owned(), 0, 0),
            ]
        );
    }

    #[test]
    fn abandoned_flows_count_as_failed_and_are_totalled() {
        let events = [
            ev(
                TODAY + 10,
                Activity::ResetStarted,
                Outcome::Success,
                "f1",
                "a",
            ),
            ev(
                TODAY + 20,
                Activity::ResetAbandoned,
                Outcome::Failure,
                "f1",
                "a",
            ),
            ev(
                TODAY + 30,
                Activity::UnlockStarted,
                Outcome::Success,
                "f2",
                "b",
            ),
            ev(
                TODAY + 40,
                Activity::UnlockAbandoned,
                Outcome::Failure,
                "f2",
                "b",
            ),
        ];
        let ins = compute(&events, &[], NOW, 1);
        assert_eq!(ins.totals.abandoned, 2);
        assert_eq!(
            (ins.totals.resets_failed, ins.totals.unlocks_failed),
            (1, 1)
        );
    }

    #[test]
    fn days_are_clamped() {
        assert_eq!(compute(&[], &[], NOW, 0).days.len(), 1);
        assert_eq!(compute(&[], &[], NOW, 0).days[0].day, "2024-03-10");
        assert_eq!(
            compute(&[], &[], NOW, u32::MAX).days.len(),
            MAX_DAYS as usize
        );
    }

    #[test]
    fn events_outside_the_window_are_ignored() {
        let events = [
            ev(
                TODAY - 2 * DAY,
                Activity::ResetPassword,
                Outcome::Success,
                "a",
                "x",
            ),
            ev(
                TODAY - DAY - 1,
                Activity::ResetPassword,
                Outcome::Success,
                "b",
                "x",
            ),
            ev(
                TODAY - DAY,
                Activity::ResetPassword,
                Outcome::Success,
                "c",
                "x",
            ),
            ev(
                TODAY + DAY,
                Activity::ResetPassword,
                Outcome::Success,
                "d",
                "x",
            ),
            ev(
                TODAY + DAY - 1,
                Activity::ResetPassword,
                Outcome::Success,
                "e",
                "x",
            ),
        ];
        let ins = compute(&events, &[], NOW, 2);
        assert_eq!(day(&ins, "2024-03-09").resets_ok, 1);
        assert_eq!(day(&ins, "2024-03-10").resets_ok, 1);
        assert_eq!(ins.totals.resets_ok, 2);
    }

    #[test]
    fn resets_and_unlocks_by_flow() {
        let t = TODAY + 3600;
        let y = TODAY - DAY + 3600;
        let events = vec![
            // Flow r1: reset, two rejected passwords, then success → one success.
            ev(t, Activity::ResetStarted, Outcome::Success, "r1", "ann"),
            ev(
                t + 10,
                Activity::PasswordRejected,
                Outcome::Failure,
                "r1",
                "ann",
            ),
            ev(
                t + 20,
                Activity::PasswordRejected,
                Outcome::Failure,
                "r1",
                "ann",
            ),
            ev(
                t + 30,
                Activity::ResetPassword,
                Outcome::Success,
                "r1",
                "ann",
            ),
            // Flow r2: reset, rejected twice, gave up → one failure.
            ev(t, Activity::ResetStarted, Outcome::Success, "r2", "bob"),
            ev(
                t + 10,
                Activity::PasswordRejected,
                Outcome::Failure,
                "r2",
                "bob",
            ),
            ev(
                t + 20,
                Activity::PasswordRejected,
                Outcome::Failure,
                "r2",
                "bob",
            ),
            // Flow u1: unlock, blocked after wrong guesses (recorded with a success outcome).
            ev(y, Activity::UnlockStarted, Outcome::Success, "u1", "cat"),
            ev(
                y + 5,
                Activity::BlockedFromReset,
                Outcome::Success,
                "u1",
                "cat",
            ),
            // Flow u2: unlock succeeded yesterday.
            ev(y, Activity::UnlockStarted, Outcome::Success, "u2", "dan"),
            ev(
                y + 9,
                Activity::UnlockAccount,
                Outcome::Success,
                "u2",
                "dan",
            ),
            // Flow u3: unlock that failed to finish.
            ev(t, Activity::UnlockStarted, Outcome::Success, "u3", "eve"),
            ev(
                t + 9,
                Activity::UnlockAccount,
                Outcome::Failure,
                "u3",
                "eve",
            ),
            // Blocked at the start: no started event, so counted as a reset.
            ev(t, Activity::BlockedFromReset, Outcome::Failure, "r3", "fay"),
            // ... unless its details say it was an unlock.
            {
                let mut e = ev(t, Activity::BlockedFromReset, Outcome::Failure, "u4", "gus");
                e.details = json!({ "kind": "unlock" });
                e
            },
            // A failed reset with no flow id counts on its own.
            ev(y, Activity::ResetPassword, Outcome::Failure, "", "hal"),
            // Noise that is not an end of a flow.
            ev(t, Activity::CodeSent, Outcome::Success, "r1", "ann"),
            ev(t, Activity::DirectoryError, Outcome::Failure, "r2", "bob"),
            ev(t, Activity::PasswordRejected, Outcome::Success, "r9", "ivy"),
        ];
        let ins = compute(&events, &[], NOW, 3);
        assert_eq!(
            day(&ins, "2024-03-10"),
            DayRow {
                day: "2024-03-10".into(),
                resets_ok: 1,
                resets_failed: 2,
                unlocks_ok: 0,
                unlocks_failed: 2,
            }
        );
        assert_eq!(
            day(&ins, "2024-03-09"),
            DayRow {
                day: "2024-03-09".into(),
                resets_ok: 0,
                resets_failed: 1,
                unlocks_ok: 1,
                unlocks_failed: 1,
            }
        );
        assert_eq!(
            day(&ins, "2024-03-08"),
            DayRow {
                day: "2024-03-08".into(),
                ..DayRow::default()
            }
        );
        assert_eq!(ins.totals.resets_ok, 1);
        assert_eq!(ins.totals.resets_failed, 3);
        assert_eq!(ins.totals.unlocks_ok, 1);
        assert_eq!(ins.totals.unlocks_failed, 3);
    }

    #[test]
    fn flow_kind_comes_from_the_started_event_even_before_the_window() {
        // The unlock started before the window; the "reset" failure belongs to it.
        let events = [
            ev(
                TODAY - 5,
                Activity::UnlockStarted,
                Outcome::Success,
                "u",
                "ann",
            ),
            ev(
                TODAY + 5,
                Activity::ResetPassword,
                Outcome::Failure,
                "u",
                "ann",
            ),
        ];
        let ins = compute(&events, &[], NOW, 1);
        assert_eq!(ins.totals.unlocks_failed, 1);
        assert_eq!(ins.totals.resets_failed, 0);
    }

    #[test]
    fn failed_flow_counts_on_the_day_of_its_last_failure() {
        let events = [
            ev(
                TODAY - 10,
                Activity::ResetStarted,
                Outcome::Success,
                "r",
                "ann",
            ),
            ev(
                TODAY - 5,
                Activity::PasswordRejected,
                Outcome::Failure,
                "r",
                "ann",
            ),
            ev(
                TODAY + 5,
                Activity::PasswordRejected,
                Outcome::Failure,
                "r",
                "ann",
            ),
        ];
        let ins = compute(&events, &[], NOW, 2);
        assert_eq!(day(&ins, "2024-03-09").resets_failed, 0);
        assert_eq!(day(&ins, "2024-03-10").resets_failed, 1);
    }

    #[test]
    fn verifications_by_method() {
        let t = TODAY + 60;
        let events = [
            with_method(
                ev(t, Activity::MethodVerified, Outcome::Success, "a", "x"),
                "email",
            ),
            with_method(
                ev(t, Activity::MethodVerified, Outcome::Success, "b", "x"),
                "email",
            ),
            with_method(
                ev(t, Activity::VerificationFailed, Outcome::Failure, "b", "x"),
                "email",
            ),
            with_method(
                ev(t, Activity::VerificationFailed, Outcome::Failure, "c", "x"),
                "questions",
            ),
            with_method(
                ev(t, Activity::MethodVerified, Outcome::Success, "c", "x"),
                "totp",
            ),
            with_method(
                ev(t, Activity::MethodVerified, Outcome::Success, "c", "x"),
                "fido",
            ),
            ev(t, Activity::VerificationFailed, Outcome::Failure, "d", "x"),
            // Not verifications.
            with_method(
                ev(t, Activity::CodeSent, Outcome::Success, "a", "x"),
                "email",
            ),
            with_method(
                ev(
                    TODAY - 1,
                    Activity::MethodVerified,
                    Outcome::Success,
                    "z",
                    "x",
                ),
                "sms",
            ),
        ];
        let ins = compute(&events, &[], NOW, 1);
        assert_eq!(
            ins.by_method,
            [
                ("email".to_owned(), 2, 1),
                ("sms".to_owned(), 0, 0),
                ("questions".to_owned(), 0, 1),
                ("totp".to_owned(), 1, 0),
                ("recovery_code".to_owned(), 0, 0),
                ("passkey".to_owned(), 0, 0),
                ("fido".to_owned(), 1, 0),
                ("unknown".to_owned(), 0, 1),
            ]
        );
        assert_eq!(ins.totals.verifications_ok, 4);
        assert_eq!(ins.totals.verifications_failed, 3);
    }

    #[test]
    fn registrations_by_method_count_distinct_users() {
        let regs = vec![
            ("u1".to_owned(), vec![Method::Email, Method::Sms]),
            ("u2".to_owned(), vec![Method::Email, Method::Email]),
            ("u1".to_owned(), vec![Method::Totp, Method::Email]),
            ("u3".to_owned(), vec![]),
            (
                "u4".to_owned(),
                vec![Method::Questions, Method::RecoveryCode],
            ),
            ("u5".to_owned(), vec![Method::Passkey]),
        ];
        let ins = compute(&[], &regs, NOW, 1);
        assert_eq!(ins.registered_users, 4);
        assert_eq!(
            ins.registrations_by_method,
            [
                ("email".to_owned(), 2),
                ("sms".to_owned(), 1),
                ("questions".to_owned(), 1),
                ("totp".to_owned(), 1),
                ("recovery_code".to_owned(), 1),
                ("passkey".to_owned(), 1),
            ]
        );
    }

    #[test]
    fn blocked_users_are_distinct_latest_first() {
        let t = TODAY + 100;
        let mut late = ev(t + 50, Activity::RateLimited, Outcome::Failure, "", "ann");
        late.reason = "start_rate".into();
        let mut early = ev(t, Activity::BlockedFromReset, Outcome::Failure, "f", "ann");
        early.reason = "blocked".into();
        let mut bob = ev(
            t + 10,
            Activity::BlockedFromReset,
            Outcome::Success,
            "g",
            "bob",
        );
        bob.reason = "5 failed verifications".into();
        let events = [
            late,
            early,
            bob,
            ev(t, Activity::RateLimited, Outcome::Failure, "", ""),
            ev(
                TODAY - 1,
                Activity::RateLimited,
                Outcome::Failure,
                "",
                "old",
            ),
            ev(t, Activity::VerificationFailed, Outcome::Failure, "", "cat"),
        ];
        let ins = compute(&events, &[], NOW, 1);
        assert_eq!(
            ins.blocked,
            [
                BlockedRow {
                    target: "ann".into(),
                    count: 2,
                    last_at: t + 50,
                    last_activity: Activity::RateLimited,
                    last_reason: "start_rate".into(),
                },
                BlockedRow {
                    target: "bob".into(),
                    count: 1,
                    last_at: t + 10,
                    last_activity: Activity::BlockedFromReset,
                    last_reason: "5 failed verifications".into(),
                },
            ]
        );
        assert_eq!(ins.totals.blocked_events, 2);
        assert_eq!(ins.totals.rate_limited_events, 2);
    }

    #[test]
    fn successes_by_client() {
        let t = TODAY + 100;
        let mut a = ev(t, Activity::ResetPassword, Outcome::Success, "a", "x");
        a.client_type = ClientType::LogonScreen;
        let mut b = ev(t, Activity::UnlockAccount, Outcome::Success, "b", "x");
        b.client_type = ClientType::Browser;
        let mut c = ev(t, Activity::ResetPassword, Outcome::Success, "c", "x");
        c.client_type = ClientType::LogonScreen;
        let mut d = ev(t, Activity::ResetPassword, Outcome::Failure, "d", "x");
        d.client_type = ClientType::Cli;
        let ins = compute(&[a, b, c, d], &[], NOW, 1);
        assert_eq!(
            ins.by_client,
            [
                ("logon_screen".to_owned(), 2),
                ("ssh".to_owned(), 0),
                ("browser".to_owned(), 1),
                ("cli".to_owned(), 0),
                ("api".to_owned(), 0),
            ]
        );
    }

    #[test]
    fn day_labels() {
        assert_eq!(day_label(0), "1970-01-01");
        assert_eq!(day_label(NOW), "2024-03-10");
        assert_eq!(day_label(-1), "1969-12-31");
    }
}
