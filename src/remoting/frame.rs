//! Frames: `| length | serializeType<<24 | headerLen | header | body |` (§1.2), with the 16 MiB limit.

use bytes::{Buf, BufMut, BytesMut};

use super::command::{RemotingCommand, SerializeType};
use super::error::Error;
use super::{binary_header, json_header};

/// `com.rocketmq.remoting.frameMaxLength`.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// The length field at the front of `buf`, checked against the limits; `None` until its four
/// bytes have arrived.
fn length_field(buf: &[u8]) -> Option<Result<usize, Error>> {
    let b = buf.get(..4)?;
    let length = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some(match usize::try_from(length) {
        Err(_) => Err(Error::FrameTooSmall(0)),
        Ok(length) if length > MAX_FRAME_BYTES => Err(Error::FrameTooLarge {
            length,
            limit: MAX_FRAME_BYTES,
        }),
        Ok(length) if length < 4 => Err(Error::FrameTooSmall(length)),
        Ok(length) => Ok(length),
    })
}

/// Bytes of the whole frame at the front of `buf` (length field included), once its length
/// field has arrived and is within bounds; [`decode`] reports a bad one.
pub fn total_len(buf: &[u8]) -> Option<usize> {
    length_field(buf)?.ok().map(|length| 4 + length)
}

/// Takes one whole frame off the front of `buf`, or `Ok(None)` when more bytes are needed.
/// The body is split off without copying.
pub fn decode(buf: &mut BytesMut) -> Result<Option<RemotingCommand>, Error> {
    let Some(length) = length_field(buf) else {
        return Ok(None);
    };
    let length = length?;
    if buf.len() < 4 + length {
        buf.reserve(4 + length - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    let mut frame = buf.split_to(length);
    let ori = frame.get_u32();
    let serialize_type = SerializeType::from_byte((ori >> 24) as u8)?;
    let header_len = (ori & 0x00FF_FFFF) as usize;
    if header_len > frame.len() {
        return Err(Error::HeaderOverflow {
            header_len,
            frame_len: length,
        });
    }
    let header = frame.split_to(header_len);
    let body = frame.freeze();
    match serialize_type {
        SerializeType::Json => json_header::decode(&header, body).map(Some),
        SerializeType::RocketMq => binary_header::decode(&header, body).map(Some),
    }
}

/// Appends the whole frame for `cmd` to `out`.
pub fn encode(cmd: &RemotingCommand, out: &mut BytesMut) {
    let mut header = Vec::with_capacity(256);
    match cmd.serialize_type {
        SerializeType::Json => json_header::encode(cmd, &mut header),
        SerializeType::RocketMq => binary_header::encode(cmd, &mut header),
    }
    let length = 4 + header.len() + cmd.body.len();
    out.reserve(4 + length);
    out.put_i32(length as i32);
    out.put_u32(((cmd.serialize_type.as_byte() as u32) << 24) | header.len() as u32);
    out.put_slice(&header);
    out.put_slice(&cmd.body);
}

pub fn encode_to_vec(cmd: &RemotingCommand) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(cmd, &mut out);
    out.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn arb_command() -> impl Strategy<Value = RemotingCommand> {
        (
            any::<i16>(),
            0u8..14,
            any::<i16>(),
            any::<i32>(),
            0i32..4,
            proptest::option::of("[^\u{0}]{1,20}"),
            proptest::collection::btree_map("[a-zA-Z]{1,8}", "[^\u{0}]{1,30}", 0..6),
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<bool>(),
        )
            .prop_map(
                |(code, language, version, opaque, flag, remark, ext, body, binary)| {
                    RemotingCommand {
                        code: code as i32,
                        language,
                        version: version as i32,
                        opaque,
                        flag,
                        remark,
                        ext_fields: ext,
                        body: Bytes::from(body),
                        serialize_type: if binary {
                            SerializeType::RocketMq
                        } else {
                            SerializeType::Json
                        },
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn every_command_round_trips_through_a_frame(cmd in arb_command()) {
            let mut buf = BytesMut::new();
            encode(&cmd, &mut buf);
            let decoded = decode(&mut buf).expect("decodes").expect("whole frame");
            prop_assert_eq!(decoded, cmd);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = decode(&mut buf);
        }

        #[test]
        fn a_frame_split_anywhere_decodes_only_when_whole(cmd in arb_command(), cut in 0usize..512) {
            let whole = encode_to_vec(&cmd);
            let cut = cut % whole.len();
            let mut buf = BytesMut::from(&whole[..cut]);
            prop_assert!(decode(&mut buf).expect("no error on a prefix").is_none());
            buf.extend_from_slice(&whole[cut..]);
            prop_assert_eq!(decode(&mut buf).expect("decodes").expect("whole"), cmd);
        }
    }

    #[test]
    fn an_oversized_length_is_refused_before_buffering() {
        let mut buf = BytesMut::from(&((MAX_FRAME_BYTES as i32) + 1).to_be_bytes()[..]);
        assert!(matches!(decode(&mut buf), Err(Error::FrameTooLarge { .. })));
    }

    #[test]
    fn a_header_longer_than_its_frame_is_refused() {
        let mut buf = BytesMut::new();
        buf.put_i32(8);
        buf.put_u32(100);
        buf.put_u32(0);
        assert!(matches!(
            decode(&mut buf),
            Err(Error::HeaderOverflow { .. })
        ));
    }

    #[test]
    fn an_unknown_serialize_type_is_refused() {
        let mut buf = BytesMut::new();
        buf.put_i32(4);
        buf.put_u32(7 << 24);
        assert!(matches!(
            decode(&mut buf),
            Err(Error::UnknownSerializeType(7))
        ));
    }
}
