//! Rotation policies (seed 002): when a credential is due.
//!
//! A trigger is time based (`max_age_days`), usage based (`max_uses`),
//! calendar based (`cron` with a time zone, or `monthly` day/hour/minute),
//! or a composite (`any` / `all`). Calendar triggers fire when an
//! occurrence has passed since the credential became current.

use std::str::FromStr;

use chrono::TimeDelta;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Reason, Result};
use crate::secret::{Generator, Strategy};
use crate::time::Timestamp;

/// When a credential is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// The current credential is at least this many days old.
    MaxAgeDays(u32),
    /// The current key sealed at least this many values.
    MaxUses(u64),
    /// A 5-field cron expression (minute hour day-of-month month day-of-week) in a time zone.
    Cron {
        /// The expression.
        expr: String,
        /// IANA time zone name, e.g. `UTC` or `Europe/Berlin`.
        timezone: String,
    },
    /// Monthly on a day at an hour and minute, UTC.
    Monthly {
        /// Day of month, 1 to 31 (months without that day are skipped).
        day: u8,
        /// Hour, 0 to 23.
        hour: u8,
        /// Minute, 0 to 59.
        minute: u8,
    },
    /// Due when any of the triggers is.
    Any(Vec<Trigger>),
    /// Due when all of the triggers are.
    All(Vec<Trigger>),
    /// Never due: a `manual` policy without a trigger (seed 003's manual
    /// rotation type), rotated only on request.
    Manual,
}

/// What a trigger is evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    /// Now.
    pub now: Timestamp,
    /// When the current credential became current.
    pub current_since: Timestamp,
    /// Uses of the current credential.
    pub uses: u64,
}

/// A named policy: a trigger and what to do when it fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Name.
    pub name: String,
    /// When.
    pub trigger: Trigger,
    /// After rotating a keyring, re-encrypt its values to the new version.
    #[serde(default)]
    pub migrate: bool,
    /// After a complete migration, retire versions no value uses any more.
    #[serde(default)]
    pub retire_old: bool,
    /// When the policy was last written.
    pub updated_at: Timestamp,
    /// How rotations under this policy are carried out (secrets; the
    /// grace period, retries and notifications apply to every kind).
    #[serde(default)]
    pub procedure: Procedure,
}

/// How a rotation runs (seeds 001, 003): rotation type, strategy,
/// generator, verification, rollback, retries, grace and notifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Procedure {
    /// `manual` (never by a schedule), `automatic` (interval) or `scheduled` (cron).
    pub rotation_type: RotationType,
    /// Calendar triggers only fire within this many minutes after an occurrence.
    pub window_minutes: Option<u32>,
    /// Strategy; the secret type's default when `None`.
    pub strategy: Option<Strategy>,
    /// Generator; the secret's or `random:32` when `None`.
    pub generator: Option<Generator>,
    /// Run the verification tests before promotion.
    pub require_verification: bool,
    /// Named verification tests (e.g. `login`, `certificate`, `script`, `http:URL`, `nonempty`).
    pub verification_tests: Vec<String>,
    /// Undo a rotation whose verification or steps fail.
    pub auto_rollback: bool,
    /// Failed scheduled attempts retried before the schedule is orphaned.
    pub max_retries: u32,
    /// Backoff before the first retry, doubling each time.
    pub retry_backoff_seconds: u32,
    /// Grace period of the replaced credential (dual-write: both valid until it ends).
    pub grace_period_hours: Option<u32>,
    /// Inactive policies never fire.
    pub is_active: bool,
    /// Notify the recipients when a rotation fails or rolls back.
    pub notify_on_failure: bool,
    /// Recipients: webhook URLs, `mailto:ADDRESS` or `log`.
    pub notify: Vec<String>,
    /// Lead times in hours: notify this long before a certificate expires
    /// or a credential's next rotation (e.g. 168 and 24).
    pub notify_before_hours: Vec<u32>,
    /// Authorities: revoke keys whose grace period ended (by `run-due` and
    /// the server's worker) instead of waiting for an operator.
    pub auto_revoke: bool,
}

impl Default for Procedure {
    fn default() -> Self {
        Procedure {
            rotation_type: RotationType::Automatic,
            window_minutes: None,
            strategy: None,
            generator: None,
            require_verification: true,
            verification_tests: Vec::new(),
            auto_rollback: true,
            max_retries: 3,
            retry_backoff_seconds: 60,
            grace_period_hours: None,
            is_active: true,
            notify_on_failure: true,
            notify: Vec::new(),
            notify_before_hours: Vec::new(),
            auto_revoke: false,
        }
    }
}

