//! The host's HTTP capability end to end: the testkit connector fetches a URL
//! through the `http` import (`fetch_url`), against small servers on 127.0.0.1
//! that count their connections (common/http_server.rs). Each test has its own
//! servers, so the tests run in parallel.

mod common;
#[path = "common/http_server.rs"]
mod http_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_server::{Reply, TestServer};
use weir_host::engine::{Engine, Quiet, Status};
use weir_host::project::RetryPolicy;
use weir_host::runtime::{
    CallError, Grants, HttpAuth, HttpLimits, Limits, Plugin, PluginLogLine, Secret,
};
use weir_host::service::{Service, to_connection};
use weir_host::store::{ConnectionState, SecretKey, Store, StoredConnection};
use weir_types::Config;

fn plugin() -> Plugin {
    common::runtime()
        .load_file(&common::plugin_path("testkit-connector"))
        .unwrap()
}

fn grants(hosts: &[String]) -> Grants {
    Grants {
        http_hosts: hosts.to_vec(),
        ..Grants::none()
    }
}

fn config(pairs: &[(&str, &str)]) -> Config {
    let mut c = Config::default();
    for (k, v) in pairs {
        c.set(k, v);
    }
    c
}

/// Runs the plugin's `check` with `fetch_url` and friends; returns the outcome
/// and the plugin's log lines.
fn check_with(
    grants: Grants,
    limits: Limits,
    pairs: &[(&str, &str)],
) -> (Result<(), CallError>, Vec<PluginLogLine>) {
    let mut instance = plugin().connector(grants, limits).unwrap();
    let result = instance.check(&config(pairs));
    (result, instance.take_logs().lines)
}

fn check(grants: Grants, pairs: &[(&str, &str)]) -> (Result<(), CallError>, Vec<PluginLogLine>) {
    check_with(grants, Limits::default(), pairs)
}

/// The fields of the plugin's `http response` log lines.
fn responses(logs: &[PluginLogLine]) -> Vec<std::collections::BTreeMap<String, String>> {
    logs.iter()
        .filter(|l| l.message == "http response")
        .map(|l| l.fields.iter().cloned().collect())
        .collect()
}

fn error_text(result: Result<(), CallError>) -> String {
    result.expect_err("the call should fail").to_string()
}

#[test]
fn a_url_outside_the_allow_list_is_refused_before_any_connection() {
    let granted = TestServer::start(|_| Reply::new(200, "granted"));
    let forbidden = TestServer::start(|_| Reply::new(200, "forbidden"));

    let (result, _) = check(
        grants(&[granted.host()]),
        &[("fetch_url", &forbidden.url("/x"))],
    );
    let e = error_text(result);
    assert!(e.contains("host not in allow-list"), "{e}");

    // A path-prefix grant: the same host, outside the prefix.
    let (result, _) = check(
        grants(&[format!("{}/v2/", granted.host())]),
        &[("fetch_url", &granted.url("/v2/../admin"))],
    );
    let e = error_text(result);
    assert!(e.contains("path not in allow-list"), "{e}");

    // No grant at all.
    let (result, _) = check(Grants::none(), &[("fetch_url", &granted.url("/"))]);
    assert!(error_text(result).contains("grants no HTTP access"));

    // Not http(s), and credentials in the URL.
    let (result, _) = check(
        grants(&[granted.host()]),
        &[("fetch_url", &format!("http://u:p@{}/", granted.host()))],
    );
    assert!(error_text(result).contains("credentials in URLs are refused"));

    assert_eq!(
        forbidden.accepted(),
        0,
        "nothing reached the forbidden host"
    );
    assert_eq!(granted.accepted(), 0, "denied requests never connect");

    // The same plugin reaches the granted host and path.
    let (result, logs) = check(
        grants(&[format!("{}/v2/", granted.host())]),
        &[("fetch_url", &granted.url("/v2/items"))],
    );
    result.unwrap();
    assert_eq!(responses(&logs)[0]["body"], "granted");
    assert_eq!(granted.accepted(), 1);
}

