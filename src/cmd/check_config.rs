//! `hookgate check-config`: load the config as `serve` would and report every problem.

use std::path::Path;

use crate::config;

pub fn check_config(path: &Path) -> u8 {
    match config::load_file(path) {
        Ok((config, warnings)) => {
            for warning in warnings {
                eprintln!("warning: {warning}");
            }
            println!(
                "config OK: {} provider(s), public listener {}, admin listener {}",
                config.providers.len(),
                config.server.listen,
                config.admin.listen
            );
            0
        }
        Err(errors) => {
            for error in &errors {
                eprintln!("{}: {error}", path.display());
            }
            eprintln!("{} problem(s) found.", errors.len());
            1
        }
    }
}
