//! `token_entropy`: collect identifiers from fresh logins and analyse them
//! ([`crate::entropy`]).

use crate::agent::{Agent, Fail, Pw};
use crate::entropy::{FIPS_BLOCK, analyse, decoded};
use crate::model::{CheckId, CheckReport, Severity};

/// Fewer identifiers than this say nothing.
const MIN_SAMPLES: usize = 20;

pub(super) async fn token_entropy(agent: &Agent) -> Result<CheckReport, Fail> {
    let id = CheckId::TokenEntropy;
    let n = agent.options.samples;
    let mut tokens = Vec::with_capacity(n);
    for i in 0..n {
        if i % 20 == 0 {
            agent
                .progress
                .step(&format!("token_entropy: {i} of {n} identifiers collected"));
        }
        match agent.login(Pw::Original).await {
            Ok(s) => {
                if let Some(t) = agent.token_of(&s) {
                    tokens.push(t);
                }
            }
            Err(Fail::Step(r)) if tokens.len() >= MIN_SAMPLES => {
                agent.progress.step(&format!(
                    "token_entropy: login {} failed ({r}); analysing {} identifiers",
                    i + 1,
                    tokens.len()
                ));
                break;
            }
            Err(e) => return Err(e),
        }
    }
    if tokens.len() < MIN_SAMPLES {
        return Ok(CheckReport::not_tested(
            id,
            format!(
                "only {} identifiers collected (at least {MIN_SAMPLES} needed)",
                tokens.len()
            ),
        ));
    }
    // A JWT's claims are readable by anyone; what an attacker must guess is its
    // signature. Its JSON (hex identifiers inside base64) is structure, not a
    // weakness, so only the signatures are analysed.
    let jwts = tokens.iter().all(|t| crate::jwt::Jwt::parse(t).is_some());
    if jwts {
        tokens = tokens
            .iter()
            .map(|t| t.rsplit('.').next().unwrap_or("").to_owned())
            .collect();
    }
    let plain: Vec<String> = tokens.iter().map(|t| decoded(t).into_owned()).collect();
    let encoded = plain != tokens;
    tokens = plain;
    let a = analyse(&tokens);
    let mut ev = Vec::new();
    if encoded {
        ev.push(agent.fact(
            "the identifiers are percent-encoded: they are analysed decoded (an escape takes \
             three characters and would shift the positions after it)",
        ));
    }
    if jwts {
        ev.push(agent.fact(
            "the identifiers are JWTs: their signatures are analysed (the claims are readable, not secret)",
        ));
    }
    ev.push(agent.fact(format!(
        "{} identifiers collected from fresh logins; {} of the common length {} analysed; {} \
         positions vary, alphabet {}",
        a.samples,
        a.analysed,
        a.length,
        a.varying_positions,
        a.alphabet.name()
    )));
    ev.push(agent.fact(format!(
        "effective entropy estimate: {:.1} bits (ASVS: at least 64 bits, 4.0 V3.2.2; 128 bits, 5.0 V7.2.3)",
        a.estimate_bits
    )));
    let fips_line = match &a.fips {
        Some(f) => format!(
            "FIPS 140-2 over {} varying bits per identifier: {} block(s) of {FIPS_BLOCK} bits, {} failed{}",
            a.tested_bits_per_sample,
            f.blocks,
            f.failed_blocks,
            if f.failed_tests.is_empty() {
                String::new()
            } else {
                format!(" ({})", f.failed_tests.join(", "))
            }
        ),
        None => format!(
            "FIPS 140-2 not run: {} varying bits per identifier × {} identifiers is less than one \
             block of {FIPS_BLOCK} bits (raise --samples)",
            a.tested_bits_per_sample, a.analysed
        ),
    };
    ev.push(agent.fact(&fips_line));
    if a.duplicates > 0 {
        ev.push(agent.fact(format!(
            "{} identifiers repeat an earlier one",
            a.duplicates
        )));
    }
    let mut findings: Vec<(Severity, String)> = Vec::new();
    if a.duplicates > 0 {
        findings.push((
            Severity::High,
            format!(
                "{} of {} identifiers were issued twice",
                a.duplicates, a.samples
            ),
        ));
    }
    if a.estimate_bits < 64.0 {
        findings.push((
            Severity::High,
            format!(
                "about {:.0} bits of entropy, below ASVS's 64",
                a.estimate_bits
            ),
        ));
    } else if a.estimate_bits < 128.0 {
        findings.push((
            Severity::Medium,
            format!(
                "about {:.0} bits of entropy, below ASVS 5.0's 128",
                a.estimate_bits
            ),
        ));
    }
    if a.fips.as_ref().is_some_and(|f| f.fails()) {
        findings.push((
            Severity::Medium,
            "the varying bits fail the FIPS 140-2 randomness tests".into(),
        ));
    }
    let mut r = match findings.iter().map(|f| f.0).max() {
        Some(sev) => CheckReport::vulnerable(
            id,
            sev,
            format!(
                "Session identifiers are predictable: {}.",
                findings
                    .iter()
                    .map(|f| f.1.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
        None => CheckReport::ok(
            id,
            format!(
                "About {:.0} bits of entropy per identifier; {}.",
                a.estimate_bits,
                if a.fips.is_some() {
                    "the FIPS 140-2 tests pass"
                } else {
                    "FIPS 140-2 not run (too few bits)"
                }
            ),
        ),
    }
    .with_evidence(ev)
    .note(
        "The estimate sums what each position varies; a black box cannot see a generator that is \
         predictable yet looks random (a hash of a counter).",
    );
    if a.fips.is_none() {
        r = r.note(fips_line);
    }
    Ok(r)
}
