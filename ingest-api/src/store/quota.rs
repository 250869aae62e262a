//! Quota reservations with lightweight transactions: read the tenant's usage, then
//! `UPDATE ... IF reserved_bytes = <read> AND active_uploads = <read>`; on a lost race, read
//! again and retry. Concurrent initiations therefore never over-commit, on one API instance
//! or many, and no counter (which replays would double) is involved.

use scylla::client::session::Session;
use scylla::response::query_result::QueryResult;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};

use super::{StoreError, TenantPolicy, fail};

/// How often a reservation retries after losing a compare-and-set race before giving up
/// with a retryable error.
const MAX_ATTEMPTS: usize = 64;

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

pub(super) struct QuotaStatements {
    ensure: PreparedStatement,
    read: PreparedStatement,
    swap: PreparedStatement,
}

impl QuotaStatements {
    pub(super) async fn prepare(session: &Session, keyspace: &str) -> Result<Self, StoreError> {
        let prepare = |cql: &str| {
            let cql = cql.replace("{ks}", keyspace);
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
        })
    }

    pub(super) async fn ensure_row(
        &self,
        session: &Session,
        tenant_id: &str,
    ) -> Result<(), StoreError> {
        session
            .execute_unpaged(&self.ensure, (tenant_id,))
            .await
            .map(|_| ())
            .map_err(|e| fail("create quota row", e))
    }

    pub(super) async fn read(
        &self,
        session: &Session,
        tenant_id: &str,
    ) -> Result<(i64, i32), StoreError> {
        let row = session
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

    /// Applies `change(reserved, active)` atomically; `change` may refuse.
    async fn update(
        &self,
        session: &Session,
        tenant_id: &str,
        change: impl Fn(i64, i32) -> Result<(i64, i32), ReserveError>,
    ) -> Result<(), ReserveError> {
        for _ in 0..MAX_ATTEMPTS {
            let (reserved, active) = self.read(session, tenant_id).await?;
            let (new_reserved, new_active) = change(reserved, active)?;
            let result = session
                .execute_unpaged(
                    &self.swap,
                    (new_reserved, new_active, tenant_id, reserved, active),
                )
                .await
                .map_err(|e| fail("update quota", e))?;
            if lwt_applied(result).map_err(|e| fail("update quota", e))? {
                return Ok(());
            }
            metrics::counter!("tributary_quota_cas_conflicts_total").increment(1);
        }
        Err(fail("update quota", "too much contention, retry").into())
    }

    pub(super) async fn reserve(
        &self,
        session: &Session,
        policy: &TenantPolicy,
        bytes: i64,
    ) -> Result<Reservation, ReserveError> {
        self.update(session, &policy.tenant_id, |reserved, active| {
            if reserved.saturating_add(bytes) > policy.byte_quota {
                return Err(ReserveError::QuotaExceeded {
                    quota: policy.byte_quota,
                    reserved,
                    requested: bytes,
                });
            }
            if active >= policy.max_concurrent_uploads {
                return Err(ReserveError::TooManyUploads {
                    limit: policy.max_concurrent_uploads,
                });
            }
            Ok((reserved + bytes, active + 1))
        })
        .await?;
        Ok(Reservation { bytes })
    }

    pub(super) async fn release(
        &self,
        session: &Session,
        tenant_id: &str,
        bytes: i64,
        uploads: i32,
    ) -> Result<(), StoreError> {
        let outcome = self
            .update(session, tenant_id, |reserved, active| {
                Ok(((reserved - bytes).max(0), (active - uploads).max(0)))
            })
            .await;
        match outcome {
            Ok(()) => Ok(()),
            Err(ReserveError::Store(error)) => Err(error),
            Err(other) => Err(fail("release quota", other)),
        }
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
