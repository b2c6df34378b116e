//! Statistics of collected session identifiers: the FIPS 140-2 randomness tests
//! (monobit, poker, runs, long run; §4.9.1 with Change Notice 1) over the bits
//! that vary, and a per-position effective-entropy estimate.
//!
//! Identifiers carry structure that is not randomness: a constant prefix
//! (`sgs_`), a per-user shard, a checksum, a timestamp. So:
//!
//! 0. A cookie value that is percent-encoded (`s%3A…` of express-session, a
//!    `%3D` of base64 padding) is decoded first ([`decoded`]): an encoded `+`
//!    or `/` takes three characters, which would shift the positions after it
//!    and mix `%` into the alphabet.
//! 1. Samples are compared position by position (those of the most common
//!    length). Positions that never change are constant structure; they add no
//!    entropy and are left out of everything below.
//! 2. The alphabet of the varying positions is recognised (hex, base32, base64 /
//!    base64url, or decimal, base36, base62 — or raw bytes). Power-of-two
//!    alphabets map each character to its bits; the others are read as one
//!    number per sample, of which the lowest `⌊n·log2 k⌋ − 8` bits are kept, so
//!    that the bias of the top bits of a non-power-of-two range does not fail a
//!    good identifier.
//! 3. The FIPS tests run over the bits that vary in earnest: a bit position is
//!    kept when each value appears in at least a quarter of the samples. Slowly
//!    moving bits (the high bits of a timestamp) are left to the estimate.
//! 4. The estimate sums, over positions, the Shannon entropy of the characters
//!    seen there (Miller–Madow corrected, capped at log2 of the alphabet). It
//!    cannot see correlations between positions (a checksum or a hash of a
//!    counter looks random): it is an upper bound for what a black box can
//!    measure, compared with ASVS's 64 bits (4.0 V3.2.2) and 128 bits (5.0
//!    V7.2.3).

use std::collections::HashMap;

/// `value` percent-decoded, when it contains a `%` escape and decodes to UTF-8;
/// otherwise `value` itself.
///
/// ```
/// use sessionguard_audit::entropy::decoded;
///
/// assert_eq!(decoded("s%3Aabc.d%2Be%2F"), "s:abc.d+e/");
/// assert_eq!(decoded("plain-token_123"), "plain-token_123");
/// assert_eq!(decoded("100%"), "100%");
/// ```
pub fn decoded(value: &str) -> std::borrow::Cow<'_, str> {
    let escaped = value
        .as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit());
    if !escaped {
        return value.into();
    }
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .unwrap_or(value.into())
}

/// FIPS 140-2 works on blocks of 20 000 bits.
pub const FIPS_BLOCK: usize = 20_000;

/// The alphabet of the varying positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    /// `0-9`.
    Decimal,
    /// `0-9a-f` (or upper case).
    Hex,
    /// `A-Z2-7`.
    Base32,
    /// `0-9a-z` (or upper case).
    Base36,
    /// `0-9A-Za-z`.
    Base62,
    /// base64 or base64url.
    Base64,
    /// Anything else: 8 bits a character.
    Bytes,
}

impl Alphabet {
    /// Number of symbols.
    pub fn size(self) -> u32 {
        match self {
            Alphabet::Decimal => 10,
            Alphabet::Hex => 16,
            Alphabet::Base32 => 32,
            Alphabet::Base36 => 36,
            Alphabet::Base62 => 62,
            Alphabet::Base64 => 64,
            Alphabet::Bytes => 256,
        }
    }

