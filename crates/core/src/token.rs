//! The opaque token format (invariant 1).
//!
//! A token reads `<prefix><body>` where the prefix names its kind (`sgs_` session,
//! `sgr_` refresh, `sga_` API token) and the body is unpadded base64url of
//!
//! ```text
//! id (16 bytes, public selector) ‖ verifier (32 bytes, secret) ‖ CRC-32 (4 bytes, big endian)
//! ```
//!
//! The CRC covers the prefix, the id and the verifier, so a mistyped, truncated or
//! foreign string is rejected by [`Token::parse`] before any store lookup, and secret
//! scanners can recognise a leaked token offline. The id and the verifier come from
//! the operating system's CSPRNG (384 bits in all, 256 of them secret). Stores keep
//! only [`VerifierHash`] (SHA-256 of kind, id and verifier); comparison is constant
//! time. The verifier is zeroized on drop and never printed by `Debug`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

const ID_LEN: usize = 16;
const VERIFIER_LEN: usize = 32;
const CRC_LEN: usize = 4;
const RAW_LEN: usize = ID_LEN + VERIFIER_LEN + CRC_LEN;
/// Length of the base64url body: 52 bytes encode to 70 characters without padding.
const BODY_LEN: usize = (RAW_LEN * 4).div_ceil(3);
const PREFIX_LEN: usize = 4;
/// The exact length in bytes of every token this crate mints.
pub const TOKEN_LEN: usize = PREFIX_LEN + BODY_LEN;

/// What a token is for. Each kind has its own prefix, so a token of one kind is
/// never accepted where another is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenKind {
    /// A browser or bearer session token (`sgs_`).
    Session,
    /// A refresh token bound to a session (`sgr_`).
    Refresh,
    /// A user's personal API token (`sga_`).
    ApiToken,
}

impl TokenKind {
    /// The prefix that starts every token of this kind.
    pub const fn prefix(self) -> &'static str {
        match self {
            TokenKind::Session => "sgs_",
            TokenKind::Refresh => "sgr_",
            TokenKind::ApiToken => "sga_",
        }
    }

    const fn tag(self) -> u8 {
        match self {
            TokenKind::Session => 1,
            TokenKind::Refresh => 2,
            TokenKind::ApiToken => 3,
        }
    }
}

/// Why a string is not a token. Deliberately coarse: callers answer every case the
/// same way (`invalid_token`); the variants exist for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Wrong length or characters outside base64url.
    #[error("token is malformed")]
    Malformed,
    /// A well-formed token of another kind, or an unknown prefix.
    #[error("token has the wrong prefix")]
    WrongKind,
    /// The checksum does not match: a typo, truncation or forgery.
    #[error("token checksum does not match")]
    BadChecksum,
}

/// One of 65 536 groups of users. Every record of a user — sessions, refresh
/// tokens, API tokens — has an id in the user's shard (its first two bytes), so a
/// store can find all of a user's data from any of its ids, and keep it together
/// (a Redis Cluster hash slot) where atomic operations need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard(pub u16);

/// The public part of a token: 16 bytes that name a record in a store — the
/// owner's [`Shard`] and 14 random bytes.
///
/// Shown to users as 22 characters of base64url (for example in a list of their
/// sessions). Knowing an id grants nothing: the secret verifier is also needed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId([u8; ID_LEN]);

impl TokenId {
    /// Length of the textual form.
    pub const TEXT_LEN: usize = 22;

    /// A fresh id from the OS CSPRNG (in a random shard).
    pub fn random() -> Self {
        let mut b = [0u8; ID_LEN];
        fill_random(&mut b);
        TokenId(b)
    }

    /// A fresh id in `shard`: the shard's two bytes, then 112 random bits.
    pub fn random_in(shard: Shard) -> Self {
        let mut b = [0u8; ID_LEN];
        fill_random(&mut b);
        b[..2].copy_from_slice(&shard.0.to_be_bytes());
        TokenId(b)
    }

    /// The shard this id is in.
    pub const fn shard(&self) -> Shard {
        Shard(u16::from_be_bytes([self.0[0], self.0[1]]))
    }

