//! Connections to the directory: TLS, the pool of bound service connections, and failover
//! between the URLs, with the resting of those that failed.

use std::sync::Arc;
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError};
use sspr_app::ports::{DirError, DirUser};

use crate::search::entry_id;
use crate::{LdapConfig, LdapDirectory, directory_said, unavailable};

/// What a bind as the user gave.
pub(crate) enum UserBind {
    /// Bound; `true` when the session may only change the password (ppolicy `pwdReset`).
    Bound(UserConnection, bool),
    /// Refused; `must_change` when the password was right but has expired or must be
    /// changed (AD `data 773`/`data 532`, ppolicy `passwordExpired`).
    Refused { must_change: bool },
}

/// Whether a bind's answer says "right password, but change it first": ppolicy's
/// `passwordExpired` (0) or `changeAfterReset` (2); AD's invalidCredentials with
/// `data 532` (expired) or `data 773` (must change at next logon).
pub(crate) fn must_change(r: &ldap3::LdapResult) -> bool {
    let ad = r.rc == 49 && {
        let t = r.text.to_lowercase();
        t.contains("data 532") || t.contains("data 773")
    };
    ad || matches!(crate::openldap::ppolicy_error(r), Some(0 | 2))
}

/// A connection bound as a user, holding its turn among the `password_checks`.
pub(crate) struct UserConnection {
    pub(crate) ldap: Ldap,
    _turn: tokio::sync::OwnedSemaphorePermit,
}

/// Bound service connections: at most `pool_size` exist at once (one slot each), idle ones
/// wait in `idle` for the next operation. A connection that failed at the transport level, or
/// that the server closed, is dropped rather than put back. User binds never come from here.
pub(crate) struct Pool {
    idle: std::sync::Mutex<Vec<Ldap>>,
    slots: Arc<tokio::sync::Semaphore>,
    /// Binds as a user (password checks) running at once, each on a connection of its own.
    binds: Arc<tokio::sync::Semaphore>,
}

