//! Helpers for connectors whose entities are files in the granted directory
//! (`/data/<entity>.<extension>`): entity-name checks, paths, atomic replace, I/O
//! errors, a byte-offset cursor that resumes in a fresh instance, and an upserting
//! writer that keeps only a key index of bounded size in memory ([`KeyedFileWriter`]).

use std::io;
use std::path::{Path, PathBuf};

use crate::Error;

mod keyed;
#[cfg(any(test, feature = "test-hooks"))]
#[doc(hidden)]
pub use keyed::{
    __crash_during_append, __forget_kept_index, __memory_index_calls, __set_index_slots,
    __test_format, __use_memory_index,
};
pub use keyed::{KeyedFileWriter, RecordFormat, StoredRecord};

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

/// The entity files of `dir`: `(entity, path)` for each `<entity>.<extension>`
/// that is a file, sorted by entity. Skipped: dot files (the writers' temporary
/// files are dot files), names [`check_entity_name`] refuses, and entries that
/// vanish while the directory is listed — the sandbox stats every entry as it
/// lists, so another writer's temporary file removed in between would otherwise
/// fail the whole listing (seen with 64 executions writing into one folder).
pub fn entity_files(dir: &Path, extension: &str) -> io::Result<Vec<(String, PathBuf)>> {
    let suffix = format!(".{extension}");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let file_name = entry.file_name();
        let Some(entity) = file_name.to_str().and_then(|n| n.strip_suffix(&suffix)) else {
            continue;
        };
        if entity.starts_with('.') || check_entity_name(entity).is_err() {
            continue;
        }
        let path = entry.path();
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            out.push((entity.to_owned(), path));
        }
    }
    out.sort();
    Ok(out)
}

/// Opens an entity file [`entity_files`] listed: `None` if it was removed since.
pub fn open_listed(entity: &str, path: &Path) -> Result<Option<std::fs::File>, Error> {
    match std::fs::File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(entity, path, e)),
    }
}

/// The record error of a last line that has no line end yet.
///
/// Why file sources refuse it: a file that another program is still writing ends in a
/// half-written line (`3,Car` of `3,Carol`). Read as a record, it would reach the
/// destination cut short, and the cursor after it would start the next incremental
/// read in the middle of the line (`ol`). So a reader takes complete lines only: this
/// line fails (the run says Warning, so a complete file that merely lacks its final
/// line end is seen and can be fixed), and the page's cursor stays *before* it, so
/// the next run reads it again, whole once the writer has finished it.
pub fn unterminated_line(line: u64) -> crate::Rejected {
    crate::Rejected {
        position: format!("line {line}"),
        key: None,
        error: crate::RecordError::new(
            "the last line has no line end yet, so it was not read (a file still being written?); \
             the next run reads it again from there. A complete file must end with a line end",
        ),
    }
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
    fn entity_files_lists_entity_files_only_sorted() {
        let dir = crate::testing::TestDir::new();
        for name in ["b.csv", "a.csv", ".a.csv.tmp", ".hidden.csv", "notes.txt"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        std::fs::create_dir(dir.path().join("folder.csv")).unwrap();
        let found: Vec<String> = entity_files(dir.path(), "csv")
            .unwrap()
            .into_iter()
            .map(|(e, _)| e)
            .collect();
        assert_eq!(found, ["a", "b"]);
        assert!(entity_files(&dir.path().join("missing"), "csv").is_err());
    }

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
