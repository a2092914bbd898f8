//! Helpers for connectors whose entities are files in the granted directory
//! (`/data/<entity>.<extension>`): entity-name checks, paths, atomic replace, I/O
//! errors, a byte-offset cursor that resumes in a fresh instance, and an upserting
//! writer that keeps only a key index of bounded size in memory ([`KeyedFileWriter`]).

use std::io;
use std::path::{Path, PathBuf};

use crate::Error;

mod keyed;
#[doc(hidden)]
pub use keyed::{__crash_during_append, __forget_kept_index, __set_index_slots, __test_format};
pub use keyed::{KeyedFileWriter, RecordFormat};

/// The directory a connection's granted folder appears as inside the sandbox.
/// Every call works under it; the functions below take it as a parameter only so
/// the unit tests can point them at a temporary folder.
pub const DATA_DIR: &str = "/data";

/// Refuses an entity name that could leave the data directory or name a file we
/// do not own. The sandbox already denies paths outside `/data`, but a name like
/// `../x` or `a/b` would still reach other files *inside* it, so we check here.
pub fn check_entity_name(entity: &str) -> Result<(), Error> {
    if entity.is_empty()
        || entity.contains('/')
        || entity.contains('\\')
        || entity.contains("..")
        || entity.contains('\0')
    {
        return Err(Error::config(format!(
            "entity `{entity}`: not a valid entity name (it must be a file name without `/`, `\\` or `..`)"
        )));
    }
    Ok(())
}

/// `<dir>/<entity>.<extension>`, after checking the name.
pub fn entity_path(dir: &Path, entity: &str, extension: &str) -> Result<PathBuf, Error> {
    check_entity_name(entity)?;
    Ok(dir.join(format!("{entity}.{extension}")))
}

/// Where `finish` writes before renaming over the entity file. A dot file, so
/// `discover` never reports it, and in the same directory, so the rename is
/// atomic.
pub fn temp_path(dir: &Path, entity: &str, extension: &str) -> PathBuf {
    dir.join(format!(".{entity}.{extension}.tmp"))
}

/// The error for a failed I/O operation on `path` of `entity`.
pub fn io_error(entity: &str, path: &Path, err: io::Error) -> Error {
    if err.kind() == io::ErrorKind::NotFound {
        return Error::config(format!("entity `{entity}`: no file {}", path.display()));
    }
    Error::io(&format!("entity `{entity}`: {}", path.display()), err)
}

/// A read position: the byte offset and line number of the next record. Both
/// travel in the cursor so a later call (in a fresh instance, days later) can seek
/// straight there and still report correct line numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub byte: u64,
    pub line: u64,
}

impl Cursor {
    pub fn parse(entity: &str, text: &str) -> Result<Cursor, Error> {
        let parsed = text
            .split_once(':')
            .and_then(|(b, l)| Some((b.parse().ok()?, l.parse().ok()?)));
        match parsed {
            Some((byte, line)) if line >= 1 => Ok(Cursor { byte, line }),
            _ => Err(Error::config(format!(
                "entity `{entity}`: cursor `{text}` is not `<byte offset>:<line number>`"
            ))),
        }
    }

    pub fn to_text(self) -> String {
        format!("{}:{}", self.byte, self.line)
    }
}

/// A value quoted for a message, cut short so one huge cell cannot flood a log.
pub fn quoted(value: &str) -> String {
    const MAX: usize = 60;
    if value.len() <= MAX {
        return format!("`{value}`");
    }
    let mut end = MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("`{}…`", &value[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_names_that_leave_the_directory_are_refused() {
        for bad in ["", "a/b", "..", "../x", "a\\b", "x..y"] {
            let err = check_entity_name(bad).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidConfig(m) if m.contains(&format!("`{bad}`"))),
                "{err}"
            );
        }
        for good in ["people", "sales 2024", "a.b", ".hidden"] {
            check_entity_name(good).unwrap();
        }
        assert_eq!(
            entity_path(Path::new("/data"), "people", "csv").unwrap(),
            PathBuf::from("/data/people.csv")
        );
    }

    #[test]
    fn cursors_round_trip_and_bad_ones_are_config_errors() {
        let c = Cursor::parse("e", "120:7").unwrap();
        assert_eq!(c, Cursor { byte: 120, line: 7 });
        assert_eq!(c.to_text(), "120:7");
        for bad in ["", "12", "a:1", "1:b", "1:0", "-1:2", "1:2:3"] {
            assert!(
                matches!(Cursor::parse("e", bad), Err(Error::InvalidConfig(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        assert_eq!(quoted("abc"), "`abc`");
        let long = "é".repeat(100);
        let q = quoted(&long);
        assert!(q.ends_with("…`") && q.len() < 70, "{q}");
    }
}
