//! The config loader's tests: valid files, every problem reported with its line, secrets kept
//! out of `Debug`.

use super::*;

const VALID: &str = r#"
[server]
listen = "127.0.0.1:0"

[admin]
token = "0123456789abcdef"

[[provider]]
name = "demo"
verify = "standard-webhooks"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
"#;

fn load(text: &str) -> Result<(Config, Vec<String>), Vec<ConfigError>> {
    load_str(text, Path::new("."))
}

#[test]
fn valid_with_defaults() {
    let (config, warnings) = load(VALID).unwrap();
    assert_eq!(config.server.max_body_bytes, 1024 * 1024);
    assert_eq!(config.server.ack_deadline, Duration::from_secs(4));
    assert_eq!(config.admin.listen.to_string(), "127.0.0.1:9090");
    assert!(config.provider("demo").is_some());
    assert_eq!(warnings.len(), 2, "literal secrets warn: {warnings:?}");
}

#[test]
fn every_problem_is_reported_with_its_line() {
    let text = r#"
[server]
listen = "nowhere"
max_bodybytes = 5

[admin]
token = "env:HOOKGATE_TEST_UNSET_TOKEN"

[[provider]]
name = "a"
verify = "github"
secrets = ["env:HOOKGATE_TEST_UNSET_SECRET"]

[[provider]]
name = "b"
verify = "rot13"
secrets = ["x"]

[[provider]]
name = "b"
verify = "github"
secrets = ["y"]
"#;
    let errors = load(text).unwrap_err();
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(
        text.iter()
            .any(|e| e.starts_with("line 4, column 1: in [server]: unknown field `max_bodybytes`")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|e| e.contains("HOOKGATE_TEST_UNSET_TOKEN is not set")),
        "{text:#?}"
    );
    assert!(
        text.iter().any(
            |e| e.contains("HOOKGATE_TEST_UNSET_SECRET is not set") && e.starts_with("line 12")
        ),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|e| e.contains("\"rot13\" is not a known scheme")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|e| e.contains("defined twice") && e.starts_with("line 20")),
        "{text:#?}"
    );
}

