//! What the keyed writer's tests share: batches of `key`/`value` rows, the file's
//! contents checked to hold each key once, and a model of what it must hold.
#![allow(dead_code)]

use std::collections::BTreeMap;

use weir_sdk::testing::TestDir;
use weir_sdk::{Batch, BatchBuilder, FieldType, UpsertOutcome, Value};

use UpsertOutcome::{Inserted as I, Unchanged as C, Updated as U};

pub fn batch<K: AsRef<str>, V: AsRef<str>>(rows: &[(K, V)]) -> Batch {
    let mut b = BatchBuilder::new(&[("key", FieldType::Text), ("value", FieldType::Text)]);
    for (k, v) in rows {
        b.push_row(&[
            Value::Text(k.as_ref().into()),
            Value::Text(v.as_ref().into()),
        ])
        .unwrap();
    }
    b.finish()
}

/// The file's lines, checked to hold each key once, in file order.
pub fn contents(dir: &TestDir) -> Vec<(String, String)> {
    let text = dir.read("t.txt");
    let rows: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('\t').expect("key\tvalue");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for (k, _) in &rows {
        assert!(seen.insert(k.clone()), "key {k} twice");
    }
    rows
}

/// A model of what the file must hold: first-seen order, latest value.
#[derive(Default)]
pub struct Model {
    pub order: Vec<String>,
    pub values: BTreeMap<String, String>,
}

impl Model {
    pub fn upsert(&mut self, k: &str, v: &str) -> UpsertOutcome {
        match self.values.insert(k.to_owned(), v.to_owned()) {
            Some(old) if old == v => C,
            Some(_) => U,
            None => {
                self.order.push(k.to_owned());
                I
            }
        }
    }

    pub fn upsert_all(&mut self, rows: &[(String, String)]) -> Vec<UpsertOutcome> {
        rows.iter().map(|(k, v)| self.upsert(k, v)).collect()
    }

    pub fn expected(&self) -> Vec<(String, String)> {
        self.order
            .iter()
            .map(|k| (k.clone(), self.values[k].clone()))
            .collect()
    }
}

/// The folder's file names, sorted.
pub fn names(dir: &TestDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}