#[test]
fn allowed_get_and_post_round_trip_with_headers_and_body() {
    let server = TestServer::start(|r| {
        Reply::new(
            if r.method == "POST" { 201 } else { 200 },
            format!(
                "{} {} got:{}",
                r.method,
                r.path,
                String::from_utf8_lossy(&r.body)
            ),
        )
        .header("X-Echo-Trace", r.header("x-trace").unwrap_or("none"))
    });
    let (result, logs) = check(
        grants(&[server.host()]),
        &[
            ("fetch_url", &server.url("/items?page=2")),
            ("fetch_method", "POST"),
            (
                "fetch_headers",
                "Content-Type: application/json|X-Trace: t-1",
            ),
            ("fetch_body", r#"{"a":1}"#),
        ],
    );
    result.unwrap();
    let seen = &server.requests()[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/items?page=2");
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.header("x-trace"), Some("t-1"));
    assert_eq!(seen.body, br#"{"a":1}"#);
    let r = &responses(&logs)[0];
    assert_eq!(r["status"], "201");
    assert_eq!(r["body"], r#"POST /items?page=2 got:{"a":1}"#);
    assert!(
        r["headers"].contains("x-echo-trace=t-1"),
        "{}",
        r["headers"]
    );

    let (result, logs) = check(
        grants(&[server.host()]),
        &[("fetch_url", &server.url("/one"))],
    );
    result.unwrap();
    assert_eq!(responses(&logs)[0]["body"], "GET /one got:");

    // A header the host owns is refused as an invalid request, unsent.
    let before = server.accepted();
    let (result, _) = check(
        grants(&[server.host()]),
        &[
            ("fetch_url", &server.url("/")),
            ("fetch_headers", "Host: elsewhere.example"),
        ],
    );
    assert!(error_text(result).contains("header `Host` is set by the host"));
    assert_eq!(server.accepted(), before);
}

const SECRET: &str = "s3cr3t-value-that-must-not-leak";

#[test]
fn credentials_are_injected_by_the_host_and_never_shown() {
    let server = TestServer::start(|_| Reply::new(200, "ok"));
    let cases = [
        (
            HttpAuth::Bearer {
                token: Secret::new(SECRET),
            },
            "authorization",
            format!("Bearer {SECRET}"),
        ),
        (
            HttpAuth::Basic {
                username: "weir".into(),
                password: Secret::new(SECRET),
            },
            "authorization",
            // base64("weir:s3cr3t-value-that-must-not-leak")
            "Basic d2VpcjpzM2NyM3QtdmFsdWUtdGhhdC1tdXN0LW5vdC1sZWFr".to_owned(),
        ),
        (
            HttpAuth::ApiKey {
                header: "X-Api-Token".into(),
                key: Secret::new(SECRET),
            },
            "x-api-token",
            SECRET.to_owned(),
        ),
    ];
    for (i, (auth, header, expected)) in cases.into_iter().enumerate() {
        let grants = Grants {
            http_auth: Some(auth),
            ..grants(&[server.host()])
        };
        // The plugin tries to set the header itself; the host's value wins.
        let (result, logs) = check(
            grants,
            &[
                ("fetch_url", &server.url("/me")),
                ("fetch_headers", &format!("{header}: plugin-made")),
            ],
        );
        result.unwrap();
        let seen = &server.requests()[i];
        assert_eq!(seen.header(header), Some(expected.as_str()), "{header}");
        let shown = format!("{logs:?}");
        assert!(
            !shown.contains(SECRET) && !shown.contains("d2Vpcjpz"),
            "{shown}"
        );
    }

    // Through a stored connection: the `auth.*` secrets become the host's
    // credential and never reach the plugin's configuration.
    let api = TestServer::start(|r| match r.header("authorization") {
        Some(v) if v == format!("Bearer {SECRET}") => Reply::new(200, "hello"),
        _ => Reply::new(401, "who are you"),
    });
    let stored = StoredConnection {
        name: "crm".into(),
        plugin: common::plugin_path("testkit-connector")
            .display()
            .to_string(),
        config: vec![
            ("fetch_url".into(), api.url("/me")),
            ("auth.kind".into(), "bearer".into()),
        ],
        secrets: vec![("auth.token".into(), SECRET.into())],
        directory: None,
        http_hosts: vec![api.host()],
        http_internal: false,
        state: ConnectionState::Unchecked,
        updated_at: 0,
    };
    let conn = to_connection(&stored);
    assert!(
        conn.config
            .pairs()
            .iter()
            .all(|(k, v)| !k.starts_with("auth.") && v != SECRET)
    );
    let data = tempfile::tempdir().unwrap();
    let key = SecretKey::from_material("an http test key that is long enough").unwrap();
    let service = Service::new(
        Store::open(data.path(), Some(key)).unwrap(),
        common::runtime(),
    );
    service.store.put_connection(&stored).unwrap();
    assert_eq!(
        service.check_connection("crm").unwrap(),
        ConnectionState::Connected
    );

    // A run with the credential: the secret is in no log line and no error.
    let mut project = common::testkit_project(5);
    project.source.grants = Grants {
        http_auth: Some(HttpAuth::Bearer {
            token: Secret::new(SECRET),
        }),
        ..grants(&[api.host()])
    };
    project.source.config.set("fetch_url", &api.url("/me"));
    let report = common::run(&project);
    assert_eq!(report.status, Status::Completed, "{report}");
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("hello"), "the plugin's log is in the report");
    assert!(!json.contains(SECRET));

    // Refused credentials: "authentication refused", and still no secret.
    project.source.grants.http_auth = Some(HttpAuth::Bearer {
        token: Secret::new("wrong-token-1234"),
    });
    let refused = Engine::new(common::runtime())
        .run(&project, &mut Quiet)
        .expect_err("validation refuses the connection");
    let shown = format!("{refused} {refused:?}");
    assert!(
        shown.contains("authentication refused (HTTP 401)"),
        "{shown}"
    );
    assert!(!shown.contains("wrong-token-1234"));
}

/// A token endpoint (`/token`, tokens `tok-1`, `tok-2`, ... living
/// `lifetime` seconds) and an API (`/api`) on one server.
fn oauth_server(lifetime: u64) -> (TestServer, Arc<AtomicUsize>) {
    let issued = Arc::new(AtomicUsize::new(0));
    let counter = issued.clone();
    let server = TestServer::start(move |r| {
        if r.path == "/token" {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            Reply::new(
                200,
                format!(
                    r#"{{"access_token":"tok-{n}","token_type":"Bearer","expires_in":{lifetime}}}"#
                ),
            )
            .header("Content-Type", "application/json")
        } else {
            Reply::new(200, r.header("authorization").unwrap_or("none").to_owned())
        }
    });
    (server, issued)
}

fn oauth_grants(server: &TestServer, token_url: String) -> Grants {
    Grants {
        http_auth: Some(HttpAuth::OAuth2ClientCredentials {
            token_url,
            client_id: "weir-client".into(),
            client_secret: Secret::new(SECRET),
            scope: Some("read:all".into()),
        }),
        ..grants(&[server.host()])
    }
}

#[test]
fn oauth2_token_is_fetched_once_reused_and_refreshed_after_expiry() {
    let (server, issued) = oauth_server(1);
    let grants = oauth_grants(&server, server.url("/token"));
    let api = server.url("/api");
    let (result, logs) = check(grants.clone(), &[("fetch_url", &api), ("fetch_times", "3")]);
    result.unwrap();
    assert_eq!(issued.load(Ordering::SeqCst), 1);
    let bodies: Vec<String> = responses(&logs).iter().map(|r| r["body"].clone()).collect();
    assert_eq!(bodies, vec!["Bearer tok-1"; 3]);
    // Another call, on a new instance: the cached token still serves.
    let (result, logs) = check(grants.clone(), &[("fetch_url", &api)]);
    result.unwrap();
    assert_eq!(responses(&logs)[0]["body"], "Bearer tok-1");
    assert_eq!(issued.load(Ordering::SeqCst), 1);

    let token_request = server
        .requests()
        .into_iter()
        .find(|r| r.path == "/token")
        .unwrap();
    assert_eq!(token_request.method, "POST");
    assert_eq!(
        String::from_utf8_lossy(&token_request.body),
        "grant_type=client_credentials&scope=read%3Aall"
    );
    // base64("weir-client:" + SECRET)
    assert_eq!(
        token_request.header("authorization"),
        Some("Basic d2Vpci1jbGllbnQ6czNjcjN0LXZhbHVlLXRoYXQtbXVzdC1ub3QtbGVhaw==")
    );

    // After the token's lifetime a new one is fetched.
    std::thread::sleep(Duration::from_millis(1100));
    let (result, logs) = check(grants, &[("fetch_url", &api)]);
    result.unwrap();
    assert_eq!(responses(&logs)[0]["body"], "Bearer tok-2");
    assert_eq!(issued.load(Ordering::SeqCst), 2);
    assert!(!format!("{logs:?}").contains(SECRET));
}

#[test]
fn oauth2_token_url_must_be_granted_too() {
    let (api, _) = oauth_server(60);
    let (elsewhere, issued) = oauth_server(60);
    let (result, _) = check(
        oauth_grants(&api, elsewhere.url("/token")),
        &[("fetch_url", &api.url("/api"))],
    );
    let e = error_text(result);
    assert!(
        e.contains("OAuth2 token URL is refused: host not in allow-list"),
        "{e}"
    );
    assert_eq!(elsewhere.accepted(), 0);
    assert_eq!(issued.load(Ordering::SeqCst), 0);
    assert_eq!(api.accepted(), 0, "no API call without a token");
}

#[test]
fn retry_after_is_honoured_by_the_host() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let server = TestServer::start(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::new(429, "slow down").header("Retry-After", "1")
        } else {
            Reply::new(200, "welcome")
        }
    });
    let (result, logs) = check(grants(&[server.host()]), &[("fetch_url", &server.url("/"))]);
    result.unwrap();
    assert_eq!(responses(&logs)[0]["body"], "welcome");
    let seen = server.requests();
    assert_eq!(seen.len(), 2);
    let waited = seen[1].at - seen[0].at;
    assert!(waited >= Duration::from_millis(950), "waited {waited:?}");

    // A Retry-After that does not fit in the call's time is handed to the plugin.
    let busy = TestServer::start(|_| Reply::new(503, "busy").header("Retry-After", "120"));
    let started = Instant::now();
    let (result, _) = check(grants(&[busy.host()]), &[("fetch_url", &busy.url("/"))]);
    let e = result.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(e.to_string().contains("HTTP 503"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(busy.requests().len(), 1);
}

#[test]
fn a_burst_of_500s_is_retryable_and_the_run_completes() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let server = TestServer::start(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) < 3 {
            Reply::new(500, "oops")
        } else {
            Reply::new(200, "fine")
        }
    });
    // The plugin sees the 500 and reports it as transient.
    let (result, logs) = check(grants(&[server.host()]), &[("fetch_url", &server.url("/"))]);
    let e = result.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert_eq!(responses(&logs)[0]["status"], "500");

    // In a run, the engine retries it, and the run completes.
    let mut project = common::testkit_project(20);
    project.source.grants = grants(&[server.host()]);
    project.source.config.set("fetch_url", &server.url("/"));
    project.retry = RetryPolicy {
        attempts: 5,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        pause_after_errors: 0,
    };
    let report = common::run(&project);
    assert_eq!(report.status, Status::Completed, "{report}");
    assert_eq!(report.totals().read, 20);
    // The validation's check met the rest of the burst and was retried.
    assert!(hits.load(Ordering::SeqCst) >= 5);
    assert!(
        report.log.iter().any(|l| l.contains("status=500")),
        "{:?}",
        report.log
    );
}

