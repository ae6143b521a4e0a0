//! Hashing and keys: Argon2id on a bounded pool, HMAC for short codes, AEAD for TOTP secrets.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{Output, PasswordHash, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use sspr_domain::Random;
use sspr_domain::random::hex;
use tokio::sync::oneshot;

use crate::error::AppError;

/// OWASP Password Storage Cheat Sheet: Argon2id, m = 19 MiB, t = 2, p = 1.
pub const ARGON2_M_KIB: u32 = 19_456;
pub const ARGON2_T: u32 = 2;
pub const ARGON2_P: u32 = 1;

/// Runs Argon2 on the blocking pool, at most `permits` at a time, each in one of `permits`
/// memory buffers allocated once and reused. Memory therefore stays at `permits × 19 MiB`
/// however many requests arrive: allocating 19 MiB per call instead lets the allocator keep
/// freed blocks in per-thread arenas, and resident memory grew past a gigabyte under load.
/// After [`KEEP_BUFFERS`] without a hash the buffers are dropped, so an idle server does not
/// hold them. A caller that cannot get a slot in time is told the server is busy rather than
/// queued without end.
///
/// The last step of a reset (the new password's history checks and hash) is served before
/// anything else waiting ([`HashPool::first_in_line`]): under overload the refusals fall on
/// the steps before it, not on a person who has already proved who they are.
#[derive(Clone)]
pub struct HashPool {
    slots: Arc<Gate>,
    /// Served before the others waiting.
    urgent: bool,
    buffers: Arc<std::sync::Mutex<Vec<Vec<Block>>>>,
    wait: Duration,
    params: Params,
    /// Verified against when a user does not exist, so that the miss costs what a hit costs.
    /// Made on first use (`serve` makes it at start): a CLI command that never hashes does
    /// not pay a hash to start.
    dummy: Arc<std::sync::OnceLock<String>>,
    idle: Arc<Idle>,
    keep_buffers: Duration,
}

/// How long the pool keeps its buffers after the last hash. A burst reuses them; a server
/// that then sits idle gives the 19 MiB each back.
pub const KEEP_BUFFERS: Duration = Duration::from_secs(10);

/// Counts hashes and whether a task is waiting to drop the buffers.
#[derive(Default)]
struct Idle {
    hashes: std::sync::atomic::AtomicU64,
    waiting: std::sync::atomic::AtomicBool,
}

impl HashPool {
    pub fn new(permits: usize, wait: Duration) -> Result<Self, AppError> {
        Self::with_params(permits, wait, ARGON2_M_KIB, ARGON2_T)
    }

    pub fn with_params(
        permits: usize,
        wait: Duration,
        m_kib: u32,
        t: u32,
    ) -> Result<Self, AppError> {
        let params = Params::new(m_kib, t, ARGON2_P, None)
            .map_err(|e| AppError::internal(format!("argon2 params: {e}")))?;
        let pool = Self {
            slots: Gate::new(permits.max(1)),
            urgent: false,
            buffers: Arc::new(std::sync::Mutex::new(Vec::new())),
            wait,
            params,
            dummy: Arc::new(std::sync::OnceLock::new()),
            idle: Arc::new(Idle::default()),
            keep_buffers: KEEP_BUFFERS,
        };
        Ok(pool)
    }

    fn take_buffer(&self) -> Vec<Block> {
        let reused = match self.buffers.lock() {
            Ok(mut b) => b.pop(),
            Err(p) => p.into_inner().pop(),
        };
        reused.unwrap_or_else(|| vec![Block::default(); self.params.block_count()])
    }

    fn give_back(&self, buf: Vec<Block>) {
        match self.buffers.lock() {
            Ok(mut b) => b.push(buf),
            Err(p) => p.into_inner().push(buf),
        }
        self.drop_buffers_when_idle();
    }

