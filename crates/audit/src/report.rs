//! The report in four formats: a terminal table, JSON, SARIF 2.1.0 (for GitHub
//! code scanning) and Markdown. Every string in a report was redacted when the
//! evidence was taken.

use std::fmt::Write as _;

use serde_json::{Value, json};
use sha2::Digest as _;

use crate::model::{CheckId, CheckReport, Outcome, Report, Severity};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for a terminal.
    Text,
    /// JSON: one entry per check.
    Json,
    /// SARIF 2.1.0.
    Sarif,
    /// Markdown.
    Markdown,
}

/// Renders `report`; `recipe_path` is the SARIF artifact.
pub fn render(
    report: &Report,
    format: Format,
    recipe_path: &str,
    lines: &std::collections::BTreeMap<String, usize>,
) -> String {
    match format {
        Format::Text => text(report),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(report).expect("a report serializes");
            s.push('\n');
            s
        }
        Format::Sarif => {
            let mut s = serde_json::to_string_pretty(&sarif(report, recipe_path, lines))
                .expect("SARIF serializes");
            s.push('\n');
            s
        }
        Format::Markdown => markdown(report),
    }
}

fn result_word(c: &CheckReport) -> String {
    match (c.result, c.severity) {
        (Outcome::Vulnerable, Some(s)) => format!("VULNERABLE ({})", s.as_str()),
        (Outcome::Vulnerable, None) => "VULNERABLE".into(),
        (Outcome::Ok, _) => "ok".into(),
        (Outcome::NotTested, _) => "not tested".into(),
    }
}

