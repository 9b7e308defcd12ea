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
    print!("{:<18}", "CHECK");
    for r in reports {
        print!(" {:>width$}", r.host);
    }
    println!();
    for c in CHECKS.iter().map(|c| c.name) {
        if !reports
            .iter()
            .any(|r| r.findings.iter().any(|f| f.check == c))
        {
            continue;
        }
        print!("{c:<18}");
        for r in reports {
            match r.findings.iter().find(|f| f.check == c) {
                Some(f) => print!(" {:>width$}", mark(f.level).to_string()),
                None => print!(" {:>width$}", "-"),
            }
        }
        println!();
    }
    for r in reports {
        for f in r.findings.iter().filter(|f| f.level != Level::Pass) {
            println!(
                "{} {} {}: {} (required: {}); fix: {}",
                mark(f.level),
                r.host,
                f.check,
                f.measured,
                f.required,
                f.fix
            );
        }
    }
    for (h, why) in unreachable {
        println!("{} {h}: not checked, unreachable: {why}", mark(Level::Fail));
    }
}

pub fn json(reports: &[HostReport], unreachable: &[(String, String)]) -> Json {
    serde_json::json!({
        "hosts": reports.iter().map(|r| serde_json::json!({"host": r.host, "findings": r.findings})).collect::<Vec<_>>(),
        "unreachable": unreachable.iter().map(|(h, w)| serde_json::json!({"host": h, "reason": w})).collect::<Vec<_>>(),
    })
}
