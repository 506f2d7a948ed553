//! The time a call has left, from its `grpc-timeout` header and the server's own
//! request timeout, so that admission can refuse work the caller will not wait for.

use std::time::Duration;

use tonic::metadata::MetadataMap;

/// The shorter of the caller's deadline (if it sent one) and `server_timeout`.
/// A malformed header is ignored here: tonic's timeout layer has already refused it.
pub fn remaining(metadata: &MetadataMap, server_timeout: Duration) -> Duration {
    metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map_or(server_timeout, |caller| caller.min(server_timeout))
}

/// `grpc-timeout` as the gRPC over HTTP/2 spec defines it: at most 8 digits and a
/// unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n * 3600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_of_the_spec_parses() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("20S"), Some(Duration::from_secs(20)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(
            parse_grpc_timeout("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("5n"), Some(Duration::from_nanos(5)));
    }

    #[test]
    fn malformed_values_are_ignored() {
        for bad in ["", "S", "123456789S", "10x", "-1S", "1.5S", "10é"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_shorter_of_caller_and_server_wins() {
        let server = Duration::from_secs(30);
        let mut md = MetadataMap::new();
        assert_eq!(remaining(&md, server), server);
        md.insert("grpc-timeout", "200m".parse().unwrap());
        assert_eq!(remaining(&md, server), Duration::from_millis(200));
        md.insert("grpc-timeout", "1H".parse().unwrap());
        assert_eq!(remaining(&md, server), server);
    }
}
