//! `gantry check`'s output: the table (checks in the registry's order, one
//! column per host, then every warning and failure in full) or JSON.

use serde_json::Value as Json;

use crate::check::{CHECKS, HostReport, Level};

fn mark(l: Level) -> console::StyledObject<&'static str> {
    match l {
        Level::Pass => console::style("ok").green(),
        Level::Warn => console::style("WARN").yellow(),
        Level::Fail => console::style("FAIL").red().bold(),
    }
}

/// Checks as rows, hosts as columns, then every non-pass finding in full.
pub fn print_table(reports: &[HostReport], unreachable: &[(String, String)]) {
    let width = reports
        .iter()
        .map(|r| r.host.len())
        .chain([6])
        .max()
        .unwrap_or(6);
    crate::out!("{:<18}", "CHECK");
    for r in reports {
        crate::out!(" {:>width$}", r.host);
    }
    crate::outln!();
    for c in CHECKS.iter().map(|c| c.name) {
        if !reports
            .iter()
            .any(|r| r.findings.iter().any(|f| f.check == c))
        {
            continue;
        }
        crate::out!("{c:<18}");
        for r in reports {
            match r.findings.iter().find(|f| f.check == c) {
                Some(f) => crate::out!(" {:>width$}", mark(f.level).to_string()),
                None => crate::out!(" {:>width$}", "-"),
            }
        }
        crate::outln!();
    }
    for r in reports {
        for f in r.findings.iter().filter(|f| f.level != Level::Pass) {
            crate::outln!(
                "{} {} {}: {} (required: {}); fix: {}",
                mark(f.level),
                r.host,
                f.check,
                super::out::terminal_safe(&f.measured),
                f.required,
                f.fix
            );
        }
    }
    for (h, why) in unreachable {
        crate::outln!(
            "{} {h}: not checked, unreachable: {}",
            mark(Level::Fail),
            super::out::terminal_safe(why)
        );
    }
}

/// The version of `check --output json`'s document (schema/gantry.check.v1.json).
pub const CHECK_SCHEMA: &str = "gantry.check/1";

pub fn json(reports: &[HostReport], unreachable: &[(String, String)]) -> Json {
    serde_json::json!({
        "schema": CHECK_SCHEMA,
        "hosts": reports.iter().map(|r| serde_json::json!({"host": r.host, "findings": r.findings})).collect::<Vec<_>>(),
        "unreachable": unreachable.iter().map(|(h, w)| serde_json::json!({"host": h, "reason": w})).collect::<Vec<_>>(),
    })
}
