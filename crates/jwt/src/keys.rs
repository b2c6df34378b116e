//! Signing keys, the key set that rotates them, its JWKS and its key file.
//!
//! A [`SigningKey`] is one private key for one [`Algorithm`], named by a random
//! [`KeyId`]. A [`KeySet`] holds the active key, which signs, and the retired
//! keys, which only verify until every token they signed has expired. Private key
//! material is kept as PKCS#8 DER in zeroizing memory, never shown by `Debug`, and
//! leaves the process only through [`KeySet::to_json_secret`] / [`KeySet::save`].

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
use jsonwebtoken::jwk::EllipticCurve;
use jsonwebtoken::{DecodingKey, EncodingKey};
use p256::pkcs8::EncodePrivateKey as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sessionguard_core::Timestamp;
use zeroize::Zeroizing;

use crate::JwtError;
use crate::claims::AccessClaims;

/// A signature algorithm. Nothing else is ever accepted: there is no `none`, no
/// HMAC and no RSA here (see [the crate docs](crate#algorithm-pinning)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Algorithm {
    /// EdDSA over Ed25519 (RFC 8037). The default: small keys and signatures,
    /// deterministic, no nonce to get wrong.
    #[default]
    EdDSA,
    /// ECDSA over P-256 with SHA-256 (RFC 7518 §3.4), for verifiers that lack
    /// Ed25519.
    ES256,
}

impl Algorithm {
    /// The JOSE name of the algorithm, as in a JWT header or a JWK's `alg`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::EdDSA => "EdDSA",
            Algorithm::ES256 => "ES256",
        }
    }

    pub(crate) const fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = JwtError;

    /// Parses a JOSE algorithm name, exactly and case-sensitively (RFC 7515
    /// §4.1.1): `EdDSA` or `ES256`; anything else is
    /// [`JwtError::UnsupportedAlgorithm`].
    fn from_str(s: &str) -> Result<Self, JwtError> {
        match s {
            "EdDSA" => Ok(Algorithm::EdDSA),
            "ES256" => Ok(Algorithm::ES256),
            _ => Err(JwtError::UnsupportedAlgorithm),
        }
    }
}

/// A key's id (`kid`): 1 to [`KeyId::MAX_LEN`] characters of `[A-Za-z0-9_-]`.
///
/// Keys made here get 22 random characters (128 bits). The alphabet has no `.`,
/// `/`, `\`, `:` or `%`, so a `kid` can never be a path or a URL.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(Box<str>);

impl KeyId {
    /// Longest accepted id, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Validates `s` as a key id; [`JwtError::InvalidKeyId`] if it is empty, too
    /// long, or has a character outside `[A-Za-z0-9_-]`.
    pub fn parse(s: &str) -> Result<Self, JwtError> {
        if is_valid_kid(s) {
            Ok(KeyId(s.into()))
        } else {
            Err(JwtError::InvalidKeyId)
        }
    }