    /// One task at a time waits until a whole [`KEEP_BUFFERS`] passes without a hash, then
    /// drops the buffers (a hash under way keeps its own; the next allocates afresh).
    fn drop_buffers_when_idle(&self) {
        use std::sync::atomic::Ordering;
        self.idle.hashes.fetch_add(1, Ordering::Relaxed);
        if self.idle.waiting.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.idle.waiting.store(false, Ordering::Release);
            return;
        };
        let (idle, buffers, keep) = (self.idle.clone(), self.buffers.clone(), self.keep_buffers);
        rt.spawn(async move {
            loop {
                let seen = idle.hashes.load(Ordering::Relaxed);
                tokio::time::sleep(keep).await;
                if idle.hashes.load(Ordering::Relaxed) == seen {
                    break;
                }
            }
            // Cleared first: a hash that ends from here on waits anew for its own buffer.
            idle.waiting.store(false, Ordering::Release);
            let dropped = match buffers.lock() {
                Ok(mut b) => std::mem::take(&mut *b),
                Err(p) => std::mem::take(&mut *p.into_inner()),
            };
            drop(dropped);
        });
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Params, &mut [Block]) -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let asked = std::time::Instant::now();
        let metrics = crate::metrics::metrics();
        let Some(permit) = self.slots.acquire(self.urgent, self.wait).await else {
            metrics.hash_busy.inc();
            return Err(AppError::busy());
        };
        metrics.hash_wait.observe(asked.elapsed().as_secs_f64());
        // The slot and the buffer belong to the hash, not to its caller: a caller dropped
        // mid-hash (a client gone, or `verify_all` giving up on its siblings when one is
        // refused) leaves the hash running on the blocking pool, and a slot freed then would
        // let a third hash run and a third buffer be allocated on two slots.
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = pool.take_buffer();
            let out = f(&pool.params, &mut buf);
            pool.give_back(buf);
            drop(permit);
            out
        })
        .await
        .map_err(|e| AppError::internal(format!("hash task: {e}")))
    }

    /// The same pool, whose callers are served before everyone else waiting (in arrival
    /// order among themselves): for the last step of a reset.
    pub fn first_in_line(&self) -> Self {
        Self {
            urgent: true,
            ..self.clone()
        }
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) with a fresh 16-byte salt.
    pub async fn hash(&self, secret: &str, rng: &dyn Random) -> Result<String, AppError> {
        let mut salt = [0u8; 16];
        rng.fill(&mut salt);
        let secret = secret.to_owned();
        self.run(move |params, buf| hash_with(params, secret.as_bytes(), &salt, buf))
            .await?
    }

    /// Whether `secret` matches `phc`. A malformed stored hash never matches. Imported bcrypt
    /// and `{SSHA}` hashes (see [`crate::foreign_hash`]) verify too, on the same bounded pool,
    /// so sign-in and the history check work for them as for Argon2.
    pub async fn verify(&self, secret: &str, phc: &str) -> Result<bool, AppError> {
        let secret = secret.to_owned();
        let phc = phc.to_owned();
        self.run(move |params, buf| {
            crate::foreign_hash::verify_foreign(secret.as_bytes(), &phc)
                .unwrap_or_else(|| verify_with(params, secret.as_bytes(), &phc, buf))
        })
        .await
    }

    /// Whether a hash that just verified should be replaced by one of this pool's: any other
    /// scheme (imported bcrypt or `{SSHA}`), Argon2i, or Argon2id with other costs.
    pub fn needs_rehash(&self, stored: &str) -> bool {
        let current = format!(
            "$argon2id$v=19$m={},t={},p={}$",
            self.params.m_cost(),
            self.params.t_cost(),
            self.params.p_cost()
        );
        !stored.starts_with(&current)
    }

    /// Whether each `(secret, phc)` pair matches, in order. The verifications run side by side,
    /// as many at once as the pool has slots, so a reset's three answers or a password's
    /// history cost about one verification per core rather than one each. All of them run
    /// even when an early one fails, so the time taken does not say which did.
    pub async fn verify_all(&self, pairs: Vec<(String, String)>) -> Result<Vec<bool>, AppError> {
        futures_util::future::try_join_all(
            pairs
                .into_iter()
                .map(|(secret, phc)| async move { self.verify(&secret, &phc).await }),
        )
        .await
    }

    /// The hash verified against when there is nothing to verify against, so that the miss
    /// costs what a hit costs; the caller ignores what it answers.
    pub fn dummy_hash(&self) -> String {
        self.dummy
            .get_or_init(|| {
                let mut buf = self.take_buffer();
                let h = hash_with(
                    &self.params,
                    b"sspr-timing-equaliser",
                    b"dummysaltdummysalt",
                    &mut buf,
                );
                self.give_back(buf);
                // Cannot fail with the parameters `with_params` accepted; an empty hash would
                // only make a miss cheaper, never let anyone in.
                h.unwrap_or_default()
            })
            .clone()
    }

    /// Burns the time of one verification; used when there is nothing to verify against.
    pub async fn verify_dummy(&self, secret: &str) -> Result<bool, AppError> {
        self.verify(secret, &self.dummy_hash()).await.map(|_| false)
    }
}

