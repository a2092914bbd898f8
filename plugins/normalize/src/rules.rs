//! The normalisation rules themselves, writing into a caller's buffer so a whole
//! column is rewritten without a string per value.

/// Why a phone number cannot be written in E.164.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhoneError {
    /// A character other than digits, spaces and `-.()/`.
    Character(char),
    /// A `+` that is not the first character.
    Plus,
    /// A country code starting with 0 (`+0…`, `000…`).
    ZeroCountryCode,
    /// A national number with country code 1 that is not 10 digits.
    NorthAmerican(usize),
    /// Not 8 to 15 digits in all.
    Length(usize),
}

impl std::fmt::Display for PhoneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PhoneError::Character(c) => write!(f, "`{c}` is not allowed in a phone number"),
            PhoneError::Plus => f.write_str("`+` is only allowed at the start"),
            PhoneError::ZeroCountryCode => f.write_str("a country code cannot start with 0"),
            PhoneError::NorthAmerican(n) => write!(
                f,
                "a national number with country code 1 has 10 digits (or 11 starting with 1), not {n}"
            ),
            PhoneError::Length(n) => write!(f, "it has {n} digits, E.164 allows 8 to 15"),
        }
    }
}

/// Appends the E.164 form of `value` (`+` and digits) to `out`. On error `out` is
/// left as it was.
///
/// `+` or `00` starts an international number: the digits follow as they are.
/// Anything else is national: a leading trunk `0` goes and `country_code` is put
/// in front. Country code 1 (North America) has a fixed length, so there a
/// national number must be 10 digits, or 11 starting with the 1 itself.
pub fn phone_to_e164(value: &str, country_code: &str, out: &mut Vec<u8>) -> Result<(), PhoneError> {
    let value = value.trim();
    let (plus, body) = match value.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let mut count = 0;
    for c in body.chars() {
        match c {
            '0'..='9' => count += 1,
            ' ' | '-' | '.' | '(' | ')' | '/' => {}
            '+' => return Err(PhoneError::Plus),
            other => return Err(PhoneError::Character(other)),
        }
    }
    let digits = || body.bytes().filter(u8::is_ascii_digit);
    let first_two = {
        let mut d = digits();
        (d.next(), d.next())
    };
    let (prefix, skip) = if plus {
        ("", 0)
    } else if first_two == (Some(b'0'), Some(b'0')) {
        ("", 2)
    } else if country_code == "1" {
        let skip = usize::from(first_two.0 == Some(b'0'));
        match (count - skip, digits().nth(skip)) {
            (10, _) => ("1", skip),
            (11, Some(b'1')) => ("", skip),
            (n, _) => return Err(PhoneError::NorthAmerican(n)),
        }
    } else {
        (country_code, usize::from(first_two.0 == Some(b'0')))
    };
    let total = prefix.len() + count - skip;
    if prefix.is_empty() && digits().nth(skip) == Some(b'0') {
        return Err(PhoneError::ZeroCountryCode);
    }
    if !(8..=15).contains(&total) {
        return Err(PhoneError::Length(total));
    }
    out.reserve(1 + total);
    out.push(b'+');
    out.extend_from_slice(prefix.as_bytes());
    out.extend(digits().skip(skip));
    Ok(())
}