#[test]
fn redirects_are_followed_only_inside_the_allow_list() {
    let outside = TestServer::start(|_| Reply::new(200, "stolen"));
    let other = TestServer::start(|r| {
        Reply::new(
            200,
            r.header("authorization")
                .unwrap_or("no credentials")
                .to_owned(),
        )
    });
    let outside_url = outside.url("/collect");
    let other_url = other.url("/elsewhere");
    let server = TestServer::start(move |r| match r.path.as_str() {
        "/out" => Reply::new(302, "").header("Location", &outside_url),
        "/in" => Reply::new(301, "").header("Location", "/final"),
        "/other" => Reply::new(307, "").header("Location", &other_url),
        "/loop" => Reply::new(302, "").header("Location", "/loop"),
        _ => Reply::new(200, format!("final via {}", r.method)),
    });
    let granted = Grants {
        http_auth: Some(HttpAuth::Bearer {
            token: Secret::new(SECRET),
        }),
        ..grants(&[server.host(), other.host()])
    };

    let (result, _) = check(granted.clone(), &[("fetch_url", &server.url("/out"))]);
    let e = error_text(result);
    assert!(
        e.contains("redirect refused: host not in allow-list"),
        "{e}"
    );
    assert_eq!(outside.accepted(), 0);

    let (result, logs) = check(granted.clone(), &[("fetch_url", &server.url("/in"))]);
    result.unwrap();
    assert_eq!(responses(&logs)[0]["body"], "final via GET");

    // To another granted host: followed, but the credentials stay behind.
    let (result, logs) = check(granted.clone(), &[("fetch_url", &server.url("/other"))]);
    result.unwrap();
    assert_eq!(responses(&logs)[0]["body"], "no credentials");

    let (result, _) = check(granted, &[("fetch_url", &server.url("/loop"))]);
    assert!(error_text(result).contains("too many redirects (more than 5)"));
}

