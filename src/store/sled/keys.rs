//! The keys of the outputs' durable state (destinations and consumers share one namespace):
//! cursors, pause flags and sync cursors in `meta`, and per (output, seq) entries in `dead`,
//! `replay`, `settled`; and how a [`Change`] becomes a [`Write`].

use super::{TreeId, Write};
use crate::event::Seq;
use crate::store::{Change, DeadRecord};

/// `meta` key of an output's cursor: every seq at or below it is done for that output.
pub fn cursor_key(output: &str) -> Vec<u8> {
    [b"cursor/".as_slice(), output.as_bytes()].concat()
}

/// `meta` key set while a destination is paused by an operator.
pub fn paused_key(output: &str) -> Vec<u8> {
    [b"paused/".as_slice(), output.as_bytes()].concat()
}

/// `meta` key of a poller's sync cursor.
pub fn sync_cursor_key(provider: &str) -> Vec<u8> {
    [b"sync/".as_slice(), provider.as_bytes()].concat()
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

impl DeadRecord {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a dead record serializes")
    }

    pub fn decode(bytes: &[u8]) -> Option<DeadRecord> {
        serde_json::from_slice(bytes).ok()
    }

    /// What a dead mark whose record cannot be read shows: it is still dead.
    pub fn unreadable() -> DeadRecord {
        DeadRecord {
            at_ms: 0,
            attempts: 0,
            error: "(unreadable dead record)".into(),
        }
    }
}

/// The write that applies one change to `output`.
pub fn write_of(output: &str, change: Change) -> Write {
    match change {
        Change::Cursor(seq) => Write::Raise(TreeId::Meta, cursor_key(output), seq),
        Change::Paused(true) => Write::Put(TreeId::Meta, paused_key(output), Vec::new()),
        Change::Paused(false) => Write::Delete(TreeId::Meta, paused_key(output)),
        Change::Dead(seq, record) => {
            Write::Put(TreeId::Dead, output_seq_key(output, seq), record.encode())
        }
        Change::Mark(mark, seq) => {
            Write::Put(TreeId::of(mark), output_seq_key(output, seq), Vec::new())
        }
        Change::Unmark(mark, seq) => Write::Delete(TreeId::of(mark), output_seq_key(output, seq)),
    }
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

    #[test]
    fn sync_cursor_keys_keep_their_layout() {
        assert_eq!(sync_cursor_key("alcmeon"), b"sync/alcmeon".to_vec());
    }
}
