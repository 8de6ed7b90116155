//! The operator subcommands' side of the admin API: where it listens and the token to send
//! (`--url` and `HOOKGATE_ADMIN_TOKEN`, else the config's `[admin]`), one request at a time, and
//! the exit codes: 0 done, 1 when the API answers an error or cannot be reached, 2 on a usage or
//! config error. The token is never printed.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use url::Url;

use super::loopback::{self, printable};
use crate::config;
use crate::error_chain::error_chain;

/// Where the token is read from before the config.
pub const TOKEN_ENV: &str = "HOOKGATE_ADMIN_TOKEN";
/// How long one admin request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach the admin API, and how to print what it answers.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// The gateway's config file, read for `[admin] listen` and `[admin] token` (only `[admin]`
    /// is read).
    #[arg(
        long,
        env = "HOOKGATE_CONFIG",
        default_value = "config.toml",
        global = true
    )]
    pub config: PathBuf,
    /// The admin listener's URL, e.g. `http://127.0.0.1:9090` (default: `[admin] listen`). The
    /// token is read from HOOKGATE_ADMIN_TOKEN, else from the config.
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// Print the admin API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Why a subcommand failed.
#[derive(Debug)]
pub enum Failure {
    /// A usage or config error: exit 2.
    Usage(String),
    /// The admin API answered an error, or could not be reached: exit 1.
    Api(String),
}

/// The exit code of a subcommand's result, its error printed.
pub fn exit_code(result: Result<(), Failure>) -> u8 {
    match result {
        Ok(()) => 0,
        Err(Failure::Api(message)) => {
            eprintln!("error: {message}");
            1
        }
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            2
        }
    }
}

/// `[admin]` of `--config`, its token resolved when `resolve_token`.
fn load(args: &AdminArgs, resolve_token: bool) -> Result<config::AdminAccess, Failure> {
    config::load_admin_file(&args.config, resolve_token).map_err(|errors| {
        let lines: Vec<String> = errors
            .iter()
            .map(|error| format!("{}: {error}", args.config.display()))
            .collect();
        Failure::Usage(format!(
            "{}\n(pass --config, or --url with {TOKEN_ENV} set)",
            lines.join("\n")
        ))
    })
}

/// A connection to one gateway's admin API.
pub struct Admin {
    base: Url,
    token: String,
    client: reqwest::blocking::Client,
    /// `--json`: print answers as JSON rather than for people.
    json: bool,
}

impl Admin {
    /// Finds the admin API and its token: `--url` and `HOOKGATE_ADMIN_TOKEN` when given (the
    /// config is then not read at all), the config's `[admin]` for what they leave out.
    pub fn connect(args: &AdminArgs) -> Result<Admin, Failure> {
        let token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty());
        let (base, token) = match (&args.url, token) {
            (Some(url), Some(token)) => (loopback::parse_url(url).map_err(Failure::Usage)?, token),
            (url, token) => {
                let access = load(args, token.is_none())?;
                let base = match url {
                    Some(url) => loopback::parse_url(url).map_err(Failure::Usage)?,
                    None => loopback::listener_url(access.listen).ok_or_else(|| {
                        Failure::Usage(
                            "[admin] listen has port 0 (chosen at start-up): pass --url".into(),
                        )
                    })?,
                };
                let token = match (token, access.token) {
                    (Some(token), _) => token,
                    (None, Some(secret)) => String::from_utf8(secret.expose().to_vec())
                        .map_err(|_| Failure::Usage("[admin] token is not UTF-8".into()))?,
                    (None, None) => return Err(Failure::Usage("[admin] token is missing".into())),
                };
                (base, token)
            }
        };
        if base.scheme() == "http" && !loopback::is_loopback(&base) {
            eprintln!(
                "warning: the admin token goes to {} over plain HTTP: anyone on the way can read it; \
                 use https (a TLS proxy in front of the admin listener) or an SSH tunnel",
                base.host_str().unwrap_or_default()
            );
        }
        let client = loopback::client_for(&base, TIMEOUT, true).map_err(Failure::Usage)?;
        Ok(Admin {
            base,
            token,
            client,
            json: args.json,
        })
    }

    /// `GET` the route made of `segments` (each escaped), with `query`.
    pub fn get(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Value, Failure> {
        let url = self.url(segments, query);
        self.send(self.client.get(url.clone()), &url)
    }

    /// `GET`s a route and prints the answer: as JSON with `--json`, else as `for_people` does.
    pub fn show(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        for_people: fn(&Value),
    ) -> Result<(), Failure> {
        let answer = self.get(segments, query)?;
        self.print(&answer, for_people);
        Ok(())
    }

    /// Prints an answer: as JSON with `--json`, else as `for_people` does.
    pub fn print(&self, answer: &Value, for_people: impl FnOnce(&Value)) {
        if self.json {
            let json = serde_json::to_string_pretty(answer).unwrap_or_default();
            println!("{}", super::table::terminal_safe_json(&json));
        } else {
            for_people(answer);
        }
    }

    /// `POST` `body` (JSON) to the route made of `segments`.
    pub fn post(&self, segments: &[&str], body: &Value) -> Result<Value, Failure> {
        let url = self.url(segments, &[]);
        self.send(self.client.post(url.clone()).json(body), &url)
    }

    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    fn send(
        &self,
        request: reqwest::blocking::RequestBuilder,
        url: &Url,
    ) -> Result<Value, Failure> {
        let shown = printable(url);
        let response = request
            .bearer_auth(&self.token)
            .send()
            .map_err(|err| Failure::Api(format!("{shown}: {}", error_chain(&err))))?;
        let status = response.status();
        let text = read_answer(response)
            .map_err(|err| Failure::Api(format!("{shown}: {}", error_chain(&err))))?;
        let json = serde_json::from_str::<Value>(&text);
        if !status.is_success() {
            return Err(Failure::Api(api_error(&shown, status, json.ok(), &text)));
        }
        json.map_err(|err| Failure::Api(format!("{shown} answered {status} without JSON: {err}")))
    }
}

