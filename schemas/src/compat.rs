//! Schema evolution rule: every new version of a subject must be both backward compatible
//! (the new schema reads data written with the previous one) and forward compatible (the
//! previous schema reads data written with the new one), i.e. Confluent's `FULL`.

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};

use crate::manifest::record_full_name;

/// Why a schema version may not follow the previous one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompatibilityError {
    /// The record was renamed, which changes its subject.
    #[error("record renamed from {previous} to {next}")]
    Renamed {
        /// Full name in the previous version.
        previous: String,
        /// Full name in the next version.
        next: String,
    },
    /// The next schema cannot read data written with the previous one.
    #[error("not backward compatible (new schema cannot read old data): {0}")]
    Backward(String),
    /// The previous schema cannot read data written with the next one.
    #[error("not forward compatible (old schema cannot read new data): {0}")]
    Forward(String),
}

/// Checks that `next` may follow `previous` in a subject: same record name, and fully
/// (backward and forward) compatible. Partial compatibility (resolution that can fail for some
/// data, e.g. a narrowed union) is rejected too.
pub fn check_evolution(previous: &Schema, next: &Schema) -> Result<(), CompatibilityError> {
    let previous_name = record_full_name(previous).unwrap_or_default();
    let next_name = record_full_name(next).unwrap_or_default();
    if previous_name != next_name {
        return Err(CompatibilityError::Renamed {
            previous: previous_name,
            next: next_name,
        });
    }
    match SchemaCompatibility::can_read(previous, next) {
        Ok(Compatibility::Full) => {}
        Ok(Compatibility::Partial) => {
            return Err(CompatibilityError::Backward(
                "only partially compatible".to_owned(),
            ));
        }
        Err(e) => return Err(CompatibilityError::Backward(e.to_string())),
    }
    match SchemaCompatibility::can_read(next, previous) {
        Ok(Compatibility::Full) => Ok(()),
        Ok(Compatibility::Partial) => Err(CompatibilityError::Forward(
            "only partially compatible".to_owned(),
        )),
        Err(e) => Err(CompatibilityError::Forward(e.to_string())),
    }
}
