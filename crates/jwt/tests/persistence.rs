//! The key file: atomic save, load-or-create, file mode, and no private key
//! material in `Debug` output or in the JWKS.

use std::fs;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use serde_json::Value;
use sessionguard_core::{SessionId, Timestamp};
use sessionguard_jwt::{AccessClaims, Algorithm, JwtError, KeySet, Verifier};

const ISS: &str = "https://auth.example";
const AUD: &str = "https://api.example";

fn at(secs: i64) -> Timestamp {
    Timestamp::from_millis(secs * 1000)
}

fn token(keys: &KeySet, now: Timestamp) -> String {
    let claims = AccessClaims::new(
        ISS,
        "u_alice",
        AUD,
        SessionId::random(),
        now,
        Duration::from_secs(300),
    );
    keys.sign(&claims).unwrap()
}

fn kids(keys: &KeySet) -> Vec<String> {
    keys.keys().map(|k| k.kid().to_string()).collect()
}

#[test]
fn load_or_create_creates_then_loads_the_same_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwt-keys.json");

    let mut keys = KeySet::load_or_create(&path, Algorithm::EdDSA, at(100)).unwrap();
    assert!(path.exists());
    let first = token(&keys, at(100));
    keys.rotate(Algorithm::ES256, at(200));
    let second = token(&keys, at(200));
    keys.save(&path).unwrap();

    // The algorithm argument only matters when there is no file.
    let loaded = KeySet::load_or_create(&path, Algorithm::EdDSA, at(300)).unwrap();
    assert_eq!(kids(&loaded), kids(&keys));
    assert_eq!(loaded.active().alg(), Algorithm::ES256);
    assert_eq!(loaded.active().created_at(), at(200));
    assert_eq!(loaded.jwks(), keys.jwks());

    let verifier = Verifier::new(ISS, AUD);
    assert!(verifier.verify(&loaded, &first, at(201)).is_ok());
    assert!(verifier.verify(&loaded, &second, at(201)).is_ok());
    // And the loaded set signs tokens that the original verifies.
    assert!(
        verifier
            .verify(&keys, &token(&loaded, at(201)), at(201))
            .is_ok()
    );

    // No temporary file is left behind.
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["jwt-keys.json"]);
}

#[test]
fn load_or_create_never_replaces_an_unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwt-keys.json");
    fs::write(&path, "{\"version\": 1, \"keys\": []}").unwrap();
    assert!(matches!(
        KeySet::load_or_create(&path, Algorithm::EdDSA, at(0)),
        Err(JwtError::InvalidKeyFile(_))
    ));
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "{\"version\": 1, \"keys\": []}"
    );
}

#[test]
fn save_into_a_missing_directory_fails_with_io() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeySet::generate(Algorithm::EdDSA, at(0));
    assert!(matches!(
        keys.save(dir.path().join("missing").join("keys.json")),
        Err(JwtError::Io(_))
    ));
    assert!(matches!(
        KeySet::load_or_create(
            dir.path().join("missing/keys.json"),
            Algorithm::EdDSA,
            at(0)
        ),
        Err(JwtError::Io(_))
    ));
}

#[cfg(unix)]
#[test]
fn key_file_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwt-keys.json");
    let keys = KeySet::load_or_create(&path, Algorithm::EdDSA, at(0)).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A save over an existing file (even one that was too open) leaves it 0600.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    keys.save(&path).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn debug_and_jwks_hold_no_private_key_material() {
    let mut keys = KeySet::generate(Algorithm::EdDSA, at(0));
    keys.rotate(Algorithm::ES256, at(1));
    let secret = keys.to_json_secret();
    let doc: Value = serde_json::from_str(&secret).unwrap();

    let debug = format!("{keys:?} {:?}", keys.active());
    let jwks = keys.jwks().to_string();
    for key in doc["keys"].as_array().unwrap() {
        let pkcs8_b64 = key["pkcs8"].as_str().unwrap();
        let der = URL_SAFE_NO_PAD.decode(pkcs8_b64).unwrap();
        let private = private_bytes(&der);
        let mut needles = vec![pkcs8_b64.to_owned(), STANDARD.encode(&der), hex(private)];
        // Any 16-character run of the private bytes' base64, at every alignment.
        for skip in 0..3 {
            for engine in [URL_SAFE_NO_PAD, STANDARD_NO_PAD] {
                let encoded = engine.encode(&private[skip..]);
                needles.extend(
                    encoded
                        .as_bytes()
                        .windows(16)
                        .map(|w| String::from_utf8(w.to_vec()).unwrap()),
                );
            }
        }
        for needle in &needles {
            assert!(!debug.contains(needle.as_str()), "Debug leaks key material");
            assert!(!jwks.contains(needle.as_str()), "JWKS leaks key material");
        }
    }
    for k in keys.keys() {
        assert_eq!(
            format!("{k:?}"),
            format!(
                "SigningKey {{ kid: KeyId({:?}), alg: {:?}, .. }}",
                k.kid().as_str(),
                k.alg()
            )
        );
    }
    for jwk in keys.jwks()["keys"].as_array().unwrap() {
        assert!(jwk.get("d").is_none());
    }
}

/// The 32 private bytes in a PKCS#8 document: the Ed25519 seed or the P-256
/// scalar, each the first `OCTET STRING` of 32 bytes (`04 20`) in the DER.
fn private_bytes(der: &[u8]) -> &[u8] {
    let at = der
        .windows(2)
        .position(|w| w == [0x04, 0x20])
        .expect("a 32-byte private key in the PKCS#8 document");
    &der[at + 2..at + 34]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
