//! Prometheus metrics: one registry for the process, filled where things happen (audit
//! events, the outbox worker, the directory, Argon2, HTTP) and read by `sspr serve`'s
//! metrics listener ([`encode`]). Labels are taken from closed sets (activities, client
//! types, methods, channels, route templates), never from user input, so a series cannot
//! be created per login or per address.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sspr_domain::Method;
use sspr_domain::audit::AuditEvent;
use sspr_domain::clock::UnixTime;

use crate::ports::{DirError, DirUser, Directory, Expiring, PasswordCheck};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub activity: &'static str,
    pub client: &'static str,
    pub outcome: &'static str,
    /// The proof method the event is about (`details.method`), or `none`.
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    pub channel: &'static str,
    /// `sent`, `retry` (failed, tried again later) or `failed` (given up).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectoryLabels {
    pub operation: &'static str,
    /// `ok`, or the kind of error: `rejected`, `unavailable`, `busy`, `permission`,
    /// `protected`, `error`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route's template (`/api/v1/admin/users/{login}`), or `unmatched`.
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    /// The `[[siem]]` sink's name.
    pub sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub events: Family<EventLabels, Counter>,
    pub messages: Family<MessageLabels, Counter>,
    pub outbox_waiting: Gauge,
    pub outbox_oldest_age: Gauge,
    pub store_up: Gauge,
    pub directory: HistogramFamily<DirectoryLabels>,
    pub hash_wait: Histogram,
    pub hash_busy: Counter,
    pub http: HistogramFamily<HttpLabels>,
    pub shed: Counter,
    pub siem_exported: Family<SinkLabels, Counter>,
    pub siem_caught_up: Family<SinkLabels, Gauge>,
    pub siem_lag: Family<SinkLabels, Gauge>,
}

/// 1 ms to ~33 s, doubling: a cached page and an LDAP write that meets its deadline both land
/// in a bucket of their own.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("sspr");
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The running sspr's version", build);
        let m = Self {
            events: Family::default(),
            messages: Family::default(),
            outbox_waiting: Gauge::default(),
            outbox_oldest_age: Gauge::default(),
            store_up: Gauge::default(),
            directory: Family::new_with_constructor(latency),
            hash_wait: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            hash_busy: Counter::default(),
            http: Family::new_with_constructor(latency),
            shed: Counter::default(),
            siem_exported: Family::default(),
            siem_caught_up: Family::default(),
            siem_lag: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "audit_events",
            "Audited events by activity, client type, outcome and method: resets started \
             (reset_started), finished (reset_password), unknown outcomes (outcome_unknown)...",
            m.events.clone(),
        );
        registry.register(
            "messages",
            "Emails and text messages handed to the relay or gateway, by channel and outcome",
            m.messages.clone(),
        );
        registry.register(
            "outbox_waiting",
            "Messages queued or being sent, at the time of the scrape",
            m.outbox_waiting.clone(),
        );
        registry.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest message still waiting (0 when none waits)",
            m.outbox_oldest_age.clone(),
        );
        registry.register(
            "store_up",
            "1 when the scrape could read the database (the outbox gauges are then current), \
             else 0",
            m.store_up.clone(),
        );
        registry.register(
            "directory_request_duration_seconds",
            "Directory operations (built-in, OpenLDAP, AD) by operation and outcome",
            m.directory.clone(),
        );
        registry.register(
            "argon2_queue_wait_seconds",
            "Time a password hash or check waited for a free Argon2 slot",
            m.hash_wait.clone(),
        );
        registry.register(
            "argon2_busy",
            "Hashes refused because no Argon2 slot freed in time (answered busy)",
            m.hash_busy.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP requests by route template, method and status",
            m.http.clone(),
        );
        registry.register(
            "http_requests_shed",
            "Requests refused with 503 at once because too many were in flight \
             (connections.max_requests)",
            m.shed.clone(),
        );
        registry.register(
            "siem_exported_events",
            "Audit events the SIEM export sent and recorded in its cursor, by sink",
            m.siem_exported.clone(),
        );
        registry.register(
            "siem_caught_up_timestamp_seconds",
            "When this instance last found a sink's cursor at the end of the audit log (Unix \
             time); only the instance holding the sink's lease sets it",
            m.siem_caught_up.clone(),
        );
        registry.register(
            "siem_lag_events",
            "Audit events (by id) written but not yet sent, by sink, as of this instance's last \
             batch; only the instance holding the sink's lease sets it",
            m.siem_lag.clone(),
        );
        Self { registry, ..m }
    }

    /// A SIEM sink sent `n` events.
    pub fn siem_exported(&self, sink: &str, n: u64) {
        self.siem_exported
            .get_or_create(&SinkLabels { sink: sink.into() })
            .inc_by(n);
    }

    /// A SIEM sink's cursor reached the end of the log at `now`.
    pub fn siem_caught_up(&self, sink: &str, now: i64) {
        self.siem_caught_up
            .get_or_create(&SinkLabels { sink: sink.into() })
            .set(now);
        self.siem_lag(sink, 0);
    }

    /// How many events a SIEM sink has left to send.
    pub fn siem_lag(&self, sink: &str, events: i64) {
        self.siem_lag
            .get_or_create(&SinkLabels { sink: sink.into() })
            .set(events);
    }

    /// Counts an audited event (whether or not the store took it: it happened).
    pub fn event(&self, e: &AuditEvent) {
        let method = e
            .details
            .get("method")
            .and_then(|m| m.as_str())
            .and_then(|m| Method::ALL.into_iter().find(|k| k.as_str() == m))
            .map_or("none", Method::as_str);
        self.events
            .get_or_create(&EventLabels {
                activity: e.activity.as_str(),
                client: e.client_type.as_str(),
                outcome: e.outcome.as_str(),
                method,
            })
            .inc();
    }

    pub fn message(&self, channel: &'static str, outcome: &'static str) {
        self.messages
            .get_or_create(&MessageLabels { channel, outcome })
            .inc();
    }

    pub fn http(&self, route: String, method: String, status: u16, took: Duration) {
        self.http
            .get_or_create(&HttpLabels {
                route,
                method,
                status,
            })
            .observe(took.as_secs_f64());
    }
}

