//! time-sync: an NTP client keeps the clock (the fleet's offsets are
//! `fleet::CLOCK_OFFSET`).

use crate::check::{Check, Finding, Judge, Level, Policy, Stage, Targets, finding};
use crate::facts::Sections;
use crate::inventory::HostSpec;

pub const TIME_SYNC: Check = Check {
    name: "time-sync",
    stage: Stage::Always,
    roles: &[],
    reads: &["ntp", "timeservices"],
    judge: Judge::Host(time_sync),
    requires: "warn: no NTP client (chrony, ntpd, timesyncd) active",
    source: "checklist",
};

fn time_sync(_: &HostSpec, sec: &Sections, _: &Policy, _: &Targets) -> Option<Finding> {
    let synced = sec.get("ntp") == "yes" || sec.get("timeservices").parse::<u32>().unwrap_or(0) > 0;
    Some(finding(
        "time-sync",
        if synced { Level::Pass } else { Level::Warn },
        if synced {
            "active"
        } else {
            "no NTP client active"
        },
        "an NTP client (chrony, ntpd, timesyncd) active",
        "enable chronyd with the site's NTP server",
    ))
}
