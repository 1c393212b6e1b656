//! The schema's own scalars, under the names clients and code generators expect (`Date`,
//! `DateTime`, `JSON`, as in the graphql-scalars convention) and with their formats stated.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::{NaiveDate, Utc};

/// The `Date` scalar (its description is the one on its `ScalarType` implementation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub NaiveDate);

/// A calendar date in UTC, written `YYYY-MM-DD` (RFC 3339 `full-date`), such as `2026-12-06`.
#[Scalar(
    name = "Date",
    specified_by_url = "https://www.rfc-editor.org/rfc/rfc3339#section-5.6"
)]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(Date)
                .map_err(|_| InputValueError::custom(format!("`{text}` is not a date (YYYY-MM-DD)"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.format("%Y-%m-%d").to_string())
    }
}

impl From<NaiveDate> for Date {
    fn from(date: NaiveDate) -> Self {
        Date(date)
    }
}

/// The `DateTime` scalar (its description is the one on its `ScalarType` implementation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime(pub chrono::DateTime<Utc>);

/// An instant, written in RFC 3339 (`date-time`). Answers are in UTC with the `+00:00` offset and
/// the fraction of a second the instant has: event times are stored to the microsecond
/// (`2026-12-06T12:00:00.123456+00:00`), times of the server's clock may carry up to nanoseconds,
/// and a whole second has no fraction. Inputs take any offset (`Z`, `+02:00`) and are converted to
/// UTC; an event time finer than a microsecond is truncated to the microsecond when it is written.
#[Scalar(
    name = "DateTime",
    specified_by_url = "https://www.rfc-editor.org/rfc/rfc3339#section-5.6"
)]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => text
                .parse::<chrono::DateTime<Utc>>()
                .map(DateTime)
                .map_err(|_| InputValueError::custom(format!("`{text}` is not an RFC 3339 date-time"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339())
    }
}

impl From<chrono::DateTime<Utc>> for DateTime {
    fn from(at: chrono::DateTime<Utc>) -> Self {
        DateTime(at)
    }
}

/// The `JSON` scalar (its description is the one on its `ScalarType` implementation).
#[derive(Clone, Debug, PartialEq)]
pub struct Json(pub serde_json::Value);

/// A JSON value, written as JSON itself (not as a string holding it). `eventData` and
/// `eventMetadata` are JSON objects: in inputs at most 256 KiB and nested at most 10 deep. The
/// members of an object come in no promised order.
#[Scalar(name = "JSON", specified_by_url = "https://www.rfc-editor.org/rfc/rfc8259")]
impl ScalarType for Json {
    fn parse(value: Value) -> InputValueResult<Self> {
        value
            .into_json()
            .map(Json)
            .map_err(|e| InputValueError::custom(format!("not a JSON value: {e}")))
    }

    fn is_valid(_: &Value) -> bool {
        true
    }

    fn to_value(&self) -> Value {
        json_value(&self.0)
    }
}

/// A JSON value as a GraphQL response value: what `Value::from_json` gives, built straight from
/// the borrowed value (no copy of it to consume first, no deserializer in between).
pub fn json_value(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => Value::Number(n.clone()),
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => Value::List(items.iter().map(json_value).collect()),
        serde_json::Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (async_graphql::Name::new(key), json_value(value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_convert_as_async_graphql_converts_them() {
        let value = serde_json::json!({
            "z": 1, "a": [1, -2, 2.5, 1e300, 18446744073709551615u64, null, true, "x\u{0}y\n"],
            "m": {"": {}, "deep": [[[{"k": "ü"}]]]}, "e": [], "s": ""
        });
        let direct = json_value(&value);
        assert_eq!(direct, Value::from_json(value.clone()).unwrap());
        assert_eq!(
            serde_json::to_string(&direct).unwrap(),
            serde_json::to_string(&value).unwrap()
        );
        assert_eq!(json_value(&serde_json::json!(null)), Value::Null);
    }

    #[test]
    fn json_values_come_back_as_they_went_in() {
        let object = serde_json::json!({"signal": "HighCPU", "n": [1, 2.5, null, true], "deep": {"a": "ü"}});
        let parsed = Json::parse(Value::from_json(object.clone()).unwrap()).unwrap();
        assert_eq!(parsed.0, object);
        assert_eq!(parsed.to_value().into_json().unwrap(), object);
    }

    #[test]
    fn dates_read_and_write_as_full_dates() {
        let date = Date::parse(Value::from("2026-12-06")).unwrap();
        assert_eq!(date.to_value(), Value::from("2026-12-06"));
        assert!(Date::parse(Value::from("2026-12-6x")).is_err());
        assert!(Date::parse(Value::from(20261206)).is_err());
    }

    #[test]
    fn instants_are_written_in_utc_and_read_with_any_offset() {
        let at = DateTime::parse(Value::from("2026-12-06T14:00:00.123456+02:00")).unwrap();
        assert_eq!(at.to_value(), Value::from("2026-12-06T12:00:00.123456+00:00"));
        let whole = DateTime::parse(Value::from("2026-12-06T12:00:00Z")).unwrap();
        assert_eq!(whole.to_value(), Value::from("2026-12-06T12:00:00+00:00"));
        assert!(DateTime::parse(Value::from("2026-12-06 12:00")).is_err());
    }
}
