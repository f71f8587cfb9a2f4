//! `RemotingCommand`: one request or response, with its custom header as `extFields`.

use bytes::Bytes;
use std::collections::BTreeMap;

use super::codes::BROKER_VERSION;
use super::error::Error;

/// How the header is serialized on the wire (§1.2). A response reuses its request's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SerializeType {
    #[default]
    Json,
    RocketMq,
}

impl SerializeType {
    pub fn from_byte(b: u8) -> Result<Self, Error> {
        match b {
            0 => Ok(Self::Json),
            1 => Ok(Self::RocketMq),
            other => Err(Error::UnknownSerializeType(other)),
        }
    }
    pub fn as_byte(self) -> u8 {
        match self {
            Self::Json => 0,
            Self::RocketMq => 1,
        }
    }
}

/// `LanguageCode` ordinals (§1.3).
pub const LANGUAGES: [&str; 14] = [
    "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP",
    "OMS", "RUST", "NODE_JS",
];

pub const FLAG_RESPONSE: i32 = 1;
pub const FLAG_ONEWAY: i32 = 2;

/// Sorted so that JSON headers come out in fastjson's alphabetical order.
pub type ExtFields = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotingCommand {
    pub code: i32,
    /// Ordinal into [`LANGUAGES`]; unknown names decode as OTHER (7).
    pub language: u8,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: ExtFields,
    pub body: Bytes,
    pub serialize_type: SerializeType,
}

impl RemotingCommand {
    /// A request as this server sends it (to a client or to a NameServer).
    pub fn request(code: i32, opaque: i32) -> Self {
        Self {
            code,
            language: 0,
            version: BROKER_VERSION,
            opaque,
            flag: 0,
            remark: None,
            ext_fields: ExtFields::new(),
            body: Bytes::new(),
            serialize_type: SerializeType::Json,
        }
    }

    /// A response to `req`: echoes opaque and serialize type, speaks as a 4.9.8 Java broker (§9).
    pub fn response_to(req: &RemotingCommand, code: i32) -> Self {
        Self {
            code,
            language: 0,
            version: BROKER_VERSION,
            opaque: req.opaque,
            flag: FLAG_RESPONSE,
            remark: None,
            ext_fields: ExtFields::new(),
            body: Bytes::new(),
            serialize_type: req.serialize_type,
        }
    }

    pub fn error_to(req: &RemotingCommand, code: i32, remark: impl Into<String>) -> Self {
        Self::response_to(req, code).with_remark(remark)
    }

    pub fn with_remark(mut self, remark: impl Into<String>) -> Self {
        self.remark = Some(remark.into());
        self
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn with_field(mut self, key: &str, value: impl ToString) -> Self {
        self.ext_fields.insert(key.to_string(), value.to_string());
        self
    }

    pub fn set_field(&mut self, key: &str, value: impl ToString) {
        self.ext_fields.insert(key.to_string(), value.to_string());
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    pub fn mark_oneway(mut self) -> Self {
        self.flag |= FLAG_ONEWAY;
        self
    }

    pub fn language_name(&self) -> &'static str {
        LANGUAGES
            .get(self.language as usize)
            .copied()
            .unwrap_or("OTHER")
    }

    // ---- typed access to extFields, with RocketMQ's leniency (§1.6) ----

    pub fn field(&self, key: &str) -> Option<&str> {
        self.ext_fields.get(key).map(String::as_str)
    }

    /// First present key among `keys`: SEND_MESSAGE_V2 uses short names (a..n), V1 long ones.
    pub fn field_any(&self, keys: &[&str]) -> Option<&str> {
        keys.iter().find_map(|k| self.field(k))
    }

    pub fn required(&self, key: &'static str) -> Result<&str, Error> {
        self.field(key).ok_or(Error::MissingField { field: key })
    }

    pub fn required_i64(&self, key: &'static str) -> Result<i64, Error> {
        parse_i64(key, self.required(key)?)
    }

    pub fn required_i32(&self, key: &'static str) -> Result<i32, Error> {
        parse_i32(key, self.required(key)?)
    }

    pub fn optional_i64(&self, key: &'static str) -> Result<Option<i64>, Error> {
        self.field(key).map(|v| parse_i64(key, v)).transpose()
    }

    pub fn optional_i32(&self, key: &'static str) -> Result<Option<i32>, Error> {
        self.field(key).map(|v| parse_i32(key, v)).transpose()
    }

    /// Java `Boolean.parseBoolean`, widened to accept "1" as clients in the field send it.
    pub fn bool_field(&self, key: &str) -> bool {
        self.field(key).is_some_and(parse_bool)
    }
}

pub fn parse_bool(v: &str) -> bool {
    let v = v.trim();
    v.eq_ignore_ascii_case("true") || v == "1"
}

pub fn parse_i64(field: &'static str, v: &str) -> Result<i64, Error> {
    v.trim().parse::<i64>().map_err(|_| Error::BadField {
        field,
        value: v.to_string(),
    })
}

pub fn parse_i32(field: &'static str, v: &str) -> Result<i32, Error> {
    v.trim().parse::<i32>().map_err(|_| Error::BadField {
        field,
        value: v.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_echoes_opaque_and_serialize_type_and_speaks_java() {
        let mut req = RemotingCommand::request(10, 77);
        req.serialize_type = SerializeType::RocketMq;
        req.language = 12;
        let resp = RemotingCommand::response_to(&req, 0);
        assert_eq!(resp.opaque, 77);
        assert!(resp.is_response());
        assert_eq!(resp.serialize_type, SerializeType::RocketMq);
        assert_eq!(resp.language_name(), "JAVA");
        assert_eq!(resp.version, 409);
    }

    #[test]
    fn booleans_parse_like_java_plus_numeric_one() {
        for (v, want) in [
            ("true", true),
            ("TRUE", true),
            ("1", true),
            ("0", false),
            ("false", false),
            ("yes", false),
        ] {
            assert_eq!(parse_bool(v), want, "{v}");
        }
    }
}
