//! Tamper evidence for the audit log, and its retention.
//!
//! Each event stores `chain = SHA-256(previous chain ‖ the event's canonical bytes)`, computed
//! by the store as it appends (under the database's write lock, so the chain has one order).
//! Changing, inserting or deleting an event breaks every link after it unless all later hashes
//! are recomputed, and anyone with write access to the database can do that. So the server
//! also signs **checkpoints** with a key derived from its secret key — "the log reached event N
//! with hash H" — stores them and writes them to its log (journald), from where they can be
//! kept apart from the database. `sspr audit verify` recomputes the chain and checks it against
//! every checkpoint: a rewrite without the key, or a truncation of the newest events, shows.
//!
//! What it does not prove: that an event was ever written (a step that failed to audit is not
//! in the chain), nor anything against someone who holds the secret key and the database.

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};
use sspr_domain::audit::AuditEvent;
use sspr_domain::clock::UnixTime;

use sspr_domain::random::hex;

use crate::crypto::ServerKey;
use crate::ports::{AuditCheckpoint, AuditStore, ChainedEvent, StoreResult};

/// What the first event links from, and what an event written before the chain existed
/// counts as.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of `e` chained to `prev`. `details` is the text stored, which the hash covers.
pub fn link(prev: Option<&str>, e: &AuditEvent, details: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"sspr-audit-v1");
    h.update(prev.unwrap_or(GENESIS).as_bytes());
    let at = e.at.to_string();
    let fields: [Option<&str>; 11] = [
        Some(&at),
        Some(e.activity.as_str()),
        Some(&e.actor),
        Some(&e.target),
        Some(&e.client_ip),
        Some(e.client_type.as_str()),
        Some(e.outcome.as_str()),
        Some(&e.reason),
        e.flow_id.as_deref(),
        e.support_code.as_deref(),
        Some(details),
    ];
    // Length-prefixed with a presence byte: no two different events share a byte string.
    for f in fields {
        match f {
            None => h.update([0u8]),
            Some(s) => {
                h.update([1u8]);
                h.update((s.len() as u64).to_be_bytes());
                h.update(s.as_bytes());
            }
        }
    }
    hex(&h.finalize())
}

const MAC_PURPOSE: &str = "audit-checkpoint";

fn checkpoint_mac(key: &ServerKey, kind: &str, at: UnixTime, last_id: i64, chain: &str) -> String {
    key.mac(
        MAC_PURPOSE,
        format!("sspr-audit-checkpoint-v1|{kind}|{at}|{last_id}|{chain}").as_bytes(),
    )
}

/// A checkpoint for the event `last_id` whose hash is `chain`, signed with `key`.
pub fn sign(
    key: &ServerKey,
    kind: &str,
    at: UnixTime,
    last_id: i64,
    chain: &str,
) -> AuditCheckpoint {
    AuditCheckpoint {
        id: 0,
        at,
        kind: kind.to_string(),
        last_id,
        chain: chain.to_string(),
        mac: checkpoint_mac(key, kind, at, last_id, chain),
    }
}

fn signed_by(key: &ServerKey, c: &AuditCheckpoint) -> bool {
    use subtle::ConstantTimeEq;
    let want = checkpoint_mac(key, &c.kind, c.at, c.last_id, &c.chain);
    want.as_bytes().ct_eq(c.mac.as_bytes()).into()
}

/// Signs and stores a checkpoint at the newest event, unless there is no event or the newest
/// already has one. The caller logs what it returns.
pub async fn checkpoint(
    store: &dyn AuditStore,
    key: &ServerKey,
    now: UnixTime,
) -> StoreResult<Option<AuditCheckpoint>> {
    let Some((last_id, chain)) = store.audit_head().await? else {
        return Ok(None);
    };
    let known = store.audit_checkpoints().await?;
    if known.iter().any(|c| c.last_id >= last_id) {
        return Ok(None);
    }
    let c = sign(
        key,
        "periodic",
        now,
        last_id,
        chain.as_deref().unwrap_or(GENESIS),
    );
    store.insert_audit_checkpoint(&c).await?;
    Ok(Some(c))
}

/// What `sspr audit verify` found.
#[derive(Debug, Default)]
pub struct Verification {
    pub events: u64,
    /// Events written before the chain existed (no hash), at the start of the log.
    pub unchained: u64,
    pub first_id: Option<i64>,
    pub last_id: Option<i64>,
    pub checkpoints: usize,
    /// Each problem in words, the first broken link first.
    pub problems: Vec<String>,
}

