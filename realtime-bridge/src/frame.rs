//! SSE frames. Each event is encoded once, when it is read from Kafka, into one immutable
//! [`Bytes`] that every subscriber's socket receives as is: no per-subscriber serialization.

use bytes::Bytes;
use tributary_schemas::Event;

/// One encoded event and what subscribers filter on.
#[derive(Debug)]
pub struct Frame {
    /// Upload the event is about (subscribers of one upload skip the others).
    pub upload_id: Option<String>,
    /// Offset in the tenant's lifecycle partition; `None` for progress frames, which carry
    /// no `id:` so the browser's `Last-Event-ID` keeps naming the last lifecycle event.
    pub offset: Option<i64>,
    /// Order of a progress frame among its tenant's (assigned by the hub); 0 for lifecycle.
    pub seq: u64,
    /// When the record was appended to the log (its Kafka timestamp), milliseconds since the
    /// epoch, for the fan-out latency histogram.
    pub appended_ms: Option<i64>,
    /// The encoded `id:`/`event:`/`data:` block.
    pub bytes: Bytes,
}

impl Frame {
    /// The frame of a lifecycle event at `offset` of its partition.
    pub fn lifecycle(
        offset: i64,
        event: &Event,
        appended_ms: Option<i64>,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            upload_id: event.meta.upload_id.clone(),
            offset: Some(offset),
            seq: 0,
            appended_ms,
            bytes: encode(
                Some(offset),
                event.event_type(),
                &serde_json::to_vec(event)?,
            ),
        })
    }

    /// The frame of a transient progress event (no `id:`).
    pub fn progress(event: &Event, appended_ms: Option<i64>) -> Result<Self, serde_json::Error> {
        Ok(Self {
            upload_id: event.meta.upload_id.clone(),
            offset: None,
            seq: 0,
            appended_ms,
            bytes: encode(None, event.event_type(), &serde_json::to_vec(event)?),
        })
    }

    /// Whether a subscriber of `upload` (all of the tenant's uploads when `None`) wants it.
    pub fn is_for(&self, upload: Option<&str>) -> bool {
        upload.is_none_or(|wanted| self.upload_id.as_deref() == Some(wanted))
    }
}

/// Encodes one event block. `data` is compact JSON, so it holds no newline and fits one
/// `data:` line.
pub fn encode(id: Option<i64>, event: &str, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + event.len() + 40);
    if let Some(id) = id {
        out.extend_from_slice(format!("id: {id}\n").as_bytes());
    }
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The reconnect delay block sent first on every stream.
pub fn retry(millis: u64) -> Bytes {
    Bytes::from(format!("retry: {millis}\n\n"))
}

/// A comment that keeps proxies from closing an idle stream.
pub fn heartbeat() -> Bytes {
    Bytes::from_static(b": heartbeat\n\n")
}

/// Tells the page its token expires at `exp` (seconds since the epoch): fetch a new one and
/// reconnect; the stream closes at `exp`.
pub fn reauth(exp: i64) -> Bytes {
    encode(
        None,
        "reauth",
        format!("{{\"expires_at\":{exp}}}").as_bytes(),
    )
}

/// Why a stream sends `event: reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// The subscriber fell further behind than its tenant's ring holds: nothing is lost, the
    /// stream continues from the log (or the resume window) after the reset's position.
    Lagged,
    /// The client's `Last-Event-ID` is older than what the log still retains: the events
    /// after it up to the reset's position are gone, so the page must refetch the state it
    /// shows (`GET /v1/uploads/{id}`, `GET /v1/uploads`); the stream continues live.
    HistoryExpired,
}

impl ResetReason {
    /// The `reason` of the `reset` data.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lagged => "lagged",
            Self::HistoryExpired => "history_expired",
        }
    }

    /// Whether the page must refetch state (events were lost to it).
    pub fn refetch(self) -> bool {
        matches!(self, Self::HistoryExpired)
    }
}

/// Tells the page the stream jumps: it continues after `last` (see [`ResetReason`] for what
/// came before). The `id:` moves the browser's `Last-Event-ID` there too, so a reconnect
/// resumes after the jump. `data: {"last_event_id", "reason", "refetch"}`.
pub fn reset(last: i64, reason: ResetReason) -> Bytes {
    encode(
        Some(last),
        "reset",
        format!(
            "{{\"last_event_id\":\"{last}\",\"reason\":\"{}\",\"refetch\":{}}}",
            reason.as_str(),
            reason.refetch()
        )
        .as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_well_formed() {
        assert_eq!(
            &encode(Some(7), "UploadReady", b"{}")[..],
            b"id: 7\nevent: UploadReady\ndata: {}\n\n"
        );
        assert_eq!(&encode(None, "x", b"1")[..], b"event: x\ndata: 1\n\n");
        assert_eq!(&retry(2500)[..], b"retry: 2500\n\n");
        assert_eq!(
            &reset(5, ResetReason::HistoryExpired)[..],
            b"id: 5\nevent: reset\ndata: {\"last_event_id\":\"5\",\"reason\":\"history_expired\",\"refetch\":true}\n\n"
        );
        assert!(reset(5, ResetReason::Lagged).ends_with(b"\"refetch\":false}\n\n"));
    }
}