    /// A name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Alphabet::Decimal => "decimal",
            Alphabet::Hex => "hex",
            Alphabet::Base32 => "base32",
            Alphabet::Base36 => "base36",
            Alphabet::Base62 => "base62",
            Alphabet::Base64 => "base64",
            Alphabet::Bytes => "bytes",
        }
    }

    fn power_of_two(self) -> Option<u32> {
        match self {
            Alphabet::Hex => Some(4),
            Alphabet::Base32 => Some(5),
            Alphabet::Base64 => Some(6),
            Alphabet::Bytes => Some(8),
            _ => None,
        }
    }

    fn classify(chars: &[u8]) -> Alphabet {
        let all = |f: fn(u8) -> bool| chars.iter().all(|&c| f(c));
        if all(|c| c.is_ascii_digit()) {
            Alphabet::Decimal
        } else if all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
            || all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
        {
            Alphabet::Hex
        } else if all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
            || all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        {
            if all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c)) {
                Alphabet::Base32
            } else {
                Alphabet::Base36
            }
        } else if all(|c| c.is_ascii_alphanumeric()) {
            Alphabet::Base62
        } else if all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'+' | b'/')) {
            Alphabet::Base64
        } else {
            Alphabet::Bytes
        }
    }

    /// The symbol's value, in `0..size`.
    fn value(self, c: u8) -> u32 {
        let c32 = u32::from(c);
        match self {
            Alphabet::Decimal => c32 - u32::from(b'0'),
            Alphabet::Hex => match c {
                b'0'..=b'9' => c32 - u32::from(b'0'),
                b'a'..=b'f' => c32 - u32::from(b'a') + 10,
                _ => c32 - u32::from(b'A') + 10,
            },
            Alphabet::Base32 => match c {
                b'A'..=b'Z' => c32 - u32::from(b'A'),
                _ => c32 - u32::from(b'2') + 26,
            },
            Alphabet::Base36 => match c {
                b'0'..=b'9' => c32 - u32::from(b'0'),
                b'a'..=b'z' => c32 - u32::from(b'a') + 10,
                _ => c32 - u32::from(b'A') + 10,
            },
            Alphabet::Base62 | Alphabet::Base64 => match c {
                b'A'..=b'Z' => c32 - u32::from(b'A'),
                b'a'..=b'z' => c32 - u32::from(b'a') + 26,
                b'0'..=b'9' => c32 - u32::from(b'0') + 52,
                b'-' | b'+' => 62,
                _ => 63,
            },
            Alphabet::Bytes => c32,
        }
    }
}

/// The FIPS 140-2 tests that one block failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockResult {
    /// Monobit: ones outside 9 725..10 275.
    pub monobit: bool,
    /// Poker: X outside 2.16..46.17.
    pub poker: bool,
    /// Runs: a run-length count outside its interval.
    pub runs: bool,
    /// Long run: a run of 26 bits or more.
    pub long_run: bool,
}

impl BlockResult {
    /// Whether any test failed.
    pub fn failed(&self) -> bool {
        self.monobit || self.poker || self.runs || self.long_run
    }
}

/// Runs the four FIPS 140-2 tests on one block of exactly [`FIPS_BLOCK`] bits.
pub fn fips_block(bits: &[bool]) -> BlockResult {
    assert_eq!(bits.len(), FIPS_BLOCK, "FIPS 140-2 blocks are 20 000 bits");
    let ones = bits.iter().filter(|b| **b).count();
    let mut f = [0u64; 16];
    for nibble in bits.chunks(4) {
        let v = nibble
            .iter()
            .fold(0usize, |a, b| (a << 1) | usize::from(*b));
        f[v] += 1;
    }
    let x = 16.0 / 5000.0 * f.iter().map(|n| (n * n) as f64).sum::<f64>() - 5000.0;
    let mut runs = [[0u32; 6]; 2];
    let mut longest = 0;
    let mut i = 0;
    while i < bits.len() {
        let b = bits[i];
        let mut len = 1;
        while i + len < bits.len() && bits[i + len] == b {
            len += 1;
        }
        longest = longest.max(len);
        runs[usize::from(b)][len.min(6) - 1] += 1;
        i += len;
    }
    const BOUNDS: [(u32, u32); 6] = [
        (2315, 2685),
        (1114, 1386),
        (527, 723),
        (240, 384),
        (103, 209),
        (103, 209),
    ];
    let runs_bad = runs
        .iter()
        .any(|r| r.iter().zip(BOUNDS).any(|(n, (lo, hi))| *n < lo || *n > hi));
    BlockResult {
        monobit: !(9725 < ones && ones < 10_275),
        poker: !(2.16 < x && x < 46.17),
        runs: runs_bad,
        long_run: longest >= 26,
    }
}

