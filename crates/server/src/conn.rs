//! Connection discipline: how many TCP connections the server holds, and for how long, before
//! a request has even been read. Without it a thousand idle sockets (no TLS handshake) use up
//! the process's file descriptors and the server stops answering everyone.
//!
//! - At start the open-file limit is raised from its soft value (often 1,024) to the hard one.
//! - At most `max` connections are held at once, and one client address holds at most
//!   `per_ip` of them, so that one host cannot take the whole budget (trusted proxies, which
//!   carry everyone's traffic, count only towards `max`). A connection over either cap is
//!   closed at once, before the TLS handshake costs anything.
//! - The TLS handshake must finish within `handshake` (the library's default is 10 s); the
//!   HTTP layer then bounds reading a request's headers (see `serve`).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The connection limits of one server.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Connections held at once.
    pub max: usize,
    /// Connections held at once from one client address.
    pub per_ip: usize,
    /// Time for the TLS handshake.
    pub handshake: Duration,
    /// Time the kernel keeps a silent new connection to itself (see [`defer_accept`]).
    pub defer_accept: Duration,
    /// Addresses exempt from `per_ip` (the reverse proxies in front).
    pub exempt: Vec<IpNet>,
    /// Requests handled at once (see [`shedding`]).
    pub requests: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max: 20_000,
            per_ip: 256,
            handshake: Duration::from_secs(5),
            defer_accept: Duration::from_secs(30),
            exempt: Vec::new(),
            requests: 1024,
        }
    }
}

/// File descriptors kept back from `max` for the database, the directory, SMTP and logs.
const RESERVED_FDS: u64 = 256;

impl ConnLimits {
    /// `max` as the open-file limit allows, after raising it as far as it goes.
    pub fn fitted_to_the_fd_limit(mut self) -> ConnLimits {
        if let Some(fds) = raise_fd_limit() {
            let room = usize::try_from(fds.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
            if room < self.max {
                tracing::warn!(
                    open_files = fds,
                    max_connections = room,
                    "the open-file limit allows fewer connections than configured; raise it (LimitNOFILE= in the systemd unit)"
                );
                self.max = room.max(1);
            }
        }
        self.per_ip = self.per_ip.min(self.max).max(1);
        self
    }
}

/// Raises the soft open-file limit to the hard one; returns the limit in force.
#[allow(unsafe_code)]
fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit to a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit from a valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    tracing::info!(
        from = before,
        to = lim.rlim_cur,
        "open-file limit for connections"
    );
    Some(lim.rlim_cur)
}

/// Connections the kernel may queue for the server: accepted ones, and half-open or deferred
/// ones.
pub const BACKLOG: libc::c_int = 4096;

/// Asks the kernel to hand over a new connection only once its first bytes arrive, or after
/// `wait` (Linux's `TCP_DEFER_ACCEPT`, nginx's `listen … deferred`). Every TLS client speaks
/// first (its ClientHello), so a real client is handed over at once. A socket opened and left
/// silent is not seen by the server in that time: it costs no file descriptor, no task and no
/// handshake timer, and is not closed early, so the attacker does not reconnect (that churn,
/// not the idle sockets, took the cores in `bench/connections.py`). Elsewhere, or if refused,
/// connections are accepted at once and the handshake timeout alone bounds them.
///
/// The kernel keeps deferred connections in the listener's queue of half-open ones, as long as
/// the listen backlog; beyond it SYN cookies hand them over at once. The backlog is therefore
/// raised from Rust's 128 to [`BACKLOG`] (the kernel caps it at `net.core.somaxconn`).
#[allow(unsafe_code)]
pub fn defer_accept(listener: &std::net::TcpListener, wait: Duration) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: listen on a socket that is already listening only changes its backlog.
        if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
            tracing::warn!(error = %io::Error::last_os_error(), "cannot raise the listen backlog");
        }
        if wait.is_zero() {
            return;
        }
        let secs = libc::c_int::try_from(wait.as_secs().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: setsockopt reads one c_int from a valid pointer of the given length, on a
        // descriptor the listener owns for the whole call.
        let rc = unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&secs as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::warn!(error = %io::Error::last_os_error(), "cannot defer accepting silent connections; the handshake timeout alone bounds them");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (listener, wait);
}

/// Counts held connections, in total and per address.
pub struct Gate {
    limits: ConnLimits,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    refused: AtomicU64,
}

