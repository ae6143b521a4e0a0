//! The audit log: filters, the newest events, CSV and JSON export.

use super::*;
use sspr_app::ports::AuditCursor;

/// Empty form fields mean "any".
pub(super) fn normalise(p: &mut AuditParams) {
    for v in [
        &mut p.since,
        &mut p.until,
        &mut p.user,
        &mut p.activity,
        &mut p.result,
        &mut p.client_type,
        &mut p.ip,
        &mut p.support_code,
        &mut p.before,
        &mut p.format,
    ] {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            *v = None;
        } else if let Some(s) = v {
            *s = s.trim().to_string();
        }
    }
}

/// The filter fields, as `(name, value)`.
pub(super) fn filter_fields(p: &AuditParams) -> Vec<(&'static str, String)> {
    [
        ("since", &p.since),
        ("until", &p.until),
        ("user", &p.user),
        ("activity", &p.activity),
        ("result", &p.result),
        ("client_type", &p.client_type),
        ("support_code", &p.support_code),
        ("ip", &p.ip),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
    .collect()
}

pub(super) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn query_string(fields: &[(&'static str, String)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The parameters and the filter they make, or why they make none.
pub(super) fn read_filter(
    lang: Lang,
    q: Result<Query<AuditParams>, QueryRejection>,
) -> (Option<AuditParams>, Result<AuditFilter, String>) {
    match q {
        Ok(Query(mut p)) => {
            normalise(&mut p);
            let f = audit_filter(&p)
                .map_err(|why| CATALOG.tr(lang, "admin-audit-bad-filter", &[("why", why)]));
            (Some(p), f)
        }
        Err(rej) => {
            let why = rej.body_text();
            (
                None,
                Err(CATALOG.tr(lang, "admin-audit-bad-filter", &[("why", why)])),
            )
        }
    }
}

pub async fn audit_page(
    Gated(SignedInAdmin(s), w): Gated<SignedInAdmin>,
    q: Result<Query<AuditParams>, QueryRejection>,
) -> Response {
    let lang = w.lang();
    let (params, filter) = read_filter(lang, q);
    let fields = params.as_ref().map(filter_fields).unwrap_or_default();
    let f: HashMap<&str, String> = fields.iter().cloned().collect();
    let common = json!({
        "f": f,
        "qs": query_string(&fields),
        "activities": Activity::ALL.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "clients": ClientType::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "cap": AUDIT_ROWS,
    });
    let mut filter = match filter {
        Ok(f) => f,
        Err(why) => {
            let data = merge(common, json!({ "error": why, "events": [] }));
            return admin_page(w, &s, StatusCode::BAD_REQUEST, "audit", data);
        }
    };
    filter.limit = AUDIT_ROWS;
    let events = match w.state.app.audit_events(&filter).await {
        Ok(e) => e,
        Err(e) => return w.fail(e).await,
    };
    // A full page: the next one starts below its oldest event.
    let older = (events.len() >= AUDIT_ROWS as usize)
        .then(|| events.first().map(|e| AuditCursor::of(e).encode()))
        .flatten();
    // The store gives the newest events oldest first; the page shows the newest on top.
    let events: Vec<Value> = events
        .into_iter()
        .rev()
        .map(|e| in_words(lang, event_dto(e)))
        .collect();
    let data = merge(common, json!({ "events": events, "older": older }));
    admin_page(w, &s, StatusCode::OK, "audit", data)
}

/// An event for people: its activity and reason in words (a reason without words keeps its
/// code), and its details as indented JSON for the details panel.
fn in_words(lang: Lang, e: sspr_proto::AuditEventDto) -> Value {
    let activity_text = CATALOG.tr(lang, &format!("admin-act-{}", e.activity), &[]);
    let reason_key = format!("admin-reason-{}", e.reason);
    let reason_text = if e.reason.is_empty() {
        String::new()
    } else if CATALOG.has(&reason_key) {
        CATALOG.tr(lang, &reason_key, &[])
    } else {
        e.reason.clone()
    };
    let details = match &e.details {
        Value::Null => String::new(),
        Value::Object(o) if o.is_empty() => String::new(),
        d => serde_json::to_string_pretty(d).unwrap_or_default(),
    };
    let mut v = serde_json::to_value(&e).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut v {
        o.insert("activity_text".into(), json!(activity_text));
        o.insert("reason_text".into(), json!(reason_text));
        o.insert("details_text".into(), json!(details));
    }
    v
}

pub(super) fn merge(mut a: Value, b: Value) -> Value {
    if let (Value::Object(a), Value::Object(b)) = (&mut a, b) {
        a.extend(b);
    }
    a
}

/// `GET /admin/audit/export?format=csv|json&<filters>`: a download of up to
/// [`EXPORT_ROWS`] events, oldest first.
pub async fn audit_export(
    Gated(SignedInAdmin(s), w): Gated<SignedInAdmin>,
    q: Result<Query<AuditParams>, QueryRejection>,
) -> Response {
    let lang = w.lang();
    let (params, filter) = read_filter(lang, q);
    let query = params
        .as_ref()
        .map(|p| format!("{p:?}"))
        .unwrap_or_default();
    let format = params
        .and_then(|p| p.format)
        .unwrap_or_else(|| "csv".into());
    let mut filter = match filter {
        Ok(f) if format == "csv" || format == "json" => f,
        Ok(_) => {
            let e = AppError::invalid(w.tr("admin-export-format"));
            return w.fail(e).await;
        }
        Err(why) => return w.fail(AppError::invalid(why)).await,
    };
    filter.limit = EXPORT_ROWS;
    let events: Vec<_> = match w.state.app.audit_events(&filter).await {
        Ok(e) => e.into_iter().map(event_dto).collect(),
        Err(e) => return w.fail(e).await,
    };
    let app = &w.state.app;
    let mut ev = app.event(
        &w.ctx,
        sspr_domain::audit::Activity::AuditExported,
        sspr_domain::audit::Outcome::Success,
    );
    ev.actor = actor(&w, &s);
    ev.target = "audit".into();
    ev.details = json!({ "format": format, "rows": events.len(), "filter": query });
    app.record(ev).await;
    let (body, kind, name) = if format == "json" {
        match serde_json::to_string_pretty(&events) {
            Ok(b) => (b, "application/json", "sspr-audit.json"),
            Err(e) => return w.fail(AppError::internal(e.to_string())).await,
        }
    } else {
        (
            events_csv(&events),
            "text/csv; charset=utf-8",
            "sspr-audit.csv",
        )
    };
    let resp = (
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response();
    w.finish(resp)
}