#[test]
fn a_granted_name_resolving_to_an_internal_address_is_refused_unless_the_grant_allows_it() {
    let server = TestServer::start(|_| Reply::new(200, "on-premise"));
    let by_name = format!("localhost:{}", server.addr.port());
    let url = format!("http://{by_name}/status");

    // Granted by name: `localhost` resolves to a loopback address, refused at
    // connect time, and nothing reaches the server.
    let (result, _) = check(
        grants(std::slice::from_ref(&by_name)),
        &[("fetch_url", &url)],
    );
    let e = result.expect_err("an internal address is refused");
    assert!(!e.is_transient(), "denied is not retryable: {e}");
    let e = e.to_string();
    eprintln!("observed: {e}");
    assert!(e.contains("`localhost` resolves to "), "{e}");
    assert!(
        e.contains("127.0.0.1, an internal (loopback) address")
            || e.contains("::1, an internal (loopback) address"),
        "{e}"
    );
    assert!(
        e.contains("`http_internal = true`"),
        "says how to allow it: {e}"
    );
    assert_eq!(server.accepted(), 0, "nothing was sent");

    // The same grant with `http_internal`: reached.
    let internal = Grants {
        http_internal: true,
        ..grants(std::slice::from_ref(&by_name))
    };
    let (result, logs) = check(internal, &[("fetch_url", &url)]);
    result.unwrap();
    assert_eq!(responses(&logs)[0]["status"], "200");
    assert_eq!(responses(&logs)[0]["body"], "on-premise");
    assert_eq!(server.accepted(), 1);
    // (An IP-literal grant, `127.0.0.1:PORT`, is taken as written: every other
    // test here uses one.)
}