fn cwe_list(c: &CheckReport) -> String {
    if c.cwe.is_empty() {
        "-".into()
    } else {
        c.cwe
            .iter()
            .map(|n| format!("CWE-{n}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    for para in text.lines() {
        let mut line = String::new();
        for word in para.split(' ') {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
                out.push_str(indent);
                out.push_str(&line);
                out.push('\n');
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        out.push_str(indent);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn text(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "sessionguard audit of {}\n", r.target);
    let w_id = r
        .checks
        .iter()
        .map(|c| c.id.as_str().len())
        .max()
        .unwrap_or(5)
        .max(5);
    let w_res = r
        .checks
        .iter()
        .map(|c| result_word(c).len())
        .max()
        .unwrap_or(6)
        .max(6);
    let w_cwe = r
        .checks
        .iter()
        .map(|c| cwe_list(c).len())
        .max()
        .unwrap_or(3)
        .max(3);
    let _ = writeln!(
        s,
        "{:w_id$}  {:w_res$}  {:w_cwe$}  SUMMARY",
        "CHECK", "RESULT", "CWE"
    );
    for c in &r.checks {
        let summary: String = c.summary.chars().take(100).collect();
        let more = if c.summary.chars().count() > 100 {
            "…"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "{:w_id$}  {:w_res$}  {:w_cwe$}  {summary}{more}",
            c.id.as_str(),
            result_word(c),
            cwe_list(c)
        );
    }
    let findings: Vec<&CheckReport> = r
        .checks
        .iter()
        .filter(|c| c.result == Outcome::Vulnerable)
        .collect();
    if !findings.is_empty() {
        let _ = writeln!(s, "\nFindings");
        for c in findings {
            let _ = writeln!(
                s,
                "\n{} — {} [{}]",
                c.id,
                c.title,
                c.severity.map_or("", Severity::as_str)
            );
            s.push_str(&wrap(&c.summary, 96, "  "));
            for e in &c.evidence {
                s.push_str(&wrap(&format!("- {}", e.step), 96, "  "));
                if let Some(req) = &e.request {
                    for l in req.lines() {
                        let _ = writeln!(s, "      > {}", l.trim_start());
                    }
                }
                if let Some(res) = &e.response {
                    for l in res.lines() {
                        let _ = writeln!(s, "      < {}", l.trim_start());
                    }
                }
            }
            for n in &c.notes {
                s.push_str(&wrap(&format!("note: {n}"), 96, "  "));
            }
        }
    }
    let untested: Vec<&CheckReport> = r
        .checks
        .iter()
        .filter(|c| c.result == Outcome::NotTested)
        .collect();
    let partial: Vec<(&CheckReport, &String)> = r
        .checks
        .iter()
        .filter(|c| c.result != Outcome::NotTested)
        .flat_map(|c| {
            c.notes
                .iter()
                .filter(|n| n.contains("not measured"))
                .map(move |n| (c, n))
        })
        .collect();
    if !untested.is_empty() || !partial.is_empty() {
        let _ = writeln!(s, "\nNot measured");
        for c in untested {
            s.push_str(&wrap(
                &format!("- {}: {}", c.id, c.reason.as_deref().unwrap_or("")),
                96,
                "  ",
            ));
        }
        for (c, n) in partial {
            s.push_str(&wrap(&format!("- {} (part): {n}", c.id), 96, "  "));
        }
    }
    let sm = &r.summary;
    let _ = writeln!(
        s,
        "\n{} checks: {} vulnerable, {} ok, {} not tested; {} finding(s) at or above {}; {} requests.",
        r.checks.len(),
        sm.vulnerable,
        sm.ok,
        sm.not_tested,
        sm.failing,
        sm.fail_on.as_str(),
        sm.requests
    );
    s
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# sessionguard audit of {}\n", md_escape(&r.target));
    let sm = &r.summary;
    let _ = writeln!(
        s,
        "{} checks: **{} vulnerable**, {} ok, {} not tested ({} finding(s) at or above `{}`).\n",
        r.checks.len(),
        sm.vulnerable,
        sm.ok,
        sm.not_tested,
        sm.failing,
        sm.fail_on.as_str()
    );
    let _ = writeln!(s, "| check | result | CWE | summary |\n|---|---|---|---|");
    for c in &r.checks {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} |",
            c.id,
            result_word(c),
            cwe_list(c),
            md_escape(&c.summary)
        );
    }
    for c in r.checks.iter().filter(|c| c.result == Outcome::Vulnerable) {
        let _ = writeln!(
            s,
            "\n## `{}`: {} ({})\n\n{}\n",
            c.id,
            md_escape(&c.title),
            c.severity.map_or("", Severity::as_str),
            md_escape(&c.summary)
        );
        for e in &c.evidence {
            let _ = writeln!(s, "- {}", md_escape(&e.step));
            if e.request.is_some() || e.response.is_some() {
                let _ = writeln!(s, "\n  ```http");
                if let Some(req) = &e.request {
                    for l in req.lines() {
                        let _ = writeln!(s, "  > {}", l.trim_start());
                    }
                }
                if let Some(res) = &e.response {
                    for l in res.lines() {
                        let _ = writeln!(s, "  < {}", l.trim_start());
                    }
                }
                let _ = writeln!(s, "  ```\n");
            }
        }
        for n in &c.notes {
            let _ = writeln!(s, "\n> {}", md_escape(n));
        }
    }
    let untested: Vec<&CheckReport> = r
        .checks
        .iter()
        .filter(|c| c.result == Outcome::NotTested)
        .collect();
    if !untested.is_empty() {
        let _ = writeln!(s, "\n## Not measured\n");
        for c in untested {
            let _ = writeln!(
                s,
                "- `{}`: {}",
                c.id,
                md_escape(c.reason.as_deref().unwrap_or(""))
            );
        }
    }
    s
}

/// GitHub's `security-severity` for a severity.
fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "1.0",
    }
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// The nominal severity of a check, for its SARIF rule.
fn nominal(id: CheckId) -> Severity {
    match id {
        CheckId::Recipe => Severity::Info,
        CheckId::IdleTimeout
        | CheckId::AbsoluteTimeout
        | CheckId::ConcurrentSessions
        | CheckId::RefreshLifetime
        | CheckId::CookieAttributes => Severity::Medium,
        _ => Severity::High,
    }
}

/// The recipe table a check is about, for its location.
fn table_of(id: CheckId) -> &'static str {
    match id {
        CheckId::Recipe | CheckId::Fixation => "login",
        CheckId::CookieAttributes | CheckId::Jwt | CheckId::TokenEntropy => "session",
        CheckId::Logout => "logout",
        CheckId::PasswordChange => "password_change",
        CheckId::ApiTokenAfterPasswordChange => "api_token",
        CheckId::RefreshAfterLogout | CheckId::RefreshReuse | CheckId::RefreshLifetime => "refresh",
        CheckId::IdleTimeout | CheckId::AbsoluteTimeout | CheckId::ConcurrentSessions => "claims",
    }
}

