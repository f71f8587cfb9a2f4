//! Java `String.hashCode()` over UTF-16 code units: tag codes in the ConsumeQueue and index keys
//! must match what Java clients and tools compute (§5.3, §5.4).

pub fn java_string_hash(s: &str) -> i32 {
    java_hash_continue(0, s)
}

/// Continues a hash over more text: the hash of `a + b` is `java_hash_continue(hash(a), b)`,
/// so composite keys need no allocation.
pub fn java_hash_continue(mut h: i32, s: &str) -> i32 {
    // Topics, tags and keys are nearly always ASCII, where a byte is a UTF-16 unit: skip the
    // UTF-16 encoder (the index hashes topic and key twice per message).
    if s.is_ascii() {
        // Four bytes per step: h*31^4 + b0*31^3 + b1*31^2 + b2*31 + b3 (exact in wrapping
        // arithmetic), so the multiplies do not all wait on each other.
        let mut chunks = s.as_bytes().chunks_exact(4);
        for c in &mut chunks {
            h = h
                .wrapping_mul(923_521)
                .wrapping_add((c[0] as i32).wrapping_mul(29_791))
                .wrapping_add((c[1] as i32).wrapping_mul(961))
                .wrapping_add((c[2] as i32).wrapping_mul(31))
                .wrapping_add(c[3] as i32);
        }
        for &b in chunks.remainder() {
            h = h.wrapping_mul(31).wrapping_add(b as i32);
        }
        return h;
    }
    for unit in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    h
}

/// The ConsumeQueue tag code: the hash sign-extended to a long, 0 for no tag.
pub fn tag_code(tag: Option<&str>) -> i64 {
    tag.map(|t| java_string_hash(t) as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn the_ascii_path_equals_the_utf16_path(s in "[ -~]{0,40}|\\PC{0,10}", h in proptest::prelude::any::<i32>()) {
            let slow = s
                .encode_utf16()
                .fold(h, |h, u| h.wrapping_mul(31).wrapping_add(u as i32));
            proptest::prop_assert_eq!(java_hash_continue(h, &s), slow);
        }
    }

    #[test]
    fn matches_java_for_known_values() {
        // Values computed by java.lang.String#hashCode.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("TagA"), 2598919);
        assert_eq!(java_string_hash("hello world"), 1794106052);
        assert_eq!(java_string_hash("😀"), 1772899);
        assert_eq!(
            java_hash_continue(java_string_hash("hello "), "world"),
            java_string_hash("hello world")
        );
    }
}
