//! The dashboard's sign-in and pages over real HTTP against a real daemon:
//! one-time links (used once, expiring), token sign-in, the session cookie on
//! the API, cross-site requests refused, and the overview's content.

use std::time::Duration;

use serde_json::{Value, json};

use crate::daemon::{Daemon, start, start_with};
use crate::helper::TestHome;

/// An answer: status, headers, body text.
struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The session id a `Set-Cookie` gives.
    fn session(&self) -> Option<String> {
        let cookie = self.header("set-cookie");
        cookie
            .strip_prefix("fuse_session=")
            .and_then(|rest| rest.split(';').next())
            .filter(|id| !id.is_empty())
            .map(str::to_string)
    }
}

/// One request that does not follow redirects.
fn page(method: &str, url: &str, headers: &[(&str, String)], form: Option<&str>) -> Page {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut req = client
            .request(method.parse().unwrap(), url)
            .timeout(Duration::from_secs(10));
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        if let Some(form) = form {
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form.to_string());
        }
        let r = req.send().await.unwrap();
        Page {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap_or_default(),
        }
    })
}

fn cookie(id: &str) -> (&'static str, String) {
    ("cookie", format!("fuse_session={id}"))
}

/// A new sign-in link from `fuse dashboard --json`.
pub(crate) fn link(d: &Daemon<'_>) -> String {
    let out =
        crate::helper::stdout_of(d.home.cmd().args(["dashboard", "--json", "--skip-browser"]));
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["expires_in_s"], 60);
    answer["url"].as_str().unwrap().to_string()
}

/// Deploys a workflow whose node fails and runs it to the end: its id and error.
fn failed_run(d: &Daemon<'_>) -> (String, String) {
    let wf = json!({"name": "breaks", "nodes": [
        {"id": "boom", "type": "transform.set",
         "data": {"inputs": {"values": {"x": "{{ trigger.missing.deep }}"}}}}
    ]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let (code, started) = d.call("POST", "/api/v1/workflows/breaks/run", Some(json!({})));
    assert_eq!(code, 202, "{started}");
    let id = started["run_id"].as_str().unwrap().to_string();
    let run = d.wait_status(&id, "failed");
    (id, run["error"].as_str().unwrap().to_string())
}

/// Signs in through a fresh link; the session id.
fn sign_in(d: &Daemon<'_>) -> String {
    let signed = page("GET", &link(d), &[], None);
    assert_eq!(signed.status, 303, "{}", signed.body);
    signed.session().expect("a session cookie")
}

#[test]
fn a_sign_in_link_works_once_and_sets_a_strict_http_only_cookie() {
    let home = TestHome::initialized();
    let d = start(&home);
    let url = link(&d);
    assert!(url.starts_with(&format!("{}/login?code=", d.url)), "{url}");
    // The request takes no fields: anything but nothing or {} is refused.
    for body in [json!([]), json!({"x": 1}), json!(3)] {
        let (code, answer) = d.call("POST", "/api/v1/dashboard/login-links", Some(body.clone()));
        assert_eq!(code, 400, "{body}: {answer}");
    }
    assert_eq!(
        d.call("POST", "/api/v1/dashboard/login-links", Some(json!({})))
            .0,
        201
    );

    let first = page("GET", &url, &[], None);
    assert_eq!(first.status, 303, "{}", first.body);
    assert_eq!(first.header("location"), "/");
    let set = first.header("set-cookie").to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );
    let id = first.session().expect("a session cookie");

    // The same link again: refused, with the way to get another.
    let again = page("GET", &url, &[], None);
    assert_eq!(again.status, 401);
    assert!(again.session().is_none());
    assert!(again.body.contains("already used"), "{}", again.body);
    assert!(again.body.contains("fuse dashboard"), "{}", again.body);

    // The session opens the overview; no session, no overview.
    let overview = page("GET", &format!("{}/", d.url), &[cookie(&id)], None);
    assert_eq!(overview.status, 200);
    assert!(overview.header("content-type").starts_with("text/html"));
    assert!(overview.body.contains("Overview"), "{}", overview.body);
    for path in [
        "/",
        "/runs",
        "/runs?status=failed",
        "/runs/some-run",
        "/workflows",
        "/workflows/some-flow",
        "/workflows/some-flow/diff?from=1&to=2",
        "/triggers",
        "/nodes",
        "/credentials",
    ] {
        let anonymous = page("GET", &format!("{}{path}", d.url), &[], None);
        assert_eq!(anonymous.status, 303, "{path}");
        assert_eq!(anonymous.header("location"), "/login", "{path}");
    }
    let runs = page("GET", &format!("{}/runs", d.url), &[cookie(&id)], None);
    assert_eq!(runs.status, 200);
    let missing = page("GET", &format!("{}/runs/nope", d.url), &[cookie(&id)], None);
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("There is no run"), "{}", missing.body);
    let forged = page("GET", &format!("{}/", d.url), &[cookie("00ff")], None);
    assert_eq!(forged.status, 303, "an unknown session id is no session");

    // Signing out ends the session on the daemon, not only in the browser.
    let origin = ("origin", d.url.clone());
    let out = page(
        "POST",
        &format!("{}/logout", d.url),
        &[cookie(&id), origin],
        None,
    );
    assert_eq!(out.status, 303);
    assert!(out.header("set-cookie").contains("Max-Age=0"));
    let after = page("GET", &format!("{}/", d.url), &[cookie(&id)], None);
    assert_eq!(after.status, 303);
}

#[test]
fn an_expired_link_is_refused() {
    let home = TestHome::initialized();
    let d = start_with(&home, &[("FUSE_DAEMON_LOGIN_LINK_SECONDS", "0")]);
    let out = crate::helper::stdout_of(home.cmd().args(["dashboard", "--json", "--skip-browser"]));
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["expires_in_s"], 0);
    let used = page("GET", answer["url"].as_str().unwrap(), &[], None);
    assert_eq!(used.status, 401);
    assert!(used.session().is_none());
    drop(d);
}

