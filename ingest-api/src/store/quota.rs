//! Quota reservations with lightweight transactions: read the tenant's usage, then
//! `UPDATE ... IF reserved_bytes = <read> AND active_uploads = <read>`; on a lost race, read
//! again and retry. Concurrent initiations therefore never over-commit, on one API instance
//! or many, and no counter (which replays would double) is involved.
//!
//! Under load one tenant's row would be a hot spot: every initiation a Paxos round, most of
//! them losing the race. So reservations of one tenant are *group-committed*: requests queue
//! per tenant, and one drain task decides a whole batch against the usage it read and applies
//! it with a single compare-and-set.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use scylla::client::session::Session;
use scylla::response::query_result::QueryResult;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};
use tokio::sync::oneshot;

use super::{StoreError, TenantPolicy, fail};

/// How often one compare-and-set retries after losing a race before giving up with a
/// retryable error.
const MAX_ATTEMPTS: usize = 64;

/// Most reservations decided by one compare-and-set.
const MAX_BATCH: usize = 256;

/// A granted reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// Bytes reserved by this call.
    pub bytes: i64,
}

/// Why a reservation was not granted.
#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    /// The byte quota would be exceeded.
    #[error("byte quota of {quota} exceeded: {reserved} reserved, {requested} requested")]
    QuotaExceeded {
        /// The tenant's quota.
        quota: i64,
        /// Already reserved or stored.
        reserved: i64,
        /// Asked for.
        requested: i64,
    },
    /// Too many unfinished uploads.
    #[error("at most {limit} unfinished uploads allowed")]
    TooManyUploads {
        /// The tenant's limit.
        limit: i32,
    },
    /// Contention or the database failed; the client may retry.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One queued reservation.
struct Pending {
    policy: TenantPolicy,
    bytes: i64,
    uploads: i32,
    reply: oneshot::Sender<Result<Reservation, ReserveError>>,
}

/// Reservations waiting per tenant; a tenant present in the map has a drain task running.
type Queues = HashMap<String, Vec<Pending>>;

pub(super) struct Quota {
    session: Arc<Session>,
    ensure: PreparedStatement,
    read: PreparedStatement,
    swap: PreparedStatement,
    queues: Mutex<Queues>,
}

impl Quota {
    pub(super) async fn prepare(session: Arc<Session>, keyspace: &str) -> Result<Self, StoreError> {
        let prepare = |cql: &str| {
            let cql = cql.replace("{ks}", keyspace);
            let session = session.clone();
            async move {
                session
                    .prepare(cql)
                    .await
                    .map_err(|e| fail("prepare quota", e))
            }
        };
        Ok(Self {
            ensure: prepare("INSERT INTO {ks}.api_quota (tenant_id, reserved_bytes, active_uploads) VALUES (?, 0, 0) IF NOT EXISTS").await?,
            read: prepare("SELECT reserved_bytes, active_uploads FROM {ks}.api_quota WHERE tenant_id = ?").await?,
            swap: prepare("UPDATE {ks}.api_quota SET reserved_bytes = ?, active_uploads = ? WHERE tenant_id = ? IF reserved_bytes = ? AND active_uploads = ?").await?,
            queues: Mutex::new(HashMap::new()),
            session,
        })
    }