fn sarif(
    r: &Report,
    recipe_path: &str,
    lines: &std::collections::BTreeMap<String, usize>,
) -> Value {
    let rules: Vec<Value> = CheckId::ALL
        .iter()
        .filter(|id| **id != CheckId::Recipe)
        .map(|id| {
            let mut tags = vec![json!("security")];
            tags.extend(id.cwe().iter().map(|n| json!(format!("external/cwe/cwe-{n}"))));
            json!({
                "id": id.as_str(),
                "name": id.as_str().split('_').map(|w| {
                    let mut c = w.chars();
                    c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
                }).collect::<String>(),
                "shortDescription": { "text": id.title() },
                "fullDescription": { "text": id.description() },
                "help": {
                    "text": format!("{} Check id `{}`; see the README, \"Audit your own app\".", id.description(), id.as_str()),
                },
                "defaultConfiguration": { "level": level(nominal(*id)) },
                "properties": {
                    "tags": tags,
                    "security-severity": security_severity(nominal(*id)),
                    "precision": "high",
                    "problem.severity": if nominal(*id) == Severity::High { "error" } else { "warning" },
                },
            })
        })
        .collect();
    let rule_index = |id: CheckId| {
        CheckId::ALL
            .iter()
            .filter(|c| **c != CheckId::Recipe)
            .position(|c| *c == id)
    };
    let results: Vec<Value> = r
        .checks
        .iter()
        .filter(|c| c.result == Outcome::Vulnerable)
        .filter_map(|c| {
            let index = rule_index(c.id)?;
            let severity = c.severity.unwrap_or(Severity::Medium);
            let line = lines
                .get(table_of(c.id))
                .or_else(|| lines.get("target"))
                .copied()
                .unwrap_or(1);
            let mut evidence = String::new();
            for e in &c.evidence {
                let _ = write!(evidence, "\n- {}", e.step);
                if let Some(req) = &e.request {
                    let _ = write!(evidence, "\n  request: {}", req.replace('\n', "\n    "));
                }
                if let Some(res) = &e.response {
                    let _ = write!(evidence, "\n  response: {}", res.replace('\n', "\n    "));
                }
            }
            let fingerprint = sha2::Sha256::digest(format!("{}|{}", r.target, c.id.as_str()));
            let fingerprint: String = fingerprint.iter().take(16).map(|b| format!("{b:02x}")).collect();
            Some(json!({
                "ruleId": c.id.as_str(),
                "ruleIndex": index,
                "level": level(severity),
                "message": { "text": format!("{} ({} on {}){}", c.summary, severity.as_str(), r.target, evidence) },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": recipe_path },
                        "region": { "startLine": line },
                    },
                }],
                "partialFingerprints": { "sessionguardAudit/v1": fingerprint },
                "properties": {
                    "security-severity": security_severity(severity),
                    "severity": severity.as_str(),
                    "target": r.target,
                },
            }))
        })
        .collect();
    let notifications: Vec<Value> = r
        .checks
        .iter()
        .filter(|c| c.result == Outcome::NotTested)
        .map(|c| {
            json!({
                "level": "note",
                "message": { "text": format!("{} not measured: {}", c.id, c.reason.as_deref().unwrap_or("")) },
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "sessionguard-audit",
                    "version": r.tool.version,
                    "semanticVersion": r.tool.version,
                    "informationUri": "https://example.invalid/sessionguard",
                    "rules": rules,
                },
            },
            "automationDetails": { "id": format!("sessionguard-audit/{}/", r.target) },
            "invocations": [{
                "executionSuccessful": true,
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
        }],
    })
}
