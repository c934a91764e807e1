//! `fuse cron EXPR`: the next fire times of a cron expression, to check one
//! before deploying it.

use std::process::ExitCode;

use serde_json::json;

use crate::schedule::Schedule;

#[derive(Debug, clap::Args)]
pub struct CronArgs {
    /// 5 fields (min hour day month weekday), or 6 with seconds first; or @daily etc.
    pub expr: String,
    /// IANA time zone the expression is read in (default UTC).
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,
    /// How many fire times to print.
    #[arg(long, default_value_t = 5)]
    pub count: usize,
    /// Start after this time (RFC 3339, e.g. 2026-03-28T00:00:00Z; default now).
    #[arg(long, value_name = "RFC3339")]
    pub from: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: CronArgs) -> anyhow::Result<ExitCode> {
    let schedule = match Schedule::cron(&args.expr, args.tz.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let from = match &args.from {
        Some(t) => match t.parse::<jiff::Timestamp>() {
            Ok(t) => t,
            Err(e) => {
                eprintln!(
                    "error: --from {t:?} is not an RFC 3339 time ({e}); e.g. 2026-03-28T00:00:00Z"
                );
                return Ok(ExitCode::from(2));
            }
        },
        None => jiff::Timestamp::now(),
    };
    let fires = schedule.upcoming(from, args.count.min(10_000));
    if args.json {
        let list: Vec<_> = fires
            .iter()
            .map(|z| json!({"local": z.to_string(), "utc": z.timestamp().to_string()}))
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({"expr": args.expr, "fires": list}))?
        );
    } else {
        for z in &fires {
            outln!(
                "{}  ({} UTC)",
                z.strftime("%Y-%m-%d %H:%M:%S %Z (%:z)"),
                z.timestamp().strftime("%Y-%m-%d %H:%M:%S")
            );
        }
        if fires.is_empty() {
            outln!("no fire times: the expression never matches");
        }
    }
    Ok(ExitCode::SUCCESS)
}
