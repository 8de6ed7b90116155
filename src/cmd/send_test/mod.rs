//! `hookgate send-test`: post a sample webhook to a gateway, signed exactly as the provider's
//! vendor would sign it with the configured secret (or a private key, or a bearer token), and
//! print the answer: the vendors' own "Test" button, to check a set-up end to end.
//!
//! The config is loaded as `serve` loads it. The body is `--file`'s bytes, or the scheme's sample
//! ([`sample`]); the request is built in [`request`]. Exit 0 on a 2xx answer, 1 on any other
//! answer or when the gateway cannot be reached, 2 on a usage or config error. Secrets, tokens
//! and signatures are never printed.

mod request;
mod sample;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use url::Url;

use super::loopback::{self, printable};
use crate::config::{self, Config};
use crate::verify::Verifier;

/// How long the whole exchange with the gateway may take (the strictest vendor waits 1 s; a
/// test can afford more).
const TIMEOUT: Duration = Duration::from_secs(15);
/// How much of the gateway's answer is printed.
const MAX_PRINTED_BYTES: usize = 4096;

#[derive(Debug, clap::Args)]
pub struct SendTestArgs {
    /// The config file (the gateway's, or one holding the same secrets).
    #[arg(long, env = "HOOKGATE_CONFIG", default_value = "config.toml")]
    pub config: PathBuf,
    /// The provider to send as (its `name` in the config).
    #[arg(long)]
    pub provider: String,
    /// A body to send instead of the scheme's sample, sent byte for byte.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Where to post; default `http://{server.listen}/hooks/{provider}` (with TLS on the public
    /// listener, required).
    #[arg(long)]
    pub url: Option<String>,
    /// dialog-insight: the PEM private key to sign with (Dialog Insight's, or a test key).
    #[arg(long, value_name = "PEM")]
    pub private_key: Option<PathBuf>,
    /// oauth: the bearer token to send (builtin providers fetch one from the gateway instead).
    #[arg(long, env = "HOOKGATE_SEND_TEST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Why `send-test` stopped before or while posting.
#[derive(Debug)]
pub enum Failure {
    /// A usage or config error: exit 2.
    Usage(String),
    /// The gateway could not be reached or refused a token request: exit 1.
    Send(String),
}

pub fn send_test(args: &SendTestArgs) -> u8 {
    match run(args) {
        Ok(status) if status.is_success() => 0,
        Ok(_) => 1,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            2
        }
        Err(Failure::Send(message)) => {
            eprintln!("error: {message}");
            1
        }
    }
}

fn run(args: &SendTestArgs) -> Result<reqwest::StatusCode, Failure> {
    let config = load(&args.config)?;
    let provider = config.provider(&args.provider).ok_or_else(|| {
        let known: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
        Failure::Usage(format!(
            "no provider {:?} in {} (known: {})",
            args.provider,
            args.config.display(),
            known.join(", ")
        ))
    })?;
    let scheme = scheme_name(&provider.verifier);
    check_flags(args, scheme)?;

    let now = SystemTime::now();
    let millis = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let event_id = format!("test_{millis}");
    let body = match &args.file {
        Some(path) => std::fs::read(path)
            .map_err(|err| Failure::Usage(format!("cannot read {}: {err}", path.display())))?,
        None => sample::body(scheme, &event_id),
    };
    let url = match &args.url {
        Some(text) => parse_url(text)?,
        None if config.server.tls.is_some() => {
            return Err(Failure::Usage(format!(
                "the public listener serves TLS: pass --url https://<a name its certificate holds>/hooks/{}",
                args.provider
            )))
        }
        None => default_url(config.server.listen, &args.provider)?,
    };
    let private_key = match &args.private_key {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|err| Failure::Usage(format!("cannot read {}: {err}", path.display())))?,
        ),
        None => None,
    };
    // A bearer token, or the client secret that fetches one, over plain HTTP goes straight to
    // the gateway, as the admin CLI's token does: a proxy from the environment read it (one
    // cannot read https, and may be the only way out).
    let exposed = scheme == "oauth" && url.scheme() == "http";
    if exposed && !loopback::is_loopback(&url) {
        eprintln!(
            "warning: the provider's OAuth credentials go to {} over plain HTTP: anyone on the way can read them; use https",
            url.host_str().unwrap_or_default()
        );
    }
    let client = loopback::client_for(&url, TIMEOUT, exposed).map_err(Failure::Usage)?;
    let prepared = request::prepare(
        request::Input {
            verifier: &provider.verifier,
            body: &body,
            url,
            now,
            event_id: &event_id,
            private_key: private_key.as_deref(),
            token: args.token.as_deref(),
        },
        &client,
    )?;

    println!(
        "POST {} (provider {}, verify = {scheme}, {} bytes, event id {event_id})",
        printable(&prepared.url),
        args.provider,
        body.len(),
    );
    let mut post = client.post(prepared.url.clone()).body(body);
    for (name, value) in &prepared.headers {
        post = post.header(name.as_str(), value.as_str());
    }
    let response = post.send().map_err(|err| {
        Failure::Send(format!(
            "POST {}: {}",
            printable(&prepared.url),
            crate::error_chain::error_chain(&err)
        ))
    })?;
    let status = response.status();
    let answer = response.bytes().unwrap_or_default();
    let shown = &answer[..answer.len().min(MAX_PRINTED_BYTES)];
    println!("{status}");
    println!("{}", String::from_utf8_lossy(shown));
    if answer.len() > shown.len() {
        println!("({} more bytes not shown)", answer.len() - shown.len());
    }
    Ok(status)
}