/// Rotation type (seed 003).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationType {
    /// Only on explicit request; schedules never fire it.
    Manual,
    /// On a fixed interval.
    Automatic,
    /// On a cron expression.
    Scheduled,
}

impl RotationType {
    /// The stable string.
    pub fn as_str(self) -> &'static str {
        match self {
            RotationType::Manual => "manual",
            RotationType::Automatic => "automatic",
            RotationType::Scheduled => "scheduled",
        }
    }

    /// Parses the stable string; `invalid_policy` naming `rotation_type` otherwise.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "manual" => Ok(RotationType::Manual),
            "automatic" => Ok(RotationType::Automatic),
            "scheduled" => Ok(RotationType::Scheduled),
            _ => Err(invalid_field(
                "rotation_type",
                format!("unknown rotation type {s:?}: use manual, automatic or scheduled"),
            )),
        }
    }
}

/// Limits on procedure numbers.
pub const MAX_RETRIES: u32 = 100;
/// Longest grace period a policy may give, in hours (one year).
pub const MAX_POLICY_GRACE_HOURS: u32 = 24 * 366;

impl Procedure {
    /// Checks every field; errors are `invalid_policy` naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.max_retries > MAX_RETRIES {
            return Err(invalid_field("max_retries", format!("must be 0 to {MAX_RETRIES}")));
        }
        if self.retry_backoff_seconds > 86_400 {
            return Err(invalid_field("retry_backoff_seconds", "must be 0 to 86400"));
        }
        if self.grace_period_hours.is_some_and(|h| h > MAX_POLICY_GRACE_HOURS) {
            return Err(invalid_field(
                "grace_period_hours",
                format!("must be 0 to {MAX_POLICY_GRACE_HOURS}"),
            ));
        }
        if self.window_minutes == Some(0) {
            return Err(invalid_field("window", "must be at least one minute"));
        }
        if self.notify_before_hours.iter().any(|h| *h == 0 || *h > 24 * 366) {
            return Err(invalid_field("notify_before", "lead times must be 1 hour to 366 days"));
        }
        if self.require_verification && self.verification_tests.iter().any(String::is_empty) {
            return Err(invalid_field("verification_tests", "a test name is empty"));
        }
        if self
            .verification_tests
            .iter()
            .any(|t| t.chars().any(crate::ids::is_invisible))
        {
            return Err(invalid_field(
                "verification_tests",
                "a test name contains an invisible or control character",
            ));
        }
        for r in &self.notify {
            let ok = !r.chars().any(crate::ids::is_invisible)
                && (r == "log"
                    || r.strip_prefix("mailto:")
                        .is_some_and(|a| a.contains('@') && !a.contains(char::is_whitespace))
                    || ((r.starts_with("https://") || r.starts_with("http://")) && !r.contains(char::is_whitespace)));
            if !ok {
                return Err(invalid_field(
                    "notify",
                    format!(
                        "unknown recipient {:?}: use an http(s) URL, mailto:ADDRESS or log",
                        r.chars().take(64).collect::<String>()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// An `invalid_policy` error naming `field`.
pub fn invalid_field(field: &str, message: impl std::fmt::Display) -> Error {
    Error::new(
        Reason::InvalidPolicy,
        format!("invalid policy field `{field}`: {message}"),
    )
}

/// Parses a 5-field cron expression (lists, ranges, steps, month and day
/// names; day-of-month and day-of-week combine with the standard OR rule).
pub fn parse_cron(expr: &str) -> Result<Cron> {
    if expr.split_whitespace().count() != 5 {
        return Err(invalid_field(
            "cron",
            format!("{expr:?} must have 5 fields: minute hour day-of-month month day-of-week"),
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| invalid_field("cron", format!("{expr:?}: {e}")))
}

/// Parses an IANA time zone name.
pub fn parse_timezone(name: &str) -> Result<chrono_tz::Tz> {
    chrono_tz::Tz::from_str(name).map_err(|_| invalid_field("timezone", format!("unknown time zone {name:?}")))
}

impl Trigger {
    /// Checks every field; errors are `invalid_policy` naming the field.
    pub fn validate(&self) -> Result<()> {
        match self {
            Trigger::MaxAgeDays(0) => Err(invalid_field("max_age_days", "must be at least 1")),
            Trigger::MaxUses(0) => Err(invalid_field("max_uses", "must be at least 1")),
            Trigger::MaxAgeDays(_) | Trigger::MaxUses(_) | Trigger::Manual => Ok(()),
            Trigger::Cron { expr, timezone } => {
                parse_cron(expr)?;
                parse_timezone(timezone)?;
                Ok(())
            }
            Trigger::Monthly { day, hour, minute } => {
                if !(1..=31).contains(day) {
                    return Err(invalid_field("monthly.day", "must be 1 to 31"));
                }
                if *hour > 23 {
                    return Err(invalid_field("monthly.hour", "must be 0 to 23"));
                }
                if *minute > 59 {
                    return Err(invalid_field("monthly.minute", "must be 0 to 59"));
                }
                Ok(())
            }
            Trigger::Any(list) | Trigger::All(list) => {
                if list.is_empty() {
                    return Err(invalid_field("any/all", "needs at least one trigger"));
                }
                list.iter().try_for_each(Trigger::validate)
            }
        }
    }

    /// Whether the trigger fires for `facts`.
    pub fn is_due(&self, facts: &Facts) -> Result<bool> {
        self.is_due_within(facts, None)
    }

    /// Whether the trigger fires for `facts`; with a `window`, calendar
    /// triggers fire only if an occurrence since the credential became
    /// current lies within `window` before now.
    pub fn is_due_within(&self, facts: &Facts, window: Option<TimeDelta>) -> Result<bool> {
        Ok(match self {
            Trigger::MaxAgeDays(days) => facts.now - facts.current_since >= TimeDelta::days(i64::from(*days)),
            Trigger::MaxUses(max) => facts.uses >= *max,
            Trigger::Manual => false,
            Trigger::Cron { .. } | Trigger::Monthly { .. } => {
                let from = match window {
                    Some(w) => facts.current_since.max(facts.now - w),
                    None => facts.current_since,
                };
                self.next_calendar_after(from)?.is_some_and(|t| t <= facts.now)
            }
            Trigger::Any(list) => {
                for t in list {
                    if t.is_due_within(facts, window)? {
                        return Ok(true);
                    }
                }
                false
            }
            Trigger::All(list) => {
                for t in list {
                    if !t.is_due_within(facts, window)? {
                        return Ok(false);
                    }
                }
                true
            }
        })
    }

    /// For calendar triggers, the first occurrence strictly after `after`.
    pub fn next_calendar_after(&self, after: Timestamp) -> Result<Option<Timestamp>> {
        let (cron, tz) = match self {
            Trigger::Cron { expr, timezone } => (parse_cron(expr)?, parse_timezone(timezone)?),
            Trigger::Monthly { day, hour, minute } => {
                (parse_cron(&format!("{minute} {hour} {day} * *"))?, chrono_tz::UTC)
            }
            _ => return Ok(None),
        };
        let local = after.with_timezone(&tz);
        Ok(cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc)))
    }

    /// The earliest time the trigger could fire on time alone (usage
    /// triggers have none), for planning and status.
    pub fn next_due_estimate(&self, facts: &Facts) -> Result<Option<Timestamp>> {
        Ok(match self {
            Trigger::MaxAgeDays(days) => Some(facts.current_since + TimeDelta::days(i64::from(*days))),
            Trigger::MaxUses(_) | Trigger::Manual => None,
            Trigger::Cron { .. } | Trigger::Monthly { .. } => self.next_calendar_after(facts.current_since)?,
            Trigger::Any(list) => {
                let mut best: Option<Timestamp> = None;
                for t in list {
                    if let Some(x) = t.next_due_estimate(facts)? {
                        best = Some(best.map_or(x, |b| b.min(x)));
                    }
                }
                best
            }
            Trigger::All(list) => {
                let mut latest: Option<Timestamp> = None;
                for t in list {
                    match t.next_due_estimate(facts)? {
                        Some(x) => latest = Some(latest.map_or(x, |l| l.max(x))),
                        None => return Ok(None),
                    }
                }
                latest
            }
        })
    }
}

impl Policy {
    /// Checks the name and the trigger.
    pub fn validate(&self) -> Result<()> {
        crate::ids::KeyringName::parse(self.name.as_str()).map_err(|_| {
            invalid_field(
                "name",
                format!("{:?}: use 1 to 128 letters, digits, '.', '_', '-' or ':'", self.name),
            )
        })?;
        self.trigger.validate()?;
        if self.trigger == Trigger::Manual && self.procedure.rotation_type != RotationType::Manual {
            return Err(invalid_field(
                "trigger",
                "a policy without a trigger must have rotation type manual",
            ));
        }
        self.procedure.validate()
    }

    /// Whether the policy fires for `facts`: active, not manual, and its
    /// trigger due (calendar triggers only within the rotation window).
    pub fn fires(&self, facts: &Facts) -> Result<bool> {
        if !self.procedure.is_active || self.procedure.rotation_type == RotationType::Manual {
            return Ok(false);
        }
        let window = self.procedure.window_minutes.map(|m| TimeDelta::minutes(i64::from(m)));
        self.trigger.is_due_within(facts, window)
    }
}

/// Parses a duration like `90s`, `30m`, `12h`, `7d` or `2w` (a bare number
/// is seconds); errors are `invalid_policy` naming `field`. Negative or
/// zero durations are refused.
pub fn parse_duration(field: &str, text: &str) -> Result<TimeDelta> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit() && c != '-').unwrap_or(t.len()));
    let n: i64 = digits.parse().map_err(|_| {
        invalid_field(
            field,
            format!("{text:?} is not a duration like 90s, 30m, 12h, 7d or 2w"),
        )
    })?;
    if n <= 0 {
        return Err(invalid_field(field, format!("{text:?} must be positive")));
    }
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(invalid_field(
                field,
                format!("{text:?} has an unknown unit: use s, m, h, d or w"),
            ));
        }
    };
    n.checked_mul(seconds)
        .filter(|s| *s <= 3660 * 86_400)
        .map(TimeDelta::seconds)
        .ok_or_else(|| invalid_field(field, format!("{text:?} is too long (at most 3660 days)")))
}

