//! W3C trace context: the `traceparent` a request carries travels with its event.

/// Returns the header when it is a well-formed W3C `traceparent`
/// (`version-traceid-parentid-flags`, lowercase hex). A malformed one is ignored, as the
/// W3C spec asks, rather than refusing the request.
pub fn valid_traceparent(value: Option<String>) -> Option<String> {
    let value = value?;
    let parts: Vec<&str> = value.split('-').collect();
    let lengths_ok = matches!(parts.as_slice(), [v, t, p, f] if v.len() == 2 && t.len() == 32 && p.len() == 16 && f.len() == 2);
    let hex_ok = parts.iter().all(|part| {
        part.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    let not_zero = parts.get(1).is_some_and(|t| t.bytes().any(|b| b != b'0'))
        && parts.get(2).is_some_and(|p| p.bytes().any(|b| b != b'0'));
    (lengths_ok && hex_ok && not_zero && parts[0] != "ff").then_some(value)
}

#[cfg(test)]
mod tests {
    use super::valid_traceparent;

    #[test]
    fn a_well_formed_traceparent_is_kept() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned();
        assert_eq!(valid_traceparent(Some(tp.clone())), Some(tp));
    }

    #[test]
    fn malformed_traceparents_are_dropped() {
        for bad in [
            "",
            "00-xyz-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(valid_traceparent(Some(bad.to_owned())), None, "{bad}");
        }
    }
}
