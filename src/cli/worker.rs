//! `fuse worker`: runs queued runs from PostgreSQL (see [`crate::worker`]).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::Globals;
use crate::home::Home;
use crate::secrets::vault::HomeCredentials;

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The PostgreSQL database of the queue: postgres://USER:PASSWORD@HOST/DB.
    #[arg(
        long,
        env = "FUSE_STORE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store: Option<String>,

    /// Runs at once (default: the number of CPUs).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,

    /// This worker's tags (comma-separated): it takes runs that ask for tags it has.
    #[arg(long, value_delimiter = ',', value_name = "TAG,…")]
    pub tags: Vec<String>,

    /// How long a claimed run is held without a heartbeat; a run whose worker
    /// dies is taken over after it.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub lease: String,

    /// How often an idle worker looks for runs when no notification comes.
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    pub poll: String,
}

pub fn run(globals: &Globals, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let duration = |flag: &str, text: &str| {
        crate::engine::duration::parse(text).map_err(|e| {
            anyhow::Error::new(crate::Error::Setting(format!("--{flag} {text:?}: {e}")))
        })
    };
    let lease = duration("lease", &args.lease)?;
    let poll = duration("poll", &args.poll)?;
    if lease < std::time::Duration::from_millis(300) {
        anyhow::bail!(crate::Error::Setting(format!(
            "--lease {} is too short for heartbeats to keep runs (300ms at least; 30s is the default)",
            args.lease
        )));
    }
    let home = Home::resolve(globals.home.clone())?;
    let store = match args.store.clone() {
        Some(url) => url,
        None => home.store_url()?.ok_or_else(|| {
            crate::Error::Setting(
                "a worker needs the store on PostgreSQL: --store postgres://USER:PASSWORD@HOST/DB, FUSE_STORE_URL, or store.url in the home's fuse.toml".into(),
            )
        })?,
    };
    crate::store::pg::check_url(&store).map_err(crate::Error::Setting)?;
    let mut settings = crate::nodes::Settings::default();
    let mut max_parallel = crate::config::EngineConfig::default().max_parallel;
    if home.probe()? {
        let config = home.config(&Default::default())?;
        settings = crate::nodes::Settings::of_home(&home, &config);
        max_parallel = config.engine.max_parallel;
    }
    // Memory of llm.chat and llm.agent is the store's, shared by every worker.
    settings.store_url = Some(store.clone());
    // The node types this worker has: the built-ins and the home's packages.
    let registry = super::run::home_registry(&home, &settings, !globals.quiet);
    // Credentials are the store's, opened with this home's master key.
    let credentials: Option<Arc<dyn crate::engine::CredentialSource>> = if home.is_initialized() {
        let sealed = crate::store::pg::db::shared(&store)?;
        Some(Arc::new(HomeCredentials::on(home.clone(), sealed)))
    } else {
        None
    };
    let options = crate::worker::Options {
        concurrency: args
            .concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1),
        tags: args.tags.clone(),
        lease,
        poll,
        max_parallel,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let pg = crate::store::pg::Pg::connect(&store).await?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(
                            "cannot watch for SIGTERM ({e}); Ctrl-C still stops the worker"
                        );
                        let _ = tokio::signal::ctrl_c().await;
                        stop.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            stop.cancel();
        });
        crate::worker::run(pg, registry, credentials, options, shutdown).await
    })?;
    Ok(ExitCode::SUCCESS)
}