/// An answer's body, at most [`MAX_ANSWER_BYTES`] (an endless one, from a URL that is no
/// hookgate, filled the memory).
fn read_answer(response: reqwest::blocking::Response) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut body = Vec::new();
    let limit = u64::try_from(MAX_ANSWER_BYTES).unwrap_or(u64::MAX) + 1;
    response.take(limit).read_to_end(&mut body)?;
    if body.len() > MAX_ANSWER_BYTES {
        return Err(std::io::Error::other(format!(
            "the answer is longer than {} MiB",
            MAX_ANSWER_BYTES >> 20
        )));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The longest answer the CLI reads. The CLI parses an answer whole, each event's `json` too
/// (a body of many small objects takes ~95 times its size so): an event over ~27 MiB (its body
/// shown as base64 and as JSON) is read through the API, not shown here.
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// What an error answer means to the operator: the status, the API's error code, and for a
/// 401 where the token came from.
fn api_error(url: &Url, status: reqwest::StatusCode, json: Option<Value>, text: &str) -> String {
    let code = json
        .as_ref()
        .and_then(|json| json["error"].as_str())
        .unwrap_or(text.trim());
    let code = super::table::clean(code, false);
    let mut message = format!("{url} answered {status}: {code}");
    if status == reqwest::StatusCode::UNAUTHORIZED {
        message.push_str(&format!(
            "\nthe admin token was refused: check {TOKEN_ENV}, or `[admin] token` in the config"
        ));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(base: &str) -> Admin {
        let base = Url::parse(base).unwrap();
        Admin {
            client: loopback::client_for(&base, TIMEOUT, true).unwrap(),
            base,
            token: "t".into(),
            json: false,
        }
    }

    #[test]
    fn segments_are_escaped_and_joined_to_the_base_path() {
        let local = admin("http://127.0.0.1:9090");
        let url = local.url(&["v1", "destinations", "a/b c", "pause"], &[]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9090/v1/destinations/a%2Fb%20c/pause"
        );
        let proxied = admin("https://ops.example.com/hookgate/");
        let url = proxied.url(&["v1", "events"], &[("provider", "a&b".into())]);
        assert_eq!(
            url.as_str(),
            "https://ops.example.com/hookgate/v1/events?provider=a%26b"
        );
    }

    #[test]
    fn a_refused_token_says_where_tokens_come_from() {
        let url = Url::parse("http://127.0.0.1:9090/v1/events").unwrap();
        let json = serde_json::json!({"error": "unauthorized"});
        let message = api_error(&url, reqwest::StatusCode::UNAUTHORIZED, Some(json), "");
        assert!(
            message.starts_with(
                "http://127.0.0.1:9090/v1/events answered 401 Unauthorized: unauthorized"
            ),
            "{message}"
        );
        assert!(message.contains(TOKEN_ENV), "{message}");
        let message = api_error(
            &url,
            reqwest::StatusCode::BAD_GATEWAY,
            None,
            "<html>\x1b[2J</html>\n",
        );
        assert_eq!(
            message,
            "http://127.0.0.1:9090/v1/events answered 502 Bad Gateway: <html>?[2J</html>"
        );
    }
}