    /// A fresh id: 16 bytes from the OS CSPRNG as 22 characters of base64url.
    fn random() -> Self {
        let mut b = [0u8; 16];
        fill_random(&mut b);
        KeyId(URL_SAFE_NO_PAD.encode(b).into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `s` is 1 to 64 characters of `[A-Za-z0-9_-]`. Checked on untrusted
/// headers before any lookup.
pub(crate) fn is_valid_kid(s: &str) -> bool {
    (1..=KeyId::MAX_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({:?})", &*self.0)
    }
}

/// The public half of a key, as raw bytes.
#[derive(Clone, PartialEq, Eq)]
enum PublicKey {
    /// The 32-byte Ed25519 point.
    Ed25519 { x: [u8; 32] },
    /// The affine coordinates of the P-256 point, 32 bytes each.
    P256 { x: [u8; 32], y: [u8; 32] },
}

/// One private signing key: its [`KeyId`], its [`Algorithm`], when it was created
/// and, once rotated out, when it was retired.
///
/// The private key is held as PKCS#8 DER in memory that is zeroized on drop. It
/// cannot be read through this type; `Debug` shows only `kid` and `alg`.
pub struct SigningKey {
    kid: KeyId,
    alg: Algorithm,
    created_at: Timestamp,
    retired_at: Option<Timestamp>,
    pkcs8: Zeroizing<Vec<u8>>,
    public: PublicKey,
    decoding: DecodingKey,
}

impl SigningKey {
    /// A fresh key for `alg`, from the OS CSPRNG.
    fn generate(alg: Algorithm, now: Timestamp) -> Self {
        let document = match alg {
            Algorithm::EdDSA => {
                let mut seed = Zeroizing::new([0u8; 32]);
                fill_random(&mut seed[..]);
                ed25519_dalek::SigningKey::from_bytes(&seed)
                    .to_pkcs8_der()
                    .expect("an Ed25519 key always encodes as PKCS#8")
            }
            Algorithm::ES256 => loop {
                let mut scalar = Zeroizing::new([0u8; 32]);
                fill_random(&mut scalar[..]);
                // Fails only for 0 or a value >= the group order (probability ~2^-32).
                if let Ok(secret) = p256::SecretKey::from_slice(&scalar[..]) {
                    break secret
                        .to_pkcs8_der()
                        .expect("a P-256 key always encodes as PKCS#8");
                }
            },
        };
        let pkcs8 = Zeroizing::new(document.as_bytes().to_vec());
        SigningKey::from_pkcs8(KeyId::random(), alg, now, None, pkcs8)
            .expect("a freshly generated key is valid PKCS#8 for its algorithm")
    }

    /// Builds a key from its PKCS#8 DER, deriving (and so checking) the public key
    /// with the same backend that will sign with it.
    fn from_pkcs8(
        kid: KeyId,
        alg: Algorithm,
        created_at: Timestamp,
        retired_at: Option<Timestamp>,
        pkcs8: Zeroizing<Vec<u8>>,
    ) -> Result<Self, JwtError> {
        let utils = &DEFAULT_PROVIDER.key_utils;
        let bad = JwtError::InvalidKeyFile("a private key is not valid PKCS#8 for its algorithm");
        let public = match alg {
            Algorithm::EdDSA => {
                let x = (utils.ed_pub_components_from_private_key)(&pkcs8, &EllipticCurve::Ed25519)
                    .map_err(|_| bad)?;
                PublicKey::Ed25519 {
                    x: x.as_slice().try_into().map_err(|_| {
                        JwtError::InvalidKeyFile("an Ed25519 public key is not 32 bytes")
                    })?,
                }
            }
            Algorithm::ES256 => {
                let (curve, x, y) = (utils.ec_pub_components_from_private_key)(
                    &pkcs8,
                    jsonwebtoken::Algorithm::ES256,
                )
                .map_err(|_| bad)?;
                let wrong = || JwtError::InvalidKeyFile("an ES256 key is not on P-256");
                if curve != EllipticCurve::P256 {
                    return Err(wrong());
                }
                PublicKey::P256 {
                    x: x.as_slice().try_into().map_err(|_| wrong())?,
                    y: y.as_slice().try_into().map_err(|_| wrong())?,
                }
            }
        };
        let decoding = match &public {
            PublicKey::Ed25519 { x } => DecodingKey::from_ed_der(x),
            PublicKey::P256 { x, y } => {
                let mut sec1 = Vec::with_capacity(65);
                sec1.push(0x04);
                sec1.extend_from_slice(x);
                sec1.extend_from_slice(y);
                DecodingKey::from_ec_der(&sec1)
            }
        };
        Ok(SigningKey {
            kid,
            alg,
            created_at,
            retired_at,
            pkcs8,
            public,
            decoding,
        })
    }

    /// The key's id, sent as the `kid` of every token it signs.
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    /// The one algorithm this key signs and verifies with.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// When the key was created.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// When the key was rotated out, if it was. A retired key verifies but never
    /// signs.
    pub fn retired_at(&self) -> Option<Timestamp> {
        self.retired_at
    }

    /// The public key as a JWK (RFC 7517, with RFC 8037 for Ed25519): `kty`,
    /// `crv`, `x` (and `y` for P-256), `kid`, `alg` and `use: "sig"`.
    pub fn jwk(&self) -> serde_json::Value {
        match &self.public {
            PublicKey::Ed25519 { x } => json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(x),
                "kid": self.kid.as_str(),
                "alg": self.alg.as_str(),
                "use": "sig",
            }),
            PublicKey::P256 { x, y } => json!({
                "kty": "EC",
                "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(x),
                "y": URL_SAFE_NO_PAD.encode(y),
                "kid": self.kid.as_str(),
                "alg": self.alg.as_str(),
                "use": "sig",
            }),
        }
    }

    /// Signs `message` (the JWS signing input) with this key's algorithm.
    pub(crate) fn sign_message(&self, message: &[u8]) -> Result<Vec<u8>, JwtError> {
        let encoding = match self.alg {
            Algorithm::EdDSA => EncodingKey::from_ed_der(&self.pkcs8),
            Algorithm::ES256 => EncodingKey::from_ec_der(&self.pkcs8),
        };
        // The backend is named explicitly rather than taken from jsonwebtoken's
        // process-wide default, which another crate's feature choice could change.
        let signer = (DEFAULT_PROVIDER.signer_factory)(&self.alg.to_jsonwebtoken(), &encoding)
            .map_err(|_| JwtError::Signing)?;
        signer.try_sign(message).map_err(|_| JwtError::Signing)
    }

    /// Feeds the public key's bytes to `h`.
    pub(crate) fn digest_public(&self, h: &mut sha2::Sha256) {
        use sha2::Digest as _;
        match &self.public {
            PublicKey::Ed25519 { x } => h.update(x),
            PublicKey::P256 { x, y } => {
                h.update(x);
                h.update(y);
            }
        }
    }

    /// Whether `signature` is this key's signature of `message`, with this key's
    /// algorithm and no other.
    pub(crate) fn verify_message(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(verifier) =
            (DEFAULT_PROVIDER.verifier_factory)(&self.alg.to_jsonwebtoken(), &self.decoding)
        else {
            return false;
        };
        verifier.verify(message, &signature.to_vec()).is_ok()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The active signing key plus the retired keys still needed to verify tokens
/// they signed (see [rotation](crate#rotation-and-the-retention-of-retired-keys)).
///
/// ```
/// use std::time::Duration;
/// use sessionguard_core::Timestamp;
/// use sessionguard_jwt::{Algorithm, KeySet};
///
/// let t0 = Timestamp::from_millis(1_800_000_000_000);
/// let max_ttl = Duration::from_secs(900);
/// let mut keys = KeySet::generate(Algorithm::EdDSA, t0);
/// let first = keys.active().kid().clone();
///
/// keys.rotate(Algorithm::EdDSA, t0);
/// assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 2);
/// assert!(keys.get(first.as_str()).is_some());
///
/// assert_eq!(keys.prune(t0.saturating_add(max_ttl), max_ttl), 1);
/// assert!(keys.get(first.as_str()).is_none());
/// ```
pub struct KeySet {
    active: SigningKey,
    /// Oldest first.
    retired: Vec<SigningKey>,
}

/// Version of the key file format written by [`KeySet::to_json_secret`].
const KEY_FILE_VERSION: u32 = 1;

impl KeySet {
    /// A key set with one fresh key for `alg`, created at `now`.
    pub fn generate(alg: Algorithm, now: Timestamp) -> Self {
        KeySet {
            active: SigningKey::generate(alg, now),
            retired: Vec::new(),
        }
    }

    /// Makes a fresh key for `alg` the active one. The previous active key is
    /// retired at `now`: it signs no more, but stays in the set (and in the JWKS)
    /// to verify the tokens it signed, until [`KeySet::prune`] drops it.
    pub fn rotate(&mut self, alg: Algorithm, now: Timestamp) {
        let mut old = std::mem::replace(&mut self.active, SigningKey::generate(alg, now));
        old.retired_at = Some(now);
        self.retired.push(old);
    }

    /// Drops every retired key whose tokens have all expired, that is every key
    /// with `retired_at + max_token_ttl <= now`, and returns how many were dropped.
    /// `max_token_ttl` must be at least the lifetime of any token signed: a key
    /// pruned earlier makes its still-unexpired tokens fail with
    /// [`JwtError::UnknownKey`]. The active key is never dropped.
    pub fn prune(&mut self, now: Timestamp, max_token_ttl: Duration) -> usize {
        let before = self.retired.len();
        self.retired.retain(|k| {
            k.retired_at
                .is_none_or(|retired| retired.saturating_add(max_token_ttl) > now)
        });
        before - self.retired.len()
    }

    /// The key that signs.
    pub fn active(&self) -> &SigningKey {
        &self.active
    }

    /// Every key in the set: the active one first, then the retired ones from the
    /// most recently retired.
    pub fn keys(&self) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.active).chain(self.retired.iter().rev())
    }

    /// The key named `kid`, active or retired.
    pub fn get(&self, kid: &str) -> Option<&SigningKey> {
        self.keys().find(|k| k.kid.as_str() == kid)
    }

    /// The public JWKS document (RFC 7517 §5): `{"keys": [...]}` with one JWK per
    /// key in [`KeySet::keys`] order. It holds public keys only. Serve it at
    /// `/.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        json!({ "keys": self.keys().map(SigningKey::jwk).collect::<Vec<_>>() })
    }