    /// The raw bytes, for stores that key by bytes.
    pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// Rebuilds an id from bytes a store returned.
    pub const fn from_bytes(b: [u8; ID_LEN]) -> Self {
        TokenId(b)
    }

    /// Parses the 22-character textual form.
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        if s.len() != Self::TEXT_LEN {
            return Err(TokenError::Malformed);
        }
        let mut b = [0u8; ID_LEN];
        match URL_SAFE_NO_PAD.decode_slice(s, &mut b) {
            Ok(ID_LEN) => Ok(TokenId(b)),
            _ => Err(TokenError::Malformed),
        }
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; Self::TEXT_LEN];
        let n = URL_SAFE_NO_PAD
            .encode_slice(self.0, &mut buf)
            .expect("22 bytes hold the base64url of 16");
        f.write_str(std::str::from_utf8(&buf[..n]).expect("base64url is ASCII"))
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({self})")
    }
}

/// SHA-256 of a token's kind, id and verifier: what a store keeps instead of the
/// secret. A store dump therefore yields no usable token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifierHash([u8; 32]);

impl VerifierHash {
    /// Rebuilds a hash from bytes a store returned.
    pub const fn from_bytes(b: [u8; 32]) -> Self {
        VerifierHash(b)
    }

    /// The raw bytes, for stores.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &VerifierHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for VerifierHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerifierHash(..)")
    }
}

/// A parsed or freshly minted token. Holds the secret verifier: it is zeroized on
/// drop, omitted from `Debug`, and turned back into text only by [`Token::reveal`].
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Token {
    #[zeroize(skip)]
    kind: TokenKind,
    #[zeroize(skip)]
    id: TokenId,
    verifier: [u8; VERIFIER_LEN],
}

impl Token {
    /// Mints a new token of `kind` with a random id and verifier.
    pub fn generate(kind: TokenKind) -> Self {
        let mut verifier = [0u8; VERIFIER_LEN];
        fill_random(&mut verifier);
        Token {
            kind,
            id: TokenId::random(),
            verifier,
        }
    }

    /// Mints a new token of `kind` with a fresh id in `shard` (its owner's) and a
    /// random verifier.
    pub fn generate_in(kind: TokenKind, shard: Shard) -> Self {
        let mut verifier = [0u8; VERIFIER_LEN];
        fill_random(&mut verifier);
        Token {
            kind,
            id: TokenId::random_in(shard),
            verifier,
        }
    }

    /// A new token for the existing `id` with a fresh random verifier: a session
    /// keeps its id (its public selector) when its token is rotated.
    pub fn regenerate(kind: TokenKind, id: TokenId) -> Self {
        let mut verifier = [0u8; VERIFIER_LEN];
        fill_random(&mut verifier);
        Token { kind, id, verifier }
    }

    /// Assembles a token from its parts: for tools and tests (for example, to build a
    /// token that names a real id with a wrong verifier). Grants nothing that the
    /// documented format does not already allow.
    pub fn from_parts(kind: TokenKind, id: TokenId, verifier: [u8; VERIFIER_LEN]) -> Self {
        Token { kind, id, verifier }
    }

