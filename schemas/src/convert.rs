//! Conversion between the Rust event types and generic Avro [`Value`]s.
//!
//! Conversion is explicit (no serde in the Avro path) so that logical types, nullable unions
//! and schema resolution behave exactly as the `.avsc` files say, whatever serde features the
//! rest of the workspace enables.

use std::collections::HashMap;

use apache_avro::types::Value;
use uuid::Uuid;

/// A value that could not be turned into the Rust type of an event field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field}: {message}")]
pub struct ConvertError {
    /// Dotted path of the offending field (e.g. `meta.event_id`).
    pub field: String,
    /// What was wrong with it.
    pub message: String,
}

impl ConvertError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    fn within(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

/// A Rust type that maps to one Avro field type.
pub(crate) trait AvroField: Sized {
    /// The Avro value for this Rust value, shaped as the schema expects.
    fn to_avro(&self) -> Value;
    /// The Rust value of a (resolved) Avro value. The error message names no field; the caller
    /// adds it.
    fn from_avro(value: Value) -> Result<Self, String>;
}

fn unexpected(expected: &str, got: &Value) -> String {
    format!("expected {expected}, got {:?}", kind(got))
}

fn kind(value: &Value) -> apache_avro::schema::SchemaKind {
    apache_avro::schema::SchemaKind::from(value)
}

impl AvroField for String {
    fn to_avro(&self) -> Value {
        Value::String(self.clone())
    }
    fn from_avro(value: Value) -> Result<Self, String> {
        match value {
            Value::String(s) => Ok(s),
            Value::Uuid(u) => Ok(u.to_string()),
            other => Err(unexpected("string", &other)),
        }
    }
}

impl AvroField for i64 {
    fn to_avro(&self) -> Value {
        Value::Long(*self)
    }
    fn from_avro(value: Value) -> Result<Self, String> {
        match value {
            Value::Long(v) | Value::TimestampMicros(v) => Ok(v),
            Value::Int(v) => Ok(i64::from(v)),
            other => Err(unexpected("long", &other)),
        }
    }
}

impl AvroField for i32 {
    fn to_avro(&self) -> Value {
        Value::Int(*self)
    }
    fn from_avro(value: Value) -> Result<Self, String> {
        match value {
            Value::Int(v) => Ok(v),
            other => Err(unexpected("int", &other)),
        }
    }
}

impl AvroField for bool {
    fn to_avro(&self) -> Value {
        Value::Boolean(*self)
    }
    fn from_avro(value: Value) -> Result<Self, String> {
        match value {
            Value::Boolean(v) => Ok(v),
            other => Err(unexpected("boolean", &other)),
        }
    }
}

impl AvroField for f64 {
    fn to_avro(&self) -> Value {
        Value::Double(*self)
    }
    fn from_avro(value: Value) -> Result<Self, String> {
        match value {
            Value::Double(v) => Ok(v),
            Value::Float(v) => Ok(f64::from(v)),
            Value::Long(v) => Ok(v as f64),
            Value::Int(v) => Ok(f64::from(v)),
            other => Err(unexpected("double", &other)),
        }
    }
}

impl AvroField for Uuid {
    fn to_avro(&self) -> Value {
        Value::Uuid(*self)
    }
    fn from_avro(value: Value) -> Result<Self, String> {
        match value {
            Value::Uuid(u) => Ok(u),
            Value::String(s) => Uuid::parse_str(&s).map_err(|e| format!("invalid uuid: {e}")),
            other => Err(unexpected("uuid", &other)),
        }
    }
}

/// Nullable fields are `["null", T]` unions, null first, in every schema of this crate.
impl<T: AvroField> AvroField for Option<T> {
    fn to_avro(&self) -> Value {
        match self {
            None => Value::Union(0, Box::new(Value::Null)),
            Some(v) => Value::Union(1, Box::new(v.to_avro())),
        }
    }
    fn from_avro(value: Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            Value::Union(_, inner) => match *inner {
                Value::Null => Ok(None),
                other => T::from_avro(other).map(Some),
            },
            other => T::from_avro(other).map(Some),
        }
    }
}

impl AvroField for Vec<String> {
    fn to_avro(&self) -> Value {
        Value::Array(self.iter().map(|s| Value::String(s.clone())).collect())
    }
    fn from_avro(value: Value) -> Result<Self, String> {
        match value {
            Value::Array(items) => items.into_iter().map(String::from_avro).collect(),
            other => Err(unexpected("array", &other)),
        }
    }
}

impl AvroField for std::collections::BTreeMap<String, String> {
    fn to_avro(&self) -> Value {
        Value::Map(
            self.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    }
    fn from_avro(value: Value) -> Result<Self, String> {
        match value {
            Value::Map(entries) => entries
                .into_iter()
                .map(|(k, v)| String::from_avro(v).map(|v| (k, v)))
                .collect(),
            other => Err(unexpected("map", &other)),
        }
    }
}

/// The fields of a decoded Avro record, taken out by name.
pub(crate) struct Fields {
    record: &'static str,
    fields: HashMap<String, Value>,
}

impl Fields {
    /// Fields of a record value; `record` names the record in error messages.
    pub(crate) fn from_record(record: &'static str, value: Value) -> Result<Self, ConvertError> {
        match value {
            Value::Record(fields) => Ok(Self {
                record,
                fields: fields.into_iter().collect(),
            }),
            other => Err(ConvertError::new(record, unexpected("record", &other))),
        }
    }

    /// Takes field `name` and converts it.
    pub(crate) fn take<T: AvroField>(&mut self, name: &str) -> Result<T, ConvertError> {
        let value = self
            .fields
            .remove(name)
            .ok_or_else(|| ConvertError::new(name, format!("missing in {}", self.record)))?;
        T::from_avro(value).map_err(|message| ConvertError::new(name, message))
    }

    /// Takes the nested record field `name` and converts it with `convert`.
    pub(crate) fn take_record<T>(
        &mut self,
        name: &str,
        convert: impl FnOnce(Value) -> Result<T, ConvertError>,
    ) -> Result<T, ConvertError> {
        let value = self
            .fields
            .remove(name)
            .ok_or_else(|| ConvertError::new(name, format!("missing in {}", self.record)))?;
        convert(value).map_err(|e| e.within(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_uses_null_first_unions() {
        assert_eq!(
            None::<String>.to_avro(),
            Value::Union(0, Box::new(Value::Null))
        );
        assert_eq!(
            Some(3i32).to_avro(),
            Value::Union(1, Box::new(Value::Int(3)))
        );
        assert_eq!(
            Option::<i32>::from_avro(Value::Union(1, Box::new(Value::Int(3)))),
            Ok(Some(3))
        );
        assert_eq!(Option::<i32>::from_avro(Value::Null), Ok(None));
    }

    #[test]
    fn wrong_kinds_are_errors_not_panics() {
        assert!(String::from_avro(Value::Int(1)).is_err());
        assert!(i32::from_avro(Value::Long(1)).is_err());
        assert!(Uuid::from_avro(Value::String("nope".into())).is_err());
        assert!(Vec::<String>::from_avro(Value::Array(vec![Value::Int(1)])).is_err());
        let mut fields = Fields::from_record("X", Value::Record(vec![("a".into(), Value::Int(1))]))
            .expect("record");
        let err = fields.take::<i32>("b").expect_err("missing");
        assert_eq!(err.to_string(), "field b: missing in X");
    }
}