#[test]
fn the_session_signs_api_calls_from_the_dashboard_only() {
    let home = TestHome::initialized();
    let d = start(&home);
    let id = sign_in(&d);
    let api = |method: &str, path: &str, origin: Option<&str>| {
        let mut headers = vec![cookie(&id)];
        if let Some(o) = origin {
            headers.push(("origin", o.to_string()));
        }
        page(method, &format!("{}{path}", d.url), &headers, None)
    };
    // Reads from the dashboard's pages.
    let health = api("GET", "/api/v1/health", None);
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(api("GET", "/api/v1/health", Some(&d.url)).status, 200);
    // A page of another site cannot use the cookie, to read or to change.
    assert_eq!(
        api("GET", "/api/v1/workflows", Some("http://evil.example")).status,
        403
    );
    let forged = api(
        "POST",
        "/api/v1/dashboard/login-links",
        Some("http://evil.example"),
    );
    assert_eq!(forged.status, 403);
    assert!(forged.body.contains("cross_origin"), "{}", forged.body);
    assert_eq!(
        api("POST", "/api/v1/dashboard/login-links", None).status,
        403,
        "a change without an Origin"
    );
    // Every change the pages make, refused from another site.
    for (method, path) in [
        ("POST", "/api/v1/nodes"),
        ("POST", "/api/v1/credentials"),
        ("DELETE", "/api/v1/credentials/github"),
        ("POST", "/api/v1/workflows/x/run"),
        ("POST", "/api/v1/executions/x/retry"),
    ] {
        assert_eq!(
            api(method, path, Some("http://evil.example")).status,
            403,
            "{method} {path}"
        );
    }
    let made = api("POST", "/api/v1/dashboard/login-links", Some(&d.url));
    assert_eq!(made.status, 201, "{}", made.body);
    // No cookie and no token: 401 as before.
    let none = page("GET", &format!("{}/api/v1/health", d.url), &[], None);
    assert_eq!(none.status, 401);
}

#[test]
fn signing_in_with_a_token_and_cross_site_forms_refused() {
    let home = TestHome::initialized();
    let d = start(&home);
    let login = format!("{}/login", d.url);
    let form_page = page("GET", &login, &[], None);
    assert_eq!(form_page.status, 200);
    assert!(form_page.body.contains("name=\"token\""));
    assert!(
        form_page
            .header("content-security-policy")
            .contains("default-src 'none'"),
        "{:?}",
        form_page.headers
    );

    let origin = ("origin", d.url.clone());
    let wrong = page(
        "POST",
        &login,
        std::slice::from_ref(&origin),
        Some("token=not-a-token"),
    );
    assert_eq!(wrong.status, 401);
    assert!(wrong.session().is_none());
    assert!(
        !wrong.body.contains("not-a-token"),
        "the page repeats no token"
    );

    let form = format!("token={}", d.token);
    let cross = page(
        "POST",
        &login,
        &[("origin", "http://evil.example".into())],
        Some(&form),
    );
    assert_eq!(cross.status, 403);
    assert!(cross.session().is_none());

    let good = page("POST", &login, &[origin], Some(&form));
    assert_eq!(good.status, 303, "{}", good.body);
    let id = good.session().expect("a session");
    let overview = page("GET", &format!("{}/", d.url), &[cookie(&id)], None);
    assert_eq!(overview.status, 200);
    assert!(
        !overview.body.contains(&d.token),
        "the token never goes back to the browser"
    );
}

