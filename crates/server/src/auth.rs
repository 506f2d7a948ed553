//! API keys: who may call which RPC on which gallery.
//!
//! Callers send `authorization: Bearer <key>`. The keys file stores only the SHA-256
//! of each key (keys are long random strings, so a fast hash is enough), and a
//! presented key is compared with every stored digest in constant time. The file is
//! re-read when it changes, so keys rotate without a restart.
//!
//! Status codes, the same whatever exists, so nothing can be enumerated:
//! - no key, or an unknown key: UNAUTHENTICATED;
//! - a known key without the role the RPC needs: PERMISSION_DENIED;
//! - a gallery outside the key's scope: NOT_FOUND "gallery ... not found", exactly as
//!   for a gallery that does not exist; whether an identity exists there is never
//!   looked at.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::galleries::gallery_name;

/// What a key may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Identify, Verify, Embed, GetIdentity, ListIdentities, ListGalleries, GetServiceInfo.
    Read,
    /// Also Enroll and DeleteIdentity.
    Write,
    /// Also CreateGallery, DropGallery, ExportGallery, ImportGallery.
    Admin,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

/// One entry of the keys file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyConfig {
    /// Names the key in logs and the audit trail; never the key itself.
    id: String,
    /// Lowercase hex SHA-256 of the key (`vargid hash-key` prints it).
    sha256: String,
    role: Role,
    /// Gallery names, or ["*"] for all.
    galleries: Vec<String>,
    /// Sustained requests per second this key may make (bursts up to the same number);
    /// absent: no limit.
    #[serde(default)]
    requests_per_second: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    keys: Vec<KeyConfig>,
}

#[derive(Debug, Clone)]
enum Scope {
    All,
    Only(BTreeSet<String>),
}

type Limiter = governor::DefaultDirectRateLimiter;

struct Key {
    id: String,
    digest: [u8; 32],
    role: Role,
    scope: Scope,
    limit: Option<(u32, Limiter)>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("API keys file {path}: {reason}")]
    KeysFile { path: String, reason: String },
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's id; `None` when access is open (no keys configured).
    pub key_id: Option<String>,
    role: Role,
    scope: Scope,
}

impl Caller {
    fn open() -> Self {
        Self {
            key_id: None,
            role: Role::Admin,
            scope: Scope::All,
        }
    }

    /// The key id for logs: "-" under open access.
    pub fn name(&self) -> &str {
        self.key_id.as_deref().unwrap_or("-")
    }

    /// PERMISSION_DENIED unless the key has `role` (or a higher one).
    pub fn require(&self, method: &str, role: Role) -> Result<(), Status> {
        if self.role >= role {
            return Ok(());
        }
        Err(Status::permission_denied(format!(
            "API key {:?} has role {}; {method} needs {}",
            self.name(),
            self.role.name(),
            role.name()
        )))
    }

    /// Whether the key's scope includes `gallery` ("" is the default gallery).
    pub fn sees(&self, gallery: &str) -> bool {
        match &self.scope {
            Scope::All => true,
            Scope::Only(names) => names.contains(gallery_name(gallery)),
        }
    }

    /// NOT_FOUND, worded as for a missing gallery, unless the key's scope includes it.
    pub fn gallery(&self, gallery: &str) -> Result<(), Status> {
        if self.sees(gallery) {
            return Ok(());
        }
        Err(Status::not_found(format!(
            "gallery {:?} not found",
            gallery_name(gallery)
        )))
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("role", &self.role)
            .finish()
    }
}

/// The current keys, re-read from their file when it changes.
pub struct Authenticator {
    file: Option<PathBuf>,
    keys: RwLock<Arc<Vec<Key>>>,
    loaded_at: RwLock<Option<SystemTime>>,
}

impl Authenticator {
    /// Open access (no keys file) or the keys in `file`.
    pub fn load(file: Option<&Path>) -> Result<Self, AuthError> {
        let auth = Self {
            file: file.map(Path::to_path_buf),
            keys: RwLock::new(Arc::new(Vec::new())),
            loaded_at: RwLock::new(None),
        };
        if let Some(path) = file {
            let keys = read_keys(path)?;
            *auth.loaded_at.write().unwrap_or_else(|e| e.into_inner()) = modified(path);
            *auth.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        }
        Ok(auth)
    }

    pub fn is_open(&self) -> bool {
        self.file.is_none()
    }

