//! Strict parsing of the query string. Bad input becomes a 400 naming the parameter; nothing
//! from here is ever spliced into SQL (the queries take it as a bind parameter).

use crate::error::NotesError;
use percent_encoding::percent_decode;

/// Longest description, in characters (the column is `VARCHAR(255)`).
pub const MAX_DESCRIPTION_CHARS: usize = 255;

/// The decoded value of the first `name=` parameter (as Flask's `request.args.get`).
/// `+` is a space; invalid percent escapes are kept literally; invalid UTF-8 is a 400.
pub fn param(query: &str, name: &str) -> Result<Option<String>, NotesError> {
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key_bytes: Vec<u8> = decode_bytes(key);
        if key_bytes != name.as_bytes() {
            continue;
        }
        let bytes = decode_bytes(value);
        return String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| NotesError::BadRequest(format!("Invalid {name}: not valid UTF-8")));
    }
    Ok(None)
}

fn decode_bytes(raw: &str) -> Vec<u8> {
    let spaced = raw.replace('+', " ");
    percent_decode(spaced.as_bytes()).collect()
}

/// Parses a note id: a positive 32-bit integer written in plain digits.
pub fn parse_id(raw: &str) -> Result<i32, NotesError> {
    let valid = !raw.is_empty() && raw.len() <= 10 && raw.bytes().all(|b| b.is_ascii_digit());
    valid
        .then(|| raw.parse::<i32>().ok())
        .flatten()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            NotesError::BadRequest("Invalid id: must be a positive integer up to 2147483647".into())
        })
}

/// The `id` parameter: `None` when absent or empty.
pub fn optional_id(query: &str) -> Result<Option<i32>, NotesError> {
    match param(query, "id")? {
        None => Ok(None),
        Some(raw) if raw.is_empty() => Ok(None),
        Some(raw) => parse_id(&raw).map(Some),
    }
}

/// The `id` parameter, required.
pub fn required_id(query: &str) -> Result<i32, NotesError> {
    optional_id(query)?.ok_or_else(|| NotesError::BadRequest("Missing id".into()))
}

/// Checks a description: present, non-empty, no NUL, at most `max_chars` characters.
pub fn check_description(desc: Option<String>, max_chars: usize) -> Result<String, NotesError> {
    let desc = desc.unwrap_or_default();
    if desc.is_empty() {
        return Err(NotesError::BadRequest("Missing desc".into()));
    }
    if desc.contains('\0') {
        return Err(NotesError::BadRequest(
            "Invalid desc: must not contain NUL characters".into(),
        ));
    }
    if desc.chars().count() > max_chars {
        return Err(NotesError::BadRequest(format!(
            "Invalid desc: longer than {max_chars} characters"
        )));
    }
    Ok(desc)
}

/// The `desc` parameter, required.
pub fn required_desc(query: &str, max_chars: usize) -> Result<String, NotesError> {
    check_description(param(query, "desc")?, max_chars)
}

/// Whether `add_date` asks for a date (`y` or `Y`, as the original).
pub fn wants_date(query: &str) -> Result<bool, NotesError> {
    Ok(param(query, "add_date")?.is_some_and(|v| v.eq_ignore_ascii_case("y")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_decode_like_a_browser_form() {
        assert_eq!(
            param("desc=a%20b%2Cc", "desc").unwrap().as_deref(),
            Some("a b,c")
        );
        assert_eq!(param("desc=a+b", "desc").unwrap().as_deref(), Some("a b"));
        assert_eq!(
            param("x=1&desc=first&desc=second", "desc")
                .unwrap()
                .as_deref(),
            Some("first")
        );
        assert_eq!(param("desc=%zz", "desc").unwrap().as_deref(), Some("%zz"));
        assert_eq!(param("de%73c=k", "desc").unwrap().as_deref(), Some("k"));
        assert_eq!(param("desc", "desc").unwrap().as_deref(), Some(""));
        assert_eq!(param("", "desc").unwrap(), None);
        assert!(param("desc=%ff%fe", "desc").is_err());
    }

    #[test]
    fn ids_are_positive_32_bit_integers() {
        assert_eq!(parse_id("1").unwrap(), 1);
        assert_eq!(parse_id("2147483647").unwrap(), i32::MAX);
        for bad in [
            "0",
            "-1",
            "1e3",
            "abc",
            "2147483648",
            "99999999999999999999",
            " 1",
            "+1",
            "1.0",
            "",
        ] {
            assert!(parse_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(optional_id("id=").unwrap(), None);
        assert_eq!(optional_id("").unwrap(), None);
        assert!(required_id("id=").is_err());
    }

    #[test]
    fn descriptions_are_checked_in_characters() {
        let ok = "é".repeat(255);
        assert_eq!(check_description(Some(ok.clone()), 255).unwrap(), ok);
        assert!(check_description(Some("a".repeat(256)), 255).is_err());
        assert!(check_description(Some(String::new()), 255).is_err());
        assert!(check_description(None, 255).is_err());
        assert!(check_description(Some("a\0b".into()), 255).is_err());
    }

    #[test]
    fn add_date_is_y_or_capital_y() {
        assert!(wants_date("add_date=y").unwrap());
        assert!(wants_date("add_date=Y").unwrap());
        assert!(!wants_date("add_date=n").unwrap());
        assert!(!wants_date("add_date=yes").unwrap());
        assert!(!wants_date("").unwrap());
    }
}