#[test]
fn the_overview_shows_failed_runs_with_their_error() {
    let home = TestHome::initialized();
    let d = start(&home);
    let (id, error) = failed_run(&d);

    let session = sign_in(&d);
    let overview = page("GET", &format!("{}/", d.url), &[cookie(&session)], None);
    assert_eq!(overview.status, 200);
    let body = overview.body;
    assert!(body.contains(&id[id.len() - 8..]), "the run is listed");
    assert!(body.contains("s-failed"), "marked failed");
    // The error, HTML-escaped as the page shows it.
    let shown = error.replace('&', "&amp;").replace('"', "&#34;");
    assert!(
        body.contains(&shown) || body.contains(&error.replace('"', "&quot;")),
        "the error is shown: {error}"
    );
    // The chart of the last 24 hours counts it, in the current hour (or the
    // one before, had the hour turned since).
    assert!(
        body.contains(r#"data-total="1" data-failed="1""#),
        "the chart counts the run"
    );
    let bars: Vec<&str> = body.split("<g data-hour=").skip(1).collect();
    assert_eq!(bars.len(), 24);
    let with_it: Vec<usize> = (0..24)
        .filter(|i| bars[*i].contains("0 succeeded, 1 failed, 0 other"))
        .collect();
    assert!(with_it == [23] || with_it == [22], "{with_it:?}");
}

#[test]
fn fuse_dashboard_without_a_daemon_says_how_to_start_one() {
    let home = TestHome::initialized();
    let out = home.cmd().args(["dashboard"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fuse start"), "{stderr}");
}

#[test]
fn in_chromium_a_link_signs_in_and_a_failed_run_shows_red_with_its_error() {
    use crate::browser::{Browser, screenshot_path};
    let home = TestHome::initialized();
    let d = start(&home);
    let (id, _) = failed_run(&d);

    let browser = Browser::start();
    // Without a session the dashboard sends the browser to sign in.
    browser.goto(&format!("{}/", d.url));
    assert!(browser.url().ends_with("/login"), "{}", browser.url());
    assert!(browser.text("h1").is_some_and(|t| t.contains("Sign in")));
    browser.screenshot(&screenshot_path("login"));

    let url = link(&d);
    browser.goto(&url);
    assert_eq!(browser.url(), format!("{}/", d.url));
    assert_eq!(browser.text("h1").as_deref(), Some("Overview"));
    // The failed run: listed with its error, its status painted in the
    // failure colour.
    let failures = browser.text("#failures").unwrap_or_default();
    assert!(failures.contains(&id[id.len() - 8..]), "{failures}");
    assert!(failures.contains("missing"), "{failures}");
    let colour = browser.run(
        "const e = document.querySelector('#runs td.s-failed'); return e ? getComputedStyle(e).color : null;",
        json!([]),
    );
    assert_eq!(colour, json!("rgb(207, 34, 46)"), "a failed run is red");
    // The session cookie is out of the page's reach.
    assert_eq!(browser.run("return document.cookie;", json!([])), json!(""));
    browser.screenshot(&screenshot_path("overview"));

    // The same link in the same browser again: refused.
    browser.goto(&url);
    let problem = browser.text("#problem").unwrap_or_default();
    assert!(problem.contains("already used"), "{problem}");
}

#[test]
fn in_chromium_a_run_page_follows_the_run_live_and_pages_through_runs() {
    use crate::browser::{Browser, screenshot_path};
    let home = TestHome::initialized();
    let d = start(&home);
    let wf = json!({"name": "slow", "nodes": [
        {"id": "first", "type": "flow.wait", "data": {"inputs": {"duration": "1500ms"}}},
        {"id": "second", "type": "flow.wait", "data": {"inputs": {"duration": "1500ms"}}},
        {"id": "done", "type": "transform.set", "data": {"inputs": {"values": {"ok": true}}}}
    ], "edges": [{"source": "first", "target": "second"}, {"source": "second", "target": "done"}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let browser = Browser::start();
    browser.goto(&link(&d));

    let (_, started) = d.call("POST", "/api/v1/workflows/slow/run", Some(json!({})));
    let id = started["run_id"].as_str().unwrap().to_string();
    browser.goto(&format!("{}/runs/{id}", d.url));
    // Marks this page load: a reload would lose it.
    browser.run("window.__same_page = true;", json!([]));
    browser.wait("the first node to show running", |b| {
        (b.node_state("first").as_deref() == Some("running")).then_some(())
    });
    browser.screenshot(&screenshot_path("run-live"));
    browser.wait(
        "the first node to turn succeeded while the run goes on",
        |b| (b.node_state("first").as_deref() == Some("succeeded")).then_some(()),
    );
    assert_eq!(
        browser.run("return window.__same_page === true;", json!([])),
        json!(true),
        "the node changed without a reload"
    );
    // At the end the page shows the whole record.
    browser.wait("the run to show succeeded", |b| {
        (b.text("#run-status").as_deref() == Some("succeeded")).then_some(())
    });
    assert_eq!(browser.node_state("done").as_deref(), Some("succeeded"));
    assert!(
        browser
            .text("#output")
            .unwrap_or_default()
            .contains("\"ok\": true")
    );
    // The timeline: each node's attempt where it ran, one after the other.
    let bars = browser.run(
        "return [...document.querySelectorAll('#timeline [data-attempt]')].map(g => [g.dataset.attempt, Number(g.querySelector('rect').getAttribute('x'))]);",
        json!([]),
    );
    let bars: Vec<(String, f64)> = serde_json::from_value(bars).unwrap_or_default();
    let names: Vec<&str> = bars.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["first", "second", "done"]);
    assert!(bars[0].1 < bars[1].1 && bars[1].1 < bars[2].1, "{bars:?}");
    browser.screenshot(&screenshot_path("run"));

    // The runs list pages through 120 runs, 50 a page, filters kept.
    for _ in 0..119 {
        let (code, _) = d.call("POST", "/api/v1/workflows/slow/run", Some(json!({})));
        assert_eq!(code, 202);
    }
    browser.goto(&format!("{}/runs?workflow=slow", d.url));
    let rows = |b: &Browser| {
        b.run(
            "return document.querySelectorAll('#runs tbody tr').length;",
            json!([]),
        )
        .as_u64()
    };
    assert_eq!(rows(&browser), Some(50));
    browser.screenshot(&screenshot_path("runs"));
    browser.run("document.getElementById('next').click();", json!([]));
    browser.wait("page 2", |b| b.url().contains("before=").then_some(()));
    assert!(browser.url().contains("workflow=slow"), "{}", browser.url());
    assert_eq!(rows(&browser), Some(50));
    browser.run("document.getElementById('next').click();", json!([]));
    browser.wait("page 3", |b| (rows(b) == Some(20)).then_some(()));
    assert_eq!(
        browser.run(
            "return document.getElementById('next') === null;",
            json!([])
        ),
        json!(true),
        "the last page has no next"
    );
    // And back: newer pages, then the newest again.
    browser.run("document.getElementById('prev').click();", json!([]));
    browser.wait("page 2 again", |b| b.url().contains("after=").then_some(()));
    assert_eq!(rows(&browser), Some(50));
    browser.run("document.getElementById('prev').click();", json!([]));
    browser.wait("the newest page", |b| {
        b.run(
            "return document.getElementById('prev') === null && !!document.getElementById('next');",
            json!([]),
        )
        .as_bool()
        .filter(|at_top| *at_top)
        .map(|_| ())
    });
    assert_eq!(rows(&browser), Some(50));
}

/// Writes `n` finished runs straight into the home's database (as the store
/// lays them out), a second apart, every seventh failed by a webhook; their
/// ids, oldest first.
fn recorded_runs(home: &TestHome, n: usize) -> Vec<String> {
    let mut conn = rusqlite::Connection::open(home.path().join("fuse.db")).unwrap();
    let tx = conn.transaction().unwrap();
    let base = 1_790_000_000_000i64;
    let mut ids = Vec::with_capacity(n);
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO executions (id, workflow_name, status, trigger_kind, input, output,
                     error, created_at, started_at, finished_at, duration_ms)
                 VALUES (?1, 'many', ?2, ?3, '{}', '{}', ?4, ?5, ?5, ?5 + 3, 3)",
            )
            .unwrap();
        for i in 0..n {
            let failed = i % 7 == 0;
            let id = format!("01a00000-0000-7000-8000-{i:012}");
            insert
                .execute(rusqlite::params![
                    id,
                    if failed { "failed" } else { "succeeded" },
                    if failed { "webhook" } else { "cron" },
                    failed.then_some("node \"x\" failed"),
                    base + i as i64 * 1000
                ])
                .unwrap();
            ids.push(id);
        }
    }
    tx.commit().unwrap();
    ids
}

#[test]
fn in_chromium_the_runs_list_pages_through_10000_runs_and_filters_by_trigger() {
    use crate::browser::{Browser, screenshot_path};
    let home = TestHome::initialized();
    let ids = recorded_runs(&home, 10_000);
    let d = start(&home);
    let browser = Browser::start();
    browser.goto(&link(&d));
    browser.goto(&format!("{}/runs", d.url));
    let shown = |b: &Browser| -> Vec<String> {
        serde_json::from_value(b.run(
            "return [...document.querySelectorAll('#runs tbody tr a[href^=\"/runs/\"]')].map(a => a.getAttribute('href').slice(6));",
            json!([]),
        ))
        .unwrap_or_default()
    };
    // Every run once, newest first, 50 a page, following "older".
    let mut seen: Vec<String> = Vec::new();
    loop {
        let page = shown(&browser);
        assert!(!page.is_empty() && page.len() <= 50, "{} rows", page.len());
        seen.extend(page);
        let next: Option<String> = browser
            .run(
                "const a = document.getElementById('next'); return a ? a.href : null;",
                json!([]),
            )
            .as_str()
            .map(str::to_string);
        match next {
            Some(url) => browser.goto(&url),
            None => break,
        }
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen.len(), 10_000);
    assert!(seen == newest_first, "every run once, newest first");
    browser.screenshot(&screenshot_path("runs-last-page"));

    // Filters: by trigger (every seventh run came by webhook and failed).
    browser.goto(&format!("{}/runs?trigger=webhook", d.url));
    let page = shown(&browser);
    assert_eq!(page.len(), 50);
    assert_eq!(page[0], ids[9996], "the newest webhook run");
    let (_, listed) = d.call(
        "GET",
        &format!(
            "/api/v1/executions?trigger=webhook&status=failed&before={}&limit=2",
            ids[9996]
        ),
        None,
    );
    let listed: Vec<&str> = listed["executions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(listed, [ids[9989].as_str(), ids[9982].as_str()]);
    // By time: these runs are from 2026, none in the last hour.
    browser.goto(&format!("{}/runs?within=1h", d.url));
    assert!(shown(&browser).is_empty());
    assert!(
        browser
            .text("main")
            .unwrap_or_default()
            .contains("No runs match.")
    );
    // A cursor run that is gone: said, with a way back.
    browser.goto(&format!(
        "{}/runs?before=01a00000-0000-7000-8000-999999999999",
        d.url
    ));
    assert!(
        browser
            .text("#problem")
            .unwrap_or_default()
            .contains("no longer recorded"),
        "{:?}",
        browser.text("main")
    );
    assert!(browser.text("#newest").is_some());
}

#[test]
fn in_chromium_a_workflow_runs_from_its_params_form_and_can_be_disabled() {
    use crate::browser::{Browser, screenshot_path};
    let home = TestHome::initialized();
    let d = start(&home);
    let wf = json!({"name": "greet", "params": [
            {"name": "who", "type": "string", "required": true, "description": "whom to greet"},
            {"name": "times", "type": "integer", "default": 1}],
        "nodes": [
            {"id": "hello", "type": "transform.set",
             "data": {"inputs": {"values": {"text": "hi {{ trigger.who }} x{{ trigger.times }}"}}}},
            {"id": "check", "type": "flow.if", "data": {"inputs": {"condition": "{{ trigger.times > 1 }}"}}},
            {"id": "many", "type": "flow.noop"}
        ],
        "edges": [{"source": "hello", "target": "check"},
                  {"source": "check", "target": "many", "sourceHandle": "true"}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let other = json!({"name": "other", "nodes": [{"id": "a", "type": "flow.noop"}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(other)).0, 201);

    let browser = Browser::start();
    browser.goto(&link(&d));
    browser.goto(&format!("{}/workflows", d.url));
    let visible = |b: &Browser| {
        b.run(
            "return [...document.querySelectorAll('#workflows tbody tr')].filter(r => !r.hidden).map(r => r.dataset.name);",
            json!([]),
        )
    };
    assert_eq!(
        visible(&browser),
        json!(["greet", "other"]),
        "{:?}",
        browser.text("body")
    );
    browser.run(
        "const s = document.getElementById('search'); s.value = 'gre'; s.dispatchEvent(new Event('input'));",
        json!([]),
    );
    assert_eq!(visible(&browser), json!(["greet"]));
    browser.screenshot(&screenshot_path("workflows"));

    browser.goto(&format!("{}/workflows/greet", d.url));
    // The graph: every node, the branch labelled.
    for node in ["hello", "check", "many"] {
        let drawn = browser.run(
            "return [...document.querySelectorAll('[data-node]')].some(e => e.dataset.node === arguments[0]);",
            json!([node]),
        );
        assert_eq!(drawn, json!(true), "{node} is drawn");
    }
    assert!(browser.text(".graph").unwrap_or_default().contains("true"));
    browser.screenshot(&screenshot_path("workflow"));

    // Run with the form: the page goes to the new run, which succeeds with the input.
    browser.run(
        "document.getElementById('param-who').value = 'Ada'; document.getElementById('param-times').value = '3';
         document.querySelector('#run-form button').click();",
        json!([]),
    );
    browser.wait("the run's page", |b| {
        b.url().contains("/runs/").then_some(())
    });
    browser.wait("the run to succeed", |b| {
        (b.text("#run-status").as_deref() == Some("succeeded")).then_some(())
    });
    assert_eq!(browser.node_state("many").as_deref(), Some("succeeded"));
    let shown = browser.text("#attempts").unwrap_or_default();
    assert!(shown.contains("hello"), "{shown}");
    let run_id = browser
        .url()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let (_, run) = d.call("GET", &format!("/api/v1/executions/{run_id}"), None);
    assert_eq!(
        run["input"],
        json!({"who": "Ada", "times": 3}),
        "converted by type"
    );

    // A required param left out: the daemon's answer is shown, nothing runs.
    browser.goto(&format!("{}/workflows/greet", d.url));
    browser.run(
        "document.querySelector('#run-form button').click();",
        json!([]),
    );
    assert!(
        browser.url().ends_with("/workflows/greet"),
        "the browser's own check keeps the form"
    );

    // A value the daemon refuses: its message is shown, nothing runs.
    browser.run(
        "document.getElementById('param-who').value = 'Ada'; document.getElementById('param-times').value = 'many';
         document.querySelector('#run-form button').click();",
        json!([]),
    );
    browser.wait("the daemon's reason", |b| {
        b.text("#run-error")
            .filter(|t| t.contains("times"))
            .map(|_| ())
    });

    // Disable from the page; the API agrees.
    browser.run("document.getElementById('disable').click();", json!([]));
    browser.wait("the workflow to show disabled", |b| {
        (b.text("#wf-state").as_deref() == Some("disabled")).then_some(())
    });
    let (_, listed) = d.call("GET", "/api/v1/workflows", None);
    let greet = listed["workflows"]
        .as_array()
        .and_then(|w| w.iter().find(|w| w["name"] == "greet"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(greet["enabled"], json!(false));
    assert_eq!(greet["last_run"]["id"], json!(run_id));

    // The list shows each workflow's last run.
    browser.goto(&format!("{}/workflows", d.url));
    let last = browser.run(
        "return [...document.querySelectorAll('#workflows tbody tr')].map(r => [r.dataset.name, r.querySelector('.last-run').innerText]);",
        json!([]),
    );
    let last: Vec<(String, String)> = serde_json::from_value(last).unwrap_or_default();
    assert!(
        last[0].0 == "greet" && last[0].1.starts_with("succeeded"),
        "{last:?}"
    );
    assert_eq!(last[1], ("other".to_string(), "never".to_string()));
}

#[test]
fn in_chromium_credentials_are_listed_without_values_and_nodes_are_catalogued() {
    use crate::browser::{Browser, screenshot_path};
    let home = TestHome::initialized();
    let secret = "s3cr3t-value-that-must-not-leak";
    let d = start(&home);
    let browser = Browser::start();
    browser.goto(&link(&d));

    // Added with the page's form: the type's fields, the secret one masked.
    browser.goto(&format!("{}/credentials", d.url));
    let fill = |name: &str, key: &str| {
        browser.run(
            "const f = document.getElementById('new-credential');
             document.getElementById('cred-name').value = arguments[0];
             f.elements.type.value = 'api_key'; f.elements.type.dispatchEvent(new Event('change'));
             const key = document.getElementById('cred-api_key-key');
             if (key.type !== 'password' || key.closest('fieldset').hidden) throw new Error('the key field is not a shown password field');
             key.value = arguments[1];
             f.querySelector('button[type=submit]').click();",
            json!([name, key]),
        );
    };
    fill("github", secret);
    browser.wait("the credential listed", |b| {
        b.text("#credentials")
            .filter(|t| t.contains("github") && t.contains("api_key"))
            .map(|_| ())
    });
    // Checked from the page: it decrypts.
    browser.run(
        "document.querySelector('button[data-check]').click();",
        json!([]),
    );
    browser.wait("the check's answer", |b| {
        b.text(".check-result")
            .filter(|t| t == "decrypts")
            .map(|_| ())
    });
    browser.screenshot(&screenshot_path("credentials"));
    // A name the daemon would refuse is stopped by the form itself.
    fill("9lives", "x");
    assert_eq!(
        browser.run(
            "return document.getElementById('cred-name').validity.patternMismatch;",
            json!([])
        ),
        json!(true)
    );
    // What a run of it sees is the value itself.
    let out = crate::helper::stdout_of(home.cmd().args(["creds", "check", "github", "--json"]));
    assert!(out.contains("\"ok\": true"), "{out}");
    // The value is on no page, in no API answer, and in no file but the
    // encrypted store.
    let mut pages = Vec::new();
    for path in ["/", "/credentials", "/nodes", "/workflows", "/runs"] {
        browser.goto(&format!("{}{path}", d.url));
        pages.push(
            browser
                .run("return document.documentElement.outerHTML;", json!([]))
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    for api in ["/api/v1/credentials", "/api/v1/nodes", "/api/v1/health"] {
        pages.push(d.call("GET", api, None).1.to_string());
    }
    assert!(
        pages.iter().all(|p| !p.contains(secret)),
        "the value reached a page or an answer"
    );
    let leaked = crate::creds::files_containing(home.path(), secret.as_bytes());
    assert!(leaked.is_empty(), "the value is in {leaked:?}");

    // Delete from the page (confirmed), and the API agrees.
    browser.goto(&format!("{}/credentials", d.url));
    browser.run(
        "window.confirm = () => true; document.querySelector('button[data-delete]').click();",
        json!([]),
    );
    browser.wait("the credential to be gone", |b| {
        b.text("main")
            .is_some_and(|t| t.contains("No credentials."))
            .then_some(())
    });
    let (_, creds) = d.call("GET", "/api/v1/credentials", None);
    assert_eq!(creds["credentials"], json!([]), "9lives was never stored");
    let (code, _) = d.call("POST", "/api/v1/credentials/github/check", None);
    assert_eq!(code, 404);
    let (code, answer) = d.call(
        "POST",
        "/api/v1/credentials",
        Some(json!({"name": "x", "type": "telepathy", "fields": {}})),
    );
    assert_eq!(code, 400);
    assert!(
        answer.to_string().contains("the types are bearer"),
        "{answer}"
    );

    // The catalog: built-in types with their inputs, searchable.
    browser.goto(&format!("{}/nodes", d.url));
    let catalog = browser.text("#nodes").unwrap_or_default();
    assert!(
        catalog.contains("http.request") && catalog.contains("flow.wait"),
        "{catalog}"
    );
    browser.run(
        "const s = document.getElementById('search'); s.value = 'flow.wa'; s.dispatchEvent(new Event('input'));",
        json!([]),
    );
    let shown = browser.run(
        "return [...document.querySelectorAll('#nodes tbody tr')].filter(r => !r.hidden).map(r => r.dataset.name);",
        json!([]),
    );
    assert_eq!(shown, json!(["flow.wait"]));
    browser.screenshot(&screenshot_path("nodes"));
}

#[test]
fn in_chromium_a_run_is_retried_from_its_failed_node_and_a_running_run_cancelled() {
    use crate::browser::{Browser, screenshot_path};
    let home = TestHome::initialized();
    let d = start(&home);
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count");
    let gate = dir.path().join("gate");
    // `first` leaves a line each time it runs; `second` fails until `gate` exists.
    let wf = json!({"name": "gated", "nodes": [
        {"id": "first", "type": "exec.command",
         "data": {"inputs": {"argv": format!("echo ran >> '{}'", count.display()), "shell": true}}},
        {"id": "second", "type": "file.read",
         "data": {"inputs": {"path": gate.display().to_string()}}}
    ], "edges": [{"source": "first", "target": "second"}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let (_, started) = d.call("POST", "/api/v1/workflows/gated/run", Some(json!({})));
    let failed = started["run_id"].as_str().unwrap().to_string();
    d.wait_status(&failed, "failed");
    let lines = |path: &std::path::Path| std::fs::read_to_string(path).unwrap().lines().count();
    assert_eq!(lines(&count), 1);

    let browser = Browser::start();
    browser.goto(&link(&d));
    browser.goto(&format!("{}/runs/{failed}", d.url));
    assert_eq!(browser.node_state("first").as_deref(), Some("succeeded"));
    assert_eq!(browser.node_state("second").as_deref(), Some("failed"));
    std::fs::write(&gate, "open").unwrap();
    browser.run(
        "document.getElementById('retry-failed').click();",
        json!([]),
    );
    browser.wait("the retry's page", |b| {
        (b.url().contains("/runs/") && !b.url().ends_with(&failed)).then_some(())
    });
    browser.wait("the retry to succeed", |b| {
        (b.text("#run-status").as_deref() == Some("succeeded")).then_some(())
    });
    assert_eq!(browser.node_state("second").as_deref(), Some("succeeded"));
    assert!(
        browser
            .text("#log")
            .unwrap_or_default()
            .contains("reused the output"),
        "{:?}",
        browser.text("#log")
    );
    // The line is also with the node it belongs to.
    let node_log = browser.run(
        "const d = document.querySelector('#attempts .node-log'); if (!d) return null; d.open = true;
         return [d.closest('tr').cells[0].innerText, d.innerText];",
        json!([]),
    );
    assert_eq!(node_log[0], json!("first"), "{node_log}");
    assert_eq!(
        browser.node_state("first").as_deref(),
        Some("succeeded"),
        "a reused node shows as succeeded"
    );
    assert!(
        node_log[1]
            .as_str()
            .unwrap_or_default()
            .contains("reused the output"),
        "{node_log}"
    );
    assert_eq!(
        lines(&count),
        1,
        "the node that had succeeded did not run again"
    );
    let retry = browser
        .url()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let (_, run) = d.call("GET", &format!("/api/v1/executions/{retry}"), None);
    assert_eq!(run["retry_of"], json!(failed));
    assert_eq!(run["output"], json!("open"));

    // The API refuses to go on from a run that did not fail.
    let (code, answer) = d.call(
        "POST",
        &format!("/api/v1/executions/{retry}/retry"),
        Some(json!({"from_failed": true})),
    );
    assert_eq!(code, 409, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("without from_failed"),
        "{answer}"
    );
    let (code, answer) = d.call(
        "POST",
        &format!("/api/v1/executions/{retry}/retry"),
        Some(json!([true])),
    );
    assert_eq!(code, 400, "a body that is not an object: {answer}");

    // Cancel a running run from its page.
    let wf = json!({"name": "long", "nodes": [
        {"id": "nap", "type": "flow.wait", "data": {"inputs": {"duration": "60s"}}}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let (_, started) = d.call("POST", "/api/v1/workflows/long/run", Some(json!({})));
    let id = started["run_id"].as_str().unwrap().to_string();
    browser.goto(&format!("{}/runs/{id}", d.url));
    browser.wait("the node to run", |b| {
        (b.node_state("nap").as_deref() == Some("running")).then_some(())
    });
    browser.run("document.getElementById('cancel').click();", json!([]));
    browser.wait("the run to show cancelled", |b| {
        (b.text("#run-status").as_deref() == Some("cancelled")).then_some(())
    });
    browser.screenshot(&screenshot_path("run-cancelled"));
    let (_, run) = d.call("GET", &format!("/api/v1/executions/{id}"), None);
    assert_eq!(run["status"], json!("cancelled"));
}

#[test]
fn in_chromium_a_node_made_with_the_new_node_form_is_catalogued_and_runs() {
    use crate::browser::{Browser, screenshot_path};
    let home = TestHome::initialized();
    // A plugin with a route and a trigger, and one whose manifest is broken.
    for (name, manifest) in [
        (
            "routed",
            json!({"name": "routed", "kind": "plugin", "description": "serves a page",
            "runtime": {"command": ["python3", "serve.py"], "mode": "persistent"},
            "routes": [{"path": "/status", "methods": ["GET"], "description": "its status"}],
            "triggers": [{"name": "ticks", "command": ["sh", "ticks.sh"]}]}),
        ),
        (
            "broken",
            json!({"name": "broken", "kind": "plugin", "runtime": {"comand": ["x"]}}),
        ),
    ] {
        let dir = home.path().join("plugin_packages").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    }
    let d = start(&home);
    let browser = Browser::start();
    browser.goto(&link(&d));
    browser.goto(&format!("{}/nodes", d.url));
    let create = |name: &str| {
        browser.run(
            "document.getElementById('new-name').value = arguments[0];
             document.getElementById('new-lang').value = 'sh';
             document.getElementById('new-description').value = 'Measures text';
             document.querySelector('#new-node button').click();",
            json!([name]),
        );
    };
    create("measure");
    browser.wait("the new node in the catalog", |b| {
        b.url().contains("new=measure").then_some(())
    });
    let row = browser.text("#fresh").unwrap_or_default();
    assert!(
        row.contains("measure") && row.contains("Measures text"),
        "{row}"
    );
    browser.screenshot(&screenshot_path("nodes-new"));
    // Plugins with their state, routes, triggers and errors.
    let plugins = browser.text("#plugins").unwrap_or_default();
    for shown in [
        "routed",
        "loaded",
        "/plugins/routed/status",
        "ticks",
        "broken",
        "error",
        "comand",
    ] {
        assert!(plugins.contains(shown), "{shown}: {plugins}");
    }
    // Written where `fuse nodes new` writes.
    let manifest = home.path().join("node_packages/measure/manifest.json");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    assert_eq!(manifest["description"], "Measures text");

    // It runs.
    let wf = json!({"name": "measured", "nodes": [
        {"id": "m", "type": "measure", "data": {"inputs": {"text": "abcd"}}}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let (_, started) = d.call("POST", "/api/v1/workflows/measured/run", Some(json!({})));
    let run = d.wait_status(started["run_id"].as_str().unwrap(), "succeeded");
    assert_eq!(run["output"]["bytes"], json!(4), "{run}");

    // The same name again: the daemon's reason is shown, nothing changes.
    browser.goto(&format!("{}/nodes", d.url));
    create("measure");
    browser.wait("the refusal", |b| {
        b.text("#new-status")
            .filter(|t| t.contains("already exists"))
            .map(|_| ())
    });
    let (code, answer) = d.call(
        "POST",
        "/api/v1/nodes",
        Some(json!({"name": "../escape", "lang": "sh"})),
    );
    assert_eq!(code, 400, "{answer}");
    assert!(!home.path().join("escape").exists());
}

#[test]
fn in_chromium_versions_are_compared_rolled_back_and_a_workflow_deleted_and_triggers_listed() {
    use crate::browser::{Browser, screenshot_path};
    let home = TestHome::initialized();
    let d = start(&home);
    let inbox = home.tmp().join("inbox");
    let version = |greeting: &str| {
        json!({"name": "hooked", "nodes": [
            {"id": "hook", "type": "trigger.webhook", "data": {"inputs": {"path": "hooked", "method": "POST"}}},
            {"id": "tick", "type": "trigger.interval", "data": {"inputs": {"every": "1h"}}},
            {"id": "files", "type": "trigger.file", "data": {"inputs": {"path": inbox.display().to_string(), "glob": "*.csv"}}},
            {"id": "say", "type": "transform.set", "data": {"inputs": {"values": {"text": greeting}}}}
        ], "edges": [{"source": "hook", "target": "say"}]})
    };
    for greeting in ["hello", "good day", "hi there"] {
        let (code, answer) = d.call("POST", "/api/v1/workflows", Some(version(greeting)));
        assert_eq!(code, 201, "{answer}");
    }
    let browser = Browser::start();
    browser.goto(&link(&d));

    // The triggers page: each kind in its table.
    browser.goto(&format!("{}/triggers", d.url));
    let webhooks = browser.text("#webhooks").unwrap_or_default();
    assert!(
        webhooks.contains(&format!("{}/webhook/hooked", d.url)),
        "{webhooks}"
    );
    let schedules = browser.text("#schedules").unwrap_or_default();
    assert!(
        schedules.contains("interval") && schedules.contains("1h"),
        "{schedules}"
    );
    let folders = browser.text("#folders").unwrap_or_default();
    assert!(
        folders.contains("inbox") && folders.contains("*.csv"),
        "{folders}"
    );
    browser.screenshot(&screenshot_path("triggers"));

    // v1 against the current v3: the changed line both ways.
    browser.goto(&format!("{}/workflows/hooked", d.url));
    browser.run(
        "document.querySelector('tr[data-version=\"1\"] a').click();",
        json!([]),
    );
    browser.wait("the diff page", |b| {
        b.url().contains("/diff?").then_some(())
    });
    let removed = browser.run(
        "return [...document.querySelectorAll('#diff .d-del')].map(e => e.textContent);",
        json!([]),
    );
    let added = browser.run(
        "return [...document.querySelectorAll('#diff .d-add')].map(e => e.textContent);",
        json!([]),
    );
    assert!(removed.to_string().contains("hello"), "{removed}");
    assert!(added.to_string().contains("hi there"), "{added}");
    assert!(
        !browser
            .text("#diff")
            .unwrap_or_default()
            .contains("good day")
    );
    browser.screenshot(&screenshot_path("workflow-diff"));

    // Roll back to v1 from the diff page (confirmed).
    browser.run(
        "window.confirm = () => true; document.querySelector('button[data-post*=rollback]').click();",
        json!([]),
    );
    browser.wait("the workflow page again", |b| {
        b.url().ends_with("/workflows/hooked").then_some(())
    });
    let (_, current) = d.call("GET", "/api/v1/workflows/hooked", None);
    assert_eq!(current["version"], json!(1), "{current}");
    assert!(current.to_string().contains("hello"));

    // Delete, confirmed: back to the list, gone from the API.
    browser.run(
        "window.confirm = () => true; document.getElementById('delete').click();",
        json!([]),
    );
    browser.wait("the workflows list", |b| {
        b.url().ends_with("/workflows").then_some(())
    });
    assert!(
        browser
            .text("main")
            .unwrap_or_default()
            .contains("Nothing deployed yet")
    );
    assert_eq!(d.call("GET", "/api/v1/workflows/hooked", None).0, 404);
}

#[test]
fn in_chromium_a_large_output_is_cut_then_loaded_whole_and_an_error_shows_its_kind() {
    use crate::browser::Browser;
    let home = TestHome::initialized();
    let d = start(&home);
    let wf = json!({"name": "big", "nodes": [
        {"id": "echo", "type": "transform.set", "data": {"inputs": {"values": {"text": "{{ trigger.text }}"}}}}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let text = "abcdefghij".repeat(4_000);
    let (_, started) = d.call(
        "POST",
        "/api/v1/workflows/big/run",
        Some(json!({"text": text})),
    );
    let id = started["run_id"].as_str().unwrap().to_string();
    d.wait_status(&id, "succeeded");
    let (failed, _) = failed_run(&d);

    let browser = Browser::start();
    browser.goto(&link(&d));
    browser.goto(&format!("{}/runs/{id}", d.url));
    let output_length = |b: &Browser| {
        b.run(
            "return document.querySelector('pre[data-part=output]').textContent.length;",
            json!([]),
        )
        .as_u64()
        .unwrap_or(0)
    };
    assert!(output_length(&browser) < 17_000, "cut on the page");
    browser.run(
        "for (const d of document.querySelectorAll('#attempts details')) d.open = true;
         document.querySelector('button[data-load=output]').click();",
        json!([]),
    );
    browser.wait("the whole output", |b| {
        (output_length(b) > 40_000).then_some(())
    });
    let whole = browser.run(
        "return JSON.parse(document.querySelector('pre[data-part=output]').textContent).text.length;",
        json!([]),
    );
    assert_eq!(whole, json!(40_000));

    // A failed node: its error with its kind.
    browser.goto(&format!("{}/runs/{failed}", d.url));
    let error = browser.text("#attempts .err").unwrap_or_default();
    assert!(error.contains("missing"), "{error}");
    let kind = browser.text("#attempts .err b").unwrap_or_default();
    assert!(
        !kind.is_empty() && error.starts_with(&format!("{kind}: ")),
        "{error}"
    );
}

#[test]
fn in_chromium_every_page_fits_a_phone_and_a_workflow_runs_from_the_keyboard() {
    use crate::browser::{Browser, screenshot_path};
    let home = TestHome::initialized();
    let d = start(&home);
    let wf = json!({"name": "pocket", "nodes": [
        {"id": "hook", "type": "trigger.webhook", "data": {"inputs": {"path": "a-rather-long-webhook-path-for-a-phone"}}},
        {"id": "first", "type": "transform.set", "data": {"inputs": {"values": {"a": 1}}}},
        {"id": "second", "type": "transform.set", "data": {"inputs": {"values": {"b": 2}}}}
    ], "edges": [{"source": "hook", "target": "first"}, {"source": "first", "target": "second"}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let (_, started) = d.call("POST", "/api/v1/workflows/pocket/run", Some(json!({})));
    let id = started["run_id"].as_str().unwrap().to_string();
    d.wait_status(&id, "succeeded");
    failed_run(&d);

    let browser = Browser::start();
    browser.goto(&link(&d));
    // Keyboard only: Tab to the workflow page's Run button, Enter runs it.
    browser.goto(&format!("{}/workflows/pocket", d.url));
    let focused = || {
        browser
            .run(
                "const e = document.activeElement; return e ? e.tagName + ':' + e.textContent.trim() : '';",
                json!([]),
            )
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let mut tabs = 0;
    while focused() != "BUTTON:Run" {
        tabs += 1;
        assert!(
            tabs < 40,
            "Tab never reached the Run button (at {})",
            focused()
        );
        browser.keys("\u{E004}");
    }
    let outline = browser.run(
        "return getComputedStyle(document.activeElement).outlineStyle;",
        json!([]),
    );
    assert_eq!(outline, json!("solid"), "the focused button shows it");
    browser.keys("\u{E007}");
    browser.wait("the run's page", |b| {
        (b.url().contains("/runs/") && !b.url().ends_with(&id)).then_some(())
    });

    // At phone width nothing makes the page scroll sideways (wide parts,
    // graphs and tables, scroll inside their own box).
    browser.resize(390, 844);
    let width = browser
        .run("return window.innerWidth;", json!([]))
        .as_u64()
        .unwrap_or(0);
    assert!(width <= 420, "the window is phone-sized: {width}");
    for path in [
        "/".to_string(),
        "/runs".into(),
        format!("/runs/{id}"),
        "/workflows".into(),
        "/workflows/pocket".into(),
        "/triggers".into(),
        "/nodes".into(),
        "/credentials".into(),
    ] {
        browser.goto(&format!("{}{path}", d.url));
        // The widest element that sticks out, to name it.
        let overflow = browser.run(
            "const w = window.innerWidth; let worst = null;
             for (const e of document.querySelectorAll('body *')) {
               const r = e.getBoundingClientRect();
               if (r.right > w + 0.5 && !e.closest('.graph, .timeline, .chart, pre, .scroll') && (!worst || r.right > worst[1]))
                 worst = [e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className, Math.round(r.right - w)];
             }
             return [document.documentElement.scrollWidth - w, worst];",
            json!([]),
        );
        assert!(
            overflow[0].as_i64().unwrap_or(1) <= 0,
            "{path} is wider than the phone: {overflow}"
        );
    }
    browser.goto(&format!("{}/runs/{id}", d.url));
    browser.screenshot(&screenshot_path("phone-run"));
}

#[test]
fn in_chromium_the_pages_follow_a_dark_system_theme() {
    use crate::browser::{Browser, screenshot_path};
    let home = TestHome::initialized();
    let d = start(&home);
    failed_run(&d);
    let background = |b: &Browser| {
        b.run(
            "return [matchMedia('(prefers-color-scheme: dark)').matches, getComputedStyle(document.body).backgroundColor];",
            json!([]),
        )
    };
    let light = Browser::start();
    light.goto(&link(&d));
    assert_eq!(background(&light), json!([false, "rgb(255, 255, 255)"]));
    drop(light);
    let dark = Browser::start_with(&["--force-dark-mode"]);
    dark.goto(&link(&d));
    assert_eq!(background(&dark), json!([true, "rgb(15, 17, 21)"]));
    dark.screenshot(&screenshot_path("overview-dark"));
}
