//! Usage and insights: resets and unlocks per day, verifications and registrations by method,
//! blocked users.

use super::*;

#[derive(Deserialize)]
pub struct InsightsParams {
    days: Option<String>,
}

pub(super) fn period(asked: Option<&str>) -> u32 {
    asked
        .and_then(|d| d.trim().parse().ok())
        .filter(|d| PERIODS.contains(d))
        .unwrap_or(DEFAULT_PERIOD)
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
pub(super) fn utc(t: UnixTime) -> String {
    let s = sspr_domain::clock::rfc3339(t);
    format!("{} UTC", s.trim_end_matches('Z').replacen('T', " ", 1))
}

/// A method's name in the page's language; names the portal does not know stay as logged.
pub(super) fn method_label(lang: Lang, name: &str) -> String {
    match Method::parse(name) {
        Some(m) => CATALOG.tr(lang, &format!("method-{}", m.as_str()), &[]),
        None => name.to_string(),
    }
}

/// Each registered user with their active methods (at most [`INSIGHT_USERS`]), and whether
/// there were more.
pub(super) async fn registrations(w: &Web) -> Result<(Vec<(String, Vec<Method>)>, bool), AppError> {
    let store = &w.state.app.store;
    let ids = store.registration_ids().await?;
    let capped = ids.len() > INSIGHT_USERS;
    let mut out = Vec::with_capacity(ids.len().min(INSIGHT_USERS));
    for id in ids.into_iter().take(INSIGHT_USERS) {
        let methods = active_methods(w, &id).await?;
        out.push((id, methods));
    }
    Ok((out, capped))
}

pub(super) async fn active_methods(w: &Web, user_id: &str) -> Result<Vec<Method>, AppError> {
    w.state.app.active_methods(user_id).await
}

pub async fn insights_page(
    Gated(SignedInAdmin(s), w): Gated<SignedInAdmin>,
    q: Result<Query<InsightsParams>, QueryRejection>,
) -> Response {
    let days = period(q.ok().and_then(|Query(q)| q.days).as_deref());
    let app = w.state.app.clone();
    let now = app.now();
    // A day before the window too, so a flow that began the evening before is known as a
    // reset or an unlock.
    let since = (now.div_euclid(DAY) - i64::from(days)) * DAY;
    let filter = AuditFilter {
        since: Some(since),
        limit: INSIGHT_EVENTS,
        ..AuditFilter::default()
    };
    let events = match app.audit_events(&filter).await {
        Ok(e) => e,
        Err(e) => return w.fail(e).await,
    };
    let (regs, users_capped) = match registrations(&w).await {
        Ok(r) => r,
        Err(e) => return w.fail(e).await,
    };
    let ins = insights::compute(&events, &regs, now, days);
    let data = merge(
        insights_view(w.lang(), &ins, days),
        json!({
            "events_capped": events.len() >= INSIGHT_EVENTS as usize,
            "users_capped": users_capped,
        }),
    );
    admin_page(w, &s, StatusCode::OK, "insights", data)
}

pub(super) fn insights_view(lang: Lang, ins: &Insights, days: u32) -> Value {
    let labels: Vec<String> = ins.days.iter().map(|d| d.day.clone()).collect();
    let ok = CATALOG.tr(lang, "admin-succeeded", &[]);
    let failed = CATALOG.tr(lang, "admin-failed", &[]);
    let per_day = |f: fn(&insights::DayRow) -> u32| ins.days.iter().map(f).collect::<Vec<u32>>();
    let resets = charts::stacked_bars(
        &CATALOG.tr(lang, "admin-chart-resets", &[]),
        &labels,
        &[
            (&ok, "s-ok", per_day(|d| d.resets_ok)),
            (&failed, "s-bad", per_day(|d| d.resets_failed)),
        ],
    );
    let unlocks = charts::stacked_bars(
        &CATALOG.tr(lang, "admin-chart-unlocks", &[]),
        &labels,
        &[
            (&ok, "s-ok", per_day(|d| d.unlocks_ok)),
            (&failed, "s-bad", per_day(|d| d.unlocks_failed)),
        ],
    );
    let reg_rows: Vec<(String, u32, &str)> = ins
        .registrations_by_method
        .iter()
        .map(|(m, n)| (method_label(lang, m), *n, ""))
        .collect();
    let registrations = charts::hbars(
        &CATALOG.tr(lang, "admin-chart-registrations", &[]),
        &reg_rows,
    );
    let mut verif_rows = Vec::new();
    for (m, passed, failed) in &ins.by_method {
        let method = method_label(lang, m);
        verif_rows.push((
            CATALOG.tr(lang, "admin-verif-ok-row", &[("method", method.clone())]),
            *passed,
            "s-ok",
        ));
        verif_rows.push((
            CATALOG.tr(lang, "admin-verif-failed-row", &[("method", method)]),
            *failed,
            "s-bad",
        ));
    }
    let verifications = charts::hbars(
        &CATALOG.tr(lang, "admin-chart-verifications", &[]),
        &verif_rows,
    );
    let blocked: Vec<Value> = ins
        .blocked
        .iter()
        .map(|b| {
            json!({
                "target": b.target,
                "count": b.count,
                "last": utc(b.last_at),
                "activity": b.last_activity.as_str(),
                "reason": b.last_reason,
            })
        })
        .collect();
    let by_client: Vec<Value> = ins
        .by_client
        .iter()
        .map(|(c, n)| json!({ "client": c, "count": n }))
        .collect();
    json!({
        "days": days,
        "periods": PERIODS,
        "from_day": insights::day_label(ins.from),
        "until_day": insights::day_label(ins.until - 1),
        "totals": ins.totals,
        "registered_users": ins.registered_users,
        "resets_svg": resets,
        "unlocks_svg": unlocks,
        "registrations_svg": registrations,
        "verifications_svg": verifications,
        "by_method": ins.by_method.iter().map(|(m, p, f)| json!({
            "method": method_label(lang, m), "passed": p, "failed": f,
        })).collect::<Vec<_>>(),
        "by_client": by_client,
        "blocked": blocked,
        "event_cap": INSIGHT_EVENTS,
        "user_cap": INSIGHT_USERS,
    })
}
