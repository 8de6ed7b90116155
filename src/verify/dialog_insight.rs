//! SKELETON: being written. Refuses every request (fails closed) and every config.

use super::{Claims, Rejection, Unverified};
use crate::config::RawProvider;

#[derive(Debug)]
pub struct DialogInsight {}

impl DialogInsight {
    pub fn build(raw: &RawProvider) -> Result<DialogInsight, Vec<String>> {
        let _ = raw;
        Err(vec!["this scheme is not built yet".to_string()])
    }

    pub fn verify(&self, _request: &Unverified<'_>) -> Result<Claims, Rejection> {
        Err(Rejection::BadSignature)
    }
}

impl DialogInsight {
    pub fn forward_tests(&self) -> bool {
        false
    }
}