    /// Signs `claims` with the active key: a compact JWS whose header is
    /// `{"alg", "typ": "at+jwt", "kid"}`.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, JwtError> {
        #[derive(Serialize)]
        struct Header<'a> {
            alg: &'static str,
            typ: &'static str,
            kid: &'a str,
        }
        let key = &self.active;
        let header = serde_json::to_vec(&Header {
            alg: key.alg.as_str(),
            typ: "at+jwt",
            kid: key.kid.as_str(),
        })
        .map_err(|_| JwtError::Signing)?;
        let payload = serde_json::to_vec(claims).map_err(|_| JwtError::Signing)?;
        sign_compact(key, &header, &payload)
    }

    /// The whole key set, private keys included, as a versioned JSON document:
    ///
    /// ```text
    /// {"version": 1, "keys": [{"kid", "alg", "created_at", "retired_at", "pkcs8"}, ...]}
    /// ```
    ///
    /// The first key is the active one; times are milliseconds since the Unix
    /// epoch; `pkcs8` is the PKCS#8 DER private key in unpadded base64url. Treat
    /// the result as a secret: write it only to a file of mode 0600 (as
    /// [`KeySet::save`] does). The returned string is zeroized when dropped.
    pub fn to_json_secret(&self) -> Zeroizing<String> {
        #[derive(Serialize)]
        struct File<'a> {
            version: u32,
            keys: Vec<Entry<'a>>,
        }
        #[derive(Serialize)]
        struct Entry<'a> {
            kid: &'a str,
            alg: Algorithm,
            created_at: i64,
            retired_at: Option<i64>,
            pkcs8: &'a str,
        }
        let encoded: Vec<(&SigningKey, Zeroizing<String>)> = std::iter::once(&self.active)
            .chain(self.retired.iter())
            .map(|k| (k, Zeroizing::new(URL_SAFE_NO_PAD.encode(&*k.pkcs8))))
            .collect();
        let file = File {
            version: KEY_FILE_VERSION,
            keys: encoded
                .iter()
                .map(|(k, pkcs8)| Entry {
                    kid: k.kid.as_str(),
                    alg: k.alg,
                    created_at: k.created_at.as_millis(),
                    retired_at: k.retired_at.map(Timestamp::as_millis),
                    pkcs8: pkcs8.as_str(),
                })
                .collect(),
        };
        // Room for everything up front, so that the buffer is never reallocated and
        // no unzeroized copy of a key is left behind in freed memory.
        let capacity = 64 + encoded.iter().map(|(_, p)| p.len() + 256).sum::<usize>();
        let mut buf = Zeroizing::new(Vec::with_capacity(capacity));
        serde_json::to_writer_pretty(&mut *buf, &file)
            .expect("serialising plain strings and numbers to memory cannot fail");
        buf.push(b'\n');
        Zeroizing::new(
            String::from_utf8(std::mem::take(&mut *buf)).expect("serde_json writes UTF-8"),
        )
    }

    /// Reads a document written by [`KeySet::to_json_secret`]. Every key is
    /// checked (valid `kid`, no duplicate, valid PKCS#8 for its algorithm, the
    /// first one active and the others retired); any failure is
    /// [`JwtError::InvalidKeyFile`] with a reason that never quotes the input.
    pub fn from_json_secret(json: &str) -> Result<Self, JwtError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            version: u32,
            keys: Vec<Entry>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Entry {
            kid: String,
            alg: Algorithm,
            created_at: i64,
            retired_at: Option<i64>,
            // Zeroized on drop, also when a later entry fails to parse.
            pkcs8: Zeroizing<String>,
        }
        // serde_json's messages can quote input values: never pass them on.
        let file: File = serde_json::from_str(json)
            .map_err(|_| JwtError::InvalidKeyFile("not a key set document"))?;
        if file.version != KEY_FILE_VERSION {
            return Err(JwtError::InvalidKeyFile("unsupported key file version"));
        }
        let mut keys = Vec::with_capacity(file.keys.len());
        for (i, entry) in file.keys.into_iter().enumerate() {
            let kid = KeyId::parse(&entry.kid)
                .map_err(|_| JwtError::InvalidKeyFile("a key id is malformed"))?;
            if keys.iter().any(|k: &SigningKey| k.kid == kid) {
                return Err(JwtError::InvalidKeyFile("two keys have the same id"));
            }
            let retired_at = entry.retired_at.map(Timestamp::from_millis);
            if (i == 0) != retired_at.is_none() {
                return Err(JwtError::InvalidKeyFile(
                    "the first key must be active and the others retired",
                ));
            }
            let pkcs8 = Zeroizing::new(
                URL_SAFE_NO_PAD
                    .decode(entry.pkcs8.as_bytes())
                    .map_err(|_| JwtError::InvalidKeyFile("a private key is not base64url"))?,
            );
            keys.push(SigningKey::from_pkcs8(
                kid,
                entry.alg,
                Timestamp::from_millis(entry.created_at),
                retired_at,
                pkcs8,
            )?);
        }
        let mut keys = keys.into_iter();
        let active = keys
            .next()
            .ok_or(JwtError::InvalidKeyFile("the key set is empty"))?;
        Ok(KeySet {
            active,
            retired: keys.collect(),
        })
    }

    /// Writes the key set to `path` atomically: to a new temporary file in the
    /// same directory, created with mode 0600 on Unix, flushed to disk, then
    /// renamed over `path`. Blocking; meant for start-up and rotation.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), JwtError> {
        let path = path.as_ref();
        let tmp = write_temp(path, &self.to_json_secret())?;
        let renamed = fs::rename(&tmp, path);
        if renamed.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        renamed?;
        sync_dir(path)
    }

    /// Loads the key set at `path`, or, if there is no file there, generates one
    /// for `alg` at `now` and writes it (mode 0600). Creation never replaces a file
    /// that appeared meanwhile (it is linked into place, not renamed): when two
    /// processes race, both end up with the one key set on disk.
    pub fn load_or_create(
        path: impl AsRef<Path>,
        alg: Algorithm,
        now: Timestamp,
    ) -> Result<Self, JwtError> {
        let path = path.as_ref();
        match read_secret(path) {
            Ok(json) => return KeySet::from_json_secret(&json),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let keys = KeySet::generate(alg, now);
        let tmp = write_temp(path, &keys.to_json_secret())?;
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_dir(path)?;
                Ok(keys)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                KeySet::from_json_secret(&read_secret(path)?)
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("active", &self.active)
            .field("retired", &self.retired)
            .finish()
    }
}