/// Appends `value` trimmed and lower-cased to `out` if it is an email address:
/// one `@`, something before it, a domain of dot-separated non-empty labels
/// (at least two), no whitespace. Returns false (and leaves `out` as it was)
/// otherwise. Deliberately loose beyond that: the point is to catch garbage and
/// to make equal addresses compare equal, not to implement RFC 5322.
pub fn normalize_email(value: &str, out: &mut Vec<u8>) -> bool {
    let value = value.trim();
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    let valid = !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && domain.split('.').all(|label| !label.is_empty())
        && !value.chars().any(char::is_whitespace);
    if !valid {
        return false;
    }
    if value.is_ascii() {
        out.extend(value.bytes().map(|b| b.to_ascii_lowercase()));
    } else {
        let mut buf = [0u8; 4];
        for c in value.chars().flat_map(char::to_lowercase) {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    true
}

/// Checks the `default_country_code` option: 1 to 3 digits, not starting with 0.
pub fn valid_country_code(code: &str) -> bool {
    (1..=3).contains(&code.len())
        && code.bytes().all(|b| b.is_ascii_digit())
        && !code.starts_with('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(value: &str, cc: &str) -> Result<String, PhoneError> {
        let mut out = b"kept".to_vec();
        let r = phone_to_e164(value, cc, &mut out);
        if r.is_err() {
            assert_eq!(out, b"kept", "output touched on error");
        }
        r.map(|()| String::from_utf8(out[4..].to_vec()).unwrap())
    }

    #[test]
    fn phones_that_normalise() {
        for (input, expected) in [
            ("(415) 555-0134", "+14155550134"),
            ("415.555.0134", "+14155550134"),
            ("1-415-555-0134", "+14155550134"),
            ("+44 20 7946 0958", "+442079460958"),
            ("0044 20 7946 0958", "+442079460958"),
            ("+33 1 42 68 53 00", "+33142685300"),
            ("  4155550134 ", "+14155550134"),
            ("415/555/0134", "+14155550134"),
        ] {
            assert_eq!(phone(input, "1").as_deref(), Ok(expected), "{input}");
        }
        // National numbers elsewhere: the trunk 0 goes, the country code comes.
        assert_eq!(phone("020 7946 0958", "44").as_deref(), Ok("+442079460958"));
        assert_eq!(phone("01 42 68 53 00", "33").as_deref(), Ok("+33142685300"));
        assert_eq!(
            phone("+1 415 555 0134", "44").as_deref(),
            Ok("+14155550134")
        );
    }

    #[test]
    fn phones_that_fail() {
        assert_eq!(phone("12", "1"), Err(PhoneError::NorthAmerican(2)));
        assert_eq!(phone("555-CALL-NOW", "1"), Err(PhoneError::Character('C')));
        assert_eq!(
            phone("+1 415 555 0134 x12", "1"),
            Err(PhoneError::Character('x'))
        );
        assert_eq!(phone("415 555 013", "1"), Err(PhoneError::NorthAmerican(9)));
        assert_eq!(
            phone("2 415 555 0134", "1"),
            Err(PhoneError::NorthAmerican(11))
        );
        assert_eq!(phone("12", "44"), Err(PhoneError::Length(4)));
        assert_eq!(phone("+1234567", "1"), Err(PhoneError::Length(7)));
        assert_eq!(phone("+1234567890123456", "1"), Err(PhoneError::Length(16)));
        assert_eq!(phone("415+555", "1"), Err(PhoneError::Plus));
        assert_eq!(phone("++44 20 7946 0958", "1"), Err(PhoneError::Plus));
        assert_eq!(
            phone("+0 20 7946 0958", "1"),
            Err(PhoneError::ZeroCountryCode)
        );
        assert_eq!(
            phone("000 20 7946 0958", "1"),
            Err(PhoneError::ZeroCountryCode)
        );
        assert_eq!(phone("", "1"), Err(PhoneError::NorthAmerican(0)));
        assert_eq!(phone("+", "1"), Err(PhoneError::Length(0)));
        assert_eq!(phone("٤١٥٥٥٥٠١٣٤", "1"), Err(PhoneError::Character('٤')));
        assert_eq!(
            phone("415\t555 0134", "1"),
            Err(PhoneError::Character('\t'))
        );
        assert_eq!(
            PhoneError::Length(4).to_string(),
            "it has 4 digits, E.164 allows 8 to 15"
        );
    }

    fn email(value: &str) -> Option<String> {
        let mut out = Vec::new();
        normalize_email(value, &mut out).then(|| String::from_utf8(out).unwrap())
    }

    #[test]
    fn emails() {
        assert_eq!(
            email("  Ada.Lovelace@Example.COM ").as_deref(),
            Some("ada.lovelace@example.com")
        );
        assert_eq!(
            email("ÉLOÏSE@Exemple.FR").as_deref(),
            Some("éloïse@exemple.fr")
        );
        assert_eq!(email("a+tag@b.co").as_deref(), Some("a+tag@b.co"));
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "ada@@example.com",
            "a@b@c.com",
            "ada lovelace@example.com",
            "ada@exa mple.com",
            "ada@.com",
            "ada@example.",
            "ada@a..com",
        ] {
            assert_eq!(email(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn country_codes() {
        for good in ["1", "44", "353"] {
            assert!(valid_country_code(good), "{good}");
        }
        for bad in ["", "0", "044", "1234", "+1", "a"] {
            assert!(!valid_country_code(bad), "{bad}");
        }
    }
}
