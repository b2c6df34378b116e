//! `sessionguard policy check`: every profile's effective settings next to the
//! guidance they are measured against ([`sessionguard_core::guidance`]), and the
//! same violations as warnings when the server starts.
//!
//! ```
//! use sessionguard_core::{Profiles, guidance};
//! use sessionguard_server::policy_check;
//!
//! let reports = guidance::check(&Profiles::default());
//! let text = policy_check::render(&reports);
//! assert!(text.contains("idle_timeout"));
//! assert!(!policy_check::any_exceeding(&reports));
//! ```

use std::fmt::Write as _;

use sessionguard_core::Profiles;
use sessionguard_core::guidance::{self, Finding, ProfileReport, Status};

const HEADERS: [&str; 5] = ["SETTING", "VALUE", "GUIDANCE", "STATUS", "SOURCE"];

/// Whether any setting of any profile exceeds its guidance (`policy check` then
/// exits 1).
pub fn any_exceeding(reports: &[ProfileReport]) -> bool {
    reports.iter().any(|r| r.exceeding().next().is_some())
}

/// The report `policy check` prints: per profile, a heading naming the guidance
/// it is measured against and an aligned table of its settings; then one line per
/// setting beyond its guidance (`profile.key`), and a summary line.
pub fn render(reports: &[ProfileReport]) -> String {
    let rows: Vec<Vec<[String; 5]>> = reports
        .iter()
        .map(|r| r.findings.iter().map(row).collect())
        .collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in rows.iter().flatten() {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }

    let mut out = String::new();
    for (report, rows) in reports.iter().zip(&rows) {
        let default = if report.is_default { " (default)" } else { "" };
        let _ = writeln!(
            out,
            "Profile {}{default}: measured against {}",
            report.profile,
            report.level.describe()
        );
        line(&mut out, &HEADERS.map(str::to_owned), &widths);
        for row in rows {
            line(&mut out, row, &widths);
        }
        out.push('\n');
    }

    let (mut ok, mut advisory, mut exceeding) = (0, 0, 0);
    for report in reports {
        for f in &report.findings {
            match f.status {
                Status::Ok => ok += 1,
                Status::Advisory => advisory += 1,
                Status::Exceeds => exceeding += 1,
            }
        }
    }
    for status in [Status::Exceeds, Status::Advisory] {
        for report in reports {
            for f in report.findings.iter().filter(|f| f.status == status) {
                let _ = writeln!(
                    out,
                    "{status} {}.{} = {} (guidance: {}; source: {})",
                    report.profile, f.setting, f.value, f.guidance, f.source
                );
            }
        }
    }
    let verdict = if exceeding == 0 { "passed" } else { "FAILED" };
    let _ = writeln!(
        out,
        "policy check {verdict}: {} settings in {} profiles: {ok} ok, {advisory} advisory, \
         {exceeding} exceeding the guidance",
        ok + advisory + exceeding,
        reports.len(),
    );
    out
}

/// Logs, once, every setting of `profiles` that exceeds its guidance (a warning)
/// or earns an advisory note (info). Returns how many exceed.
pub fn log_violations(profiles: &Profiles) -> usize {
    let mut exceeding = 0;
    for report in guidance::check(profiles) {
        for f in &report.findings {
            let (profile, setting, value) = (&report.profile, f.setting.key(), f.value);
            let (guidance, source) = (f.guidance, f.source);
            match f.status {
                Status::Ok => {}
                Status::Exceeds => {
                    exceeding += 1;
                    tracing::warn!(
                        %profile, setting, %value, %guidance, source,
                        "policy setting exceeds the guidance for its profile \
                         (see `sessionguard policy check`)"
                    );
                }
                Status::Advisory => tracing::info!(
                    %profile, setting, %value, %guidance, source,
                    "policy setting is beyond advisory guidance"
                ),
            }
        }
    }
    exceeding
}

fn row(f: &Finding) -> [String; 5] {
    [
        f.setting.key().to_owned(),
        f.value.to_string(),
        f.guidance.to_string(),
        f.status.to_string(),
        f.source.to_owned(),
    ]
}

fn line(out: &mut String, cells: &[String; 5], widths: &[usize; 5]) {
    out.push_str("  ");
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        out.push_str(cell);
        if i + 1 < cells.len() {
            let pad = width - cell.chars().count() + 2;
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sessionguard_core::profile::built_in;
    use sessionguard_core::{ProfileName, Profiles};

    use super::*;

    #[test]
    fn the_built_in_profiles_pass_with_an_aligned_table() {
        let reports = guidance::check(&Profiles::default());
        assert!(!any_exceeding(&reports));
        let text = render(&reports);
        assert!(
            text.contains("Profile standard (default): measured against NIST SP 800-63B-4"),
            "{text}"
        );
        assert!(text.contains("Profile admin: measured against NIST SP 800-63B-4 (2025) AAL3"));
        assert!(text.ends_with(
            "policy check passed: 24 settings in 3 profiles: 24 ok, 0 advisory, \
             0 exceeding the guidance\n"
        ));
        // Every row has its status under the STATUS heading.
        let rows: Vec<_> = text.lines().filter(|l| l.starts_with("  ")).collect();
        assert_eq!(rows.len(), 3 * 9);
        let column = rows[0].find("STATUS").unwrap();
        for row in &rows[1..] {
            let rest = &row[column..];
            assert!(
                ["STATUS ", "ok ", "advisory ", "EXCEEDS "]
                    .iter()
                    .any(|s| rest.starts_with(s)),
                "{row}"
            );
        }
    }

    #[test]
    fn a_violation_fails_and_is_named_by_profile_and_key() {
        let mut profiles = Profiles::default();
        let mut admin = built_in("admin").unwrap();
        admin.max_sessions = 0;
        admin.renewal_interval = Duration::ZERO;
        profiles.insert(ProfileName::new("admin").unwrap(), admin);
        let reports = guidance::check(&profiles);
        assert!(any_exceeding(&reports));
        let text = render(&reports);
        assert!(
            text.contains(
                "EXCEEDS admin.max_sessions = unlimited (guidance: limited; \
                 source: NIST SP 800-53r5 AC-10)"
            ),
            "{text}"
        );
        assert!(
            text.contains("advisory admin.renewal_interval = off"),
            "{text}"
        );
        assert!(text.ends_with(
            "policy check FAILED: 24 settings in 3 profiles: 22 ok, 1 advisory, \
             1 exceeding the guidance\n"
        ));
        assert_eq!(log_violations(&profiles), 1);
        assert_eq!(log_violations(&Profiles::default()), 0);
    }
}
