//! Message properties: `key U+0001 value U+0002 ...` (§4.3).

pub const NAME_VALUE_SEP: char = '\u{1}';
pub const PROPERTY_SEP: char = '\u{2}';
pub const MAX_PROPERTIES_BYTES: usize = 32767;

pub const KEYS: &str = "KEYS";
pub const TAGS: &str = "TAGS";
pub const WAIT: &str = "WAIT";
pub const UNIQ_KEY: &str = "UNIQ_KEY";
pub const CLUSTER: &str = "CLUSTER";
pub const DELAY: &str = "DELAY";
pub const TRAN_MSG: &str = "TRAN_MSG";

/// Parses leniently: with or without a trailing separator; segments without a name or value are
/// skipped, as Java's parser does.
pub fn parse(s: &str) -> Vec<(String, String)> {
    s.split(PROPERTY_SEP)
        .filter(|seg| seg.len() >= 3)
        .filter_map(|seg| seg.split_once(NAME_VALUE_SEP))
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The value of `key`, found without allocating; the same answer as `get(&parse(s), key)`.
pub fn find<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let [v] = find_each(s, [key]);
    v
}

/// The values of several keys in one pass over `s`; each the same answer as [`find`].
pub fn find_each<'a, const N: usize>(s: &'a str, keys: [&str; N]) -> [Option<&'a str>; N] {
    // Byte scan, once for all keys: every append looks up TAGS, UNIQ_KEY and KEYS, and the
    // char-pattern split was ~9% of broker CPU on batch sends (three byte scans, ~5%). The
    // separators are ASCII, so every index below is a char boundary.
    let mut found = [None; N];
    let b = s.as_bytes();
    let mut left = keys
        .iter()
        .filter(|k| !k.is_empty() && !k.contains(NAME_VALUE_SEP))
        .count();
    let mut start = 0;
    while start < b.len() && left > 0 {
        let end = find_byte(&b[start..], PROPERTY_SEP as u8).map_or(b.len(), |i| start + i);
        let seg = &b[start..end];
        if let Some(eq) = find_byte(seg, NAME_VALUE_SEP as u8) {
            // parse() keeps only entries with a non-empty name and value, the first of a name.
            if eq > 0 && eq + 1 < seg.len() {
                let name = &seg[..eq];
                for (i, k) in keys.iter().enumerate() {
                    if found[i].is_none() && k.as_bytes() == name {
                        found[i] = s.get(start + eq + 1..end);
                        left -= 1;
                    }
                }
            }
        }
        start = end + 1;
    }
    found
}

/// The first index of `needle` in `hay`, eight bytes at a time: property values (UNIQ_KEY,
/// KEYS) are tens of bytes, and a byte-at-a-time scan of every member's properties was ~7 % of
/// the broker's CPU on batch sends.
fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * needle as u64;
    let mut chunks = hay.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ pattern;
        // A zero byte in `x` is a match; this is non-zero exactly when there is one.
        if (x.wrapping_sub(LO) & !x & HI) != 0 {
            break;
        }
        at += 8;
    }
    hay[at..].iter().position(|&c| c == needle).map(|i| at + i)
}

/// Writes in the 4.9.1+ form, with no trailing separator.
pub fn encode(props: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in props.iter().enumerate() {
        if i > 0 {
            out.push(PROPERTY_SEP);
        }
        out.push_str(k);
        out.push(NAME_VALUE_SEP);
        out.push_str(v);
    }
    out
}

/// `own` without `drop_key`, plus each `(key, value)` of `defaults` whose key it lacks: the
/// same properties (as [`parse`] reads them) as parsing, removing, pushing and encoding, but
/// built by copying `own`'s segments (the parse/encode round trip cost ~8% of broker CPU on
/// batch sends, and Java clients put WAIT in every batch member). One byte scan of `own`
/// notes which default names it has (a char split plus a lookup per default was ~4%).
pub fn with_defaults(own: &str, defaults: &[(String, String)], drop_key: &str) -> String {
    let mut out = String::with_capacity(own.len() + 64);
    push_with_defaults(&mut out, own, defaults, drop_key);
    out
}

