//! Password expiry: how many passwords expire when, and what the reminders would send now (a
//! dry run of `sspr reminders run`, read from the directory when the page opens).

use super::*;
use sspr_app::reminders::ReminderRunner;

pub async fn expiry_page(Gated(SignedInAdmin(s), w): Gated<SignedInAdmin>) -> Response {
    let lang = w.lang();
    match w.state.app.run_reminders(true, ReminderRunner::Cli).await {
        Ok(r) => {
            // Buckets come smallest first after "expired": each holds the days above the one
            // before it.
            let mut after = 0u32;
            let rows: Vec<Value> = r
                .expiring
                .iter()
                .map(|(bucket, n)| {
                    let when = match bucket.parse::<u32>() {
                        Err(_) => CATALOG.tr(lang, "admin-expiry-expired", &[]),
                        Ok(1) => CATALOG.tr(lang, "admin-expiry-within-day", &[]),
                        Ok(d) => CATALOG.tr(
                            lang,
                            "admin-expiry-in-days",
                            &[("from", (after + 1).to_string()), ("to", d.to_string())],
                        ),
                    };
                    after = bucket.parse().unwrap_or(after);
                    json!({ "bucket": bucket, "when": when, "accounts": n })
                })
                .collect();
            admin_page(
                w,
                &s,
                StatusCode::OK,
                "expiry",
                json!({ "rows": rows, "report": r }),
            )
        }
        // Nothing expires here, or the directory could not be read: said on the page.
        Err(e) => {
            let e = w.audited(e).await;
            let status = if e.kind == ErrorKind::Invalid {
                StatusCode::OK
            } else {
                sspr_server::respond::status_of(e.kind)
            };
            admin_page(
                w,
                &s,
                status,
                "expiry",
                json!({ "error": e.message, "support_code": e.support_code }),
            )
        }
    }
}