/// The FIPS verdict over several blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fips {
    /// Blocks tested.
    pub blocks: usize,
    /// Blocks that failed a test.
    pub failed_blocks: usize,
    /// Names of the tests that failed in some block.
    pub failed_tests: Vec<&'static str>,
}

impl Fips {
    /// Whether the identifiers fail: the only block failed, or more than one
    /// did (each block of random bits fails with a probability of about 10⁻³,
    /// so one failure among several is not evidence).
    pub fn fails(&self) -> bool {
        (self.blocks == 1 && self.failed_blocks == 1) || self.failed_blocks >= 2
    }
}

/// What the collected identifiers show.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// Identifiers collected.
    pub samples: usize,
    /// Identifiers of the common length, which were analysed.
    pub analysed: usize,
    /// Their length in characters.
    pub length: usize,
    /// Identifiers equal to an earlier one.
    pub duplicates: usize,
    /// Positions that vary.
    pub varying_positions: usize,
    /// Their alphabet.
    pub alphabet: Alphabet,
    /// Effective entropy estimate, in bits.
    pub estimate_bits: f64,
    /// Bits per identifier fed to the FIPS tests.
    pub tested_bits_per_sample: usize,
    /// The FIPS verdict, when at least one block was collected.
    pub fips: Option<Fips>,
}

/// Analyses identifiers.
pub fn analyse(tokens: &[String]) -> Analysis {
    let mut seen = std::collections::HashSet::new();
    let duplicates = tokens.iter().filter(|t| !seen.insert(t.as_str())).count();
    let mut by_len: HashMap<usize, usize> = HashMap::new();
    for t in tokens {
        *by_len.entry(t.len()).or_default() += 1;
    }
    let length = by_len
        .iter()
        .max_by_key(|(len, n)| (**n, **len))
        .map_or(0, |(len, _)| *len);
    let same: Vec<&[u8]> = tokens
        .iter()
        .filter(|t| t.len() == length)
        .map(|t| t.as_bytes())
        .collect();
    let n = same.len();
    let varying: Vec<usize> = (0..length)
        .filter(|&i| same.iter().any(|t| t[i] != same[0][i]))
        .collect();
    let mut chars: Vec<u8> = varying
        .iter()
        .flat_map(|&i| same.iter().map(move |t| t[i]))
        .collect();
    chars.sort_unstable();
    chars.dedup();
    let alphabet = Alphabet::classify(&chars);
    let cap = f64::from(alphabet.size()).log2();

    let mut estimate = 0.0;
    for &i in &varying {
        let mut counts: HashMap<u8, usize> = HashMap::new();
        for t in &same {
            *counts.entry(t[i]).or_default() += 1;
        }
        let nf = n as f64;
        let h: f64 = counts
            .values()
            .map(|&c| {
                let p = c as f64 / nf;
                -p * p.log2()
            })
            .sum();
        let mm = (counts.len() as f64 - 1.0) / (2.0 * nf * std::f64::consts::LN_2);
        estimate += (h + mm).min(cap);
    }

    // Bits of each sample.
    let sample_bits: Vec<Vec<bool>> = same
        .iter()
        .map(|t| {
            let symbols: Vec<u32> = varying.iter().map(|&i| alphabet.value(t[i])).collect();
            match alphabet.power_of_two() {
                Some(w) => symbols
                    .iter()
                    .flat_map(|v| (0..w).rev().map(move |b| (v >> b) & 1 == 1))
                    .collect(),
                None => number_bits(&symbols, alphabet.size()),
            }
        })
        .collect();
    let width = sample_bits.first().map_or(0, Vec::len);
    let keep: Vec<usize> = (0..width)
        .filter(|&j| {
            let ones = sample_bits.iter().filter(|b| b[j]).count();
            let p = ones as f64 / n.max(1) as f64;
            (0.25..=0.75).contains(&p)
        })
        .collect();
    let stream: Vec<bool> = sample_bits
        .iter()
        .flat_map(|b| keep.iter().map(move |&j| b[j]))
        .collect();
    let blocks = stream.len() / FIPS_BLOCK;
    let fips = (blocks > 0).then(|| {
        let mut failed_blocks = 0;
        let mut failed_tests = Vec::new();
        for block in stream.chunks_exact(FIPS_BLOCK) {
            let r = fips_block(block);
            if r.failed() {
                failed_blocks += 1;
            }
            for (bad, name) in [
                (r.monobit, "monobit"),
                (r.poker, "poker"),
                (r.runs, "runs"),
                (r.long_run, "long run"),
            ] {
                if bad && !failed_tests.contains(&name) {
                    failed_tests.push(name);
                }
            }
        }
        Fips {
            blocks,
            failed_blocks,
            failed_tests,
        }
    });
    Analysis {
        samples: tokens.len(),
        analysed: n,
        length,
        duplicates,
        varying_positions: varying.len(),
        alphabet,
        estimate_bits: estimate,
        tested_bits_per_sample: keep.len(),
        fips,
    }
}