fn load(path: &Path) -> Result<Config, Failure> {
    match config::load_file(path) {
        Ok((config, warnings)) => {
            for warning in warnings {
                eprintln!("warning: {warning}");
            }
            Ok(config)
        }
        Err(errors) => {
            let lines: Vec<String> = errors
                .iter()
                .map(|error| format!("{}: {error}", path.display()))
                .collect();
            Err(Failure::Usage(lines.join("\n")))
        }
    }
}

/// The name the scheme is configured by (`verify = "..."`).
fn scheme_name(verifier: &Verifier) -> &'static str {
    match verifier {
        Verifier::StandardWebhooks(_) => "standard-webhooks",
        Verifier::Github(_) => "github",
        Verifier::Hmac(_) => "hmac",
        Verifier::None(_) => "none",
        Verifier::Stripe(_) => "stripe",
        Verifier::Shopify(_) => "shopify",
        Verifier::Slack(_) => "slack",
        Verifier::Twilio(_) => "twilio",
        Verifier::Alcmeon(_) => "alcmeon",
        Verifier::AccuLynx(_) => "acculynx",
        Verifier::DialogInsight(_) => "dialog-insight",
        Verifier::OAuth(_) => "oauth",
    }
}

/// `--private-key` and `--token` given to a scheme that does not use them are mistakes.
fn check_flags(args: &SendTestArgs, scheme: &str) -> Result<(), Failure> {
    if args.private_key.is_some() && scheme != "dialog-insight" {
        return Err(Failure::Usage(format!(
            "--private-key applies to dialog-insight providers, not verify = {scheme:?}"
        )));
    }
    if args.token.is_some() && scheme != "oauth" {
        return Err(Failure::Usage(format!(
            "--token applies to oauth providers, not verify = {scheme:?}"
        )));
    }
    Ok(())
}

fn parse_url(text: &str) -> Result<Url, Failure> {
    loopback::parse_url(text).map_err(Failure::Usage)
}

/// `http://{listen}/hooks/{provider}`, a wildcard listen address replaced by loopback.
fn default_url(listen: SocketAddr, provider: &str) -> Result<Url, Failure> {
    let mut url = loopback::listener_url(listen).ok_or_else(|| {
        Failure::Usage("server.listen has port 0 (chosen at start-up): pass --url".into())
    })?;
    url.set_path(&format!("/hooks/{provider}"));
    Ok(url)
}

/// A client that goes straight to a loopback gateway, even when a proxy is configured.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_url_uses_loopback_for_a_wildcard_listener() {
        let url = |listen: &str| default_url(listen.parse().unwrap(), "gh").map(|u| u.to_string());
        assert_eq!(
            url("0.0.0.0:8080").unwrap(),
            "http://127.0.0.1:8080/hooks/gh"
        );
        assert_eq!(url("[::]:8080").unwrap(), "http://[::1]:8080/hooks/gh");
        assert_eq!(
            url("10.0.0.5:80").unwrap(),
            "http://10.0.0.5/hooks/gh",
            "the default port is implied"
        );
        assert!(url("127.0.0.1:0").is_err());
    }
}
