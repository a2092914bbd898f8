//! The record keys of one source read, checked before the destination sees them.
//!
//! Why here and not in each destination: a key that is empty or only spaces
//! would be upserted as a record nobody can address again, and two records with
//! the same key in one read would reach the destination as an insert and an
//! update — "updated 2" against an empty destination, the first record lost
//! without a word. Both are record errors, named by key and field, whatever the
//! destination plugin does.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use weir_types::Batch;

/// The most distinct keys remembered per read (a table of at most ~50 MiB):
/// past it, duplicates are no longer detected (and the execution log says so
/// once), so a read of a hundred million records does not hold a hundred
/// million keys.
pub const MAX_TRACKED_KEYS: usize = 1_000_000;

/// The longest key text kept in a record error (the runtime's bound for keys
/// a plugin reports, so both kinds of record error agree).
pub use crate::runtime::MAX_KEY_BYTES;

/// Why a record's key is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    #[error("key field `{field}` is empty")]
    Empty { field: String },
    #[error("key field `{field}` is blank (only whitespace)")]
    Blank { field: String },
    #[error(
        "duplicate key `{key}` in this read (first as record {first} of the read); the record was not sent, so the first one stands"
    )]
    Duplicate { key: String, first: u64 },
}

impl KeyProblem {
    /// The field to name in the record error.
    pub fn field(&self, key_fields: &[String]) -> String {
        match self {
            KeyProblem::Empty { field } | KeyProblem::Blank { field } => field.clone(),
            KeyProblem::Duplicate { .. } => key_fields.join(", "),
        }
    }
}

/// Keys seen so far in one read of one task.
pub struct ReadKeys {
    /// A 128-bit digest of each key text (keyed at random per read, so no input
    /// can be crafted to collide) → its record's ordinal in the read (from 1).
    seen: HashMap<u128, u64>,
    hashers: (RandomState, RandomState),
    /// Records checked so far in this read.
    records: u64,
    /// Whether [`MAX_TRACKED_KEYS`] was reached.
    pub saturated: bool,
}

impl Default for ReadKeys {
    fn default() -> Self {
        ReadKeys {
            seen: HashMap::new(),
            hashers: (RandomState::new(), RandomState::new()),
            records: 0,
            saturated: false,
        }
    }
}

impl ReadKeys {
    /// Checks each record of `batch` (in order); `origin[i]` is record `i`'s
    /// row in its source page of `page_len` records. Returns the refused
    /// records with their problem.
    pub fn check(
        &mut self,
        key_fields: &[String],
        batch: &Batch,
        origin: &[usize],
        page_len: usize,
    ) -> Vec<(usize, KeyProblem)> {
        let mut refused = Vec::new();
        if key_fields.is_empty() {
            self.records += page_len as u64;
            return refused;
        }
        for i in 0..batch.len() {
            let row = batch.row(i);
            let mut blank = None;
            for f in key_fields {
                let text = row.get(f).map(|v| v.to_text()).unwrap_or_default();
                if text.is_empty() {
                    blank = Some(KeyProblem::Empty { field: f.clone() });
                } else if text.trim().is_empty() {
                    blank = Some(KeyProblem::Blank { field: f.clone() });
                }
                if blank.is_some() {
                    break;
                }
            }
            if let Some(problem) = blank {
                refused.push((i, problem));
                continue;
            }
            let key = row.key(key_fields);
            let digest = self.digest(&key);
            let ordinal = self.records + origin[i] as u64 + 1;
            match self.seen.get(&digest) {
                Some(&first) => refused.push((
                    i,
                    KeyProblem::Duplicate {
                        key: cut(key),
                        first,
                    },
                )),
                None if self.seen.len() < MAX_TRACKED_KEYS => {
                    self.seen.insert(digest, ordinal);
                }
                None => self.saturated = true,
            }
        }
        self.records += page_len as u64;
        refused
    }

    fn digest(&self, key: &str) -> u128 {
        let half = |s: &RandomState| {
            let mut h = s.build_hasher();
            key.hash(&mut h);
            h.finish()
        };
        (u128::from(half(&self.hashers.0)) << 64) | u128::from(half(&self.hashers.1))
    }
}

/// Cuts a key to [`MAX_KEY_BYTES`] at a character boundary, marking the cut.
pub fn cut(mut key: String) -> String {
    if key.len() > MAX_KEY_BYTES {
        let mut end = MAX_KEY_BYTES;
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        key.truncate(end);
        key.push('…');
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_types::{BatchBuilder, FieldType, Value};

    fn batch(ids: &[&str]) -> Batch {
        let mut b = BatchBuilder::new(&[("id", FieldType::Text)]);
        for id in ids {
            b.push_row(&[Value::Text((*id).to_owned())]).unwrap();
        }
        b.finish()
    }

    #[test]
    fn blank_and_duplicate_keys_are_refused_across_pages() {
        let key = vec!["id".to_owned()];
        let mut keys = ReadKeys::default();
        let page = batch(&["a", "", "   ", "b", "a"]);
        let refused = keys.check(&key, &page, &[0, 1, 2, 3, 4], 5);
        assert_eq!(
            refused,
            vec![
                (1, KeyProblem::Empty { field: "id".into() }),
                (2, KeyProblem::Blank { field: "id".into() }),
                (
                    4,
                    KeyProblem::Duplicate {
                        key: "a".into(),
                        first: 1
                    }
                ),
            ]
        );
        // The next page: `b` was record 4 of the read.
        let refused = keys.check(&key, &batch(&["c", "b"]), &[0, 1], 2);
        assert_eq!(
            refused[0].1.to_string(),
            "duplicate key `b` in this read (first as record 4 of the read); the record was not sent, so the first one stands"
        );
    }

    #[test]
    fn long_keys_are_cut_in_messages() {
        let cut = cut("é".repeat(2_000));
        assert!(cut.len() <= MAX_KEY_BYTES + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
