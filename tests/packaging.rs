//! The .deb: `cargo deb` (cargo-deb, which `.ci/install-tools` installs) packages the binary
//! under test, and the package holds the binary, the unit, the system user, the state directory
//! and the config as a conffile, as `dpkg-deb` reads them. The packaged binary checks the
//! packaged config once it has a provider and its credentials.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Builds the .deb into `dir` from the binary under test (no build: its profile's binary is
/// already there; stripped, with fast compression, so it takes seconds).
fn build_deb(dir: &Path) -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_hookgate"));
    let profile = match bin
        .parent()
        .and_then(Path::file_name)
        .and_then(|p| p.to_str())
    {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut deb = Command::new(cargo);
    deb.args([
        "deb",
        "--no-build",
        "--locked",
        "--strip",
        "--fast",
        "--profile",
    ])
    .arg(profile)
    .arg("--output")
    .arg(dir)
    .current_dir(MANIFEST_DIR);
    let started = Instant::now();
    let output = deb.output().expect("run cargo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("no such command"),
        "cargo-deb is not installed: run .ci/install-tools\n{stderr}"
    );
    assert!(output.status.success(), "cargo deb: {stderr}");
    eprintln!("cargo deb took {:.1} s", started.elapsed().as_secs_f64());
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    debs.pop().unwrap()
}

#[test]
fn the_deb_installs_binary_unit_user_state_dir_and_conffile() {
    let dir = tempfile::tempdir().unwrap();
    let deb = build_deb(dir.path());

    // What it installs, with modes.
    let contents = text(&run(Command::new("dpkg-deb").arg("--contents").arg(&deb)));
    let entry = |path: &str| {
        contents
            .lines()
            .find(|line| line.ends_with(&format!(" ./{path}")))
            .unwrap_or_else(|| panic!("no {path} in the package:\n{contents}"))
            .to_string()
    };
    assert!(entry("usr/bin/hookgate").starts_with("-rwxr-xr-x"));
    for file in [
        "usr/lib/systemd/system/hookgate.service",
        "usr/lib/sysusers.d/hookgate.conf",
        "usr/lib/tmpfiles.d/hookgate.conf",
        "etc/hookgate/config.toml",
        "usr/share/doc/hookgate/README.md",
        "usr/share/doc/hookgate/docs/configuration.md",
        // What the docs link to and show, so that their links work where they are installed.
        "usr/share/doc/hookgate/docs/console/overview.png",
        "usr/share/doc/hookgate/systemd/hookgate.service",
        "usr/share/doc/hookgate/packaging/config.toml",
    ] {
        assert!(entry(file).starts_with("-rw-r--r--"), "{}", entry(file));
    }

    let field = |name: &str| {
        text(&run(Command::new("dpkg-deb")
            .arg("--field")
            .arg(&deb)
            .arg(name)))
    };
    assert_eq!(field("Package").trim(), "hookgate");
    let depends = field("Depends");
    assert!(
        depends.contains("systemd | systemd-standalone-sysusers"),
        "{depends}"
    );

    // Control files: the config is a conffile; postinst creates the user and the directories,
    // and on an upgrade restarts the service only if it runs; nothing starts it at install.
    let control = dir.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let read = |name: &str| std::fs::read_to_string(control.join(name)).unwrap();
    assert_eq!(read("conffiles").trim(), "/etc/hookgate/config.toml");
    let postinst = read("postinst");
    for expected in [
        "systemd-sysusers ${DPKG_ROOT:+--root=\"$DPKG_ROOT\"} hookgate.conf",
        "systemd-tmpfiles --create hookgate.conf",
        "deb-systemd-invoke try-restart hookgate.service",
    ] {
        assert!(
            postinst.contains(expected),
            "no `{expected}` in postinst:\n{postinst}"
        );
    }
    assert!(
        !postinst.contains("deb-systemd-invoke $_dh_action"),
        "{postinst}"
    );
    assert!(read("prerm").contains("deb-systemd-invoke stop hookgate.service"));

    // The files, as installed.
    let root = dir.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let installed = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    let repo = |path: &str| std::fs::read_to_string(Path::new(MANIFEST_DIR).join(path)).unwrap();
    assert_eq!(
        installed("usr/lib/systemd/system/hookgate.service"),
        repo("systemd/hookgate.service")
    );
    assert!(installed("usr/lib/sysusers.d/hookgate.conf")
        .lines()
        .any(|l| l.starts_with("u hookgate - ") && l.ends_with(" /var/lib/hookgate")));
    assert!(installed("usr/lib/tmpfiles.d/hookgate.conf")
        .lines()
        .any(|l| l == "d /var/lib/hookgate 0700 hookgate hookgate -"));
    let config = installed("etc/hookgate/config.toml");
    assert_eq!(config, repo("packaging/config.toml"));
    assert!(config.contains(r#"data_dir = "/var/lib/hookgate""#));

    // The packaged binary runs, and accepts the packaged config once a provider is added, with
    // no secret written in it (no warning about a literal one).
    let etc = dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::write(credentials.join("admin-token"), "a-packaged-admin-token\n").unwrap();
    std::fs::write(credentials.join("github-secret"), "a-github-secret\n").unwrap();
    let config_path = etc.join("config.toml");
    std::fs::write(
        &config_path,
        format!(
            "{config}\n[[provider]]\nname = \"github\"\nverify = \"github\"\nsecrets = [\"credential:github-secret\"]\n"
        ),
    )
    .unwrap();
    let check = run(Command::new(root.join("usr/bin/hookgate"))
        .args(["check-config", "--config"])
        .arg(&config_path)
        .env("CREDENTIALS_DIRECTORY", &credentials));
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        text(&check).contains("config OK: 1 provider(s)"),
        "{}",
        text(&check)
    );
    assert!(!stderr.contains("warning"), "{stderr}");
}