#[test]
fn a_redirect_to_a_granted_name_resolving_internally_is_refused_unless_the_grant_allows_it() {
    let internal = TestServer::start(|_| Reply::new(200, "internal data"));
    let by_name = format!("localhost:{}", internal.addr.port());
    let target = format!("http://{by_name}/secret");
    let front = TestServer::start(move |_| Reply::new(302, "").header("Location", &target));
    let granted = grants(&[front.host(), by_name]);

    let (result, _) = check(granted.clone(), &[("fetch_url", &front.url("/go"))]);
    let e = error_text(result);
    eprintln!("observed: {e}");
    assert!(
        e.contains("redirect refused: `localhost` resolves to "),
        "{e}"
    );
    assert!(e.contains("an internal (loopback) address"), "{e}");
    assert_eq!(front.accepted(), 1, "the allowed host was asked");
    assert_eq!(internal.accepted(), 0, "the redirect's target got nothing");

    let (result, logs) = check(
        Grants {
            http_internal: true,
            ..granted
        },
        &[("fetch_url", &front.url("/go"))],
    );
    result.unwrap();
    assert_eq!(responses(&logs)[0]["body"], "internal data");
    assert_eq!(front.accepted(), 2);
    assert_eq!(internal.accepted(), 1);
}

#[test]
fn a_response_over_the_size_cap_is_cut_with_a_clear_error() {
    let server = TestServer::start(|r| match r.path.as_str() {
        "/big" => Reply::new(200, vec![b'x'; 8 << 20]).no_length(),
        "/declared" => Reply::new(200, vec![b'x'; 4096]),
        _ => Reply::new(200, vec![b'x'; 1024]),
    });
    let capped = Grants {
        http_limits: HttpLimits {
            max_response_bytes: 1024,
            ..HttpLimits::default()
        },
        ..grants(&[server.host()])
    };
    for path in ["/big", "/declared"] {
        let (result, _) = check(capped.clone(), &[("fetch_url", &server.url(path))]);
        let e = error_text(result);
        assert!(
            e.contains("the HTTP response is larger than the host accepts (1024 bytes)"),
            "{path}: {e}"
        );
    }
    let (result, logs) = check(capped, &[("fetch_url", &server.url("/exact"))]);
    result.unwrap();
    assert_eq!(responses(&logs)[0]["bytes"], "1024");
}