    /// Parses a token of the expected kind. Runs in time linear in the (bounded)
    /// input and touches no store; any failure means "not a token".
    pub fn parse(s: &str, expected: TokenKind) -> Result<Self, TokenError> {
        let bytes = s.as_bytes();
        if bytes.len() != TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (prefix, body) = bytes.split_at(PREFIX_LEN);
        if prefix != expected.prefix().as_bytes() {
            return Err(TokenError::WrongKind);
        }
        let mut raw = Zeroizing::new([0u8; RAW_LEN]);
        match URL_SAFE_NO_PAD.decode_slice(body, &mut raw[..]) {
            Ok(RAW_LEN) => {}
            _ => return Err(TokenError::Malformed),
        }
        let (payload, crc) = raw.split_at(ID_LEN + VERIFIER_LEN);
        if checksum(expected, payload).to_be_bytes() != crc {
            return Err(TokenError::BadChecksum);
        }
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&payload[..ID_LEN]);
        let mut verifier = [0u8; VERIFIER_LEN];
        verifier.copy_from_slice(&payload[ID_LEN..]);
        Ok(Token {
            kind: expected,
            id: TokenId(id),
            verifier,
        })
    }

    /// Seals `successor`'s verifier so that only a holder of `self` can open it
    /// again ([`Token::unseal`]): XOR with SHA-256 of a label, this token's verifier
    /// and the successor's id. A store keeps the result; without `self`'s verifier,
    /// which no store has, it reveals nothing.
    pub fn seal(&self, successor: &Token) -> [u8; VERIFIER_LEN] {
        let mut out = self.seal_key(successor.kind, successor.id);
        for (o, v) in out.iter_mut().zip(successor.verifier) {
            *o ^= v;
        }
        out
    }

    /// Opens what [`Token::seal`] sealed: the successor token of `kind` with `id`.
    pub fn unseal(&self, kind: TokenKind, id: TokenId, sealed: &[u8; VERIFIER_LEN]) -> Token {
        let mut verifier = self.seal_key(kind, id);
        for (v, s) in verifier.iter_mut().zip(sealed) {
            *v ^= s;
        }
        Token { kind, id, verifier }
    }

    fn seal_key(&self, kind: TokenKind, id: TokenId) -> [u8; VERIFIER_LEN] {
        let mut h = Sha256::new();
        h.update(b"sessionguard/seal/v1");
        h.update([self.kind.tag(), kind.tag()]);
        h.update(self.verifier);
        h.update(id.0);
        h.finalize().into()
    }

    /// The kind of this token.
    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// The public id (selector).
    pub fn id(&self) -> TokenId {
        self.id
    }

    /// The hash a store keeps for this token.
    pub fn verifier_hash(&self) -> VerifierHash {
        let mut h = Sha256::new();
        h.update(b"sessionguard/token/v1");
        h.update([self.kind.tag()]);
        h.update(self.id.0);
        h.update(self.verifier);
        VerifierHash(h.finalize().into())
    }

    /// Whether this token's verifier matches `stored`, in constant time.
    pub fn verify(&self, stored: &VerifierHash) -> bool {
        self.verifier_hash().ct_eq(stored)
    }

    /// The token's text, to hand to its holder once. The returned string is
    /// zeroized when dropped.
    pub fn reveal(&self) -> Zeroizing<String> {
        let mut raw = Zeroizing::new([0u8; RAW_LEN]);
        raw[..ID_LEN].copy_from_slice(&self.id.0);
        raw[ID_LEN..ID_LEN + VERIFIER_LEN].copy_from_slice(&self.verifier);
        let crc = checksum(self.kind, &raw[..ID_LEN + VERIFIER_LEN]);
        raw[ID_LEN + VERIFIER_LEN..].copy_from_slice(&crc.to_be_bytes());
        let mut out = Zeroizing::new(String::with_capacity(TOKEN_LEN));
        out.push_str(self.kind.prefix());
        URL_SAFE_NO_PAD.encode_string(&raw[..], &mut out);
        out
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("verifier", &"<redacted>")
            .finish()
    }
}

fn checksum(kind: TokenKind, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(kind.prefix().as_bytes());
    h.update(payload);
    h.finalize()
}

