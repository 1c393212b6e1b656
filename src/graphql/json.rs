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
