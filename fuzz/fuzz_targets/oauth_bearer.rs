//! OAuth: the `Authorization: Bearer` header, the builtin token format
//! (`hgat1.<claims>.<mac>`) and JWT decoding against a JWKS file.
#![no_main]

use hookgate::config::Config;
use hookgate_fuzz::{config, fixture, split, verifier, verify, FuzzHeaders};
use libfuzzer_sys::fuzz_target;

fn gateway() -> &'static Config {
    hookgate_fuzz::gateway(|| {
        let config = config(&format!(
            r#"
[[provider]]
name = "builtin"
verify = "oauth"
[provider.oauth]
mode = "builtin"
required_scope = "webhooks"
clients = [{{ id = "sender", secret = "fuzz-client-secret", scopes = ["webhooks"] }}]

[[provider]]
name = "jwt"
verify = "oauth"
[provider.oauth]
mode = "jwt"
jwks = "file:{jwks}"
issuer = "https://issuer.example.com"
audience = "hookgate"
algorithms = ["RS256"]
"#,
            jwks = fixture("oauth/jwks.json"),
        ));
        // The builtin issuer's key lives in the data directory.
        let dir = std::env::temp_dir().join(format!("hookgate-fuzz-oauth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the fuzz data dir");
        for provider in &config.providers {
            provider
                .verifier
                .prepare(&dir)
                .expect("prepare the builtin key");
        }
        config
    })
}

fuzz_target!(|data: &[u8]| {
    let input = split(data, 1);
    let headers = FuzzHeaders(vec![("Authorization", input.fields[0])]);
    for name in ["builtin", "jwt"] {
        let _ = verify(
            verifier(gateway(), name),
            &headers,
            "/hooks/oauth",
            "",
            input.body,
        );
    }
    // The token alone, behind a well-formed scheme name.
    let mut bearer = b"Bearer ".to_vec();
    bearer.extend_from_slice(input.body);
    let headers = FuzzHeaders(vec![("Authorization", bearer.as_slice())]);
    for name in ["builtin", "jwt"] {
        let _ = verify(
            verifier(gateway(), name),
            &headers,
            "/hooks/oauth",
            "",
            b"{}",
        );
    }
});