/// [`with_defaults`], appended to `out` (which may hold other messages' properties: a batch's
/// members share one buffer).
pub fn push_with_defaults(
    out: &mut String,
    own: &str,
    defaults: &[(String, String)],
    drop_key: &str,
) {
    let base = out.len();
    // Bit i: `defaults[i]`'s name is in `own` the way `find` sees names (non-empty value).
    let mut present: u64 = 0;
    let bytes = own.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        let end = find_byte(&bytes[start..], PROPERTY_SEP as u8).map_or(bytes.len(), |i| start + i);
        let seg = &bytes[start..end];
        let eq = find_byte(seg, NAME_VALUE_SEP as u8);
        let name = eq.map(|eq| &seg[..eq]);
        if !seg.is_empty() && name != Some(drop_key.as_bytes()) {
            if out.len() > base {
                out.push(PROPERTY_SEP);
            }
            // The separators are ASCII, so `start` and `end` are char boundaries.
            out.push_str(own.get(start..end).unwrap_or_default());
        }
        if let (Some(eq), Some(name)) = (eq, name) {
            if eq > 0 && eq + 1 < seg.len() {
                for (i, (k, _)) in defaults.iter().enumerate().take(64) {
                    if k.as_bytes() == name {
                        present |= 1 << i;
                    }
                }
            }
        }
        start = end + 1;
    }
    for (i, (k, v)) in defaults.iter().enumerate() {
        let added_before = defaults[..i].iter().any(|(k2, _)| k2 == k);
        let in_own = k != drop_key
            && if i < 64 {
                present & (1 << i) != 0
            } else {
                find(own, k).is_some()
            };
        if k.is_empty() || v.is_empty() || added_before || in_own {
            continue;
        }
        if out.len() > base {
            out.push(PROPERTY_SEP);
        }
        out.push_str(k);
        out.push(NAME_VALUE_SEP);
        out.push_str(v);
    }
}

pub fn get<'a>(props: &'a [(String, String)], key: &str) -> Option<&'a str> {
    props
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

pub fn remove(props: &mut Vec<(String, String)>, key: &str) {
    props.retain(|(k, _)| k != key);
}