    pub(super) async fn ensure_row(&self, tenant_id: &str) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.ensure, (tenant_id,))
            .await
            .map(|_| ())
            .map_err(|e| fail("create quota row", e))
    }

    pub(super) async fn read(&self, tenant_id: &str) -> Result<(i64, i32), StoreError> {
        let row = self
            .session
            .execute_unpaged(&self.read, (tenant_id,))
            .await
            .map_err(|e| fail("read quota", e))?
            .into_rows_result()
            .map_err(|e| fail("read quota", e))?
            .maybe_first_row::<(Option<i64>, Option<i32>)>()
            .map_err(|e| fail("read quota", e))?;
        Ok(row
            .map(|(b, u)| (b.unwrap_or(0), u.unwrap_or(0)))
            .unwrap_or((0, 0)))
    }

    /// Sets usage to `next` if it still is `current`.
    async fn compare_and_set(
        &self,
        tenant_id: &str,
        current: (i64, i32),
        next: (i64, i32),
    ) -> Result<bool, StoreError> {
        let result = self
            .session
            .execute_unpaged(
                &self.swap,
                (next.0, next.1, tenant_id, current.0, current.1),
            )
            .await
            .map_err(|e| fail("update quota", e))?;
        let applied = lwt_applied(result).map_err(|e| fail("update quota", e))?;
        if !applied {
            metrics::counter!("tributary_quota_cas_conflicts_total").increment(1);
        }
        Ok(applied)
    }

    /// Reserves `bytes` and one upload slot, or refuses if that would exceed `policy`.
    pub(super) async fn reserve(
        self: &Arc<Self>,
        policy: &TenantPolicy,
        bytes: i64,
        uploads: i32,
    ) -> Result<Reservation, ReserveError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            policy: policy.clone(),
            bytes,
            uploads,
            reply,
        };
        let start_drain = {
            let mut queues = self
                .queues
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match queues.get_mut(&policy.tenant_id) {
                Some(queue) => {
                    queue.push(pending);
                    false
                }
                None => {
                    queues.insert(policy.tenant_id.clone(), vec![pending]);
                    true
                }
            }
        };
        if start_drain {
            // A task of its own: a caller that goes away (client disconnect) must not strand
            // the requests queued behind it.
            let quota = Arc::clone(self);
            let tenant_id = policy.tenant_id.clone();
            tokio::spawn(async move { quota.drain(tenant_id).await });
        }
        answer
            .await
            .unwrap_or_else(|_| Err(fail("reserve quota", "reservation task ended").into()))
    }

    /// Decides the tenant's queued reservations batch by batch until the queue is empty.
    async fn drain(self: Arc<Self>, tenant_id: String) {
        // The usage this task last wrote: the next batch starts from it instead of reading
        // again, and a compare-and-set that fails (another writer) makes it read afresh.
        let mut known: Option<(i64, i32)> = None;
        loop {
            let batch: Vec<Pending> = {
                let mut queues = self
                    .queues
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let Some(queue) = queues.get_mut(&tenant_id) else {
                    return;
                };
                if queue.is_empty() {
                    queues.remove(&tenant_id);
                    return;
                }
                let take = queue.len().min(MAX_BATCH);
                queue.drain(..take).collect()
            };
            metrics::histogram!("tributary_quota_batch_size").record(batch.len() as f64);
            let decisions = self.decide(&tenant_id, &batch, &mut known).await;
            match decisions {
                Ok(decisions) => {
                    for (pending, decision) in batch.into_iter().zip(decisions) {
                        let _ = pending.reply.send(decision);
                    }
                }
                Err(error) => {
                    for pending in batch {
                        let _ = pending
                            .reply
                            .send(Err(fail("reserve quota", &error).into()));
                    }
                }
            }
        }
    }

    /// Reads usage, grants what fits in arrival order, and applies the sum with one
    /// compare-and-set (re-deciding if another instance changed the row meanwhile).
    async fn decide(
        &self,
        tenant_id: &str,
        batch: &[Pending],
        known: &mut Option<(i64, i32)>,
    ) -> Result<Vec<Result<Reservation, ReserveError>>, StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let cached = known.take();
            let from_cache = cached.is_some();
            let current = match cached {
                Some(usage) => usage,
                None => self.read(tenant_id).await?,
            };
            let (mut reserved, mut active) = current;
            let mut decisions = Vec::with_capacity(batch.len());
            for pending in batch {
                let policy = &pending.policy;
                let decision = if reserved.saturating_add(pending.bytes) > policy.byte_quota {
                    Err(ReserveError::QuotaExceeded {
                        quota: policy.byte_quota,
                        reserved,
                        requested: pending.bytes,
                    })
                } else if pending.uploads > 0
                    && active + pending.uploads > policy.max_concurrent_uploads
                {
                    Err(ReserveError::TooManyUploads {
                        limit: policy.max_concurrent_uploads,
                    })
                } else {
                    reserved += pending.bytes;
                    active += pending.uploads;
                    Ok(Reservation {
                        bytes: pending.bytes,
                    })
                };
                decisions.push(decision);
            }
            // A refusal must rest on fresh usage: a release elsewhere may have made room.
            if from_cache && decisions.iter().any(Result::is_err) {
                continue;
            }
            if (reserved, active) == current {
                // Nothing granted: nothing to write.
                return Ok(decisions);
            }
            if self
                .compare_and_set(tenant_id, current, (reserved, active))
                .await?
            {
                *known = Some((reserved, active));
                return Ok(decisions);
            }
        }
        Err(fail("update quota", "too much contention, retry"))
    }

    /// Gives back `bytes` and `uploads` slots.
    pub(super) async fn release(
        &self,
        tenant_id: &str,
        bytes: i64,
        uploads: i32,
    ) -> Result<(), StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let current = self.read(tenant_id).await?;
            let next = ((current.0 - bytes).max(0), (current.1 - uploads).max(0));
            if self.compare_and_set(tenant_id, current, next).await? {
                return Ok(());
            }
        }
        Err(fail("release quota", "too much contention, retry"))
    }
}

/// The `[applied]` column of a lightweight transaction's answer.
pub(super) fn lwt_applied(result: QueryResult) -> Result<bool, String> {
    let rows = result.into_rows_result().map_err(|e| e.to_string())?;
    let row = rows.first_row::<Row>().map_err(|e| e.to_string())?;
    Ok(matches!(
        row.columns.first(),
        Some(Some(CqlValue::Boolean(true)))
    ))
}