impl Gate {
    pub fn new(limits: ConnLimits) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
        })
    }

    /// Connections held now.
    pub fn held(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Connections closed at once because a cap was reached, since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// A ticket for one more connection from `ip`, or `None` when a cap is reached.
    pub fn admit(self: &Arc<Gate>, ip: Option<IpAddr>) -> Option<Ticket> {
        let counted = ip.filter(|ip| !self.limits.exempt.iter().any(|n| n.contains(ip)));
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let mine = counted.map_or(0, |ip| per_ip.get(&ip).copied().unwrap_or(0));
        if self.total.load(Ordering::Relaxed) >= self.limits.max || mine >= self.limits.per_ip {
            drop(per_ip);
            let n = self.refused.fetch_add(1, Ordering::Relaxed);
            // One line now and then, not one per refused socket under a flood.
            if n.is_power_of_two() {
                tracing::warn!(
                    refused = n + 1,
                    held = self.held(),
                    max = self.limits.max,
                    per_ip = self.limits.per_ip,
                    "connection refused: limit reached"
                );
            }
            return None;
        }
        if let Some(ip) = counted {
            *per_ip.entry(ip).or_insert(0) += 1;
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(Ticket {
            gate: self.clone(),
            ip: counted,
        })
    }
}

/// One held connection; dropping it gives the place back.
pub struct Ticket {
    gate: Arc<Gate>,
    ip: Option<IpAddr>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut per_ip = self.gate.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
        self.gate.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An acceptor that admits a connection through the [`Gate`] before the inner one (TLS) runs.
#[derive(Clone)]
pub struct Capped<A> {
    pub inner: A,
    pub gate: Arc<Gate>,
}

type Accepted<T, S> = io::Result<(Held<T>, S)>;

impl<A, S> Accept<TcpStream, S> for Capped<A>
where
    A: Accept<TcpStream, S>,
    A::Future: Send + 'static,
{
    type Stream = Held<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = Accepted<A::Stream, A::Service>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let ip = stream.peer_addr().ok().map(|a| a.ip());
        let Some(ticket) = self.gate.admit(ip) else {
            // Dropping the socket closes it before any work is spent on it.
            drop(stream);
            return Box::pin(async { Err(io::Error::other("connection limit reached")) });
        };
        let accepting = self.inner.accept(stream, service);
        Box::pin(async move {
            let (inner, service) = accepting.await?;
            Ok((
                Held {
                    inner,
                    _ticket: ticket,
                },
                service,
            ))
        })
    }
}

/// A stream that holds its place in the [`Gate`] for as long as it lives.
pub struct Held<T> {
    inner: T,
    _ticket: Ticket,
}

impl<T: AsyncRead + Unpin> AsyncRead for Held<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Held<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Wraps `router` so that at most `max` requests are handled at once. One more gets 503
/// `busy` with `Retry-After` straight away: under a flood, answering some clients at once
/// beats answering every client late. Nothing is written for a refused request (an audit
/// event each would add to the load); a warning is logged at the 1st, 2nd, 4th, 8th…
/// refusal. Health checks are never refused: a load balancer must see the process alive.
pub fn shedding(router: axum::Router, max: usize) -> axum::Router {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    router.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let in_flight = in_flight.clone();
            let refused = refused.clone();
            async move {
                let path = req.uri().path();
                let exempt = path == "/healthz" || path == "/readyz";
                let _counted = InFlight::enter(&in_flight);
                let now = in_flight.load(Ordering::Relaxed);
                if now > max && !exempt {
                    let n = refused.fetch_add(1, Ordering::Relaxed) + 1;
                    sspr_app::metrics::metrics().shed.inc();
                    if n.is_power_of_two() {
                        tracing::warn!(
                            in_flight = now,
                            max,
                            refused = n,
                            "request refused: too many at once (connections.max_requests)"
                        );
                    }
                    return busy(path.starts_with("/api/"));
                }
                next.run(req).await
            }
        },
    ))
}

/// One request counted in flight until it is dropped (answered, or its client went away).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(n: &Arc<AtomicUsize>) -> InFlight {
        n.fetch_add(1, Ordering::Relaxed);
        InFlight(n.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn busy(api: bool) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;
    const MESSAGE: &str = "The service is busy, so nothing was changed. Try again in a moment.";
    let (kind, body) = if api {
        (
            "application/json",
            format!(r#"{{"error":"busy","message":"{MESSAGE}"}}"#),
        )
    } else {
        ("text/plain; charset=utf-8", format!("{MESSAGE}\n"))
    };
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::RETRY_AFTER,
        HeaderValue::from(crate::respond::DEFAULT_RETRY_SECS),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max: usize, per_ip: usize, exempt: &[&str]) -> Arc<Gate> {
        Gate::new(ConnLimits {
            max,
            per_ip,
            exempt: exempt.iter().filter_map(|n| n.parse().ok()).collect(),
            ..ConnLimits::default()
        })
    }

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[test]
    fn one_address_gets_its_share_and_the_others_still_get_in() {
        let g = gate(10, 3, &[]);
        let a: Vec<_> = (0..5).filter_map(|_| g.admit(ip("10.0.0.1"))).collect();
        assert_eq!(a.len(), 3, "one address holds at most its share");
        assert!(g.admit(ip("10.0.0.2")).is_some());
        assert_eq!(g.refused(), 2);
        drop(a);
        assert_eq!(g.held(), 0, "the places come back when connections close");
        assert!(g.admit(ip("10.0.0.1")).is_some());
    }

    #[test]
    fn the_total_is_capped_and_proxies_count_only_towards_it() {
        let g = gate(4, 1, &["192.0.2.0/24"]);
        let proxied: Vec<_> = (0..3).filter_map(|_| g.admit(ip("192.0.2.7"))).collect();
        assert_eq!(proxied.len(), 3, "a trusted proxy is not held to one");
        let t = g.admit(ip("10.0.0.1"));
        assert!(t.is_some());
        assert!(g.admit(ip("10.0.0.2")).is_none(), "the total is reached");
        drop(t);
        assert!(g.admit(ip("10.0.0.2")).is_some());
    }
}