impl Pool {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Ldap>> {
        // Nothing panics while holding it; a poisoned list of connections is still a list.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A service connection checked out of the pool, with its slot.
pub(crate) struct Service {
    pub(crate) ldap: Ldap,
    slot: tokio::sync::OwnedSemaphorePermit,
    /// Taken from the idle list (it may have died while idle), rather than just opened.
    pub(crate) reused: bool,
}

/// Runs `$body`, an async expression that only reads through `$l: &mut Ldap`, on a pooled
/// service connection. When a reused connection fails at the transport level (the server
/// restarted or dropped it while it sat idle), the other idle ones are discarded too and
/// `$body` runs once more on a freshly bound connection; reads are safe to repeat.
macro_rules! pooled_read {
    ($dir:expr, |$l:ident| $body:expr) => {
        async {
            let mut s = $dir.service().await?;
            let r = {
                let $l = &mut s.ldap;
                $dir.timed($body).await
            };
            let (s, r) = match r {
                Err(DirError::Unavailable(why)) if s.reused => {
                    let mut s = $dir.replace(s, &why).await?;
                    let r = {
                        let $l = &mut s.ldap;
                        $dir.timed($body).await
                    };
                    (s, r)
                }
                r => (s, r),
            };
            $dir.give_back(s, &r);
            r
        }
        .await
    };
}

pub(crate) use pooled_read;

impl LdapDirectory {
    pub fn new(cfg: LdapConfig) -> Result<Self, String> {
        let problems = cfg.validate();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let mut roots = rustls::RootCertStore::empty();
        if let Some(p) = &cfg.ca_file {
            let pem = std::fs::read(p)
                .map_err(|e| format!("directory.ldap.ca_file {}: {e}", p.display()))?;
            for c in rustls_pemfile::certs(&mut pem.as_slice()) {
                let c = c.map_err(|e| format!("directory.ldap.ca_file {}: {e}", p.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("directory.ldap.ca_file {}: {e}", p.display()))?;
            }
        } else {
            let native = rustls_native_roots();
            for c in native {
                let _ = roots.add(c);
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let pool = Pool {
            idle: std::sync::Mutex::new(Vec::new()),
            slots: Arc::new(tokio::sync::Semaphore::new(cfg.pool_size)),
            binds: Arc::new(tokio::sync::Semaphore::new(cfg.password_checks)),
        };
        Ok(Self {
            cfg: Arc::new(cfg),
            tls: Arc::new(tls),
            pool: Arc::new(pool),
            controls: Arc::new(tokio::sync::OnceCell::new()),
            resting: Arc::new(std::sync::Mutex::new(std::collections::HashMap::new())),
        })
    }

    fn resting(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, std::time::Instant>> {
        // Nothing panics while holding it; a poisoned map of times is still a map.
        self.resting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The URLs in the order to try them: those that have not failed lately, in the
    /// configured order, then those resting after a failure (a last resort, not skipped).
    fn connect_order(&self) -> Vec<String> {
        let now = std::time::Instant::now();
        let mut resting = self.resting();
        resting.retain(|_, until| *until > now);
        let (fresh, rest): (Vec<&String>, Vec<&String>) = self
            .cfg
            .urls
            .iter()
            .partition(|u| !resting.contains_key(u.as_str()));
        fresh.into_iter().chain(rest).cloned().collect()
    }

    /// Whether `url` failed to connect lately and is tried only after the others.
    pub fn is_resting(&self, url: &str) -> bool {
        self.resting()
            .get(url)
            .is_some_and(|until| *until > std::time::Instant::now())
    }

    /// A connection to the first URL that answers, TLS set up, not yet bound. A URL that
    /// fails rests for `failed_url_rest_secs`: the others go first meanwhile.
    pub(crate) async fn connect(&self) -> Result<Ldap, DirError> {
        let mut last = String::from("no URL configured");
        for url in &self.connect_order() {
            let starttls = url.starts_with("ldap://") && !self.cfg.allow_plain;
            match self.connect_to(url, starttls).await {
                Ok(ldap) => {
                    self.resting().remove(url);
                    return Ok(ldap);
                }
                Err(e) => {
                    let rest = self.cfg.failed_url_rest_secs;
                    tracing::warn!(url = %url, error = %e, rest_secs = rest, "ldap: cannot connect; the other URLs go first for a while");
                    if rest > 0 {
                        self.resting().insert(
                            url.clone(),
                            std::time::Instant::now() + Duration::from_secs(rest),
                        );
                    }
                    last = format!("{url}: {e}");
                }
            }
        }
        Err(unavailable(last))
    }

    /// A connection to `url`, with StartTLS on an `ldap://` URL when `starttls` is set.
    pub(crate) async fn connect_to(&self, url: &str, starttls: bool) -> Result<Ldap, LdapError> {
        let settings = LdapConnSettings::new()
            .set_config(self.tls.clone())
            .set_starttls(starttls)
            .set_conn_timeout(Duration::from_secs(self.cfg.timeout_secs));
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, url).await?;
        ldap3::drive!(conn);
        ldap.with_timeout(Duration::from_secs(self.cfg.timeout_secs));
        Ok(ldap)
    }

    /// A pooled service connection: an idle one that is still open, else a new one, once a
    /// slot is free (waiting at most `timeout_secs`).
    pub(crate) async fn service(&self) -> Result<Service, DirError> {
        let wait = Duration::from_secs(self.cfg.timeout_secs);
        let slot = match tokio::time::timeout(wait, self.pool.slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(e)) => return Err(unavailable(e)),
            Err(_) => {
                return Err(unavailable(format!(
                    "all {} service connections stayed busy for {} s (directory.ldap.pool_size)",
                    self.cfg.pool_size, self.cfg.timeout_secs
                )));
            }
        };
        loop {
            let Some(mut ldap) = self.pool.idle().pop() else {
                break;
            };
            // The server closed it (a restart, an idle timeout): drop it and look further.
            if !ldap.is_closed() {
                return Ok(Service {
                    ldap,
                    slot,
                    reused: true,
                });
            }
        }
        Ok(Service {
            ldap: self.bind_service().await?,
            slot,
            reused: false,
        })
    }

    /// Whether `password` binds as `dn`, on a connection of its own (a pooled one must stay
    /// bound as the service), closed after. At most `password_checks` run at once, so a flood
    /// of sign-ins cannot open connections to the directory without bound; one that waits
    /// longer than `timeout_secs` for its turn is refused as busy, untried.
    pub(crate) async fn bind_as(&self, dn: &str, password: &str) -> Result<bool, DirError> {
        Ok(match self.bound_as(dn, password).await? {
            UserBind::Bound(mut user, _) => {
                let _ = user.ldap.unbind().await;
                true
            }
            UserBind::Refused { .. } => false,
        })
    }

    /// A connection of its own bound as `dn` (never a pooled one), taking one of the
    /// `password_checks` turns for as long as it is held. The bind asks for ppolicy's
    /// response control, which (like AD's diagnostic text) tells a password that has expired
    /// or must be changed from a wrong one.
    pub(crate) async fn bound_as(&self, dn: &str, password: &str) -> Result<UserBind, DirError> {
        let secs = self.cfg.timeout_secs;
        let turn = tokio::time::timeout(
            Duration::from_secs(secs),
            self.pool.binds.clone().acquire_owned(),
        )
        .await;
        let turn = match turn {
            Ok(Ok(turn)) => turn,
            Ok(Err(e)) => return Err(unavailable(e)),
            Err(_) => {
                return Err(DirError::Busy(format!(
                    "all {} password checks stayed busy for {secs} s (directory.ldap.password_checks)",
                    self.cfg.password_checks
                )));
            }
        };
        let mut ldap = self.connect().await?;
        let r = self
            .timed(async {
                ldap.with_controls(vec![crate::openldap::ppolicy_request()])
                    .simple_bind(dn, password)
                    .await
                    .map_err(unavailable)
            })
            .await;
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                let _ = ldap.unbind().await;
                return Err(e);
            }
        };
        let must_change = must_change(&r);
        if r.rc == 0 {
            return Ok(UserBind::Bound(
                UserConnection { ldap, _turn: turn },
                must_change,
            ));
        }
        let _ = ldap.unbind().await;
        Ok(UserBind::Refused { must_change })
    }

    /// Puts a connection back for reuse, unless the operation on it failed at the transport
    /// level (or timed out) or the server has closed it; either way its slot is freed.
    pub(crate) fn give_back<T>(&self, s: Service, result: &Result<T, DirError>) {
        let Service { mut ldap, slot, .. } = s;
        if !matches!(result, Err(DirError::Unavailable(_))) && !ldap.is_closed() {
            self.pool.idle().push(ldap);
        }
        drop(slot);
    }

    /// A fresh connection in the slot of one that just failed. The idle ones date from the
    /// same time and most likely failed too (a server restart): they go as well.
    pub(crate) async fn replace(&self, s: Service, why: &str) -> Result<Service, DirError> {
        tracing::info!(cause = %why, "ldap: a pooled connection failed; opening a new one");
        let Service { slot, .. } = s;
        self.pool.idle().clear();
        Ok(Service {
            ldap: self.bind_service().await?,
            slot,
            reused: false,
        })
    }

    /// At most `timeout_secs` for one pooled operation (ldap3's own timeout covers a single
    /// request, and only when set before it).
    pub(crate) async fn timed<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, DirError>>,
    ) -> Result<T, DirError> {
        let secs = self.cfg.timeout_secs;
        match tokio::time::timeout(Duration::from_secs(secs), op).await {
            Ok(r) => r,
            Err(_) => Err(unavailable(format!("no answer within {secs} s"))),
        }
    }

