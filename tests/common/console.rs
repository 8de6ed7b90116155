//! A plain-HTTP client of the console (no browser): signs in, keeps the session cookie and the
//! CSRF token, and posts forms with the headers a browser would send.

use reqwest::blocking::Client;
use reqwest::redirect::Policy;

use super::{read_reply, Reply, ADMIN_TOKEN};

/// A console session over plain HTTP.
pub struct ConsoleClient {
    /// `http://IP:PORT` of the listener the console is tried on.
    pub base: String,
    client: Client,
    /// `hookgate_console=<id>`, once signed in.
    pub cookie: Option<String>,
}

impl ConsoleClient {
    pub fn new(base: &str) -> ConsoleClient {
        let client = Client::builder()
            .no_proxy()
            .redirect(Policy::none())
            .build()
            .expect("build http client");
        ConsoleClient {
            base: base.to_string(),
            client,
            cookie: None,
        }
    }

    /// GET `path` with the session cookie, if any.
    pub fn get(&self, path: &str) -> Reply {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("Cookie", cookie);
        }
        read_reply(request.send().expect("console GET")).expect("read reply")
    }

    /// POSTs a form to `path` with the session cookie (if any) and `headers`.
    pub fn post(&self, path: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Reply {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .form(fields);
        if let Some(cookie) = &self.cookie {
            request = request.header("Cookie", cookie);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        read_reply(request.send().expect("console POST")).expect("read reply")
    }

    /// The headers a browser sends with a form of this console's own page.
    pub fn same_origin(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Origin", self.base.clone()),
            ("Sec-Fetch-Site", "same-origin".to_string()),
        ]
    }

    /// Posts `fields` as the console's own page would: same origin, with the CSRF token.
    pub fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let csrf = self.csrf();
        let mut all = fields.to_vec();
        all.push(("csrf", csrf.as_str()));
        let headers = self.same_origin();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.post(path, &all, &headers)
    }

    /// Signs in with `token`; returns the answer (a 303 with the cookie on success).
    pub fn sign_in_with(&mut self, token: &str) -> Reply {
        let headers = self.same_origin();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = self.post("/console/sign-in", &[("token", token)], &headers);
        if let Some(set) = reply.header("set-cookie") {
            self.cookie = set.split(';').next().map(str::to_string);
        }
        reply
    }

    /// Signs in with the admin token; panics unless that works.
    pub fn sign_in(&mut self) {
        let reply = self.sign_in_with(ADMIN_TOKEN);
        assert_eq!(reply.status, 303, "sign in: {}", reply.text());
        assert!(self.cookie.is_some(), "a session cookie");
    }

    /// The session's CSRF token, read from a page's forms.
    pub fn csrf(&self) -> String {
        let page = self.get("/console");
        assert_eq!(page.status, 200, "overview: {}", page.text());
        csrf_in(&page.text()).expect("a CSRF field on the overview")
    }
}

/// The value of the first `csrf` hidden field in `html`.
pub fn csrf_in(html: &str) -> Option<String> {
    let at = html.find(r#"name="csrf" value=""#)? + r#"name="csrf" value=""#.len();
    Some(html[at..].split('"').next()?.to_string())
}
