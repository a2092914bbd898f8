//! `Batch::validate` on arbitrary columns — what the host runs on every batch a
//! plugin returns (`runtime::instance`, `checked_batch`). The property: validate
//! never panics, and once it accepts a batch, reading every value of every row
//! (as the engine does) never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_types::{Batch, Column, ColumnData, VarData};

/// Reads the input as a little program that builds a batch.
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
    fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head.to_vec()
    }
}

/// A length near `len` (most often exactly it), so the checks past the length
/// check are reached.
fn near(b: &mut Bytes, len: usize) -> usize {
    match b.u8() % 8 {
        0 => len + 1,
        1 => len.saturating_sub(1),
        2 => b.u8() as usize % 80,
        _ => len,
    }
}

fn var(b: &mut Bytes, len: usize) -> VarData {
    let n = near(b, len + 1);
    let data_len = b.u8() as usize;
    let mut offsets = Vec::with_capacity(n);
    let mut at = 0u32;
    for i in 0..n {
        match b.u8() % 8 {
            // Mostly well-formed, growing offsets, so UTF-8 boundaries are tested.
            0 => offsets.push(b.u32()),
            1 if i > 0 => offsets.push(at.saturating_sub(1)),
            _ => {
                if i > 0 {
                    at = at.saturating_add(u32::from(b.u8() % 8));
                }
                offsets.push(at);
            }
        }
    }
    VarData {
        data: b.take(data_len),
        offsets,
    }
}

fn column(b: &mut Bytes, len: usize) -> Column {
    // Few names, so duplicates happen.
    let name = ["id", "name", "email", "x"][b.u8() as usize % 4].to_owned();
    let data = match b.u8() % 7 {
        0 => ColumnData::Boolean((0..near(b, len)).map(|_| b.u8() & 1 == 1).collect()),
        1 => ColumnData::Integer((0..near(b, len)).map(|_| b.u32() as i64).collect()),
        2 => ColumnData::Float((0..near(b, len)).map(|_| f64::from(b.u32())).collect()),
        3 => ColumnData::Decimal(var(b, len)),
        4 => ColumnData::Text(var(b, len)),
        5 => ColumnData::Timestamp((0..near(b, len)).map(|_| b.u32() as i64).collect()),
        _ => ColumnData::Bytes(var(b, len)),
    };
    let nulls = match b.u8() % 3 {
        0 => Vec::new(),
        _ => (0..near(b, len)).map(|_| b.u8() & 1 == 1).collect(),
    };
    Column { name, data, nulls }
}

fuzz_target!(|input: &[u8]| {
    let mut b = Bytes(input);
    let len = b.u8() as usize % 64;
    let columns = (0..b.u8() % 5).map(|_| column(&mut b, len)).collect();
    let batch = Batch { len, columns };
    if batch.validate().is_err() {
        return;
    }
    // Accepted: everything the engine reads must be readable.
    let names: Vec<String> = batch.fields().map(|(n, _)| n.to_owned()).collect();
    for row in batch.rows() {
        for name in &names {
            let _ = row.get(name);
            let _ = row.text(name);
        }
        let _ = row.values().count();
        let _ = row.key(&names);
    }
    for c in &batch.columns {
        for i in 0..batch.len {
            let _ = c.value(i).to_text();
            let _ = c.str_at(i);
        }
    }
    let keep: Vec<bool> = (0..batch.len).map(|i| i % 2 == 0).collect();
    batch
        .filter(&keep)
        .validate()
        .expect("a filtered valid batch is valid");
    let _ = batch.byte_size();
});