pub fn set(props: &mut Vec<(String, String)>, key: &str, value: &str) {
    remove(props, key);
    props.push((key.to_string(), value.to_string()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn slow_with_defaults(own: &str, defaults: &[(String, String)], drop_key: &str) -> String {
        let mut props = parse(own);
        remove(&mut props, drop_key);
        for (k, v) in defaults {
            if get(&props, k).is_none() {
                props.push((k.clone(), v.clone()));
            }
        }
        encode(&props)
    }

    /// The char-split form `with_defaults` had before its byte scan: the same string out.
    fn split_with_defaults(own: &str, defaults: &[(String, String)], drop_key: &str) -> String {
        let mut out = String::new();
        for seg in own.split(PROPERTY_SEP) {
            if seg.is_empty() || seg.split_once(NAME_VALUE_SEP).map(|(k, _)| k) == Some(drop_key) {
                continue;
            }
            if !out.is_empty() {
                out.push(PROPERTY_SEP);
            }
            out.push_str(seg);
        }
        for (i, (k, v)) in defaults.iter().enumerate() {
            let added_before = defaults[..i].iter().any(|(k2, _)| k2 == k);
            let in_own = k != drop_key && find(own, k).is_some();
            if k.is_empty() || v.is_empty() || added_before || in_own {
                continue;
            }
            if !out.is_empty() {
                out.push(PROPERTY_SEP);
            }
            out.push_str(k);
            out.push(NAME_VALUE_SEP);
            out.push_str(v);
        }
        out
    }

    proptest! {
        #[test]
        fn find_byte_agrees_with_a_plain_scan(
            hay in prop::collection::vec(prop::sample::select(vec![0u8, 1, 2, 3, 0x80, 0x81, 0xff, b'a']), 0..40),
            needle in prop::sample::select(vec![0u8, 1, 2, 0x80, 0xff]),
        ) {
            prop_assert_eq!(find_byte(&hay, needle), hay.iter().position(|&c| c == needle));
        }

        #[test]
        fn with_defaults_is_byte_for_byte_the_split_form(
            own in "([A-C]{0,2}\u{1}?[a-cé]{0,2}\u{2}?){0,6}",
            defaults in prop::collection::vec(("[A-C]{0,2}", "[a-c]{0,2}"), 0..4),
            drop_key in "[A-C]{1,2}",
        ) {
            prop_assert_eq!(
                with_defaults(&own, &defaults, &drop_key),
                split_with_defaults(&own, &defaults, &drop_key)
            );
        }

        /// A batch's members are pushed one after another into one buffer: each member's part
        /// is exactly what it would be alone, whatever came before it.
        #[test]
        fn pushing_after_other_members_leaves_them_and_adds_the_same_text(
            before in "([A-C]{0,2}\u{1}?[a-cé]{0,2}\u{2}?){0,4}",
            own in "([A-C]{0,2}\u{1}?[a-cé]{0,2}\u{2}?){0,6}",
            defaults in prop::collection::vec(("[A-C]{0,2}", "[a-c]{0,2}"), 0..4),
            drop_key in "[A-C]{1,2}",
        ) {
            let mut out = before.clone();
            push_with_defaults(&mut out, &own, &defaults, &drop_key);
            prop_assert_eq!(&out[..before.len()], before.as_str());
            prop_assert_eq!(&out[before.len()..], with_defaults(&own, &defaults, &drop_key));
        }

        #[test]
        fn with_defaults_reads_back_like_the_parse_encode_round_trip(
            own in "([A-C]{0,2}\u{1}?[a-c]{0,2}\u{2}?){0,5}",
            defaults in prop::collection::vec(("[A-C]{0,2}", "[a-c]{0,2}"), 0..4),
            drop_key in "[A-C]{1,2}",
        ) {
            prop_assert_eq!(
                parse(&with_defaults(&own, &defaults, &drop_key)),
                parse(&slow_with_defaults(&own, &defaults, &drop_key))
            );
        }
    }

    #[test]
    fn accepts_old_trailing_separator_and_new_form() {
        let old = "TAGS\u{1}a\u{2}KEYS\u{1}k1 k2\u{2}";
        let new = "TAGS\u{1}a\u{2}KEYS\u{1}k1 k2";
        assert_eq!(parse(old), parse(new));
        assert_eq!(get(&parse(new), KEYS), Some("k1 k2"));
    }

    #[test]
    fn skips_segments_without_value() {
        assert_eq!(
            parse("A\u{1}\u{2}\u{2}B\u{1}x"),
            vec![("B".to_string(), "x".to_string())]
        );
    }

    proptest! {
        #[test]
        fn round_trips(props in proptest::collection::vec(("[A-Za-z_]{1,10}", "[^\u{1}\u{2}]{1,20}"), 0..8)) {
            let props: Vec<(String, String)> = props;
            prop_assert_eq!(parse(&encode(&props)), props);
        }

        #[test]
        fn find_agrees_with_parse_then_get(s in "[AK\u{1}\u{2}xé]{0,40}", key in "[AK]{0,2}") {
            let parsed = parse(&s);
            prop_assert_eq!(find(&s, &key), get(&parsed, &key));
        }

        #[test]
        fn find_each_agrees_with_parse_then_get(
            s in "[AK\u{1}\u{2}xé]{0,40}",
            keys in proptest::array::uniform3("[AK\u{1}]{0,2}"),
        ) {
            let parsed = parse(&s);
            let found = find_each(&s, [&keys[0], &keys[1], &keys[2]]);
            for (k, v) in keys.iter().zip(found) {
                prop_assert_eq!(v, get(&parsed, k));
            }
        }

        #[test]
        fn never_panics(s in "\\PC{0,64}") {
            let _ = parse(&s);
        }
    }
}
