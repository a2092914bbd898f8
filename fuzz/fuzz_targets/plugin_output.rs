//! What a plugin returns besides its batches, through the host's own checks:
//! `runtime/bounds.rs` (the page and cursor bounds, the cutting of texts for
//! people) and `engine/keys.rs` (blank and duplicate keys within one read),
//! both included by path. The properties: nothing panics; a page the checks
//! accept holds at most the records asked for and a cursor of at most 4 KiB;
//! every cut text is at most its bound plus the note saying so, and is a prefix
//! of the original; the key check refuses exactly the blank keys and the
//! repeats a plain `HashSet` model finds, and never a record twice.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use weir_types::{BatchBuilder, FieldType, Value};

#[path = "../../host/runtime/src/bounds.rs"]
#[allow(dead_code)]
mod bounds;

/// The one item of the host's `runtime` module `engine/keys.rs` uses.
mod runtime {
    pub use super::bounds::MAX_KEY_BYTES;
}

#[path = "../../host/engine/src/keys.rs"]
#[allow(dead_code)]
mod keys;

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    /// A string of up to `max` bytes from the input (lossy UTF-8); now and then
    /// a long one built by repetition, so the bounds are crossed.
    fn text(&mut self, max: usize) -> String {
        let n = (self.u8() as usize).min(max).min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        let s = String::from_utf8_lossy(head).into_owned();
        match self.u8() % 16 {
            0 => s.repeat(1 + self.u32() as usize % 10_000),
            _ => s,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);

    // The page bound and the cursor bound.
    let records = u64::from(b.u32());
    let rejected = u64::from(b.u32());
    let max = b.u32();
    let cursor = (b.u8() % 2 == 0).then(|| b.text(255));
    if bounds::check_page(records, rejected, max, cursor.as_deref()).is_ok() {
        assert!(records + rejected <= u64::from(max));
        assert!(cursor.map_or(0, |c| c.len()) <= bounds::MAX_CURSOR_BYTES);
    }
    let failures = b.u32() as usize;
    let len = b.u32() as usize;
    assert_eq!(bounds::check_failures(failures, len).is_ok(), failures <= len);

    // Texts a plugin hands over: positions and keys, messages.
    for max in [bounds::MAX_KEY_BYTES, bounds::MAX_ERROR_MESSAGE_BYTES] {
        let text = b.text(255);
        let cut = bounds::bounded_to(text.clone(), max);
        if text.len() <= max {
            assert_eq!(cut, text);
        } else {
            assert!(cut.len() <= max + 64, "{} for a bound of {max}", cut.len());
            let kept = cut.split("… (").next().unwrap();
            assert!(text.starts_with(kept));
        }
    }

    // Keys over a few pages of one read.
    let key = vec!["k".to_owned()];
    // The default budget of a task (`KeyCheckBudget::DEFAULT_MIB`).
    let mut read = keys::ReadKeys::new(80 << 20);
    let mut model: HashSet<String> = HashSet::new();
    for _ in 0..(b.u8() % 4) {
        let n = b.u8() as usize % 16;
        let mut builder = BatchBuilder::new(&[("k", FieldType::Text)]);
        let mut texts = Vec::new();
        for _ in 0..n {
            let t = match b.u8() % 4 {
                0 => String::new(),
                1 => " ".repeat(b.u8() as usize % 3 + 1),
                _ => b.text(8),
            };
            builder.push_row(&[Value::Text(t.clone())]).unwrap();
            texts.push(t);
        }
        let batch = builder.finish();
        let origin: Vec<usize> = (0..n).collect();
        let refused = read.check(&key, &batch, &origin, n);
        let mut seen = HashSet::new();
        for (i, problem) in &refused {
            assert!(*i < n && seen.insert(*i), "record {i} refused twice or out of range");
            if let keys::KeyProblem::Duplicate { key, .. } = problem {
                assert!(key.len() <= keys::MAX_KEY_BYTES + '…'.len_utf8());
            }
        }
        let refused: HashSet<usize> = refused.into_iter().map(|(i, _)| i).collect();
        for (i, t) in texts.iter().enumerate() {
            let expect = t.trim().is_empty() || !model.insert(t.clone());
            assert_eq!(refused.contains(&i), expect, "record {i} ({t:?})");
        }
    }
});
