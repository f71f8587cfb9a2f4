//! The JSON header form (serialize type 0), read as leniently as the Java broker reads it (§1.4, §1.8).

use serde_json::Value;

use super::command::{ExtFields, RemotingCommand, SerializeType, LANGUAGES};
use super::error::Error;
use bytes::Bytes;

const OTHER_LANGUAGE: u8 = 7;

/// Decodes a JSON header. Accepts trailing whitespace, numbers and booleans as extFields values,
/// `language` as a name or an ordinal, numeric fields as numbers or numeric strings.
pub fn decode(header: &[u8], body: Bytes) -> Result<RemotingCommand, Error> {
    let value: Value = serde_json::from_slice(header).map_err(|e| Error::Json(e.to_string()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| Error::Json("header is not a JSON object".into()))?;
    let code = int_field(obj.get("code"), "code")?.ok_or(Error::MissingField { field: "code" })?;
    let language = match obj.get("language") {
        Some(Value::String(name)) => LANGUAGES
            .iter()
            .position(|l| l == name)
            .map(|p| p as u8)
            .unwrap_or(OTHER_LANGUAGE),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .unwrap_or(OTHER_LANGUAGE),
        _ => OTHER_LANGUAGE,
    };
    let remark = match obj.get("remark") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    };
    let mut ext_fields = ExtFields::new();
    if let Some(Value::Object(fields)) = obj.get("extFields") {
        for (k, v) in fields {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                nested => nested.to_string(),
            };
            ext_fields.insert(k.clone(), text);
        }
    }
    Ok(RemotingCommand {
        code: code as i32,
        language,
        version: int_field(obj.get("version"), "version")?.unwrap_or(0) as i32,
        opaque: int_field(obj.get("opaque"), "opaque")?.unwrap_or(0) as i32,
        flag: int_field(obj.get("flag"), "flag")?.unwrap_or(0) as i32,
        remark,
        ext_fields,
        body,
        serialize_type: SerializeType::Json,
    })
}

fn int_field(v: Option<&Value>, field: &'static str) -> Result<Option<i64>, Error> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|n| i32::try_from(*n).is_ok() || *n <= u32::MAX as i64)
            .map(Some)
            .ok_or_else(|| Error::BadField {
                field,
                value: n.to_string(),
            }),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| Error::BadField {
                field,
                value: s.clone(),
            }),
        Some(other) => Err(Error::BadField {
            field,
            value: other.to_string(),
        }),
    }
}

/// Encodes the header with fastjson's habits: keys in alphabetical order, nulls omitted.
pub fn encode(cmd: &RemotingCommand, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"code\":");
    push_int(out, cmd.code as i64);
    if !cmd.ext_fields.is_empty() {
        out.extend_from_slice(b",\"extFields\":{");
        for (i, (k, v)) in cmd.ext_fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_str(out, k);
            out.push(b':');
            push_str(out, v);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b",\"flag\":");
    push_int(out, cmd.flag as i64);
    out.extend_from_slice(b",\"language\":");
    push_str(out, cmd.language_name());
    out.extend_from_slice(b",\"opaque\":");
    push_int(out, cmd.opaque as i64);
    if let Some(remark) = &cmd.remark {
        out.extend_from_slice(b",\"remark\":");
        push_str(out, remark);
    }
    out.extend_from_slice(b",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":");
    push_int(out, cmd.version as i64);
    out.push(b'}');
}

fn push_int(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(n.to_string().as_bytes());
}

/// JSON string with every control character escaped: properties carry U+0001 and U+0002.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for ch in s.chars() {
        match ch {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> RemotingCommand {
        decode(s.as_bytes(), Bytes::new()).expect("decodes")
    }

    #[test]
    fn given_a_java_style_header_with_trailing_newline_should_decode() {
        let c = dec("{\"code\":310,\"extFields\":{\"a\":\"PG\",\"b\":\"T\"},\"flag\":0,\"language\":\"JAVA\",\"opaque\":42,\"serializeTypeCurrentRPC\":\"JSON\",\"version\":409}\n");
        assert_eq!((c.code, c.opaque, c.version, c.language), (310, 42, 409, 0));
        assert_eq!(c.field("b"), Some("T"));
    }

    #[test]
    fn given_numbers_and_booleans_in_ext_fields_should_read_them_as_text() {
        let c = dec(
            r#"{"code":"11","language":9,"extFields":{"queueId":3,"batch":true,"x":null},"opaque":-5}"#,
        );
        assert_eq!(c.code, 11);
        assert_eq!(c.language_name(), "GO");
        assert_eq!(c.field("queueId"), Some("3"));
        assert_eq!(c.field("batch"), Some("true"));
        assert_eq!(c.field("x"), None);
        assert_eq!(c.opaque, -5);
    }

    #[test]
    fn given_an_unknown_language_name_should_decode_as_other() {
        assert_eq!(
            dec(r#"{"code":1,"language":"KOTLIN"}"#).language_name(),
            "OTHER"
        );
    }

    #[test]
    fn given_unicode_escapes_and_surrogate_pairs_should_decode_them() {
        let c = dec(r#"{"code":1,"extFields":{"i":"TAGS\u0001a\u0002K\u0001\ud83d\ude00"}}"#);
        assert_eq!(c.field("i"), Some("TAGS\u{1}a\u{2}K\u{1}😀"));
    }

    #[test]
    fn encoded_keys_are_alphabetical_and_nulls_are_omitted() {
        let c = RemotingCommand::request(105, 3).with_field("topic", "T\u{1}");
        let mut out = Vec::new();
        encode(&c, &mut out);
        let s = String::from_utf8(out).expect("utf8");
        assert_eq!(
            s,
            r#"{"code":105,"extFields":{"topic":"T\u0001"},"flag":0,"language":"JAVA","opaque":3,"serializeTypeCurrentRPC":"JSON","version":409}"#
        );
    }

    #[test]
    fn missing_code_is_an_error_not_a_panic() {
        assert!(matches!(
            decode(b"{}", Bytes::new()),
            Err(Error::MissingField { .. })
        ));
        assert!(matches!(decode(b"[1]", Bytes::new()), Err(Error::Json(_))));
        assert!(matches!(
            decode(b"{\"code\":{}}", Bytes::new()),
            Err(Error::BadField { .. })
        ));
    }
}
