//! The JSON header form (serialize type 0), read as leniently as the Java broker reads it (§1.4, §1.8).
//!
//! Decoding walks the header once with serde's streaming visitor instead of building a
//! `serde_json::Value` tree first: on the send path that tree cost about a fifth of the broker's
//! CPU (perf, 2026-11-21), in allocations for every key and value made twice.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::command::{ExtFields, RemotingCommand, SerializeType, LANGUAGES};
use super::error::Error;
use bytes::Bytes;

const OTHER_LANGUAGE: u8 = 7;

/// A JSON value as the header fields see it: text for strings, numbers and booleans (the way
/// fastjson coerces them), `Null` for null, and nested arrays/objects kept as their JSON text.
#[derive(Debug, PartialEq)]
enum Scalar {
    Null,
    Str(String),
    Int(i64),
    /// Anything else, already rendered as text: floats, booleans, huge numbers, nested values.
    Other(String),
}

impl Scalar {
    fn into_text(self) -> Option<String> {
        match self {
            Scalar::Null => None,
            Scalar::Str(s) | Scalar::Other(s) => Some(s),
            Scalar::Int(n) => Some(n.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Scalar, E> {
        Ok(Scalar::Other(b.to_string()))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Scalar, E> {
        Ok(match i64::try_from(n) {
            Ok(n) => Scalar::Int(n),
            Err(_) => Scalar::Other(n.to_string()),
        })
    }
    fn visit_f64<E>(self, n: f64) -> Result<Scalar, E> {
        Ok(Scalar::Other(Value::from(n).to_string()))
    }
    fn visit_str<E>(self, s: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Scalar, E> {
        Ok(Scalar::Str(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Scalar, A::Error> {
        let v = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Scalar::Other(v.to_string()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scalar, A::Error> {
        let v = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Scalar::Other(v.to_string()))
    }
}

/// `extFields`: an object of scalars; a non-object value is ignored, as before.
struct Ext(ExtFields);

impl<'de> Deserialize<'de> for Ext {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ExtVisitor;
        impl<'de> Visitor<'de> for ExtVisitor {
            type Value = Ext;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("extFields")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ext, A::Error> {
                let mut fields = ExtFields::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if let Some(text) = map.next_value::<Scalar>()?.into_text() {
                        fields.insert(key.into_owned(), text);
                    }
                }
                Ok(Ext(fields))
            }
            fn visit_unit<E>(self) -> Result<Ext, E> {
                Ok(Ext(ExtFields::new()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Ext, E> {
                Ok(Ext(ExtFields::new()))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Ext, E> {
                Ok(Ext(ExtFields::new()))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Ext, E> {
                Ok(Ext(ExtFields::new()))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Ext, E> {
                Ok(Ext(ExtFields::new()))
            }
            fn visit_str<E>(self, _: &str) -> Result<Ext, E> {
                Ok(Ext(ExtFields::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ext, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Ext(ExtFields::new()))
            }
        }
        d.deserialize_any(ExtVisitor)
    }
}

/// The header object's fields, each kept raw until validated with its name.
#[derive(Default)]
struct Header {
    code: Option<Scalar>,
    language: Option<Scalar>,
    version: Option<Scalar>,
    opaque: Option<Scalar>,
    flag: Option<Scalar>,
    remark: Option<Scalar>,
    ext_fields: ExtFields,
}

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct HeaderVisitor;
        impl<'de> Visitor<'de> for HeaderVisitor {
            type Value = Header;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            // Later duplicates win, as they did with a `Value` map.
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
                let mut h = Header::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let slot = match key.as_ref() {
                        "code" => &mut h.code,
                        "language" => &mut h.language,
                        "version" => &mut h.version,
                        "opaque" => &mut h.opaque,
                        "flag" => &mut h.flag,
                        "remark" => &mut h.remark,
                        "extFields" => {
                            h.ext_fields = map.next_value::<Ext>()?.0;
                            continue;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value::<Scalar>()?);
                }
                Ok(h)
            }
        }
        d.deserialize_map(HeaderVisitor)
    }
}

/// Decodes a JSON header. Accepts trailing whitespace, numbers and booleans as extFields values,
/// `language` as a name or an ordinal, numeric fields as numbers or numeric strings.
pub fn decode(header: &[u8], body: Bytes) -> Result<RemotingCommand, Error> {
    let h: Header = serde_json::from_slice(header).map_err(|e| Error::Json(e.to_string()))?;
    let code = int_field(h.code, "code")?.ok_or(Error::MissingField { field: "code" })?;
    let language = match h.language {
        Some(Scalar::Str(name)) => LANGUAGES
            .iter()
            .position(|l| *l == name)
            .map(|p| p as u8)
            .unwrap_or(OTHER_LANGUAGE),
        Some(Scalar::Int(n)) => u8::try_from(n).unwrap_or(OTHER_LANGUAGE),
        _ => OTHER_LANGUAGE,
    };
    Ok(RemotingCommand {
        code: code as i32,
        language,
        version: int_field(h.version, "version")?.unwrap_or(0) as i32,
        opaque: int_field(h.opaque, "opaque")?.unwrap_or(0) as i32,
        flag: int_field(h.flag, "flag")?.unwrap_or(0) as i32,
        remark: h.remark.and_then(Scalar::into_text),
        ext_fields: h.ext_fields,
        body,
        serialize_type: SerializeType::Json,
    })
}

fn int_field(v: Option<Scalar>, field: &'static str) -> Result<Option<i64>, Error> {
    match v {
        None | Some(Scalar::Null) => Ok(None),
        Some(Scalar::Int(n)) if i32::try_from(n).is_ok() || n <= u32::MAX as i64 => Ok(Some(n)),
        Some(Scalar::Int(n)) => Err(Error::BadField {
            field,
            value: n.to_string(),
        }),
        Some(Scalar::Str(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| Error::BadField { field, value: s }),
        Some(Scalar::Other(text)) => Err(Error::BadField { field, value: text }),
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
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{n}");
}

/// JSON string with every control character escaped: properties carry U+0001 and U+0002.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Most strings (ids, topics, a batch's 128 comma-joined message ids) need no escape: a
    // branch-free test of whole chunks finds that without the byte-by-byte loop below (2.4 % of
    // the broker's CPU on 128-message batch sends, perf 2026-11-22).
    if !bytes
        .chunks(32)
        .any(|c| c.iter().fold(false, |esc, &b| esc | needs_escape(b)))
    {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut clean_from = 0;
    // Multi-byte UTF-8 sequences only contain bytes >= 0x80, so scanning bytes is enough.
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[clean_from..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]);
        } else {
            out.extend_from_slice(escape);
        }
        clean_from = i + 1;
    }
    out.extend_from_slice(&bytes[clean_from..]);
    out.push(b'"');
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    /// The straightforward reading through a `Value` tree: the oracle the streaming decoder must
    /// agree with on every header.
    fn reference(header: &[u8]) -> Option<(i64, Option<String>, ExtFields)> {
        let v: Value = serde_json::from_slice(header).ok()?;
        let obj = v.as_object()?;
        let code = match obj.get("code")? {
            Value::Number(n) => n.as_i64()?,
            Value::String(s) => s.trim().parse().ok()?,
            _ => return None,
        };
        let remark = match obj.get("remark") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        let mut ext = ExtFields::new();
        if let Some(Value::Object(fields)) = obj.get("extFields") {
            for (k, v) in fields {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => continue,
                    other => other.to_string(),
                };
                ext.insert(k.clone(), text);
            }
        }
        Some((code, remark, ext))
    }

    fn scalar() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::String),
            "[\\x00-\\x1f\"\\\\a-z\u{80}-\u{10ffff}]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,3}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn streaming_decode_agrees_with_the_value_tree(
            code in prop_oneof![any::<i32>().prop_map(Value::from), any::<u16>().prop_map(|n| Value::String(n.to_string()))],
            remark in scalar(),
            ext in prop::collection::btree_map("[a-zA-Z_]{1,10}", scalar(), 0..8),
            extra in scalar(),
            trailing_newline in any::<bool>(),
        ) {
            let mut obj = serde_json::Map::new();
            obj.insert("code".into(), code);
            obj.insert("remark".into(), remark);
            obj.insert("extFields".into(), Value::Object(ext.into_iter().collect()));
            obj.insert("unknownField".into(), extra);
            let mut text = Value::Object(obj).to_string();
            if trailing_newline {
                text.push('\n');
            }
            let want = reference(text.as_bytes());
            let got = decode(text.as_bytes(), Bytes::new()).ok();
            prop_assert_eq!(got.map(|c| (c.code as i64, c.remark, c.ext_fields)), want);
        }

        #[test]
        fn push_str_output_parses_back_to_the_same_string(s in "\\PC{0,40}|[\\x00-\\x1f\"\\\\]{0,10}") {
            let mut out = Vec::new();
            push_str(&mut out, &s);
            let back: String = serde_json::from_slice(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, s);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes, Bytes::new());
        }
    }
}
