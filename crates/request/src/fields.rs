//! Scalar request fields: identity ids, thresholds, pages, metadata.

use std::collections::{BTreeMap, HashMap};

use tonic::Status;

const MAX_IDENTITY_ID_BYTES: usize = 256;

/// A caller-chosen identity id: 1 to 256 bytes, no control characters.
pub fn identity_id<'a>(field: &str, id: &'a str) -> Result<&'a str, Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field}: must not be empty"
        )));
    }
    if id.len() > MAX_IDENTITY_ID_BYTES {
        return Err(Status::invalid_argument(format!(
            "{field}: {} bytes, at most {MAX_IDENTITY_ID_BYTES}",
            id.len()
        )));
    }
    if id.chars().any(char::is_control) {
        return Err(Status::invalid_argument(format!(
            "{field}: must not contain control characters"
        )));
    }
    Ok(id)
}

/// A threshold override, or the configured default.
pub fn threshold(field: &str, value: Option<f32>, default: f32) -> Result<f32, Status> {
    match value {
        None => Ok(default),
        Some(t) if (-1.0..=1.0).contains(&t) => Ok(t),
        Some(t) => Err(Status::invalid_argument(format!(
            "{field}: {t} is not a cosine similarity in [-1, 1]"
        ))),
    }
}

/// Page tokens are the hex of the last identity id of the previous page.
pub fn page_token(token: &str) -> Result<Option<String>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Status::invalid_argument("page_token: not a token this server issued");
    if !token.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(token.get(i..i + 2).ok_or_else(invalid)?, 16).map_err(|_| invalid())
        })
        .collect::<Result<Vec<u8>, Status>>()?;
    String::from_utf8(bytes).map(Some).map_err(|_| invalid())
}

pub fn next_page_token(after: Option<String>) -> String {
    after
        .map(|id| id.bytes().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default()
}

/// A page size: 0 means 100, at most 1000.
pub fn page_size(requested: u32) -> Result<usize, Status> {
    match requested {
        0 => Ok(100),
        n if n > 1000 => Err(Status::invalid_argument(format!(
            "page_size: {n}, at most 1000"
        ))),
        n => Ok(n as usize),
    }
}

pub fn metadata(map: HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip() {
        let token = next_page_token(Some("José #1".into()));
        assert_eq!(page_token(&token).unwrap().as_deref(), Some("José #1"));
        assert_eq!(page_token("").unwrap(), None);
        assert!(page_token("zz").is_err());
        assert!(page_token("abc").is_err());
    }

    #[test]
    fn identity_ids_are_checked() {
        assert!(identity_id("identity_id", "alice").is_ok());
        assert!(identity_id("identity_id", "").is_err());
        assert!(identity_id("identity_id", "a\nb").is_err());
        assert!(identity_id("identity_id", &"x".repeat(257)).is_err());
    }
}