fn fill_random(buf: &mut [u8]) {
    // The OS CSPRNG failing is not recoverable: minting a predictable token would be
    // worse than stopping.
    getrandom::fill(buf).expect("the operating system's CSPRNG is unavailable");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_in_a_shard_keeps_it_and_stays_random() {
        let a = TokenId::random_in(Shard(0xBEEF));
        let b = TokenId::random_in(Shard(0xBEEF));
        assert_eq!(a.shard(), Shard(0xBEEF));
        assert_eq!(b.shard(), Shard(0xBEEF));
        assert_ne!(a, b);
        let t = Token::generate_in(TokenKind::Refresh, Shard(7));
        assert_eq!(t.id().shard(), Shard(7));
        let r = Token::regenerate(TokenKind::Refresh, t.id());
        assert_eq!(r.id(), t.id());
        assert!(!r.verify(&t.verifier_hash()), "a fresh verifier");
    }

    #[test]
    fn minted_token_round_trips() {
        let t = Token::generate(TokenKind::Session);
        let text = t.reveal();
        assert_eq!(text.len(), TOKEN_LEN);
        assert!(text.starts_with("sgs_"));
        let back = Token::parse(&text, TokenKind::Session).unwrap();
        assert_eq!(back.id(), t.id());
        assert!(back.verify(&t.verifier_hash()));
    }

    #[test]
    fn two_tokens_never_share_id_or_verifier() {
        let a = Token::generate(TokenKind::Session);
        let b = Token::generate(TokenKind::Session);
        assert_ne!(a.id(), b.id());
        assert!(!a.verify(&b.verifier_hash()));
    }

    #[test]
    fn other_kind_is_rejected_by_prefix() {
        let t = Token::generate(TokenKind::Refresh).reveal();
        assert_eq!(
            Token::parse(&t, TokenKind::Session).unwrap_err(),
            TokenError::WrongKind
        );
        // Swapping the prefix alone also breaks the checksum, which covers the prefix.
        let swapped = format!("sgs_{}", &t[4..]);
        assert_eq!(
            Token::parse(&swapped, TokenKind::Session).unwrap_err(),
            TokenError::BadChecksum
        );
    }

    #[test]
    fn single_character_change_fails_checksum() {
        let t = Token::generate(TokenKind::Session).reveal();
        let mut chars: Vec<char> = t.chars().collect();
        chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
        let bad: String = chars.into_iter().collect();
        assert_eq!(
            Token::parse(&bad, TokenKind::Session).unwrap_err(),
            TokenError::BadChecksum
        );
    }

    #[test]
    fn malformed_inputs_are_rejected() {
        let t = Token::generate(TokenKind::Session).reveal();
        for bad in [
            "",
            "sgs_",
            &t[..TOKEN_LEN - 1],
            &format!("{}A", &*t),
            &format!("sgs_{}", "!".repeat(BODY_LEN)),
            &format!("sgs_{}", "é".repeat(BODY_LEN / 2)),
        ] {
            assert!(Token::parse(bad, TokenKind::Session).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn non_canonical_trailing_bits_are_rejected() {
        // 52 bytes encode to 70 chars with 2 unused bits; a body whose last char sets
        // them must not alias a valid token.
        let t = Token::generate(TokenKind::Session).reveal();
        let last = t.as_bytes()[TOKEN_LEN - 1];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let pos = alphabet.iter().position(|&c| c == last).unwrap();
        let alias = alphabet[pos ^ 1] as char;
        let bad = format!("{}{}", &t[..TOKEN_LEN - 1], alias);
        assert!(Token::parse(&bad, TokenKind::Session).is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = Token::generate(TokenKind::Session);
        let text = t.reveal();
        let dbg = format!("{t:?}");
        assert!(dbg.contains("<redacted>"));
        assert!(!dbg.contains(&text[4..]));
        assert!(!format!("{:?}", t.verifier_hash()).contains(|c: char| c.is_ascii_digit()));
    }

    #[test]
    fn sealed_successor_opens_only_with_the_predecessor() {
        let old = Token::generate(TokenKind::Refresh);
        let new = Token::generate(TokenKind::Refresh);
        let sealed = old.seal(&new);
        let opened = old.unseal(TokenKind::Refresh, new.id(), &sealed);
        assert_eq!(*opened.reveal(), *new.reveal());
        let stranger = Token::generate(TokenKind::Refresh);
        let wrong = stranger.unseal(TokenKind::Refresh, new.id(), &sealed);
        assert!(!wrong.verify(&new.verifier_hash()));
        assert_ne!(sealed, new.verifier, "the sealed form is not the secret");
    }

    #[test]
    fn token_id_text_round_trips_and_rejects_junk() {
        let id = TokenId::random();
        assert_eq!(TokenId::parse(&id.to_string()).unwrap(), id);
        assert!(TokenId::parse("short").is_err());
        assert!(TokenId::parse(&"*".repeat(22)).is_err());
    }
}