#[test]
fn store_backends() {
    let (config, _) = load(VALID).unwrap();
    assert_eq!(config.store.backend, crate::config::StoreBackend::Sled);
    let jetstream = format!(
        "{VALID}\n[store]\nbackend = \"jetstream\"\nservers = [\"nats://127.0.0.1:4222\"]\n"
    );
    // A NATS token written in the config is warned about as every literal secret.
    let (_, warnings) = load(&format!("{jetstream}token = \"nats-token\"\n")).unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("[store] token is written literally")),
        "{warnings:#?}"
    );
    let (config, _) = load(&jetstream).unwrap();
    match config.store.backend {
        crate::config::StoreBackend::JetStream(js) => {
            assert_eq!(js.servers, ["nats://127.0.0.1:4222"]);
            assert_eq!(js.stream, "HOOKGATE");
            assert_eq!(js.replicas, 1);
            assert_eq!(js.auth, crate::config::NatsAuth::None);
            assert!(js.tls.is_none());
            assert_eq!(js.lease_time, std::time::Duration::from_secs(10));
        }
        other => panic!("{other:?}"),
    }
    for (store, expected) in [
        ("backend = \"jetstream\"", "needs at least one NATS server"),
        ("backend = \"kafka\"", "neither \"sled\" nor \"jetstream\""),
        ("servers = [\"nats://h:4222\"]", "only for backend = \"jetstream\""),
        ("lease_time = \"5s\"", "only for backend = \"jetstream\""),
        (
            "backend = \"jetstream\"\nservers = [\"nats://h:4222\"]\nlease_time = \"100ms\"",
            "is under 1s",
        ),
        (
            "backend = \"jetstream\"\nservers = [\"http://h\"]\nstream = \"a.b\"\nreplicas = 0",
            "not a nats:// or tls:// URL",
        ),
        (
            "backend = \"jetstream\"\nservers = [\"nats://h:4222\"]\nretention = \"1d\"",
            "at least dedup_window",
        ),
        (
            "backend = \"jetstream\"\nservers = [\"nats://h:4222\"]\ntoken = \"env:HOOKGATE_TEST_UNSET_NATS\"",
            "HOOKGATE_TEST_UNSET_NATS is not set",
        ),
        (
            "backend = \"jetstream\"\nservers = [\"nats://h:4222\"]\ntoken = \"t\"\nuser = \"u\"\npassword = \"p\"",
            "choose one way to authenticate to NATS",
        ),
        (
            "backend = \"jetstream\"\nservers = [\"nats://h:4222\"]\nuser = \"u\"",
            "user and password go together",
        ),
        (
            "backend = \"jetstream\"\nservers = [\"nats://h:4222\"]\nnkey_seed = \"UABC\"",
            "not a NATS user NKey seed",
        ),
        (
            "backend = \"jetstream\"\nservers = [\"nats://h:4222\"]\ncredentials = \"/nonexistent/hookgate.creds\"",
            "cannot read /nonexistent/hookgate.creds",
        ),
        (
            "backend = \"jetstream\"\nservers = [\"nats://h:4222\"]\ntls_ca = \"/nonexistent/ca.pem\"",
            "cannot read certificates from /nonexistent/ca.pem",
        ),
        (
            "backend = \"jetstream\"\nservers = [\"nats://h:4222\"]\ntls_cert = \"/nonexistent/c.pem\"",
            "tls_cert and tls_key go together",
        ),
        ("tls_ca = \"ca.pem\"", "only for backend = \"jetstream\""),
        ("password = \"p\"", "only for backend = \"jetstream\""),
    ] {
        let errors = load(&format!("{VALID}\n[store]\n{store}\n")).unwrap_err();
        assert!(
            errors.iter().any(|e| e.message.contains(expected)),
            "{store}: {errors:?}"
        );
    }
    let errors = load(&format!(
        "{VALID}\n[store]\nbackend = \"jetstream\"\nservers = [\"nats://h:4222\"]\nstream = \"a.b\"\nreplicas = 9\n"
    ))
    .unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn syntax_errors_have_a_position() {
    let errors = load("[server\nlisten = 1").unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].position.map(|p| p.0), Some(1));
}

#[test]
fn unknown_top_level_key() {
    let errors = load(&format!("{VALID}\n[nonsense]\nx = 1\n")).unwrap_err();
    assert!(
        errors[0].message.contains("unknown field `nonsense`"),
        "{errors:?}"
    );
}

#[test]
fn secrets_never_appear_in_debug() {
    let (config, _) = load(VALID).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("0123456789abcdef"));
    assert!(!debug.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    // Nor a credential in a URL: a destination's, its alert URL, a sync API's, a NATS server's.
    let text = format!(
        "{VALID}\n[[destination]]\nname = \"crm\"\nurl = \"https://svc:dest-pass@crm.example/in?api_key=dest-key\"\n\
         signing_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\
         alert_url = \"https://hooks.slack.example/services/T0/B0/alert-path\"\n\
         [[provider]]\nname = \"feed\"\nverify = \"none\"\n\
         [provider.sync]\nurl = \"https://api.example/events?access_key=sync-key\"\n\
         cursor_param = \"after\"\nitems = \"/data\"\nitem_id = \"/id\"\n\
         [store]\nbackend = \"jetstream\"\nservers = [\"nats://nats-user:nats-pass@127.0.0.1:4222\"]\n"
    );
    let (config, _) = load(&text).unwrap();
    let debug = format!("{config:?}");
    for secret in [
        "dest-pass",
        "dest-key",
        "alert-path",
        "sync-key",
        "nats-pass",
    ] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    assert!(debug.contains("crm.example"), "{debug}");
}

#[test]
fn admin_alone_needs_none_of_the_other_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let text = r#"
[admin]
listen = "0.0.0.0:9191"
token = "env:HOOKGATE_TEST_ADMIN_ONLY_TOKEN"