#[test]
fn a_slow_server_hits_the_timeout() {
    let server = TestServer::start(|_| Reply::new(200, "late").delay(Duration::from_secs(4)));
    // The request's own timeout.
    let quick = Grants {
        http_limits: HttpLimits {
            timeout: Duration::from_millis(300),
            ..HttpLimits::default()
        },
        ..grants(&[server.host()])
    };
    let started = Instant::now();
    let (result, _) = check(quick, &[("fetch_url", &server.url("/"))]);
    let e = result.unwrap_err();
    assert!(
        e.is_transient() && e.to_string().contains("timed out"),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // The plugin call's time limit bounds the request too: the plugin gets a
    // timeout back in time to answer, rather than being stopped.
    let limits = Limits {
        call_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let started = Instant::now();
    let (result, _) = check_with(
        grants(&[server.host()]),
        limits,
        &[("fetch_url", &server.url("/"))],
    );
    let e = result.unwrap_err();
    assert!(
        matches!(&e, CallError::Plugin { .. }) && e.to_string().contains("timed out"),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn health_reasons_name_what_is_wrong() {
    let data = tempfile::tempdir().unwrap();
    let service = Service::new(Store::open(data.path(), None).unwrap(), common::runtime());
    // A port with nothing listening: bind, note the port, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let refusing = TestServer::start(|_| Reply::new(403, "no"));
    // A server that answers plain text at once to whatever arrives: an https://
    // client's handshake gets no TLS back.
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_addr = plain.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in plain.incoming() {
            if let Ok(mut c) = conn {
                use std::io::Write;
                let _ =
                    c.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\nnot tls");
            }
        }
    });
    let cases = [
        (
            "not-granted",
            "http://203.0.113.9/".to_owned(),
            vec![refusing.host()],
            "host not in allow-list",
        ),
        (
            "unreachable",
            format!("http://{closed}/"),
            vec![closed.to_string()],
            "host unreachable",
        ),
        (
            "refused",
            refusing.url("/"),
            vec![refusing.host()],
            "authentication refused (HTTP 403)",
        ),
        (
            // https:// to a server that speaks plain HTTP: the handshake fails.
            "tls",
            format!("https://{plain_addr}/"),
            vec![plain_addr.to_string()],
            "TLS failure",
        ),
    ];
    for (name, url, hosts, reason) in cases {
        service
            .store
            .put_connection(&StoredConnection {
                name: name.into(),
                plugin: common::plugin_path("testkit-connector")
                    .display()
                    .to_string(),
                config: vec![("fetch_url".into(), url)],
                secrets: vec![],
                directory: None,
                http_hosts: hosts,
                http_internal: false,
                state: ConnectionState::Unchecked,
                updated_at: 0,
            })
            .unwrap();
        match service.check_connection(name).unwrap() {
            ConnectionState::NeedsFixing { reason: r } => {
                assert!(r.contains(reason), "{name}: {r}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// A stored connection (CLI `connection add --http-internal`, API `http_internal`)
/// carries the same opt-in as the project file's grant: granted by name, `localhost`
/// is refused until the connection says internal addresses are meant.
#[test]
fn a_stored_connection_reaches_an_internal_name_only_with_http_internal() {
    let server = TestServer::start(|_| Reply::new(200, "on-premise"));
    let port = server.host().rsplit(':').next().unwrap().to_owned();
    let data = tempfile::tempdir().unwrap();
    let service = Service::new(Store::open(data.path(), None).unwrap(), common::runtime());
    let mut stored = StoredConnection {
        name: "erp".into(),
        plugin: common::plugin_path("testkit-connector")
            .display()
            .to_string(),
        config: vec![("fetch_url".into(), format!("http://localhost:{port}/x"))],
        secrets: vec![],
        directory: None,
        http_hosts: vec![format!("localhost:{port}")],
        http_internal: false,
        state: ConnectionState::Unchecked,
        updated_at: 0,
    };
    service.store.put_connection(&stored).unwrap();
    let refused = service.check_connection("erp").unwrap();
    let ConnectionState::NeedsFixing { reason } = &refused else {
        panic!("{refused:?}");
    };
    assert!(reason.contains("resolves to 127.0.0.1"), "{reason}");
    assert_eq!(server.accepted(), 0);

    stored.http_internal = true;
    service.store.put_connection(&stored).unwrap();
    assert_eq!(
        service
            .store
            .connection("erp")
            .unwrap()
            .unwrap()
            .http_internal,
        true,
        "stored and read back"
    );
    assert_eq!(
        service.check_connection("erp").unwrap(),
        ConnectionState::Connected
    );
    assert_eq!(server.accepted(), 1);
}