    pub fn key_count(&self) -> usize {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Re-reads the keys file if it changed since the last read. A file that no longer
    /// parses keeps the previous keys (and says so): a typo must not lock everyone out
    /// or let everyone in.
    pub fn reload_if_changed(&self) {
        let Some(path) = &self.file else { return };
        let now = modified(path);
        if now == *self.loaded_at.read().unwrap_or_else(|e| e.into_inner()) {
            return;
        }
        *self.loaded_at.write().unwrap_or_else(|e| e.into_inner()) = now;
        match read_keys(path) {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), path = %path.display(), "API keys reloaded");
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
            }
            Err(e) => {
                tracing::error!(error = %e, "API keys file not reloaded; the previous keys stay")
            }
        }
    }

    /// Checks the file for changes every `period` (spawned on the runtime).
    pub fn watch(self: &Arc<Self>, period: Duration) {
        if self.file.is_none() {
            return;
        }
        let auth = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(auth) = auth.upgrade() else { return };
                auth.reload_if_changed();
            }
        });
    }

    /// The caller behind a request's `authorization` metadata.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        if self.is_open() {
            return Ok(Caller::open());
        }
        let header = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Status::unauthenticated(
                    "missing API key: send the metadata `authorization: Bearer <key>`",
                )
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Status::unauthenticated("authorization metadata must be `Bearer <key>`")
            })?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        // Every stored digest is compared, in constant time, whatever matches.
        let mut found: Option<&Key> = None;
        for key in keys.iter() {
            if bool::from(key.digest.ct_eq(&digest)) {
                found = Some(key);
            }
        }
        let key = found.ok_or_else(|| Status::unauthenticated("unknown API key"))?;
        if let Some((per_second, limiter)) = &key.limit {
            if limiter.check().is_err() {
                return Err(Status::resource_exhausted(format!(
                    "rate limit: API key {:?} may make {per_second} requests per second; \
                     retry with backoff",
                    key.id
                )));
            }
        }
        Ok(Caller {
            key_id: Some(key.id.clone()),
            role: key.role,
            scope: key.scope.clone(),
        })
    }
}

/// The lowercase hex SHA-256 of a key, as the keys file stores it.
pub fn key_digest_hex(key: &str) -> String {
    Sha256::digest(key.trim().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read_keys(path: &Path) -> Result<Vec<Key>, AuthError> {
    let bad = |reason: String| AuthError::KeysFile {
        path: path.display().to_string(),
        reason,
    };
    let file: KeysFile = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .build()
        .and_then(config::Config::try_deserialize)
        .map_err(|e| bad(e.to_string()))?;
    let mut ids = BTreeSet::new();
    file.keys
        .into_iter()
        .map(|k| {
            if k.id.is_empty() || !ids.insert(k.id.clone()) {
                return Err(bad(format!("key id {:?} is empty or repeated", k.id)));
            }
            let hex = k.sha256.trim();
            if hex.len() != 64 {
                return Err(bad(format!("key {:?}: sha256 must be 64 hex digits", k.id)));
            }
            let mut digest = [0u8; 32];
            for (i, byte) in digest.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                    .map_err(|_| bad(format!("key {:?}: sha256 is not hex", k.id)))?;
            }
            let scope = if k.galleries.iter().any(|g| g == "*") {
                Scope::All
            } else if k.galleries.is_empty() {
                return Err(bad(format!(
                    "key {:?}: list its galleries, or [\"*\"] for all",
                    k.id
                )));
            } else {
                Scope::Only(k.galleries.into_iter().collect())
            };
            let limit = match k.requests_per_second {
                None => None,
                Some(n) => {
                    let per_second = std::num::NonZeroU32::new(n).ok_or_else(|| {
                        bad(format!(
                            "key {:?}: requests_per_second must be at least 1",
                            k.id
                        ))
                    })?;
                    Some((
                        n,
                        governor::RateLimiter::direct(governor::Quota::per_second(per_second)),
                    ))
                }
            };
            Ok(Key {
                id: k.id,
                digest,
                role: k.role,
                scope,
                limit,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_file(body: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vargid-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.toml", body.len()));
        std::fs::write(&path, body).unwrap();
        path
    }

    fn bearer(key: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", format!("Bearer {key}").parse().unwrap());
        m
    }

    #[test]
    fn keys_are_checked_by_digest_role_and_scope() {
        let body = format!(
            "[[keys]]\nid = \"reader\"\nsha256 = \"{}\"\nrole = \"read\"\ngalleries = [\"a\"]\n",
            key_digest_hex("s3cret")
        );
        let auth = Authenticator::load(Some(&keys_file(&body))).unwrap();
        let caller = auth.authenticate(&bearer("s3cret")).unwrap();
        assert_eq!(caller.key_id.as_deref(), Some("reader"));
        assert!(caller.require("Identify", Role::Read).is_ok());
        let denied = caller.require("Enroll", Role::Write).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(caller.gallery("a").is_ok());
        assert_eq!(
            caller.gallery("b").unwrap_err().code(),
            tonic::Code::NotFound
        );
        assert_eq!(
            auth.authenticate(&bearer("wrong")).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            auth.authenticate(&MetadataMap::new()).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn rate_limit_per_key() {
        let body = format!(
            "[[keys]]\nid = \"slow\"\nsha256 = \"{}\"\nrole = \"read\"\ngalleries = [\"*\"]\nrequests_per_second = 3\n",
            key_digest_hex("slow-key")
        );
        let auth = Authenticator::load(Some(&keys_file(&body))).unwrap();
        let codes: Vec<_> = (0..10)
            .map(|_| {
                auth.authenticate(&bearer("slow-key"))
                    .map(|_| ())
                    .map_err(|s| s.code())
            })
            .collect();
        assert_eq!(codes.iter().filter(|c| c.is_ok()).count(), 3, "{codes:?}");
        assert!(codes.contains(&Err(tonic::Code::ResourceExhausted)));
    }

    #[test]
    fn bad_files_are_refused() {
        for body in [
            "[[keys]]\nid = \"x\"\nsha256 = \"abc\"\nrole = \"read\"\ngalleries = [\"*\"]\n",
            "[[keys]]\nid = \"x\"\nsha256 = \"00\"\nrole = \"root\"\ngalleries = [\"*\"]\n",
        ] {
            assert!(
                Authenticator::load(Some(&keys_file(body))).is_err(),
                "{body}"
            );
        }
    }
}