/// The metrics in the OpenMetrics text format, with the outbox's gauges set from
/// `backlog` (messages waiting, the oldest one's age in seconds) first.
pub fn encode(backlog: Option<(u64, i64)>) -> String {
    let m = metrics();
    m.store_up.set(i64::from(backlog.is_some()));
    if let Some((waiting, age)) = backlog {
        m.outbox_waiting
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        m.outbox_oldest_age.set(age.max(0));
    }
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &m.registry).is_err() {
        out.clear();
    }
    out
}

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A directory whose every call is timed into `sspr_directory_request_duration_seconds`.
pub struct Metered<D: ?Sized>(pub std::sync::Arc<D>);

fn outcome<T>(r: &Result<T, DirError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(DirError::Rejected(_)) => "rejected",
        Err(DirError::Unavailable(_)) => "unavailable",
        Err(DirError::Busy(_)) => "busy",
        Err(DirError::Permission(_)) => "permission",
        Err(DirError::Protected(_)) => "protected",
        Err(DirError::Other(_)) => "error",
    }
}

async fn timed<T>(
    operation: &'static str,
    call: impl std::future::Future<Output = Result<T, DirError>>,
) -> Result<T, DirError> {
    let started = Instant::now();
    let r = call.await;
    metrics()
        .directory
        .get_or_create(&DirectoryLabels {
            operation,
            outcome: outcome(&r),
        })
        .observe(started.elapsed().as_secs_f64());
    r
}

#[async_trait]
impl<D: Directory + ?Sized> Directory for Metered<D> {
    async fn find_user(&self, login: &str) -> Result<Option<DirUser>, DirError> {
        timed("find_user", self.0.find_user(login)).await
    }
    async fn check_password(
        &self,
        user: &DirUser,
        password: &str,
    ) -> Result<PasswordCheck, DirError> {
        timed("check_password", self.0.check_password(user, password)).await
    }
    async fn check_password_of_nobody(&self, login: &str, password: &str) -> Result<(), DirError> {
        // Timed as a check: told apart here, the metric would tell which logins exist.
        timed(
            "check_password",
            self.0.check_password_of_nobody(login, password),
        )
        .await
    }
    async fn reset_password(&self, user: &DirUser, new_password: &str) -> Result<(), DirError> {
        timed("reset_password", self.0.reset_password(user, new_password)).await
    }
    async fn unlock(&self, user: &DirUser) -> Result<(), DirError> {
        timed("unlock", self.0.unlock(user)).await
    }
    async fn change_password(
        &self,
        user: &DirUser,
        current: &str,
        new_password: &str,
    ) -> Result<(), DirError> {
        timed(
            "change_password",
            self.0.change_password(user, current, new_password),
        )
        .await
    }
    async fn password_rules(&self) -> Result<Vec<sspr_domain::DirectoryRule>, DirError> {
        timed("password_rules", self.0.password_rules()).await
    }
    async fn password_rules_for(
        &self,
        user: &DirUser,
    ) -> Result<Vec<sspr_domain::DirectoryRule>, DirError> {
        timed("password_rules", self.0.password_rules_for(user)).await
    }
    async fn password_stamp(&self, user: &DirUser) -> Result<Option<String>, DirError> {
        timed("password_stamp", self.0.password_stamp(user)).await
    }
    async fn expiring_passwords(
        &self,
        before: UnixTime,
    ) -> Result<Option<Vec<Expiring>>, DirError> {
        timed("expiring_passwords", self.0.expiring_passwords(before)).await
    }
    async fn ping(&self) -> Result<(), DirError> {
        timed("ping", self.0.ping()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sspr_domain::audit::{Activity, ClientType, Outcome};

    #[test]
    fn an_event_is_counted_under_its_closed_labels() {
        let mut e = AuditEvent::new(0, Activity::MethodVerified, Outcome::Success);
        e.client_type = ClientType::LogonScreen;
        e.details = serde_json::json!({ "method": "questions" });
        metrics().event(&e);
        // A method that is not one of ours is not a label value.
        e.details = serde_json::json!({ "method": "x\"}\n" });
        metrics().event(&e);
        let text = encode(Some((3, 42)));
        assert!(text.contains(
            "sspr_audit_events_total{activity=\"method_verified\",client=\"logon_screen\",outcome=\"success\",method=\"questions\"} 1"
        ), "{text}");
        assert!(text.contains(
            "sspr_audit_events_total{activity=\"method_verified\",client=\"logon_screen\",outcome=\"success\",method=\"none\"} 1"
        ), "{text}");
        assert!(text.contains("sspr_outbox_waiting 3"), "{text}");
        assert!(text.contains("sspr_store_up 1"), "{text}");
        assert!(text.contains("sspr_outbox_oldest_age_seconds 42"), "{text}");
        assert!(text.contains("sspr_build_info{version=\""), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