    /// A pooled connection with the user's entry looked up on it, replacing a dead pooled
    /// connection once, so that a write that follows goes over a connection that has just
    /// answered (a write is never repeated: a reset sent twice would hit the history rule).
    pub(crate) async fn service_and_entry(
        &self,
        user: &DirUser,
    ) -> Result<(Service, String), DirError> {
        let mut s = self.service().await?;
        let mut found = self.timed(self.entry(&mut s.ldap, &user.lookup)).await;
        let retry = match &found {
            Err(DirError::Unavailable(why)) if s.reused => Some(why.clone()),
            _ => None,
        };
        if let Some(why) = retry {
            s = self.replace(s, &why).await?;
            found = self.timed(self.entry(&mut s.ldap, &user.lookup)).await;
        }
        match found {
            Ok(Some(e)) if entry_id(&e) == user.id => {
                let dn = e.dn;
                Ok((s, dn))
            }
            Ok(_) => {
                self.give_back(s, &Ok::<(), DirError>(()));
                Err(DirError::Other(format!(
                    "ldap: {} is no longer the same entry",
                    user.login
                )))
            }
            Err(e) => {
                self.give_back(s, &Err::<(), DirError>(e.clone()));
                Err(e)
            }
        }
    }

    /// A new connection bound as the service account, outside the pool.
    async fn bind_service(&self) -> Result<Ldap, DirError> {
        let mut ldap = self.connect().await?;
        let r = ldap
            .simple_bind(&self.cfg.bind_dn, &self.cfg.bind_password)
            .await
            .map_err(unavailable)?;
        if r.rc != 0 {
            return Err(DirError::Permission(format!(
                "ldap: the service account {} cannot bind; directory said {}",
                self.cfg.bind_dn,
                directory_said(r.rc, &r.text)
            )));
        }
        Ok(ldap)
    }
}

fn rustls_native_roots() -> Vec<rustls::pki_types::CertificateDer<'static>> {
    // The system bundle Debian ships; enough without another dependency.
    std::fs::read("/etc/ssl/certs/ca-certificates.crt")
        .map(|pem| {
            rustls_pemfile::certs(&mut pem.as_slice())
                .flatten()
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LdapConfig;

    /// A listener that counts the connections it accepts and keeps them open.
    async fn counting_listener(l: tokio::net::TcpListener) -> Arc<std::sync::atomic::AtomicUsize> {
        let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = n.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = l.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(sock);
            }
        });
        n
    }

