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

/// A key's digest: 128 bits as two words (a `u128` would align the table's
/// entries to 16 bytes, 32 per entry instead of 24).
type Digest = [u64; 2];

/// What one bucket of the table of remembered keys costs: a digest and the
/// record's ordinal, plus the hash table's one control byte.
const BUCKET_BYTES: u64 = std::mem::size_of::<(Digest, u64)>() as u64 + 1;

/// How many distinct keys a read remembers within `budget_bytes` (the task's
/// `KeyCheckBudget`; bytes here so that this file needs no other module of the
/// engine: the fuzz target includes it by path).
///
/// std's `HashMap` (hashbrown) keeps a power-of-two number of buckets, at most
/// 7/8 of them full, and doubles when that is exceeded; while it doubles, the
/// old table is alive beside the new one (half its size). So the table that
/// fits, predecessor included, is the largest power of two `b` with
/// 1.5 × `b` × [`BUCKET_BYTES`] within the budget, and it holds 7/8 × `b` keys.
/// Counting at most that many keys, the table never grows past `b` buckets.
/// 1 MiB: 14,336 keys; the default 80 MiB: 1,835,008.
pub fn tracked_keys(budget_bytes: u64) -> usize {
    let fit = budget_bytes * 2 / (3 * BUCKET_BYTES);
    if fit < 8 {
        return 0;
    }
    let buckets = 1u64 << (63 - fit.leading_zeros());
    usize::try_from(buckets / 8 * 7).unwrap_or(usize::MAX)
}

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
    seen: HashMap<Digest, u64>,
    hashers: (RandomState, RandomState),
    /// Records checked so far in this read.
    records: u64,
    /// The most keys [`Self::seen`] may hold: [`tracked_keys`] of the budget.
    max_keys: usize,
    budget_bytes: u64,
    /// Whether `max_keys` was reached.
    pub saturated: bool,
}

impl ReadKeys {
    /// The check of one read, holding at most `budget_bytes` of memory.
    pub fn new(budget_bytes: u64) -> ReadKeys {
        ReadKeys {
            seen: HashMap::new(),
            hashers: (RandomState::new(), RandomState::new()),
            records: 0,
            max_keys: tracked_keys(budget_bytes),
            budget_bytes,
            saturated: false,
        }
    }

    /// The warning for the run's log once the budget is reached.
    pub fn saturated_warning(&self, task: &str) -> String {
        format!(
            "warn task {task}: more than {} distinct keys in this read; duplicate keys past them are not detected (the task's duplicate_check_memory_mb is {} MiB: raise it to check more)",
            self.max_keys,
            self.budget_bytes >> 20
        )
    }

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
                None if self.seen.len() < self.max_keys => {
                    self.seen.insert(digest, ordinal);
                }
                None => self.saturated = true,
            }
        }
        self.records += page_len as u64;
        refused
    }

    fn digest(&self, key: &str) -> Digest {
        let half = |s: &RandomState| {
            let mut h = s.build_hasher();
            key.hash(&mut h);
            h.finish()
        };
        [half(&self.hashers.0), half(&self.hashers.1)]
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
    use crate::project::KeyCheckBudget;
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
        let mut keys = ReadKeys::new(KeyCheckBudget::default().bytes());
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
    fn the_table_of_keys_stays_within_its_budget() {
        for mib in [1, 2, 80] {
            let budget = KeyCheckBudget::from_mib(mib).unwrap().bytes();
            let max = tracked_keys(budget);
            let mut keys = ReadKeys::new(budget);
            let ids: Vec<String> = (0..max + 10).map(|i| i.to_string()).collect();
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            for chunk in refs.chunks(10_000) {
                let origin: Vec<usize> = (0..chunk.len()).collect();
                keys.check(&["id".into()], &batch(chunk), &origin, chunk.len());
            }
            assert_eq!(keys.seen.len(), max, "{mib} MiB");
            assert!(keys.saturated, "{mib} MiB");
            // The table did not grow past the buckets the budget allows: its
            // capacity (7/8 of its buckets) is still the keys counted, and that
            // table and the half-size one before it fit in the budget.
            assert_eq!(keys.seen.capacity(), max, "{mib} MiB");
            let buckets = max as u64 / 7 * 8;
            assert!(buckets * BUCKET_BYTES * 3 / 2 <= budget, "{mib} MiB");
        }
        assert_eq!(tracked_keys(1 << 20), 14_336);
        assert_eq!(tracked_keys(KeyCheckBudget::default().bytes()), 1_835_008);
    }

    #[test]
    fn long_keys_are_cut_in_messages() {
        let cut = cut("é".repeat(2_000));
        assert!(cut.len() <= MAX_KEY_BYTES + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