/// The pool's slots: a counting semaphore with two queues, the urgent one served first, each
/// in arrival order. A waiter that gives up leaves its place behind; it is skipped.
struct Gate {
    state: std::sync::Mutex<GateState>,
}

struct GateState {
    free: usize,
    urgent: std::collections::VecDeque<oneshot::Sender<Slot>>,
    normal: std::collections::VecDeque<oneshot::Sender<Slot>>,
}

/// One slot, given back (to the next waiter, or as free) when dropped.
struct Slot {
    gate: Option<Arc<Gate>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.release();
        }
    }
}

impl Gate {
    fn new(slots: usize) -> Arc<Self> {
        Arc::new(Self {
            state: std::sync::Mutex::new(GateState {
                free: slots,
                urgent: Default::default(),
                normal: Default::default(),
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, GateState> {
        // Every change under the lock is a single push, pop or count: consistent even if a
        // holder panicked.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot within `wait`, or `None`.
    async fn acquire(self: &Arc<Self>, urgent: bool, wait: Duration) -> Option<Slot> {
        let rx = {
            let mut st = self.state();
            if st.free > 0 {
                st.free -= 1;
                return Some(Slot {
                    gate: Some(self.clone()),
                });
            }
            let (tx, rx) = oneshot::channel();
            if urgent {
                st.urgent.push_back(tx);
            } else {
                st.normal.push_back(tx);
            }
            rx
        };
        // A slot sent just as the wait ends is dropped with the receiver, and so passed on.
        tokio::time::timeout(wait, rx).await.ok()?.ok()
    }

    /// Hands a slot to the first waiter still waiting, urgent ones first, or frees it.
    fn release(self: &Arc<Self>) {
        loop {
            let next = {
                let mut st = self.state();
                match st.urgent.pop_front().or_else(|| st.normal.pop_front()) {
                    Some(tx) => tx,
                    None => {
                        st.free += 1;
                        return;
                    }
                }
            };
            let slot = Slot {
                gate: Some(self.clone()),
            };
            match next.send(slot) {
                Ok(()) => return,
                // That waiter gave up: the slot goes to the next one, not back through drop.
                Err(mut unsent) => {
                    unsent.gate = None;
                }
            }
        }
    }

    #[cfg(test)]
    fn free(&self) -> usize {
        self.state().free
    }
}

fn argon(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

/// Argon2id into the caller's memory, rendered as a PHC string.
fn hash_with(
    params: &Params,
    secret: &[u8],
    salt: &[u8],
    buf: &mut [Block],
) -> Result<String, AppError> {
    let mut out = [0u8; 32];
    argon(params)
        .hash_password_into_with_memory(secret, salt, &mut out, buf)
        .map_err(|e| AppError::internal(format!("argon2: {e}")))?;
    let salt =
        SaltString::encode_b64(salt).map_err(|e| AppError::internal(format!("salt: {e}")))?;
    let out = Output::new(&out).map_err(|e| AppError::internal(format!("argon2 output: {e}")))?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        salt.as_str(),
        out
    ))
}

/// Verifies in the caller's memory when the stored hash uses the pool's memory size; a hash
/// made with other parameters (older settings, another variant) is verified the plain way.
fn verify_with(params: &Params, secret: &[u8], phc: &str, buf: &mut [Block]) -> bool {
    let Ok(h) = PasswordHash::new(phc) else {
        return false;
    };
    let stored = Params::try_from(&h).ok();
    let same_shape = h.algorithm == argon2::ARGON2ID_IDENT
        && stored
            .as_ref()
            .is_some_and(|p| p.block_count() == params.block_count() && p.p_cost() == 1);
    match (same_shape, stored, h.salt, h.hash) {
        (true, Some(p), Some(salt), Some(expected)) => {
            let mut salt_buf = [0u8; 64];
            let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
                return false;
            };
            let mut out = vec![0u8; expected.len()];
            if argon(&p)
                .hash_password_into_with_memory(secret, salt, &mut out, buf)
                .is_err()
            {
                return false;
            }
            // Output's equality is constant-time.
            Output::new(&out).is_ok_and(|o| o == expected)
        }
        _ => Argon2::default().verify_password(secret, &h).is_ok(),
    }
}

/// SHA-256 of a bearer token, as stored. Tokens carry 128 random bits, so a plain hash is
/// enough (ASVS 6.5.2); the token itself is never stored.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// The server's secret key: binds short codes to their owner (HMAC) and seals TOTP secrets.
/// Every instance of one installation must share it (`secret_key_file`).
#[derive(Clone)]
pub struct ServerKey(Arc<[u8; 32]>);

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(…)")
    }
}

impl ServerKey {
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(Arc::new(b))
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.len() != 64 {
            return Err(format!(
                "the secret key must be 64 hex characters (32 bytes), found {}",
                s.len()
            ));
        }
        let mut b = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let pair =
                std::str::from_utf8(chunk).map_err(|_| "the secret key is not hex".to_string())?;
            b[i] = u8::from_str_radix(pair, 16)
                .map_err(|_| "the secret key is not hex".to_string())?;
        }
        Ok(Self::from_bytes(b))
    }