    /// The count once the listener has caught up with the connections already made.
    async fn seen(n: &std::sync::atomic::AtomicUsize) -> usize {
        tokio::time::sleep(Duration::from_millis(100)).await;
        n.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_url_that_failed_rests_while_the_next_one_is_used() {
        // A port nothing listens on (yet), then a live one.
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_url = format!("ldap://{}", live.local_addr().unwrap());
        let live_hits = counting_listener(live).await;
        let dead_url = format!("ldap://{dead_addr}");
        let dir = LdapDirectory::new(LdapConfig {
            urls: vec![dead_url.clone(), live_url],
            allow_plain: true,
            bind_dn: "cn=svc".into(),
            bind_password: "x".into(),
            base_dn: "dc=x".into(),
            timeout_secs: 2,
            failed_url_rest_secs: 1,
            ..LdapConfig::default()
        })
        .unwrap();
        assert!(dir.connect().await.is_ok(), "the second URL answers");
        assert_eq!(seen(&live_hits).await, 1);
        assert!(dir.is_resting(&dead_url));
        // The first URL comes back, but rests: the next connection goes to the second.
        let back = tokio::net::TcpListener::bind(dead_addr).await.unwrap();
        let back_hits = counting_listener(back).await;
        assert!(dir.connect().await.is_ok());
        assert_eq!((seen(&back_hits).await, seen(&live_hits).await), (0, 2));
        // After the rest it is first again.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert!(!dir.is_resting(&dead_url));
        assert!(dir.connect().await.is_ok());
        assert_eq!((seen(&back_hits).await, seen(&live_hits).await), (1, 2));
    }

    #[tokio::test]
    async fn a_resting_url_is_still_tried_when_it_is_the_only_one() {
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = dead.local_addr().unwrap();
        drop(dead);
        let url = format!("ldap://{addr}");
        let dir = LdapDirectory::new(LdapConfig {
            urls: vec![url.clone()],
            allow_plain: true,
            bind_dn: "cn=svc".into(),
            bind_password: "x".into(),
            base_dn: "dc=x".into(),
            ..LdapConfig::default()
        })
        .unwrap();
        assert!(dir.connect().await.is_err());
        assert!(dir.is_resting(&url));
        let back = tokio::net::TcpListener::bind(addr).await.unwrap();
        let hits = counting_listener(back).await;
        assert!(dir.connect().await.is_ok(), "a last resort, not skipped");
        assert_eq!(seen(&hits).await, 1);
        assert!(!dir.is_resting(&url));
    }
}
