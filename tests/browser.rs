//! Real headless Chromium, driven over the WebDriver protocol (ChromeDriver on
//! a free loopback port, plain JSON over HTTP): what the dashboard tests use.
//! Chromium and ChromeDriver come from `scripts/setup-test-deps.sh`; without
//! them the tests fail saying so (they are never skipped).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let client = self.client.clone();
        let _ = self.rt.block_on(async move {
            client
                .delete(url)
                .timeout(Duration::from_secs(10))
                .send()
                .await
        });
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn find_program(names: &[&str]) -> String {
    for name in names {
        if let Ok(out) = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            && out.status.success()
        {
            return String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
    }
    panic!(
        "none of {names:?} is installed: run scripts/setup-test-deps.sh (Debian: apt-get install chromium chromium-driver)"
    );
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium with a fresh profile, at 1280×800.
    pub fn start() -> Browser {
        Browser::start_with(&[])
    }

    /// [`Browser::start`] with more Chromium switches (`--force-dark-mode`).
    pub fn start_with(switches: &[&str]) -> Browser {
        let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
        let chromedriver = find_program(&["chromedriver"]);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = {
            let _inside = rt.enter();
            reqwest::Client::new()
        };
        let base = format!("http://127.0.0.1:{port}");
        // Ready when /status says so (ChromeDriver takes a moment to listen).
        crate::wait::wait_for_within("ChromeDriver to get ready", Duration::from_secs(30), || {
            rt.block_on(async {
                let r = client
                    .get(format!("{base}/status"))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .ok()?;
                let v: Value = r.json().await.ok()?;
                v["value"]["ready"].as_bool().filter(|ready| *ready)
            })
        });
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,800",
        ]
        .iter()
        .chain(switches)
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}});
        let answer: Value = rt.block_on(async {
            client
                .post(format!("{base}/session"))
                .json(&caps)
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_string();
        Browser {
            driver,
            base,
            session,
            rt,
            client,
            _profile: profile,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let answer: Value = self.rt.block_on(async {
            let mut req = self
                .client
                .request(method.parse().unwrap(), url)
                .timeout(Duration::from_secs(60));
            if let Some(body) = body {
                req = req.json(&body);
            }
            req.send().await.unwrap().json().await.unwrap()
        });
        answer["value"].clone()
    }

    /// Opens `url` and waits for the page to load.
    pub fn goto(&self, url: &str) {
        let v = self.call("POST", "/url", Some(json!({"url": url})));
        assert!(v.is_null(), "navigating to {url}: {v}");
    }

    pub fn url(&self) -> String {
        self.call("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub fn run(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// The text of the first element matching `css`, if any.
    pub fn text(&self, css: &str) -> Option<String> {
        self.run(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
            json!([css]),
        )
        .as_str()
        .map(str::to_string)
    }

    /// Polls until `check` gives a value (15 s at most, then fails naming `what`).
    pub fn wait<T>(&self, what: &str, mut check: impl FnMut(&Browser) -> Option<T>) -> T {
        crate::wait::wait_for_within(what, Duration::from_secs(15), || check(self))
    }

    /// The `data-state` of graph node `id` on a run page.
    pub fn node_state(&self, id: &str) -> Option<String> {
        self.run(
            "for (const e of document.querySelectorAll('[data-node]')) { if (e.dataset.node === arguments[0]) return e.dataset.state; } return null;",
            json!([id]),
        )
        .as_str()
        .map(str::to_string)
    }

    /// Sets the window's size (CSS pixels).
    pub fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Types `keys` on the keyboard, as a person would, into whatever has
    /// the focus (WebDriver key codes: `\u{E004}` Tab, `\u{E007}` Enter).
    pub fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                [
                    json!({"type": "keyDown", "value": c.to_string()}),
                    json!({"type": "keyUp", "value": c.to_string()}),
                ]
            })
            .collect();
        let v = self.call(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        );
        assert!(v.is_null(), "typing: {v}");
    }

    /// Saves a PNG screenshot of the window to `path` (folders made).
    pub fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine as _;
        let data = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

/// Where the tests save screenshots: `target/dashboard-screenshots/NAME.png`.
pub fn screenshot_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("dashboard-screenshots")
        .join(format!("{name}.png"))
}
