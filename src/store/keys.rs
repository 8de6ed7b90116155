//! The keys of the outputs' durable state (destinations and consumers share one namespace):
//! cursors and flags in `meta`, and per (output, seq) entries in `dead`, `replay`, `settled`.

use serde::{Deserialize, Serialize};

use super::{TreeId, Write};
use crate::event::Seq;

/// `meta` key of an output's cursor: every seq at or below it is done for that output.
pub fn cursor_key(output: &str) -> Vec<u8> {
    [b"cursor/".as_slice(), output.as_bytes()].concat()
}

/// `meta` key set while a destination is paused by an operator.
pub fn paused_key(output: &str) -> Vec<u8> {
    [b"paused/".as_slice(), output.as_bytes()].concat()
}

/// Key of (output, seq) in `dead`, `replay` and `settled`: the name, a NUL, the big-endian seq,
/// so one output's entries are contiguous and in seq order.
pub fn output_seq_key(output: &str, seq: Seq) -> Vec<u8> {
    [output_prefix(output).as_slice(), &seq.to_key()].concat()
}

/// The prefix of one output's entries.
pub fn output_prefix(output: &str) -> Vec<u8> {
    [output.as_bytes(), b"\0"].concat()
}

/// The seq in an `output_seq_key`.
pub fn seq_of(key: &[u8]) -> Option<Seq> {
    Seq::from_key(key.get(key.len().checked_sub(8)?..)?)
}

/// Why an event is dead for a destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadRecord {
    pub at_ms: u64,
    pub attempts: u32,
    /// The last failure, as `/v1/errors` shows it.
    pub error: String,
}

impl DeadRecord {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a dead record serializes")
    }

    pub fn decode(bytes: &[u8]) -> Option<DeadRecord> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The write that moves an output's cursor.
pub fn set_cursor(output: &str, seq: Seq) -> Write {
    Write::Put(TreeId::Meta, cursor_key(output), seq.to_key().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_output_then_seq() {
        let a1 = output_seq_key("a", Seq(1));
        let a2 = output_seq_key("a", Seq(256));
        let ab = output_seq_key("ab", Seq(0));
        assert!(a1 < a2 && a2 < ab);
        assert!(a2.starts_with(&output_prefix("a")) && !ab.starts_with(&output_prefix("a")));
        assert_eq!(seq_of(&a2), Some(Seq(256)));
    }
}
