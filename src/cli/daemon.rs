//! `fuse start`, `fuse stop`, `fuse status`: the local daemon.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;

use super::Globals;
use crate::daemon;
use crate::home::Home;

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Stay in the foreground (for systemd, launchd, containers); logs on stderr.
    #[arg(long)]
    pub foreground: bool,
    /// Port to listen on (default daemon.port; 0 picks a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Do not open the dashboard in a browser (there is no dashboard yet).
    #[arg(long)]
    pub skip_browser: bool,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub json: bool,
}

pub fn start(globals: &Globals, args: StartArgs) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(globals.home.clone())?;
    if args.foreground {
        daemon::run_foreground(&home, args.port)?;
        return Ok(ExitCode::SUCCESS);
    }
    let info = daemon::start_detached(&home, args.port)?;
    if !globals.quiet {
        println!(
            "fuse daemon started (pid {}) on {}; logs in {}; `fuse stop` stops it",
            info.pid,
            info.url(),
            home.logs_dir().join("daemon.log").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stop(globals: &Globals) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(globals.home.clone())?;
    match daemon::stop(&home, daemon::GRACE + Duration::from_secs(20))? {
        Some(pid) => {
            if !globals.quiet {
                println!("fuse daemon (pid {pid}) stopped");
            }
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("no fuse daemon is running for {}", home.root().display());
            Ok(ExitCode::from(1))
        }
    }
}

pub fn status(globals: &Globals, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(globals.home.clone())?;
    let schedules = home
        .open_store()
        .map(|store| daemon::scheduler::upcoming(&store))
        .unwrap_or_default();
    let Some(info) = daemon::running(&home) else {
        if args.json {
            println!("{}", json!({"running": false, "schedules": schedules}));
        } else {
            println!("not running (start it with `fuse start`)");
            print_schedules(&schedules);
        }
        return Ok(ExitCode::from(3));
    };
    let token = std::fs::read_to_string(home.token_path()).unwrap_or_default();
    let health = std::thread::spawn({
        let url = format!("{}/api/v1/health", info.url());
        let token = token.trim().to_string();
        move || -> Option<serde_json::Value> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let r = reqwest::Client::new()
                    .get(url)
                    .bearer_auth(token)
                    .timeout(Duration::from_secs(3))
                    .send()
                    .await
                    .ok()?;
                r.json().await.ok()
            })
        }
    })
    .join()
    .ok()
    .flatten();
    if args.json {
        println!(
            "{}",
            json!({"running": true, "pid": info.pid, "url": info.url(), "started_at": info.started_at,
                   "health": health, "schedules": schedules})
        );
    } else {
        println!("running   pid {} on {}", info.pid, info.url());
        println!("started   {}", info.started_at);
        match health {
            Some(h) => println!(
                "health    ok; up {}s; {} run(s) active",
                h["uptime_s"], h["active_runs"]
            ),
            None => println!("health    no answer from {}", info.url()),
        }
        print_schedules(&schedules);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_schedules(schedules: &[serde_json::Value]) {
    if schedules.is_empty() {
        return;
    }
    println!("schedules");
    for s in schedules {
        println!(
            "  {:<20} {:<9} {:<18} next {}",
            s["workflow"].as_str().unwrap_or(""),
            s["kind"].as_str().unwrap_or(""),
            s["spec"].as_str().unwrap_or(""),
            s["next_fire_at"].as_str().unwrap_or("-")
        );
    }
}
