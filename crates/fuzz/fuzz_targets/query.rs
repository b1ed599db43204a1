//! Query-string parsing never panics, and what it accepts is what it claims.
#![no_main]

use libfuzzer_sys::fuzz_target;
use notes::query;

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Some(id)) = query::optional_id(q) {
        assert!(id > 0);
    }
    if let Ok(id) = query::parse_id(q) {
        assert!(id > 0);
        assert!(q.bytes().all(|b| b.is_ascii_digit()), "only plain digits are ids: {q:?}");
        assert_eq!(id.to_string(), q.trim_start_matches('0'));
    }
    if let Ok(desc) = query::required_desc(q, query::MAX_DESCRIPTION_CHARS) {
        assert!(!desc.is_empty() && !desc.contains('\0'));
        assert!(desc.chars().count() <= query::MAX_DESCRIPTION_CHARS);
    }
    let _ = query::wants_date(q);
});