[[provider]]
name = "demo"
verify = "github"
secrets = ["env:HOOKGATE_TEST_SURELY_UNSET_SECRET"]
"#;
    std::fs::write(&path, text).unwrap();
    let access = load_admin_file(&path, false).unwrap();
    assert_eq!(access.listen.to_string(), "0.0.0.0:9191");
    assert!(access.token.is_none());
    let errors = load_admin_file(&path, true).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .message
            .contains("HOOKGATE_TEST_ADMIN_ONLY_TOKEN is not set"),
        "{errors:?}"
    );
    assert_eq!(errors[0].position, Some((4, 1)));
    std::env::set_var("HOOKGATE_TEST_ADMIN_ONLY_TOKEN", "0123456789abcdef0");
    let access = load_admin_file(&path, true).unwrap();
    assert_eq!(access.token.unwrap().expose(), b"0123456789abcdef0");
}

#[test]
fn admin_alone_still_reports_a_bad_admin_section() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "[server]\nlisten = \"x\"\n").unwrap();
    let errors = load_admin_file(&path, false).unwrap_err();
    assert_eq!(errors[0].message, "[admin] is missing");
    std::fs::write(&path, "[admin]\nlisten = \"nowhere\"\n").unwrap();
    let errors = load_admin_file(&path, false).unwrap_err();
    assert_eq!(errors[0].position, Some((2, 1)), "{errors:?}");
    let errors = load_admin_file(&dir.path().join("missing.toml"), false).unwrap_err();
    assert!(errors[0].message.starts_with("cannot read"), "{errors:?}");
}