/// The digits `symbols` (most significant first) in base `k`, as the lowest
/// `⌊n·log2 k⌋ − 8` bits of their value, most significant first.
fn number_bits(symbols: &[u32], k: u32) -> Vec<bool> {
    let mut limbs: Vec<u32> = vec![0];
    for &d in symbols {
        let mut carry = u64::from(d);
        for l in limbs.iter_mut() {
            let v = u64::from(*l) * u64::from(k) + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            limbs.push(carry as u32);
        }
    }
    let total = (symbols.len() as f64 * f64::from(k).log2()).floor() as usize;
    let keep = total.saturating_sub(8);
    (0..keep)
        .rev()
        .map(|i| limbs.get(i / 32).is_some_and(|l| (l >> (i % 32)) & 1 == 1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    use sha2::Digest as _;
    use std::cell::Cell;

    thread_local!(static COUNTER: Cell<u64> = const { Cell::new(0) });

    /// Deterministic uniform bytes (SHA-256 in counter mode), so that these
    /// tests never meet the small false-alarm rate of the FIPS tests.
    fn random_bytes(n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 32);
        while out.len() < n {
            let c = COUNTER.with(|c| {
                c.set(c.get() + 1);
                c.get()
            });
            out.extend_from_slice(&sha2::Sha256::digest(c.to_le_bytes()));
        }
        out.truncate(n);
        out
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// A signed cookie as express-session sends it: `s:` + a 24-byte id in
    /// base64url + `.` + a 32-byte signature in unpadded standard base64,
    /// percent-encoded (`%3A`, and `%2B` / `%2F` wherever the signature has
    /// `+` or `/`, so the lengths differ).
    fn express_cookie() -> String {
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(24));
        let sig = base64::engine::general_purpose::STANDARD_NO_PAD.encode(random_bytes(32));
        format!("s%3A{url}.{}", sig.replace('+', "%2B").replace('/', "%2F"))
    }

    #[test]
    fn percent_encoded_signed_cookies_are_analysed_decoded() {
        let tokens: Vec<String> = (0..300).map(|_| express_cookie()).collect();
        // As sent: the escapes shift positions and bring `%` into the alphabet,
        // and random identifiers look patterned.
        let raw = analyse(&tokens);
        assert_eq!(raw.alphabet, Alphabet::Bytes);
        assert!(raw.fips.unwrap().fails());
        // Decoded: one length, base64, random.
        let plain: Vec<String> = tokens.iter().map(|t| decoded(t).into_owned()).collect();
        let a = analyse(&plain);
        assert_eq!(a.analysed, 300);
        assert_eq!(a.length, 2 + 32 + 1 + 43);
        assert_eq!(a.alphabet, Alphabet::Base64);
        assert!(a.estimate_bits > 300.0, "{a:?}");
        let fips = a.fips.unwrap();
        assert!(!fips.fails(), "{fips:?}");
    }

    #[test]
    fn only_escapes_are_decoded() {
        assert_eq!(decoded("abc%2"), "abc%2");
        assert_eq!(decoded("%zz%41"), "%zzA");
        // Not UTF-8 once decoded: left as it is.
        assert_eq!(decoded("a%FFb"), "a%FFb");
    }

    #[test]
    fn random_hex_identifiers_pass() {
        let tokens: Vec<String> = (0..200).map(|_| hex(&random_bytes(32))).collect();
        let a = analyse(&tokens);
        assert_eq!(a.alphabet, Alphabet::Hex);
        assert_eq!(a.duplicates, 0);
        assert!(a.estimate_bits > 240.0, "{a:?}");
        let fips = a.fips.unwrap();
        assert_eq!(fips.blocks, 2);
        assert!(!fips.fails(), "{fips:?}");
    }

    #[test]
    fn a_prefix_shard_and_checksum_do_not_fail_a_good_token() {
        // sessionguard's shape: a constant prefix, a constant per-user shard, a
        // random part and a CRC-32, in base64url.
        let tokens: Vec<String> = (0..200)
            .map(|_| {
                let mut raw = vec![7u8, 7];
                raw.extend(random_bytes(46));
                let crc = crc(&raw);
                raw.extend(crc.to_be_bytes());
                format!(
                    "sgs_{}",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
                )
            })
            .collect();
        let a = analyse(&tokens);
        assert_eq!(a.alphabet, Alphabet::Base64);
        assert!(a.estimate_bits > 128.0, "{a:?}");
        assert!(!a.fips.unwrap().fails());
    }

    fn crc(b: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &x in b {
            c ^= u32::from(x);
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    (c >> 1) ^ 0xedb8_8320
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn base36_identifiers_are_read_as_numbers_and_pass() {
        // Django's session keys: 32 characters of a-z0-9.
        let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let tokens: Vec<String> = (0..600)
            .map(|_| {
                random_bytes(64)
                    .iter()
                    .filter(|b| **b < 252)
                    .take(32)
                    .map(|b| char::from(alphabet[usize::from(*b % 36)]))
                    .collect()
            })
            .collect();
        let a = analyse(&tokens);
        assert_eq!(a.alphabet, Alphabet::Base36);
        assert!(a.estimate_bits > 150.0, "{a:?}");
        assert!(!a.fips.unwrap().fails());
    }

    #[test]
    fn counters_and_timestamps_fall_far_below_64_bits() {
        let tokens: Vec<String> = (0..200u32)
            .map(|i| format!("{:08x}{:04x}", 1_700_000_000 + i / 50, 4000 + i))
            .collect();
        let a = analyse(&tokens);
        assert!(a.estimate_bits < 20.0, "{a:?}");
        assert_eq!(a.duplicates, 0);
    }

    #[test]
    fn duplicates_are_counted() {
        let tokens = vec!["a1".to_owned(), "b2".to_owned(), "a1".to_owned()];
        assert_eq!(analyse(&tokens).duplicates, 1);
    }

    #[test]
    fn biased_bits_fail_fips() {
        // Each hex digit from a generator that favours low values.
        let tokens: Vec<String> = (0..400)
            .map(|_| {
                random_bytes(40)
                    .iter()
                    .map(|b| {
                        let v = if b % 3 == 0 { b & 0x7 } else { b & 0xf };
                        format!("{v:x}")
                    })
                    .collect()
            })
            .collect();
        let a = analyse(&tokens);
        let f = a.fips.unwrap();
        assert!(f.fails(), "{f:?}");
    }

    #[test]
    fn fips_block_flags_each_kind_of_failure() {
        let zeros = vec![false; FIPS_BLOCK];
        let r = fips_block(&zeros);
        assert!(r.monobit && r.poker && r.runs && r.long_run);
        let alternating: Vec<bool> = (0..FIPS_BLOCK).map(|i| i % 2 == 0).collect();
        let r = fips_block(&alternating);
        assert!(!r.monobit && r.poker && r.runs && !r.long_run);
        let bytes = random_bytes(FIPS_BLOCK / 8);
        let bits: Vec<bool> = bytes
            .iter()
            .flat_map(|b| (0..8).map(move |i| (b >> i) & 1 == 1))
            .collect();
        assert!(!fips_block(&bits).failed());
    }

    #[test]
    fn number_bits_keep_the_low_bits() {
        // 255 in base 10 over three digits: floor(3 * 3.32) - 8 = 1 bit kept.
        assert_eq!(number_bits(&[2, 5, 5], 10), vec![true]);
        assert_eq!(number_bits(&[0, 0, 0, 0, 1, 7], 10).len(), 11);
    }
}
