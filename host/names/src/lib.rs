//! Names people give things — projects, connections, connection sets, entity
//! tasks: normalized to NFC, and refused when they hold characters that make two
//! different names look alike or text run backwards.
//!
//! Why: a name is how a person picks the thing in a listing, a log or an alert
//! mail. `é` typed as one code point or as `e` + a combining accent must be the
//! same name; a right-to-left override (U+202E) can make `invoice<U+202E>fdp.exe` read as
//! `invoiceexe.pdf`, and a zero-width space makes two names that look identical.
//! A leaf crate: the store and the project parser both use it.

use unicode_normalization::UnicodeNormalization;

/// Why a name is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("it contains {0}, which makes names look alike or reorders their text")]
    Invisible(String),
    #[error("it contains a control character ({0})")]
    Control(String),
}

/// The characters refused besides controls: bidirectional embeddings,
/// overrides and isolates, and zero-width characters.
fn invisible(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{202A}' => "LEFT-TO-RIGHT EMBEDDING",
        '\u{202B}' => "RIGHT-TO-LEFT EMBEDDING",
        '\u{202C}' => "POP DIRECTIONAL FORMATTING",
        '\u{202D}' => "LEFT-TO-RIGHT OVERRIDE",
        '\u{202E}' => "RIGHT-TO-LEFT OVERRIDE",
        '\u{2066}' => "LEFT-TO-RIGHT ISOLATE",
        '\u{2067}' => "RIGHT-TO-LEFT ISOLATE",
        '\u{2068}' => "FIRST STRONG ISOLATE",
        '\u{2069}' => "POP DIRECTIONAL ISOLATE",
        '\u{200B}' => "ZERO WIDTH SPACE",
        '\u{200C}' => "ZERO WIDTH NON-JOINER",
        '\u{200D}' => "ZERO WIDTH JOINER",
        '\u{2060}' => "WORD JOINER",
        '\u{FEFF}' => "ZERO WIDTH NO-BREAK SPACE",
        _ => return None,
    })
}

fn code_point(c: char) -> String {
    format!("U+{:04X}", c as u32)
}

/// Checks a name; `Ok` is its NFC form (what weir stores and compares).
pub fn normalize(name: &str) -> Result<String, NameError> {
    for c in name.chars() {
        if let Some(what) = invisible(c) {
            return Err(NameError::Invisible(format!("{} {what}", code_point(c))));
        }
        if c.is_control() {
            return Err(NameError::Control(code_point(c)));
        }
    }
    Ok(name.nfc().collect())
}

/// Whether `name` is already in NFC (cheap for ASCII).
pub fn is_nfc(name: &str) -> bool {
    name.is_ascii() || name.nfc().eq(name.chars())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_zero_width_and_controls_are_refused_by_code_point() {
        let e = normalize("invoice\u{202E}fdp.exe").unwrap_err();
        assert_eq!(
            e.to_string(),
            "it contains U+202E RIGHT-TO-LEFT OVERRIDE, which makes names look alike or reorders their text"
        );
        for c in ['\u{200B}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{2066}'] {
            assert!(
                matches!(normalize(&format!("a{c}b")), Err(NameError::Invisible(_))),
                "{c:?}"
            );
        }
        assert_eq!(
            normalize("a\tb").unwrap_err(),
            NameError::Control("U+0009".into())
        );
    }

    #[test]
    fn two_spellings_of_one_name_become_one() {
        let composed = normalize("caf\u{e9}").unwrap();
        let decomposed = normalize("cafe\u{301}").unwrap();
        assert_eq!(composed, decomposed);
        assert!(is_nfc(&composed));
        assert!(!is_nfc("cafe\u{301}"));
        assert_eq!(normalize("nightly-crm").unwrap(), "nightly-crm");
    }
}
