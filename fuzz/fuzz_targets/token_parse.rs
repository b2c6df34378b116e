//! `Token::parse` (every kind) and `TokenId::parse` on arbitrary input.
//!
//! Invariants, for any string `s`:
//! - nothing panics;
//! - a parsed token has the expected kind and `reveal()`s to exactly `s`, and its
//!   `Debug` never shows the secret body;
//! - `s` parses as at most one kind; under another kind it is `WrongKind`, and
//!   with its prefix swapped for another kind's it is `BadChecksum` (the CRC
//!   covers the prefix, and CRC-32 detects every change confined to 32 bits);
//! - the error is `Malformed` for a wrong length, `WrongKind` for a wrong prefix;
//! - a parsed `TokenId` prints back to exactly `s`.
//!
//! The first byte picks a mode: `0` forges a valid token from the input's bytes
//! and applies one character edit (so the accepting path is reached at all:
//! random strings never pass the CRC); anything else parses the rest as text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionguard_core::token::TOKEN_LEN;
use sessionguard_core::{Token, TokenError, TokenId, TokenKind};

const KINDS: [TokenKind; 3] = [TokenKind::Session, TokenKind::Refresh, TokenKind::ApiToken];
const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0, rest)) => forged(rest),
        Some((_, rest)) => match std::str::from_utf8(rest) {
            Ok(s) => check_text(s),
            Err(_) => check_text(&String::from_utf8_lossy(rest)),
        },
        None => check_text(""),
    }
});

/// A valid token built from the input (kind, 16 id bytes, 32 verifier bytes),
/// then one character replaced: the original must parse back to itself, any
/// edited version must be refused.
fn forged(data: &[u8]) {
    if data.len() < 1 + 16 + 32 + 2 {
        return;
    }
    let kind = KINDS[usize::from(data[0]) % KINDS.len()];
    let id = TokenId::from_bytes(data[1..17].try_into().expect("16 bytes"));
    let verifier: [u8; 32] = data[17..49].try_into().expect("32 bytes");
    let token = Token::from_parts(kind, id, verifier);
    let text = token.reveal();
    check_text(&text);
    let parsed = Token::parse(&text, kind).expect("a minted token parses");
    assert_eq!(parsed.id(), id);
    assert!(parsed.verify(&token.verifier_hash()));

    // One edit: position and replacement character from the input.
    let pos = usize::from(data[49]) % TOKEN_LEN;
    let mut edited = text.as_bytes().to_vec();
    edited[pos] = match data[50] {
        b @ 0..=63 => BASE64URL[usize::from(b)],
        b => b,
    };
    if let Ok(edited) = String::from_utf8(edited) {
        check_text(&edited);
        if edited != *text {
            assert!(
                Token::parse(&edited, kind).is_err(),
                "a one-character edit at {pos} of a valid token was accepted: {edited:?}"
            );
        }
    }
}

fn check_text(s: &str) {
    let mut accepted = None;
    for kind in KINDS {
        let result = Token::parse(s, kind);
        match &result {
            Ok(token) => {
                assert!(accepted.is_none(), "{s:?} parsed as two kinds");
                accepted = Some(kind);
                assert_eq!(token.kind(), kind);
                assert_eq!(
                    *token.reveal(),
                    s,
                    "a parsed token re-serialises to its input"
                );
                let debug = format!("{token:?}");
                assert!(!debug.contains(&s[4..]), "Debug shows the token body");
                check_prefix_swaps(s, kind);
            }
            Err(e) => {
                if s.len() != TOKEN_LEN {
                    assert_eq!(*e, TokenError::Malformed, "{s:?}");
                } else if !s.as_bytes().starts_with(kind.prefix().as_bytes()) {
                    assert_eq!(*e, TokenError::WrongKind, "{s:?}");
                }
            }
        }
    }

    if let Ok(id) = TokenId::parse(s) {
        assert_eq!(s.len(), TokenId::TEXT_LEN);
        assert_eq!(id.to_string(), s, "a parsed id prints back to its input");
    }
}

/// `s` is a valid token of `kind`: every other kind refuses it, also with the
/// prefix replaced by its own.
fn check_prefix_swaps(s: &str, kind: TokenKind) {
    for other in KINDS.into_iter().filter(|&k| k != kind) {
        assert_eq!(
            Token::parse(s, other).unwrap_err(),
            TokenError::WrongKind,
            "a {kind:?} token under {other:?}"
        );
        let swapped = format!("{}{}", other.prefix(), &s[4..]);
        assert_eq!(
            Token::parse(&swapped, other).unwrap_err(),
            TokenError::BadChecksum,
            "a {kind:?} token relabelled as {other:?}"
        );
    }
}
