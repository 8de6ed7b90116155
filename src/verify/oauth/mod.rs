//! SKELETON: being written. Refuses every request (fails closed) and every config.

use super::{Claims, Rejection, Unverified};
use crate::config::RawProvider;

#[derive(Debug)]
pub struct OAuth {}

impl OAuth {
    pub fn build(raw: &RawProvider) -> Result<OAuth, Vec<String>> {
        let _ = raw;
        Err(vec!["this scheme is not built yet".to_string()])
    }

    pub async fn verify(&self, _request: &Unverified<'_>) -> Result<Claims, Rejection> {
        Err(Rejection::MissingToken)
    }
}
