//! Java `String.hashCode()` over UTF-16 code units: tag codes in the ConsumeQueue and index keys
//! must match what Java clients and tools compute (§5.3, §5.4).

pub fn java_string_hash(s: &str) -> i32 {
    java_hash_continue(0, s)
}

/// Continues a hash over more text: the hash of `a + b` is `java_hash_continue(hash(a), b)`,
/// so composite keys need no allocation.
pub fn java_hash_continue(mut h: i32, s: &str) -> i32 {
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