/// A policy as operators write it (CLI flags, API body): plain numbers and
/// strings, checked field by field into a [`Policy`]. Negative numbers,
/// unknown strategies, generators, rotation types, invalid cron
/// expressions and time zones are `invalid_policy` naming the field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySpec {
    /// Days between rotations (seed 001's `interval_days`; the same as `max_age_days`).
    pub interval_days: Option<i64>,
    /// Rotate when the current credential is this many days old.
    pub max_age_days: Option<i64>,
    /// Rotate when the current key sealed this many values (keyrings).
    pub max_uses: Option<i64>,
    /// 5-field cron expression.
    pub cron: Option<String>,
    /// Time zone of the cron expression (default `UTC`).
    pub timezone: Option<String>,
    /// Monthly `DAY:HH:MM` (UTC).
    pub monthly: Option<String>,
    /// Several triggers combine with ALL instead of ANY.
    pub all: bool,
    /// Calendar triggers only fire within this long after an occurrence (e.g. `2h`).
    pub window: Option<String>,
    /// `manual`, `automatic` or `scheduled` (default: `scheduled` with a cron or monthly trigger, else `automatic`).
    pub rotation_type: Option<String>,
    /// `immediate`, `staged`, `dual-write` or `blue-green`.
    pub strategy: Option<String>,
    /// `random:LEN[:CHARSET]`, `uuid` or `hex:LEN`.
    pub generator: Option<String>,
    /// Verification tests.
    pub verify: Vec<String>,
    /// Run the verification tests (default true).
    pub require_verification: Option<bool>,
    /// Do not roll back a failed rotation.
    pub no_rollback: bool,
    /// Retries of a failed scheduled rotation before the schedule is orphaned (default 3).
    pub max_retries: Option<i64>,
    /// Backoff before the first retry in seconds (default 60; doubles).
    pub retry_backoff_seconds: Option<i64>,
    /// Grace period of the replaced credential in hours.
    pub grace_period_hours: Option<i64>,
    /// Recipients: webhook URLs, `mailto:ADDRESS`, `log`.
    pub notify: Vec<String>,
    /// Notify on failures and rollbacks (default true).
    pub notify_on_failure: Option<bool>,
    /// Lead times before expiry or the next rotation, e.g. `7d`, `1d`.
    pub notify_before: Vec<String>,
    /// Whether the policy is active (default true).
    pub active: Option<bool>,
    /// Keyrings: migrate values after rotating.
    pub migrate: bool,
    /// Keyrings: retire unused versions after migrating.
    pub retire_old: bool,
    /// Authorities: revoke keys automatically when their grace period ends.
    pub auto_revoke: bool,
}