#[test]
fn serde_messages_lose_the_values_they_quote() {
    assert_eq!(
        super::without_values(r#"invalid type: string "s3cr\"et", expected a sequence"#),
        "invalid type: a string, expected a sequence"
    );
    assert_eq!(
        super::without_values("unknown field `colour`, expected one of `listen`"),
        "unknown field `colour`, expected one of `listen`"
    );
    assert_eq!(
        super::without_values("invalid type: integer `1234567890123456789`, expected a string"),
        "invalid type: an integer, expected a string"
    );
    assert_eq!(
        super::without_values(
            "invalid type: floating point `1.5`, expected a string or string \"x\""
        ),
        "invalid type: a number, expected a string or a string"
    );
}

/// Secrets written unquoted, or where a table was expected, are not shown in the errors.
#[test]
fn a_secret_in_a_wrong_place_is_not_shown() {
    let numeric = VALID.replace("\"0123456789abcdef\"", "1234567890123456789");
    let errors = load(&numeric).unwrap_err();
    let text = format!("{errors:?}");
    assert!(!text.contains("1234567890123456789"), "{text}");
    let sync = format!(
        "{VALID}\n[provider.sync]\nurl = \"http://x/\"\npreset = \"alcmeon\"\nauth = \"Bearer s3cr3t-t0ken\"\n"
    );
    let errors = load(&sync).unwrap_err();
    let text = format!("{errors:?}");
    assert!(text.contains("sync"), "{text}");
    assert!(!text.contains("s3cr3t-t0ken"), "{text}");
}

#[test]
fn listeners_that_cannot_both_bind_clash() {
    let clash = |a: &str, b: &str| super::listens_clash(a.parse().unwrap(), b.parse().unwrap());
    assert!(clash("127.0.0.1:8080", "127.0.0.1:8080"));
    assert!(clash("0.0.0.0:8080", "127.0.0.1:8080"));
    assert!(clash("127.0.0.1:9090", "[::]:9090"));
    assert!(
        !clash("127.0.0.1:0", "127.0.0.1:0"),
        "port 0 picks a free one"
    );
    assert!(!clash("127.0.0.1:8080", "127.0.0.1:9090"));
    assert!(!clash("127.0.0.1:8080", "10.0.0.1:8080"));
    assert!(!clash("0.0.0.0:8080", "[::1]:8080"), "another family");
    assert!(clash("[::]:8080", "10.0.0.1:8080"), ":: takes IPv4 too");
}

#[test]
fn an_alert_url_may_be_a_secret_reference() {
    let with = |alert_url: &str| {
        format!(
            "{VALID}\n[[destination]]\nname = \"crm\"\nurl = \"http://127.0.0.1:1/\"\n\
             signing_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nalert_url = \"{alert_url}\"\n"
        )
    };
    std::env::set_var(
        "HOOKGATE_TEST_ALERT_URL",
        "https://hooks.slack.example/services/T0/B0/secret-path\n",
    );
    let (config, _) = load(&with("env:HOOKGATE_TEST_ALERT_URL")).unwrap();
    let url = config.destinations[0].alert_url.as_ref().unwrap();
    assert_eq!(url.path(), "/services/T0/B0/secret-path");
    let (config, _) = load(&with("https://alerts.example/hook")).unwrap();
    assert!(config.destinations[0].alert_url.is_some());

    std::env::set_var("HOOKGATE_TEST_ALERT_NOT_A_URL", "secret-path-not-a-url");
    let errors = load(&with("env:HOOKGATE_TEST_ALERT_NOT_A_URL")).unwrap_err();
    let text = format!("{errors:?}");
    assert!(text.contains("does not hold an http(s) URL"), "{text}");
    assert!(!text.contains("secret-path-not-a-url"), "{text}");
    // Nor another scheme than http(s), as a literal one is not (an alert then failed at run time).
    std::env::set_var(
        "HOOKGATE_TEST_ALERT_NOT_A_URL",
        "ftp://alerts.example/secret-path",
    );
    let errors = load(&with("env:HOOKGATE_TEST_ALERT_NOT_A_URL")).unwrap_err();
    let text = format!("{errors:?}");
    assert!(text.contains("does not hold an http(s) URL"), "{text}");
    let errors = load(&with("env:HOOKGATE_TEST_ALERT_UNSET")).unwrap_err();
    assert!(format!("{errors:?}").contains("HOOKGATE_TEST_ALERT_UNSET is not set"));
    // A literal one that does not parse (no scheme) is not echoed in the error either.
    let errors = load(&with("hooks.slack.example/services/T0/B0/secret-path")).unwrap_err();
    let text = format!("{errors:?}");
    assert!(text.contains("alert_url is not an http(s) URL"), "{text}");
    assert!(!text.contains("secret-path"), "{text}");
    // A misspelled reference is a URL of another scheme: refused, not posted to at an alert.
    let errors = load(&with("Env:HOOKGATE_TEST_ALERT_URL")).unwrap_err();
    assert!(format!("{errors:?}").contains("not an http(s) URL"));
}

/// Values that parse but would break at run time are refused with the config (a retry delay
/// of `"500000000000y"` panicked the forwarder, and the gateway restarted in a loop; a
/// destination's `timeout = "0s"` made every event dead).
#[test]
fn values_that_break_at_run_time_are_refused() {
    let destination = |extra: &str| {
        format!(
            "{VALID}\n[[destination]]\nname = \"crm\"\nurl = \"http://127.0.0.1:1/\"\n\
             signing_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n{extra}\n"
        )
    };
    let server = |line: &str| VALID.replace("[server]\n", &format!("[server]\n{line}\n"));
    let stripe = |tolerance: &str| {
        format!(
            "{VALID}\n[[provider]]\nname = \"s\"\nverify = \"stripe\"\n\
             secrets = [\"whsec_x\"]\ntolerance_s = {tolerance}\n"
        )
    };
    for (text, expected) in [
        (stripe("0"), "tolerance_s must be at least 1"),
        (
            destination("retry_delays = [\"500000000000y\"]"),
            "longer than 100 years",
        ),
        (
            destination("timeout = \"0s\""),
            "timeout must be more than 0",
        ),
        (server("workers = 100000"), "workers must be at most 1024"),
        (
            server("ack_deadline_ms = 86400000"),
            "ack_deadline_ms must be between 10 and 3600000",
        ),
        (
            server("body_timeout_ms = 86400000"),
            "body_timeout_ms must be between 10 and 3600000",
        ),
    ] {
        let errors = load(&text).unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(
            text.iter().any(|e| e.contains(expected)),
            "{expected}: {text:?}"
        );
    }
}

/// A JWKS or introspection URL over plain http to another machine is warned about: whoever is
/// on the path answers for the authorization server.
#[test]
fn an_authorization_server_over_plain_http_is_warned_about() {
    let warned = |oauth: &str| {
        let text = format!(
            "[admin]\ntoken = \"0123456789abcdef\"\n\n[[provider]]\nname = \"p\"\nverify = \"oauth\"\n[provider.oauth]\n{oauth}\n"
        );
        let (_, warnings) = load(&text).unwrap();
        warnings.iter().any(|w| w.contains("over plain http"))
    };
    let jwt = |jwks: &str| {
        format!("mode = \"jwt\"\njwks = \"{jwks}\"\nissuer = \"https://idp\"\naudience = \"h\"\n")
    };
    assert!(warned(&jwt("http://idp.example/jwks.json")));
    assert!(!warned(&jwt("https://idp.example/jwks.json")));
    assert!(!warned(&jwt("http://127.0.0.1:8080/jwks.json")));
    assert!(!warned(&jwt("http://localhost/jwks.json")));
    let introspection = |url: &str| {
        format!("mode = \"introspection\"\nintrospection_url = \"{url}\"\nclient_id = \"h\"\nclient_secret = \"0123456789abcdef\"\naudience = \"h\"\n")
    };
    assert!(warned(&introspection("http://idp.example/introspect")));
    assert!(!warned(&introspection("https://idp.example/introspect")));
}

/// A timestamp tolerance over an hour is warned about (a replay is taken that long, and past
/// dedup_window stored again); the fixtures' old timestamps need a wide one, so it is no error.
#[test]
fn a_wide_timestamp_tolerance_is_warned_about() {
    let warned = |tolerance: u64| {
        let text = format!(
            "{VALID}\n[[provider]]\nname = \"s\"\nverify = \"stripe\"\n\
             secrets = [\"whsec_0123456789abcdefghij\"]\ntolerance_s = {tolerance}\n"
        );
        let (_, warnings) = load(&text).unwrap();
        warnings
            .iter()
            .any(|w| w.contains("can be replayed for that long"))
    };
    assert!(warned(4_000_000_000));
    assert!(!warned(300));
}

/// A body cap over the in-flight budget: such a body got 503 for ever, never 413.
#[test]
fn a_body_cap_over_the_in_flight_budget_is_refused() {
    let config = |budget: u64| {
        VALID.replace(
            "[admin]",
            &format!("[limits]\nmax_body_bytes_in_flight = {budget}\n\n[admin]"),
        ) + "\n"
    };
    let with_cap = |text: String| {
        text.replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:0\"\nmax_body_bytes = 2097152",
        )
    };
    let errors = load(&with_cap(config(1_048_576))).unwrap_err();
    assert!(
        errors[0]
            .message
            .contains("must be at least [server] max_body_bytes"),
        "{errors:?}"
    );
    assert!(load(&with_cap(config(2_097_152))).is_ok());
    assert!(load(&config(1_048_576)).is_ok());
}