impl Verification {
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Recomputes the whole chain, page by page, and checks it against every checkpoint.
pub async fn verify(store: &dyn AuditStore, key: &ServerKey) -> StoreResult<Verification> {
    let mut v = Verification::default();
    let mut checkpoints = store.audit_checkpoints().await?;
    checkpoints.sort_by_key(|c| (c.last_id, c.id));
    v.checkpoints = checkpoints.len();
    for c in &checkpoints {
        if !signed_by(key, c) {
            v.problems.push(format!(
                "checkpoint {} (event #{}, {}) is not signed by this server's key: it was altered or written by someone else",
                c.id,
                c.last_id,
                sspr_domain::clock::rfc3339(c.at)
            ));
        }
    }
    // The log may start after a pruning: the newest signed prune checkpoint is where it must
    // pick up.
    let anchor = checkpoints
        .iter()
        .filter(|c| c.kind == "prune" && signed_by(key, c))
        .max_by_key(|c| c.last_id);
    let mut prev: Option<String> = anchor.map(|a| a.chain.clone());
    let mut after = anchor.map(|a| a.last_id).unwrap_or(0);
    let mut broken = false;
    let mut chained_seen = false;
    let mut pending: std::collections::VecDeque<&AuditCheckpoint> = checkpoints
        .iter()
        .filter(|c| anchor.is_none_or(|a| c.last_id > a.last_id))
        .collect();
    if let Some(a) = anchor {
        // Events at or before the anchor should be gone; one left over means the log was
        // pruned by something else, or rows were put back.
        let early = store.audit_chain_page(0, 1).await?;
        if let Some(e) = early.first().filter(|e| e.event.id <= a.last_id) {
            v.problems.push(format!(
                "event #{} is older than the pruning checkpoint at event #{}: it should have been deleted",
                e.event.id, a.last_id
            ));
            after = 0;
            prev = None;
        }
    }
    loop {
        let page = store.audit_chain_page(after, 5000).await?;
        let Some(last) = page.last() else { break };
        after = last.event.id;
        for e in &page {
            v.events += 1;
            v.first_id.get_or_insert(e.event.id);
            v.last_id = Some(e.event.id);
            let Some(stored) = &e.chain else {
                if chained_seen && !broken {
                    broken = true;
                    v.problems.push(format!(
                        "event #{} ({}) has no hash although events before it do: it was inserted by hand or by a server older than this log",
                        e.event.id,
                        sspr_domain::clock::rfc3339(e.event.at)
                    ));
                }
                v.unchained += 1;
                prev = None;
                continue;
            };
            chained_seen = true;
            let want = link(prev.as_deref(), &e.event, &e.details_text);
            if !broken && want != *stored {
                broken = true;
                v.problems
                    .push(first_break(e, v.events == 1 && anchor.is_none()));
            }
            // Continue from the stored hash: one altered event is reported once, not with
            // every event after it.
            prev = Some(stored.clone());
            while let Some(c) = pending.front().copied().filter(|c| c.last_id <= e.event.id) {
                pending.pop_front();
                if c.last_id < e.event.id {
                    v.problems.push(format!(
                        "checkpoint {} names event #{}, which is missing: events were deleted",
                        c.id, c.last_id
                    ));
                } else if c.chain != *stored {
                    v.problems.push(format!(
                        "event #{} does not have the hash its checkpoint {} ({}) recorded: it or an event before it was changed",
                        e.event.id,
                        c.id,
                        sspr_domain::clock::rfc3339(c.at)
                    ));
                }
            }
        }
    }
    for c in pending {
        v.problems.push(match v.last_id {
            Some(last) => format!(
                "checkpoint {} ({}) covers event #{}, but the log ends at #{last}: the newest events were deleted",
                c.id,
                sspr_domain::clock::rfc3339(c.at),
                c.last_id
            ),
            None => format!(
                "checkpoint {} ({}) covers event #{}, but the log is empty: its events were deleted",
                c.id,
                sspr_domain::clock::rfc3339(c.at),
                c.last_id
            ),
        });
    }
    Ok(v)
}

fn first_break(e: &ChainedEvent, first: bool) -> String {
    if first {
        format!(
            "event #{} ({}) is the first in the log but does not start the chain: events before it were deleted without a signed pruning checkpoint, or it was changed",
            e.event.id,
            sspr_domain::clock::rfc3339(e.event.at)
        )
    } else {
        format!(
            "the chain breaks at event #{} ({}, {}): it was changed, or an event just before it was changed, inserted or deleted",
            e.event.id,
            sspr_domain::clock::rfc3339(e.event.at),
            e.event.activity.as_str()
        )
    }
}

/// Deletes events older than `before`, in batches of `batch`, each after a signed `prune`
/// checkpoint at its last event and, with `archive`, after the batch was written to a JSON
/// lines file there and synced. Short transactions: writers wait for one batch at most.
pub async fn prune(
    store: &dyn AuditStore,
    key: &ServerKey,
    now: UnixTime,
    before: UnixTime,
    batch: u32,
    archive: Option<&Path>,
) -> Result<u64, String> {
    let mut total = 0u64;
    loop {
        let end = store
            .audit_prune_end(before, batch)
            .await
            .map_err(|e| e.to_string())?;
        let Some((last_id, chain)) = end else {
            return Ok(total);
        };
        if let Some(dir) = archive {
            archive_through(store, dir, last_id).await?;
        }
        let c = sign(
            key,
            "prune",
            now,
            last_id,
            chain.as_deref().unwrap_or(GENESIS),
        );
        total += store.audit_prune(&c).await.map_err(|e| e.to_string())?;
        tokio::task::yield_now().await;
    }
}

/// Writes every event up to `last_id` to `DIR/audit-FIRST-LAST.jsonl`, synced before the
/// events are deleted.
async fn archive_through(store: &dyn AuditStore, dir: &Path, last_id: i64) -> Result<(), String> {
    let mut lines = Vec::new();
    let mut after = 0;
    let mut first = None;
    'pages: loop {
        let page = store
            .audit_chain_page(after, 5000)
            .await
            .map_err(|e| e.to_string())?;
        if page.is_empty() {
            break;
        }
        for e in page {
            if e.event.id > last_id {
                break 'pages;
            }
            after = e.event.id;
            first.get_or_insert(e.event.id);
            let mut v = serde_json::to_value(&e.event).map_err(|e| e.to_string())?;
            if let Some(o) = v.as_object_mut() {
                o.insert("chain".into(), serde_json::json!(e.chain));
            }
            lines.push(v.to_string());
        }
    }
    let Some(first) = first else { return Ok(()) };
    let path = dir.join(format!("audit-{first}-{last_id}.jsonl"));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut f = std::fs::File::create(&path)?;
        for l in &lines {
            f.write_all(l.as_bytes())?;
            f.write_all(b"\n")?;
        }
        f.sync_all()?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| format!("cannot archive audit events to {}: {e}", path.display()))
}
