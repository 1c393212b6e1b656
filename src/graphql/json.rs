//! Writing GraphQL responses as JSON, byte for byte what `serde_json` writes, faster.
//!
//! `serde_json` escapes a string by looking at each byte in turn; in a page of events, most of
//! the response is strings (ids, timestamps, names) with nothing to escape, and that loop was a
//! tenth of the server's instructions. Here a string is checked and copied eight bytes at a
//! time. Everything else (numbers, errors, extensions) is written as `serde_json` writes it, by
//! `serde_json` itself.
//!
//! One value is written differently: `Value::Binary` holds JSON written ahead (see
//! `direct::WriteAhead`) and is copied as it is. No field of the schema gives bytes, and JSON is
//! written ahead only for requests whose response this module writes.

use std::collections::BTreeMap;

use async_graphql::{Response, ServerError, Value};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether some byte of `word` may need escaping: a control character, `"` or `\`. It may say
/// yes for a word that needs none (the bytes are then looked at one by one), never no for one
/// that does.
fn may_need_escaping(word: u64) -> bool {
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH_BITS;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH_BITS;
    control | zero_byte(word ^ (ONES * u64::from(b'"'))) | zero_byte(word ^ (ONES * u64::from(b'\\'))) != 0
}

/// The escape of each byte that needs one in a JSON string (as `serde_json` writes it): `u` for
/// `\u00XX`, 0 for none.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x0c] = b'f';
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Appends `text` as a JSON string, escaped as `serde_json` escapes it.
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Copied a word at a time as it is checked: a copy of a fixed size needs no call to
    // `memcpy`, which costs more than most strings of a response.
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for word in words.by_ref() {
        let word: [u8; 8] = word.try_into().unwrap_or_default();
        if may_need_escaping(u64::from_le_bytes(word)) {
            return write_escaped(out, &bytes[at..]);
        }
        out.extend_from_slice(&word);
        at += 8;
    }
    for &byte in words.remainder() {
        if ESCAPE[usize::from(byte)] != 0 {
            return write_escaped(out, &bytes[at..]);
        }
        out.push(byte);
        at += 1;
    }
    out.push(b'"');
}

/// Appends `rest`, the part of a string from the first word that may need an escape, escaped,
/// and the closing quote.
fn write_escaped(out: &mut Vec<u8>, rest: &[u8]) {
    // `run` is where the bytes not yet copied start; they are copied when an escape comes, and
    // at the end.
    let mut run = 0;
    for (at, &byte) in rest.iter().enumerate() {
        let escape = ESCAPE[usize::from(byte)];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&rest[run..at]);
        if escape == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
        run = at + 1;
    }
    out.extend_from_slice(&rest[run..]);
    out.push(b'"');
}

/// Appends `value` as JSON, as `serde_json::to_vec` writes it; JSON written ahead
/// (`Value::Binary`) as it is.
pub fn write_value(out: &mut Vec<u8>, value: &Value) -> serde_json::Result<()> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Boolean(true) => out.extend_from_slice(b"true"),
        Value::Boolean(false) => out.extend_from_slice(b"false"),
        Value::String(text) => write_str(out, text),
        Value::Enum(name) => write_str(out, name),
        Value::Number(_) => serde_json::to_writer(&mut *out, value)?,
        Value::Binary(written) => out.extend_from_slice(written),
        Value::List(items) => write_array(out, items, write_value)?,
        Value::Object(fields) => write_object(out, fields.iter().map(|(key, item)| (key.as_str(), item)), write_value)?,
    }
    Ok(())
}

/// Appends `items` as a JSON array, each written by `write`.
fn write_array<'a, T: 'a, E>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = &'a T>,
    write: impl Fn(&mut Vec<u8>, &'a T) -> Result<(), E>,
) -> Result<(), E> {
    out.push(b'[');
    for (index, item) in items.into_iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write(out, item)?;
    }
    out.push(b']');
    Ok(())
}

/// Appends `fields` as a JSON object, each value written by `write`.
fn write_object<'a, T: 'a, E>(
    out: &mut Vec<u8>,
    fields: impl IntoIterator<Item = (&'a str, &'a T)>,
    write: impl Fn(&mut Vec<u8>, &'a T) -> Result<(), E>,
) -> Result<(), E> {
    out.push(b'{');
    for (index, (key, item)) in fields.into_iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
        write(out, item)?;
    }
    out.push(b'}');
    Ok(())
}

/// Appends a JSON value (an event's `eventData`) as `serde_json::to_vec` writes it, and as
/// [`write_value`] writes its conversion to a response value.
pub fn write_json(out: &mut Vec<u8>, value: &serde_json::Value) {
    let Ok(()) = write_json_value(out, value);
}

/// Appends `time` as the JSON string of its `DateTime` value (`to_rfc3339`: seconds, then a
/// fraction of 3, 6 or 9 digits when there is one, and `+00:00`), without the formatting
/// machinery, which was a third of the cost of an event's stored fields.
pub fn write_timestamp(out: &mut Vec<u8>, time: &chrono::DateTime<chrono::Utc>) {
    use chrono::{Datelike, Timelike};
    let year = time.year();
    let nanos = time.nanosecond();
    // Years of other than four digits and leap seconds are written by chrono.
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return write_str(out, &time.to_rfc3339());
    }
    // `YYYY-MM-DDTHH:MM:SS.fffffffff`, the digits put in place.
    let mut text = *b"0000-00-00T00:00:00.000000000";
    let put = |text: &mut [u8; 29], at: usize, count: usize, value: u32| {
        let mut value = value;
        for slot in text[at..at + count].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(&mut text, 0, 4, year.unsigned_abs());
    put(&mut text, 5, 2, time.month());
    put(&mut text, 8, 2, time.day());
    put(&mut text, 11, 2, time.hour());
    put(&mut text, 14, 2, time.minute());
    put(&mut text, 17, 2, time.second());
    let end = match nanos {
        0 => 19,
        _ if nanos.is_multiple_of(1_000_000) => {
            put(&mut text, 20, 3, nanos / 1_000_000);
            23
        }
        _ if nanos.is_multiple_of(1_000) => {
            put(&mut text, 20, 6, nanos / 1_000);
            26
        }
        _ => {
            put(&mut text, 20, 9, nanos);
            29
        }
    };
    out.reserve(end + 8);
    out.push(b'"');
    out.extend_from_slice(&text[..end]);
    out.extend_from_slice(b"+00:00\"");
}

/// Appends `text`, a JSON document as the database sent it (PostgreSQL's `jsonb` text puts a
/// space after each `:` and `,`), without the whitespace between its tokens: the document as
/// [`write_json`] writes it, except that members stay in the order the database keeps them and
/// numbers keep the digits it stored. `text` must be JSON.
pub fn write_json_text(out: &mut Vec<u8>, text: &str) {
    out.reserve(text.len());
    let bytes = text.as_bytes();
    // `run` is where the bytes not yet copied start: they are copied up to each space dropped.
    let mut run = 0;
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b'"' => {
                // A string, copied whole: its end is the next quote that no backslash escapes.
                at += 1;
                while let Some(offset) = bytes.get(at..).and_then(|rest| memchr::memchr2(b'"', b'\\', rest)) {
                    at += offset + 1;
                    if bytes[at - 1] == b'"' {
                        break;
                    }
                    at += 1;
                }
            }
            b' ' | b'\n' | b'\r' | b'\t' => {
                out.extend_from_slice(&bytes[run..at]);
                at += 1;
                run = at;
            }
            _ => at += 1,
        }
    }
    out.extend_from_slice(&bytes[run.min(bytes.len())..]);
}

/// [`write_json`], in the form [`write_array`] and [`write_object`] take.
fn write_json_value(out: &mut Vec<u8>, value: &serde_json::Value) -> Result<(), std::convert::Infallible> {
    match value {
        serde_json::Value::Null => out.extend_from_slice(b"null"),
        serde_json::Value::Bool(true) => out.extend_from_slice(b"true"),
        serde_json::Value::Bool(false) => out.extend_from_slice(b"false"),
        serde_json::Value::Number(number) => out.extend_from_slice(number.to_string().as_bytes()),
        serde_json::Value::String(text) => write_str(out, text),
        serde_json::Value::Array(items) => write_array(out, items, write_json_value)?,
        serde_json::Value::Object(fields) => write_object(
            out,
            fields.iter().map(|(key, item)| (key.as_str(), item)),
            write_json_value,
        )?,
    }
    Ok(())
}

/// How many bytes of `value` were written ahead: most of a large response, whose size can then
/// be reserved once.
fn written_ahead(value: &Value) -> usize {
    match value {
        Value::Binary(written) => written.len(),
        Value::List(items) => items.iter().map(written_ahead).sum(),
        Value::Object(fields) => fields.values().map(written_ahead).sum(),
        _ => 0,
    }
}

/// `response` as JSON, as `serde_json::to_vec(response)` writes it: `data`, then `extensions`
/// and `errors` when there are any.
pub fn response_bytes(response: &Response) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256 + written_ahead(&response.data));
    out.extend_from_slice(b"{\"data\":");
    write_value(&mut out, &response.data)?;
    let extensions: &BTreeMap<String, Value> = &response.extensions;
    if !extensions.is_empty() {
        out.extend_from_slice(b",\"extensions\":");
        serde_json::to_writer(&mut out, extensions)?;
    }
    let errors: &[ServerError] = &response.errors;
    if !errors.is_empty() {
        out.extend_from_slice(b",\"errors\":");
        serde_json::to_writer(&mut out, errors)?;
    }
    out.push(b'}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use async_graphql::indexmap::IndexMap;
    use async_graphql::{Name, Pos};

    use super::*;

    fn written(text: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn timestamps_are_written_as_their_value_is() {
        use chrono::{TimeZone, Utc};
        let base = Utc.with_ymd_and_hms(2026, 3, 1, 9, 5, 7).unwrap();
        let mut times = vec![
            base,
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 6, 1, 0, 0, 0).unwrap(),
        ];
        for nanos in [
            1,
            10,
            999,
            1_000,
            120_000,
            123_456,
            1_000_000,
            232_000_000,
            999_999_999,
            123_456_789,
        ] {
            times.push(base + chrono::Duration::nanoseconds(nanos));
        }
        // A leap second.
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .unwrap();
        times.push(Utc.from_utc_datetime(&leap));
        for time in times {
            let mut out = Vec::new();
            write_timestamp(&mut out, &time);
            let mut expected = Vec::new();
            write_value(&mut expected, &async_graphql::ScalarType::to_value(&time)).unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                String::from_utf8(expected).unwrap(),
                "{time:?}"
            );
        }
    }

    #[test]
    fn stored_json_text_is_written_without_the_space_between_its_tokens() {
        let cases = [
            (
                r#"{"a": 1, "b": [1, 2.50, {"c": null}]}"#,
                r#"{"a":1,"b":[1,2.50,{"c":null}]}"#,
            ),
            (
                r#"{"a b": "c, d: e", "q\"x\\": " \" , "}"#,
                r#"{"a b":"c, d: e","q\"x\\":" \" , "}"#,
            ),
            ("[\n\t1 ,\r\n true ]", "[1,true]"),
            (r#""é 😀""#, r#""é 😀""#),
            ("{}", "{}"),
            (r#"["\\", "\\\"", "a\\\\"]"#, r#"["\\","\\\"","a\\\\"]"#),
        ];
        for (text, compact) in cases {
            let mut out = b"x".to_vec();
            write_json_text(&mut out, text);
            assert_eq!(String::from_utf8(out).unwrap(), format!("x{compact}"), "{text}");
            let parsed: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::from_str::<serde_json::Value>(compact).unwrap(), parsed);
        }
        // Not JSON: written somehow, never a panic.
        for text in ["\"abc\\", "\"", "\\", "\"a\\\"", "[1, \"x"] {
            write_json_text(&mut Vec::new(), text);
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        // Every ASCII byte, alone and at every position of strings longer than a word.
        for byte in 0u8..0x80 {
            let c = char::from(byte);
            for at in 0..20 {
                for len in [at + 1, at + 9, 24] {
                    let text: String = (0..len.max(at + 1)).map(|i| if i == at { c } else { 'a' }).collect();
                    assert_eq!(
                        written(&text),
                        serde_json::to_string(&text).unwrap(),
                        "{byte:#x} at {at}"
                    );
                }
            }
        }
        for text in [
            "",
            "ü",
            "ünïcødé \u{1F600} and \"quotes\" and \\ and \u{7f}\u{80}\u{ff}",
            "\u{0}\u{1}\u{1f}\u{8}\u{c}\n\r\t",
            "01900000-0000-7000-8000-000000000001",
            "2026-03-01T10:00:00.123456+00:00",
            "\"\"\"\"\"\"\"\"\"\\\\\\\\\\\\\\\\\\",
        ] {
            assert_eq!(written(text), serde_json::to_string(text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn values_and_responses_are_written_as_serde_json_writes_them() {
        let json = serde_json::json!({
            "z": 1, "a": [1, -2, 2.5, 1e300, 18446744073709551615u64, -9223372036854775808i64, null, true, false],
            "m": {"": {}, "deep": [[[{"k": "ü\n"}]]]}, "e": [], "s": ""
        });
        let mut object = IndexMap::new();
        object.insert(Name::new("json"), Value::from_json(json).unwrap());
        object.insert(Name::new("kind"), Value::Enum(Name::new("CATEGORY")));
        object.insert(Name::new("quote\"key"), Value::String("tab\there".into()));
        let data = Value::Object(object);
        let mut response = Response::new(data.clone());
        let check = |response: &Response| {
            let ours = response_bytes(response).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(response).unwrap()
            );
        };
        check(&response);
        response.extensions.insert("token".into(), Value::from("t\u{1}"));
        check(&response);
        response
            .errors
            .push(ServerError::new("boom \"x\"", Some(Pos { line: 1, column: 2 })));
        check(&response);
        check(&Response::new(Value::Null));
        check(&Response::from_errors(vec![ServerError::new("no data", None)]));
        let mut out = Vec::new();
        write_value(&mut out, &data).unwrap();
        assert_eq!(out, serde_json::to_vec(&data).unwrap());
    }

    #[test]
    fn json_written_ahead_is_copied_as_it_is() {
        let mut object = IndexMap::new();
        object.insert(
            Name::new("edges"),
            Value::Binary(br#"[{"a":"\t"},null]"#.to_vec().into()),
        );
        object.insert(Name::new("n"), Value::from(1));
        let response = Response::new(Value::Object(object));
        assert_eq!(
            String::from_utf8(response_bytes(&response).unwrap()).unwrap(),
            r#"{"data":{"edges":[{"a":"\t"},null],"n":1}}"#
        );
    }

    #[test]
    fn json_values_are_written_as_serde_json_writes_them() {
        let json = serde_json::json!({
            "z": 1, "a": [1, -2, 2.5, 1e300, 0.1, -0.0, 18446744073709551615u64, -9223372036854775808i64, null, true, false],
            "m": {"": {}, "deep": [[[{"k\u{1}": "ü\n\"x\""}]]]}, "e": [], "s": "", "o": {}
        });
        for value in [
            json.clone(),
            serde_json::json!(null),
            serde_json::json!("x"),
            serde_json::json!([]),
        ] {
            let mut out = Vec::new();
            write_json(&mut out, &value);
            assert_eq!(
                String::from_utf8(out.clone()).unwrap(),
                serde_json::to_string(&value).unwrap()
            );
            let mut converted = Vec::new();
            write_value(&mut converted, &crate::graphql::scalars::json_value(&value)).unwrap();
            assert_eq!(converted, out);
        }
    }
}