    pub fn generate(rng: &dyn Random) -> Self {
        let mut b = [0u8; 32];
        rng.fill(&mut b);
        Self::from_bytes(b)
    }

    pub fn to_hex(&self) -> String {
        hex(self.0.as_ref())
    }

    /// HMAC-SHA256 over `owner` and `code`, hex.
    pub fn code_mac(&self, owner: &str, code: &str) -> String {
        match <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_ref()) {
            Ok(mut m) => {
                m.update(owner.as_bytes());
                m.update(b"\0");
                m.update(code.as_bytes());
                hex(&m.finalize().into_bytes())
            }
            // HMAC takes keys of any length; this branch cannot run.
            Err(_) => String::new(),
        }
    }

    /// Constant-time comparison of a code against its stored MAC.
    pub fn code_matches(&self, owner: &str, code: &str, mac: &str) -> bool {
        use subtle::ConstantTimeEq;
        let want = self.code_mac(owner, code);
        !want.is_empty() && want.as_bytes().ct_eq(mac.as_bytes()).into()
    }

    /// Encrypts with ChaCha20-Poly1305 under a key derived for `purpose`; hex(nonce ‖ ct).
    pub fn seal(
        &self,
        purpose: &str,
        plaintext: &[u8],
        rng: &dyn Random,
    ) -> Result<String, AppError> {
        let cipher = ChaCha20Poly1305::new_from_slice(&self.derive(purpose))
            .map_err(|_| AppError::internal("aead key"))?;
        let mut nonce = [0u8; 12];
        rng.fill(&mut nonce);
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .map_err(|_| AppError::internal("aead seal"))?;
        Ok(format!("{}{}", hex(&nonce), hex(&ct)))
    }

    pub fn open(&self, purpose: &str, sealed: &str) -> Result<Vec<u8>, AppError> {
        let raw = unhex(sealed).ok_or_else(|| AppError::internal("sealed value is not hex"))?;
        if raw.len() < 12 + 16 {
            return Err(AppError::internal("sealed value too short"));
        }
        let cipher = ChaCha20Poly1305::new_from_slice(&self.derive(purpose))
            .map_err(|_| AppError::internal("aead key"))?;
        cipher
            .decrypt(Nonce::from_slice(&raw[..12]), &raw[12..])
            .map_err(|_| {
                AppError::internal(
                    "sealed value does not open under this server key (was secret_key changed?)",
                )
            })
    }

    /// HMAC-SHA256 of `msg` under a key derived for `purpose`, hex: a signature only this
    /// installation's instances can make.
    pub fn mac(&self, purpose: &str, msg: &[u8]) -> String {
        match <Hmac<Sha256> as Mac>::new_from_slice(&self.derive(purpose)) {
            Ok(mut m) => {
                m.update(msg);
                hex(&m.finalize().into_bytes())
            }
            // HMAC takes keys of any length; this branch cannot run.
            Err(_) => String::new(),
        }
    }

    fn derive(&self, purpose: &str) -> [u8; 32] {
        let mac = self.code_mac("sspr-derive", purpose);
        let mut out = [0u8; 32];
        if let Some(b) = unhex(&mac) {
            out.copy_from_slice(&b[..32]);
        }
        out
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sspr_domain::OsRandom;

    #[tokio::test]
    async fn hashes_are_owasp_argon2id_and_verify() {
        let pool = HashPool::new(2, Duration::from_secs(5)).unwrap();
        let h = pool.hash("correct horse", &OsRandom).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert_eq!(pool.verify("correct horse", &h).await.ok(), Some(true));
        assert_eq!(pool.verify("wrong horse", &h).await.ok(), Some(false));
        assert_eq!(pool.verify("x", "not a hash").await.ok(), Some(false));
    }

    #[tokio::test]
    async fn memory_is_allocated_once_per_slot_however_many_callers() {
        let pool = HashPool::new(2, Duration::from_secs(30)).unwrap();
        let h = pool.hash("pw", &OsRandom).await.unwrap();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let (p, h) = (pool.clone(), h.clone());
            set.spawn(async move { p.verify("pw", &h).await.unwrap() });
        }
        while let Some(ok) = set.join_next().await {
            assert!(ok.unwrap());
        }
        // Every buffer came back, and no more were ever made than there are slots.
        assert_eq!(pool.buffers.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn an_idle_pool_drops_its_buffers_and_hashes_on_afterwards() {
        let mut pool = HashPool::with_params(2, Duration::from_secs(5), 8_192, 1).unwrap();
        pool.keep_buffers = Duration::from_millis(300);
        let held = |p: &HashPool| p.buffers.lock().unwrap().len();
        let h = pool.hash("pw", &OsRandom).await.unwrap();
        assert!(pool.verify("pw", &h).await.unwrap());
        // Bounded, not timed: once no hash came for the whole wait, the buffer goes.
        let mut waited = Duration::ZERO;
        while held(&pool) > 0 && waited < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += Duration::from_millis(50);
        }
        assert_eq!(
            held(&pool),
            0,
            "the buffers were still held after {waited:?}"
        );
        assert!(pool.verify("pw", &h).await.unwrap());
        assert_eq!(held(&pool), 1);
    }

    /// Under 200 concurrent resets a refused verification made `verify_all` drop its
    /// siblings mid-hash; their slots were freed while their hashes still ran, and five
    /// 19 MiB buffers were seen on two slots (`bench/resets.py`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_dropped_mid_hash_keeps_its_slot_until_the_hash_ends() {
        let pool = HashPool::with_params(1, Duration::from_secs(30), 1_024, 400).unwrap();
        let caller = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.hash("pw", &OsRandom).await })
        };
        let mut waited = Duration::ZERO;
        while pool.slots.free() > 0 && waited < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(1)).await;
            waited += Duration::from_millis(1);
        }
        assert_eq!(pool.slots.free(), 0, "the hash never started");
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        assert_eq!(
            pool.slots.free(),
            0,
            "the slot was freed while its hash still ran"
        );
        // The next caller gets the slot, and the one buffer, once the hash is done.
        pool.hash("pw", &OsRandom).await.unwrap();
        assert_eq!(pool.slots.free(), 1);
        assert_eq!(pool.buffers.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn hashes_from_other_parameters_still_verify() {
        let pool = HashPool::new(1, Duration::from_secs(5)).unwrap();
        let small = HashPool::with_params(1, Duration::from_secs(5), 8_192, 3).unwrap();
        let h = small.hash("old password", &OsRandom).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=8192,t=3,p=1$"), "{h}");
        assert_eq!(pool.verify("old password", &h).await.ok(), Some(true));
        assert_eq!(pool.verify("wrong", &h).await.ok(), Some(false));
    }

    /// Under 200 concurrent resets a fifth of the password steps, the last step of a reset,
    /// were refused as busy behind answer checks that came later (`bench/resets.py`).
    #[tokio::test]
    async fn the_last_step_of_a_reset_is_served_before_earlier_steps_waiting() {
        let gate = Gate::new(1);
        let held = gate.acquire(false, Duration::ZERO).await.unwrap();
        let queued = |g: &Gate| {
            let st = g.state();
            (st.normal.len(), st.urgent.len())
        };
        let (g1, g2, g3) = (gate.clone(), gate.clone(), gate.clone());
        let gave_up = tokio::spawn(async move { g1.acquire(false, Duration::ZERO).await });
        assert!(gave_up.await.unwrap().is_none(), "no slot within no time");
        let earlier = tokio::spawn(async move { g2.acquire(false, Duration::from_secs(30)).await });
        while queued(&gate).0 < 2 {
            tokio::task::yield_now().await;
        }
        let last = tokio::spawn(async move { g3.acquire(true, Duration::from_secs(30)).await });
        while queued(&gate).1 < 1 {
            tokio::task::yield_now().await;
        }
        drop(held);
        let slot = last
            .await
            .unwrap()
            .expect("the urgent waiter is served first");
        assert!(!earlier.is_finished());
        drop(slot);
        // The waiter that gave up is skipped; the one still waiting gets the slot.
        let slot = earlier.await.unwrap().expect("then the one still waiting");
        assert_eq!(gate.free(), 0);
        drop(slot);
        assert_eq!(gate.free(), 1);
        assert_eq!(queued(&gate), (0, 0));
    }

    #[tokio::test]
    async fn pool_refuses_when_every_slot_stays_busy() {
        let pool = HashPool::new(1, Duration::from_millis(1)).unwrap();
        let held = pool.slots.acquire(false, Duration::ZERO).await;
        assert!(held.is_some());
        assert!(
            matches!(pool.verify("x", "y").await, Err(e) if e.kind == crate::error::ErrorKind::Busy)
        );
    }

    #[test]
    fn codes_are_bound_to_their_owner() {
        let k = ServerKey::generate(&OsRandom);
        let mac = k.code_mac("flow-a", "123456");
        assert!(k.code_matches("flow-a", "123456", &mac));
        assert!(!k.code_matches("flow-b", "123456", &mac));
        assert!(!k.code_matches("flow-a", "123457", &mac));
        assert!(!mac.contains("123456"));
    }

    #[test]
    fn sealing_round_trips_and_detects_the_wrong_key() {
        let k = ServerKey::generate(&OsRandom);
        let s = k
            .seal("totp", b"JBSWY3DPEHPK3PXP", &OsRandom)
            .unwrap_or_default();
        assert_eq!(k.open("totp", &s).ok(), Some(b"JBSWY3DPEHPK3PXP".to_vec()));
        assert!(k.open("other", &s).is_err());
        assert!(ServerKey::generate(&OsRandom).open("totp", &s).is_err());
        assert_eq!(
            ServerKey::from_hex(&k.to_hex()).map(|x| x.to_hex()).ok(),
            Some(k.to_hex())
        );
    }
}
