//! The data types of weir's plugin contract, shared by the host and the guest SDK.
//!
//! A [`Batch`] names each field once and keeps each column's values together:
//! numbers in typed vectors, text and bytes in one buffer plus offsets. This is the
//! Rust face of the WIT `record-batch` type; the host and the guest SDK convert to
//! and from their generated bindings by moving these vectors, never copying values.
//!
//! Besides batches it holds the contract's plain data: schemas, plugin info,
//! configuration, outcomes and errors.
//!
//! What this crate is: plain data structures, a [`BatchBuilder`] to make batches
//! row by row, and a [`Row`] view to read them row by row. What it is not: a
//! binding to wasmtime or wit-bindgen (it depends on nothing but optional serde,
//! so both sides can use it), nor a general dataframe library.
//!
//! ```
//! use weir_types::{BatchBuilder, FieldType, Value};
//!
//! let mut b = BatchBuilder::new(&[("id", FieldType::Integer), ("email", FieldType::Text)]);
//! b.push_row(&[Value::Integer(1), Value::Text("ada@example.com".into())]).unwrap();
//! b.push_row(&[Value::Integer(2), Value::Null]).unwrap();
//! let batch = b.finish();
//! assert_eq!(batch.len(), 2);
//! let row = batch.row(1);
//! assert_eq!(row.get("id"), Some(Value::Integer(2)));
//! assert_eq!(row.text("email"), None);
//! ```

mod batch;
mod contract;

pub use batch::*;
pub use contract::*;
