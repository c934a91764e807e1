//! The CLI's client of the daemon's API: the address from `daemon.json`, the
//! home's token, JSON in and out, and the API's error answers turned into
//! errors that say what the daemon said.

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::api::{self, Op};
use crate::daemon::{self, DaemonInfo};
use crate::home::Home;

pub(super) struct Client {
    pub info: DaemonInfo,
    base: String,
    token: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    /// A client of the daemon serving `home`; an error saying how to start it
    /// when none runs.
    pub fn of_home(home: &Home) -> anyhow::Result<Client> {
        let Some(info) = daemon::running(home) else {
            anyhow::bail!(
                "no fuse daemon is running for {}; start it with `fuse start`",
                home.root().display()
            );
        };
        let token = std::fs::read_to_string(home.token_path())
            .with_context(|| format!("cannot read the API token {}", home.token_path().display()))?
            .trim()
            .to_string();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        Ok(Client {
            base: info.url(),
            info,
            token,
            http: reqwest::Client::new(),
            runtime,
        })
    }

    /// Calls operation `op` of the route table with its path parameters, a
    /// query and an optional JSON body; the typed answer, or the API's error
    /// as an error.
    pub fn send<T: serde::de::DeserializeOwned>(
        &self,
        op: Op,
        params: &[&str],
        query: &[(&str, String)],
        body: Option<&(impl serde::Serialize + ?Sized)>,
    ) -> anyhow::Result<T> {
        self.runtime.block_on(self.request(op, params, query, body))
    }

    /// [`Client::send`] without query or body.
    pub fn get<T: serde::de::DeserializeOwned>(
        &self,
        op: Op,
        params: &[&str],
    ) -> anyhow::Result<T> {
        self.send(op, params, &[], None::<&Value>)
    }

    pub async fn request<T: serde::de::DeserializeOwned>(
        &self,
        op: Op,
        params: &[&str],
        query: &[(&str, String)],
        body: Option<&(impl serde::Serialize + ?Sized)>,
    ) -> anyhow::Result<T> {
        let route = op.route();
        let method = reqwest::Method::from_bytes(route.method.as_bytes())
            .context("a route of the table has an unknown method")?;
        let url = format!("{}{}{}", self.base, api::PREFIX, api::path_of(op, params));
        let mut req = self
            .http
            .request(method, url)
            .query(query)
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(60));
        if let Some(body) = body {
            req = req.json(body);
        }
        let answer = req
            .send()
            .await
            .with_context(|| format!("cannot reach the daemon at {}", self.base))?;
        let status = answer.status();
        let bytes = answer
            .bytes()
            .await
            .with_context(|| format!("the daemon at {} broke off its answer", self.base))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "the daemon's answer to {} {} is not what this fuse expects (is the daemon another version? `fuse status` shows it)",
                    route.method, route.path
                )
            });
        }
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let problems = value["error"]["details"]
            .as_array()
            .or_else(|| value["error"]["details"]["problems"].as_array())
            .map(|p| {
                p.iter()
                    .map(|x| {
                        let text = x["message"]
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| {
                                x.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| x.to_string())
                            });
                        match x["path"].as_str() {
                            Some(path) => format!("\n  - {path}: {text}"),
                            None => format!("\n  - {text}"),
                        }
                    })
                    .collect::<String>()
            })
            .unwrap_or_default();
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{status}"));
        // Refused input is exit 2, like the local commands.
        if matches!(status.as_u16(), 400 | 404 | 409 | 422) {
            return Err(crate::Error::Refused(format!("{message}{problems}")).into());
        }
        Err(anyhow::anyhow!(
            "the daemon answered {}: {message}{problems}",
            status.as_u16()
        ))
    }

    /// Calls `each` with every live event of run `run_id` (text and parsed),
    /// from its start, until the run ends.
    pub fn events(
        &self,
        run_id: &str,
        mut each: impl FnMut(&str, &Value) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.runtime.block_on(async {
            use futures_util::StreamExt;
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let url = format!(
                "ws://{}:{}/api/v1/executions/{run_id}/events",
                self.info.host, self.info.port
            );
            let mut request = url.as_str().into_client_request()?;
            request
                .headers_mut()
                .insert("Authorization", format!("Bearer {}", self.token).parse()?);
            let (mut ws, _) = tokio_tungstenite::connect_async(request)
                .await
                .map_err(|e| anyhow::anyhow!("cannot follow run {run_id}: {e}"))?;
            while let Some(Ok(msg)) = ws.next().await {
                let Ok(text) = msg.to_text() else { continue };
                if text.is_empty() {
                    continue;
                }
                let event: Value = serde_json::from_str(text).unwrap_or_default();
                each(text, &event)?;
            }
            anyhow::Ok(())
        })
    }

    /// Follows a run's live events until it ends (printing them unless
    /// `quiet`), then returns its record once it is committed.
    pub fn follow(&self, run_id: &str, quiet: bool) -> anyhow::Result<Value> {
        self.events(run_id, |_, event| {
            if !quiet {
                eprintln!("{}", super::daemon::describe(event));
            }
            Ok(())
        })?;
        self.runtime.block_on(async {
            // The live stream ends when the run does; its record may reach the
            // database a moment later (the history writer commits in batches).
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let record: Value = self
                    .request(Op::GetExecution, &[run_id], &[], None::<&Value>)
                    .await?;
                let finished = !matches!(record["status"].as_str(), Some("running" | "queued"));
                if finished || std::time::Instant::now() > deadline {
                    return Ok(record);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    }
}

/// Prints a finished run as `fuse run` does and returns its exit code.
pub(super) fn print_run(record: &Value, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let status = record["status"].as_str().unwrap_or("");
    if json {
        outln!("{}", serde_json::to_string_pretty(record)?);
    } else if status == "succeeded" {
        outln!("{}", serde_json::to_string_pretty(&record["output"])?);
    }
    if status != "succeeded" {
        // As `fuse run`: a failed run's error on stderr, not a `null` output.
        eprintln!(
            "error: run {} {status}: {}",
            record["id"].as_str().unwrap_or("?"),
            record["error"].as_str().unwrap_or("no error recorded")
        );
    }
    Ok(if status == "succeeded" {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}
