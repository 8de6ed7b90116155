//! SKELETON: being written. Refuses every request (fails closed) and every config.

use super::{Claims, Rejection, SignInput, SignedHeaders, Unverified};
use crate::config::{RawProvider, Secret};

#[derive(Debug)]
pub struct Stripe {}

impl Stripe {
    pub fn build(raw: &RawProvider, secrets: Vec<Secret>) -> Result<Stripe, Vec<String>> {
        let _ = (raw, secrets);
        Err(vec!["this scheme is not built yet".to_string()])
    }

    pub fn verify(&self, _request: &Unverified<'_>) -> Result<Claims, Rejection> {
        Err(Rejection::BadSignature)
    }

    pub fn sign(&self, _input: &SignInput<'_>) -> Result<SignedHeaders, String> {
        Err("not built yet".into())
    }
}