/// `header.payload.signature`, each part base64url without padding, signed by `key`.
pub(crate) fn sign_compact(
    key: &SigningKey,
    header: &[u8],
    payload: &[u8],
) -> Result<String, JwtError> {
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = key.sign_message(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}

/// Reads a whole file into zeroizing memory.
fn read_secret(path: &Path) -> io::Result<Zeroizing<String>> {
    fs::read_to_string(path).map(Zeroizing::new)
}

/// Writes `contents` to a new file beside `path` (mode 0600 on Unix), flushed to
/// disk, and returns its path.
fn write_temp(path: &Path, contents: &str) -> Result<std::path::PathBuf, JwtError> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the key file path has no file name",
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", KeyId::random()));
    let tmp = path.with_file_name(tmp_name);

    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let written = options.open(&tmp).and_then(|mut file| {
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e.into());
    }
    Ok(tmp)
}

/// Makes a rename or link in `path`'s directory durable (Unix; a no-op elsewhere).
fn sync_dir(path: &Path) -> Result<(), JwtError> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn fill_random(buf: &mut [u8]) {
    // The OS CSPRNG failing is not recoverable: a predictable key would be worse
    // than stopping.
    getrandom::fill(buf).expect("the operating system's CSPRNG is unavailable");
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessionguard_core::SessionId;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_millis(secs * 1000)
    }

    #[test]
    fn key_sets_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<KeySet>();
        assert_send_sync::<SigningKey>();
    }

    #[test]
    fn algorithm_names_parse_exactly() {
        for alg in [Algorithm::EdDSA, Algorithm::ES256] {
            assert_eq!(alg.as_str().parse::<Algorithm>().unwrap(), alg);
            assert_eq!(alg.to_string(), alg.as_str());
        }
        assert_eq!(Algorithm::default(), Algorithm::EdDSA);
    }

    #[test]
    fn other_algorithm_names_fail_to_parse() {
        for bad in ["none", "eddsa", "ES384", "HS256", "RS256", "Ed25519", ""] {
            assert!(matches!(
                bad.parse::<Algorithm>(),
                Err(JwtError::UnsupportedAlgorithm)
            ));
        }
    }

    #[test]
    fn generated_kids_are_random_base64url() {
        let a = KeySet::generate(Algorithm::EdDSA, t(0));
        let b = KeySet::generate(Algorithm::EdDSA, t(0));
        let kid = a.active().kid().as_str();
        assert_eq!(kid.len(), 22);
        assert!(is_valid_kid(kid));
        assert_ne!(a.active().kid(), b.active().kid());
    }

    #[test]
    fn key_ids_reject_paths_and_junk() {
        for bad in [
            "",
            "../keys",
            "/etc/passwd",
            "a/b",
            "..\\x",
            "a.b",
            "https://evil.example/k",
            "%2e%2e",
            "kid with space",
            "é",
            &"a".repeat(65),
        ] {
            assert!(
                matches!(KeyId::parse(bad), Err(JwtError::InvalidKeyId)),
                "{bad:?}"
            );
        }
        assert!(KeyId::parse(&"a".repeat(64)).is_ok());
        assert!(KeyId::parse("Az09_-").is_ok());
    }

    #[test]
    fn jwk_has_public_parts_for_each_algorithm() {
        let ed = KeySet::generate(Algorithm::EdDSA, t(0));
        let jwk = ed.active().jwk();
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], ed.active().kid().as_str());
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert!(jwk.get("d").is_none());

        let ec = KeySet::generate(Algorithm::ES256, t(0));
        let jwk = ec.active().jwk();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["alg"], "ES256");
        for c in ["x", "y"] {
            assert_eq!(
                URL_SAFE_NO_PAD
                    .decode(jwk[c].as_str().unwrap())
                    .unwrap()
                    .len(),
                32
            );
        }
        assert!(jwk.get("d").is_none());
    }

    #[test]
    fn rotation_keeps_the_old_key_until_pruned() {
        let ttl = Duration::from_secs(600);
        let mut keys = KeySet::generate(Algorithm::EdDSA, t(100));
        let old = keys.active().kid().clone();
        keys.rotate(Algorithm::ES256, t(200));
        assert_eq!(keys.active().alg(), Algorithm::ES256);
        assert_eq!(keys.active().created_at(), t(200));
        assert_eq!(keys.active().retired_at(), None);
        assert_eq!(keys.get(old.as_str()).unwrap().retired_at(), Some(t(200)));
        assert_eq!(keys.keys().count(), 2);

        assert_eq!(
            keys.prune(t(799), ttl),
            0,
            "one second before retention ends"
        );
        assert!(keys.get(old.as_str()).is_some());
        assert_eq!(keys.prune(t(800), ttl), 1, "at retired_at + max_ttl");
        assert!(keys.get(old.as_str()).is_none());
        assert_eq!(keys.keys().count(), 1);
    }

    #[test]
    fn prune_never_drops_the_active_key() {
        let mut keys = KeySet::generate(Algorithm::EdDSA, t(0));
        assert_eq!(keys.prune(t(1_000_000), Duration::ZERO), 0);
        assert_eq!(keys.keys().count(), 1);
    }

    #[test]
    fn json_secret_round_trips() {
        let mut keys = KeySet::generate(Algorithm::EdDSA, t(1));
        keys.rotate(Algorithm::ES256, t(2));
        keys.rotate(Algorithm::EdDSA, t(3));
        let back = KeySet::from_json_secret(&keys.to_json_secret()).unwrap();
        let summary = |k: &KeySet| {
            k.keys()
                .map(|k| (k.kid().clone(), k.alg(), k.created_at(), k.retired_at()))
                .collect::<Vec<_>>()
        };
        assert_eq!(summary(&back), summary(&keys));
        assert_eq!(back.jwks(), keys.jwks());
        for (a, b) in keys.keys().zip(back.keys()) {
            assert_eq!(*a.pkcs8, *b.pkcs8);
        }
    }

    #[test]
    fn json_secret_rejects_bad_documents() {
        let keys = KeySet::generate(Algorithm::EdDSA, t(1));
        let good: serde_json::Value = serde_json::from_str(&keys.to_json_secret()).unwrap();
        let entry = good["keys"][0].clone();
        let mutate = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut doc = good.clone();
            f(&mut doc);
            doc.to_string()
        };
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "not a key set document"),
            ("[]".into(), "not a key set document"),
            (
                mutate(&|d| d["version"] = json!(2)),
                "unsupported key file version",
            ),
            (mutate(&|d| d["extra"] = json!(1)), "not a key set document"),
            (mutate(&|d| d["keys"] = json!([])), "the key set is empty"),
            (
                mutate(&|d| d["keys"][0]["kid"] = json!("../x")),
                "a key id is malformed",
            ),
            (
                mutate(&|d| d["keys"] = json!([entry.clone(), entry.clone()])),
                "two keys have the same id",
            ),
            (
                mutate(&|d| d["keys"][0]["retired_at"] = json!(5)),
                "the first key must be active and the others retired",
            ),
            (
                mutate(&|d| d["keys"][0]["pkcs8"] = json!("***")),
                "a private key is not base64url",
            ),
            (
                mutate(&|d| d["keys"][0]["pkcs8"] = json!("AAAA")),
                "a private key is not valid PKCS#8 for its algorithm",
            ),
            (
                mutate(&|d| d["keys"][0]["alg"] = json!("ES256")),
                "a private key is not valid PKCS#8 for its algorithm",
            ),
            (
                mutate(&|d| d["keys"][0]["alg"] = json!("HS256")),
                "not a key set document",
            ),
        ];
        for (doc, reason) in cases {
            match KeySet::from_json_secret(&doc) {
                Err(JwtError::InvalidKeyFile(r)) => assert_eq!(r, reason, "{doc}"),
                other => panic!("{doc}: expected InvalidKeyFile({reason}), got {other:?}"),
            }
        }
    }

    #[test]
    fn json_secret_errors_never_quote_the_key() {
        let keys = KeySet::generate(Algorithm::EdDSA, t(1));
        let doc: serde_json::Value = serde_json::from_str(&keys.to_json_secret()).unwrap();
        let pkcs8 = doc["keys"][0]["pkcs8"].as_str().unwrap().to_owned();
        // A type error that serde_json would describe by quoting the value.
        let mut bad = doc.clone();
        bad["keys"][0]["created_at"] = json!(pkcs8.clone());
        let err = KeySet::from_json_secret(&bad.to_string()).unwrap_err();
        assert!(!err.to_string().contains(&pkcs8));
        assert!(!format!("{err:?}").contains(&pkcs8));
    }

    #[test]
    fn signing_uses_the_active_key_only() {
        let mut keys = KeySet::generate(Algorithm::EdDSA, t(0));
        keys.rotate(Algorithm::EdDSA, t(10));
        let claims = AccessClaims::new("iss", "sub", "aud", SessionId::random(), t(10), {
            Duration::from_secs(60)
        });
        let token = keys.sign(&claims).unwrap();
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            header,
            json!({"alg": "EdDSA", "typ": "at+jwt", "kid": keys.active().kid().as_str()})
        );
    }

    #[test]
    fn a_signature_verifies_only_with_its_own_key() {
        for alg in [Algorithm::EdDSA, Algorithm::ES256] {
            let a = SigningKey::generate(alg, t(0));
            let b = SigningKey::generate(alg, t(0));
            let sig = a.sign_message(b"message").unwrap();
            assert!(a.verify_message(b"message", &sig));
            assert!(!a.verify_message(b"messagf", &sig));
            assert!(!b.verify_message(b"message", &sig));
            assert!(!a.verify_message(b"message", &[]));
        }
    }
}