fn non_negative(field: &str, value: Option<i64>, max: i64) -> Result<Option<i64>> {
    match value {
        Some(v) if v < 0 => Err(invalid_field(field, format!("{v} is negative"))),
        Some(v) if v > max => Err(invalid_field(field, format!("{v} is larger than {max}"))),
        other => Ok(other),
    }
}

impl PolicySpec {
    /// Checks every field and builds the policy (not yet validated against
    /// the engine's verification tests; `Engine::set_policy` does that).
    pub fn into_policy(self, name: &str, now: Timestamp) -> Result<Policy> {
        let mut triggers = Vec::new();
        for (field, value) in [
            ("interval_days", self.interval_days),
            ("max_age_days", self.max_age_days),
        ] {
            if let Some(days) = non_negative(field, value, 36_600)? {
                if days == 0 {
                    return Err(invalid_field(
                        field,
                        "must be at least 1 (use --rotation-type manual for no automatic rotation)",
                    ));
                }
                triggers.push(Trigger::MaxAgeDays(days as u32));
            }
        }
        if let Some(n) = non_negative("max_uses", self.max_uses, i64::MAX)? {
            triggers.push(Trigger::MaxUses(n as u64));
        }
        let calendar = self.cron.is_some() || self.monthly.is_some();
        if let Some(expr) = self.cron {
            triggers.push(Trigger::Cron {
                expr,
                timezone: self.timezone.clone().unwrap_or_else(|| "UTC".into()),
            });
        } else if self.timezone.is_some() {
            return Err(invalid_field("timezone", "only applies to --cron"));
        }
        if let Some(m) = self.monthly {
            triggers.push(parse_monthly(&m)?);
        }
        let manual = self.rotation_type.as_deref().map(str::trim) == Some("manual");
        let trigger = match triggers.len() {
            0 if manual => Trigger::Manual,
            0 => {
                return Err(invalid_field(
                    "trigger",
                    "give --interval-days, --max-age-days, --max-uses, --cron or --monthly (or --rotation-type manual)",
                ));
            }
            1 => triggers.remove(0),
            _ if self.all => Trigger::All(triggers),
            _ => Trigger::Any(triggers),
        };
        let window_minutes = match self.window {
            Some(w) => {
                if !calendar {
                    return Err(invalid_field("window", "only applies to --cron or --monthly"));
                }
                let minutes = parse_duration("window", &w)?.num_minutes();
                Some(u32::try_from(minutes.max(1)).map_err(|_| invalid_field("window", "too long"))?)
            }
            None => None,
        };
        let rotation_type = match self.rotation_type {
            Some(t) => RotationType::parse(&t)?,
            None if calendar => RotationType::Scheduled,
            None => RotationType::Automatic,
        };
        let strategy = match self.strategy {
            Some(s) => Some(Strategy::parse(&s).ok_or_else(|| {
                invalid_field(
                    "strategy",
                    format!("unknown strategy {s:?}: use immediate, staged, dual-write or blue-green"),
                )
            })?),
            None => None,
        };
        let generator = self.generator.as_deref().map(Generator::parse).transpose()?;
        let defaults = Procedure::default();
        let notify_before_hours = self
            .notify_before
            .iter()
            .map(|d| {
                let hours = parse_duration("notify_before", d)?.num_hours();
                u32::try_from(hours.max(1)).map_err(|_| invalid_field("notify_before", "too long"))
            })
            .collect::<Result<Vec<u32>>>()?;
        let policy = Policy {
            name: name.to_owned(),
            trigger,
            migrate: self.migrate,
            retire_old: self.retire_old,
            updated_at: now,
            procedure: Procedure {
                rotation_type,
                window_minutes,
                strategy,
                generator,
                require_verification: self.require_verification.unwrap_or(true),
                verification_tests: self.verify,
                auto_rollback: !self.no_rollback,
                max_retries: non_negative("max_retries", self.max_retries, i64::from(MAX_RETRIES))?
                    .map_or(defaults.max_retries, |v| v as u32),
                retry_backoff_seconds: non_negative("retry_backoff_seconds", self.retry_backoff_seconds, 86_400)?
                    .map_or(defaults.retry_backoff_seconds, |v| v as u32),
                grace_period_hours: non_negative(
                    "grace_period_hours",
                    self.grace_period_hours,
                    i64::from(MAX_POLICY_GRACE_HOURS),
                )?
                .map(|v| v as u32),
                is_active: self.active.unwrap_or(true),
                notify_on_failure: self.notify_on_failure.unwrap_or(true),
                notify: self.notify,
                notify_before_hours,
                auto_revoke: self.auto_revoke,
            },
        };
        policy.validate()?;
        Ok(policy)
    }
}