/// `_unknown` labels the requests to no provider (metrics, the console): a provider of that name
/// shared their series and was listed twice.
#[test]
fn the_name_of_requests_to_no_provider_is_reserved() {
    let errors = load(&VALID.replace("name = \"demo\"", "name = \"_unknown\"")).unwrap_err();
    assert!(errors[0].message.contains("is reserved"), "{errors:?}");
    assert_eq!(
        errors[0].position.map(|(line, _)| line),
        Some(9),
        "{errors:?}"
    );
}

/// Files holding secrets that every user may read are warned about, whatever names them: a
/// NATS `.creds` file (it holds the user's seed) as a `file:` secret was.
#[test]
fn a_creds_file_every_user_may_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookgate.creds");
    std::fs::write(
        &path,
        "-----BEGIN NATS USER JWT-----\nx\n------END NATS USER JWT------\n",
    )
    .unwrap();
    let text = format!(
        "{VALID}\n[store]\nbackend = \"jetstream\"\nservers = [\"nats://127.0.0.1:4222\"]\ncredentials = \"{}\"\n",
        path.display()
    );
    let warned = |mode: u32| {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let (_, warnings) = load(&text).unwrap();
        warnings
            .iter()
            .any(|w| w.starts_with("[store] credentials:") && w.contains("(mode 644)"))
    };
    assert!(warned(0o644));
    assert!(!warned(0o600));
}