/// `DAY:HH:MM`.
fn parse_monthly(text: &str) -> Result<Trigger> {
    let bad = || invalid_field("monthly", format!("{text:?} is not DAY:HH:MM"));
    let parts: Vec<&str> = text.split(':').collect();
    let [day, hour, minute] = parts.as_slice() else {
        return Err(bad());
    };
    Ok(Trigger::Monthly {
        day: day.parse().map_err(|_| bad())?,
        hour: hour.parse().map_err(|_| bad())?,
        minute: minute.parse().map_err(|_| bad())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Timestamp {
        chrono::Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn composite_fires_on_either_leg() {
        let t = Trigger::Any(vec![Trigger::MaxAgeDays(30), Trigger::MaxUses(500)]);
        let since = at(2026, 1, 1, 0, 0);
        let young_busy = Facts {
            now: at(2026, 1, 2, 0, 0),
            current_since: since,
            uses: 500,
        };
        let old_idle = Facts {
            now: at(2026, 2, 1, 0, 0),
            current_since: since,
            uses: 0,
        };
        let young_idle = Facts {
            now: at(2026, 1, 2, 0, 0),
            current_since: since,
            uses: 499,
        };
        assert!(t.is_due(&young_busy).unwrap());
        assert!(t.is_due(&old_idle).unwrap());
        assert!(!t.is_due(&young_idle).unwrap());
        let all = Trigger::All(vec![Trigger::MaxAgeDays(30), Trigger::MaxUses(500)]);
        assert!(!all.is_due(&young_busy).unwrap());
        assert!(all.is_due(&Facts { uses: 500, ..old_idle }).unwrap());
    }

    #[test]
    fn monthly_schedule_next_time() {
        let t = Trigger::Monthly {
            day: 1,
            hour: 2,
            minute: 0,
        };
        assert_eq!(
            t.next_calendar_after(at(2026, 1, 15, 10, 0)).unwrap(),
            Some(at(2026, 2, 1, 2, 0))
        );
        assert_eq!(
            t.next_calendar_after(at(2026, 2, 1, 2, 0)).unwrap(),
            Some(at(2026, 3, 1, 2, 0))
        );
        let since = at(2026, 1, 15, 0, 0);
        assert!(
            !t.is_due(&Facts {
                now: at(2026, 2, 1, 1, 59),
                current_since: since,
                uses: 0
            })
            .unwrap()
        );
        assert!(
            t.is_due(&Facts {
                now: at(2026, 2, 1, 2, 0),
                current_since: since,
                uses: 0
            })
            .unwrap()
        );
    }

    #[test]
    fn cron_with_time_zone_and_the_or_rule() {
        let berlin = Trigger::Cron {
            expr: "0 2 * * *".into(),
            timezone: "Europe/Berlin".into(),
        };
        // 02:00 in Berlin is 01:00 UTC in winter, 00:00 UTC in summer.
        assert_eq!(
            berlin.next_calendar_after(at(2026, 1, 15, 10, 0)).unwrap(),
            Some(at(2026, 1, 16, 1, 0))
        );
        assert_eq!(
            berlin.next_calendar_after(at(2026, 7, 15, 10, 0)).unwrap(),
            Some(at(2026, 7, 16, 0, 0))
        );
        // Day-of-month 13 OR Friday: 2026-01-02 is a Friday.
        let either = Trigger::Cron {
            expr: "0 0 13 * FRI".into(),
            timezone: "UTC".into(),
        };
        assert_eq!(
            either.next_calendar_after(at(2026, 1, 1, 0, 0)).unwrap(),
            Some(at(2026, 1, 2, 0, 0))
        );
        let steps = Trigger::Cron {
            expr: "*/15 9-17 * * MON-FRI".into(),
            timezone: "UTC".into(),
        };
        assert_eq!(
            steps.next_calendar_after(at(2026, 1, 2, 17, 50)).unwrap(),
            Some(at(2026, 1, 5, 9, 0))
        );
    }

    /// Next two fire times after 2026-03-14T15:09:26Z for 21 expressions,
    /// as computed by an independent implementation (Python's croniter 2.x
    /// with pytz, `croniter(expr, base_in_zone).get_next()` twice).
    #[test]
    fn cron_matches_an_independent_reference() {
        const CASES: &[(&str, &str, &str, &str)] = &[
            ("* * * * *", "UTC", "2026-03-14T15:10:00Z", "2026-03-14T15:11:00Z"),
            ("0 * * * *", "UTC", "2026-03-14T16:00:00Z", "2026-03-14T17:00:00Z"),
            ("*/15 * * * *", "UTC", "2026-03-14T15:15:00Z", "2026-03-14T15:30:00Z"),
            ("5,35 9-17 * * *", "UTC", "2026-03-14T15:35:00Z", "2026-03-14T16:05:00Z"),
            ("0 2 * * *", "UTC", "2026-03-15T02:00:00Z", "2026-03-16T02:00:00Z"),
            ("0 2 1 * *", "UTC", "2026-04-01T02:00:00Z", "2026-05-01T02:00:00Z"),
            ("0 0 1 1 *", "UTC", "2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"),
            ("30 4 * * MON", "UTC", "2026-03-16T04:30:00Z", "2026-03-23T04:30:00Z"),
            ("0 9 * * MON-FRI", "UTC", "2026-03-16T09:00:00Z", "2026-03-17T09:00:00Z"),
            ("0 0 13 * FRI", "UTC", "2026-03-20T00:00:00Z", "2026-03-27T00:00:00Z"),
            (
                "0 12 * JAN,JUL *",
                "UTC",
                "2026-07-01T12:00:00Z",
                "2026-07-02T12:00:00Z",
            ),
            ("15 3 29 2 *", "UTC", "2028-02-29T03:15:00Z", "2032-02-29T03:15:00Z"),
            ("0 0 31 * *", "UTC", "2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z"),
            ("0 */6 * * *", "UTC", "2026-03-14T18:00:00Z", "2026-03-15T00:00:00Z"),
            (
                "10-20/5 8 * * SUN",
                "UTC",
                "2026-03-15T08:10:00Z",
                "2026-03-15T08:15:00Z",
            ),
            (
                "0 2 * * *",
                "Europe/Berlin",
                "2026-03-15T01:00:00Z",
                "2026-03-16T01:00:00Z",
            ),
            (
                "30 1 * * *",
                "America/New_York",
                "2026-03-15T05:30:00Z",
                "2026-03-16T05:30:00Z",
            ),
            (
                "0 9 * * 1-5",
                "Asia/Tokyo",
                "2026-03-16T00:00:00Z",
                "2026-03-17T00:00:00Z",
            ),
            (
                "0 0 * * 0",
                "Australia/Sydney",
                "2026-03-21T13:00:00Z",
                "2026-03-28T13:00:00Z",
            ),
            ("0 0 1,15 * *", "UTC", "2026-03-15T00:00:00Z", "2026-04-01T00:00:00Z"),
            ("0 3 * * 7", "UTC", "2026-03-15T03:00:00Z", "2026-03-22T03:00:00Z"),
        ];
        let base = chrono::DateTime::parse_from_rfc3339("2026-03-14T15:09:26Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        for (expr, tz, first, second) in CASES {
            let t = Trigger::Cron {
                expr: (*expr).into(),
                timezone: (*tz).into(),
            };
            t.validate().unwrap();
            let n1 = t.next_calendar_after(base).unwrap().unwrap();
            let n2 = t.next_calendar_after(n1).unwrap().unwrap();
            assert_eq!(crate::time::rfc3339(n1).replace(".000000", ""), *first, "{expr} ({tz})");
            assert_eq!(
                crate::time::rfc3339(n2).replace(".000000", ""),
                *second,
                "{expr} ({tz}), second"
            );
        }
    }

    #[test]
    fn invalid_fields_are_named() {
        let cases = [
            (Trigger::MaxAgeDays(0), "max_age_days"),
            (
                Trigger::Cron {
                    expr: "61 * * * *".into(),
                    timezone: "UTC".into(),
                },
                "cron",
            ),
            (
                Trigger::Cron {
                    expr: "* * * *".into(),
                    timezone: "UTC".into(),
                },
                "cron",
            ),
            (
                Trigger::Cron {
                    expr: "0 2 * * *".into(),
                    timezone: "Mars/Olympus".into(),
                },
                "timezone",
            ),
            (
                Trigger::Monthly {
                    day: 32,
                    hour: 0,
                    minute: 0,
                },
                "monthly.day",
            ),
            (Trigger::Any(vec![]), "any/all"),
        ];
        for (t, field) in cases {
            let e = t.validate().unwrap_err();
            assert_eq!(e.reason, Reason::InvalidPolicy);
            assert!(e.message.contains(field), "{}", e.message);
        }
    }
}

#[cfg(test)]
mod spec_tests {
    use super::*;

    #[test]
    fn a_manual_policy_needs_no_trigger_and_never_fires() {
        let now = Timestamp::default();
        let manual = PolicySpec {
            rotation_type: Some("manual".into()),
            strategy: Some("staged".into()),
            ..PolicySpec::default()
        }
        .into_policy("m", now)
        .unwrap();
        manual.validate().unwrap();
        assert_eq!(manual.trigger, Trigger::Manual);
        let facts = Facts {
            now: now + TimeDelta::days(10_000),
            current_since: now,
            uses: u64::MAX,
        };
        assert!(!manual.fires(&facts).unwrap());
        assert_eq!(manual.trigger.next_due_estimate(&facts).unwrap(), None);
        // A trigger-less policy that claims to rotate automatically is refused.
        let contradictory = Policy {
            procedure: Procedure {
                rotation_type: RotationType::Automatic,
                ..manual.procedure.clone()
            },
            ..manual
        };
        let e = contradictory.validate().unwrap_err();
        assert!(e.message.contains("`trigger`"), "{}", e.message);
    }

    #[test]
    fn policy_names_refuse_invisible_characters() {
        for bad in ["month\u{202e}ly", "month\u{200b}ly", "\u{feff}monthly"] {
            let e = spec().into_policy(bad, Timestamp::default()).and_then(|p| p.validate());
            assert!(e.is_err(), "{bad:?} accepted");
        }
        spec()
            .into_policy("monthly", Timestamp::default())
            .unwrap()
            .validate()
            .unwrap();
        for notify in ["mailto:ops@exam\u{202e}moc.elpmaxe", "https://hooks.example/\u{200b}x"] {
            let spec = PolicySpec {
                notify: vec![notify.into()],
                ..spec()
            };
            let e = spec.into_policy("p", Timestamp::default()).and_then(|p| p.validate());
            assert!(e.is_err(), "{notify:?} accepted");
        }
        let spec = PolicySpec {
            notify: vec!["mailto:ops@example.com".into()],
            ..spec()
        };
        spec.into_policy("p", Timestamp::default()).unwrap().validate().unwrap();
    }

    fn spec() -> PolicySpec {
        PolicySpec {
            interval_days: Some(30),
            ..PolicySpec::default()
        }
    }

    #[test]
    fn spec_fields_are_checked_and_named() {
        let now = Timestamp::default();
        let cases: Vec<(&str, PolicySpec)> = vec![
            (
                "interval_days",
                PolicySpec {
                    interval_days: Some(-1),
                    ..spec()
                },
            ),
            (
                "max_retries",
                PolicySpec {
                    max_retries: Some(-3),
                    ..spec()
                },
            ),
            (
                "grace_period_hours",
                PolicySpec {
                    grace_period_hours: Some(-24),
                    ..spec()
                },
            ),
            (
                "strategy",
                PolicySpec {
                    strategy: Some("yolo".into()),
                    ..spec()
                },
            ),
            (
                "generator",
                PolicySpec {
                    generator: Some("dice:6".into()),
                    ..spec()
                },
            ),
            (
                "cron",
                PolicySpec {
                    interval_days: None,
                    cron: Some("0 2 * *".into()),
                    ..spec()
                },
            ),
            (
                "cron",
                PolicySpec {
                    interval_days: None,
                    cron: Some("0 25 * * *".into()),
                    ..spec()
                },
            ),
            (
                "timezone",
                PolicySpec {
                    interval_days: None,
                    cron: Some("0 2 * * *".into()),
                    timezone: Some("Nowhere/City".into()),
                    ..spec()
                },
            ),
            (
                "window",
                PolicySpec {
                    window: Some("2h".into()),
                    ..spec()
                },
            ),
            (
                "rotation_type",
                PolicySpec {
                    rotation_type: Some("sometimes".into()),
                    ..spec()
                },
            ),
            (
                "notify_before",
                PolicySpec {
                    notify_before: vec!["-7d".into()],
                    ..spec()
                },
            ),
            ("trigger", PolicySpec::default()),
        ];
        for (field, s) in cases {
            let e = s.into_policy("p", now).unwrap_err();
            assert_eq!(e.reason, Reason::InvalidPolicy, "{field}");
            assert!(e.message.contains(&format!("`{field}`")), "{field}: {}", e.message);
        }
        let ok = PolicySpec {
            interval_days: None,
            cron: Some("0 3 * * MON-FRI".into()),
            timezone: Some("Europe/Berlin".into()),
            window: Some("2h".into()),
            strategy: Some("dual_write".into()),
            generator: Some("random:40:symbols".into()),
            notify_before: vec!["7d".into(), "1d".into()],
            ..PolicySpec::default()
        }
        .into_policy("p", now)
        .unwrap();
        assert_eq!(ok.procedure.rotation_type, RotationType::Scheduled);
        assert_eq!(ok.procedure.window_minutes, Some(120));
        assert_eq!(ok.procedure.strategy, Some(Strategy::DualWrite));
        assert_eq!(ok.procedure.notify_before_hours, vec![168, 24]);
    }

    #[test]
    fn a_window_limits_when_a_cron_trigger_fires() {
        use chrono::TimeZone;
        let policy = PolicySpec {
            cron: Some("0 2 * * *".into()),
            window: Some("1h".into()),
            ..PolicySpec::default()
        }
        .into_policy("p", Timestamp::default())
        .unwrap();
        let since = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let at = |h, m| chrono::Utc.with_ymd_and_hms(2026, 1, 2, h, m, 0).unwrap();
        let facts = |now| Facts {
            now,
            current_since: since,
            uses: 0,
        };
        assert!(!policy.fires(&facts(at(1, 59))).unwrap());
        assert!(policy.fires(&facts(at(2, 30))).unwrap());
        assert!(!policy.fires(&facts(at(3, 30))).unwrap(), "outside the window");
    }
}
