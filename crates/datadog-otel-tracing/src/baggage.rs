//! W3C `baggage` headers, bounded as Datadog's tracers bound them.
//!
//! At most [`MAX_ITEMS`] (64) members and [`MAX_BYTES`] (8192) bytes, the constants of
//! dd-trace-py and dd-trace-go. Oversized baggage headers were a denial of service in
//! `opentelemetry_sdk` before 0.32.1; this parser never holds more than the bounds allow.
//!
//! - Extract: members past either bound are dropped; a member without `=`, or with an empty
//!   key or value, discards the whole header (as dd-trace-py); keys and values are trimmed and
//!   percent-decoded; W3C member properties (`;prop`) are dropped.
//! - Inject: the first 64 members, stopping before the header (commas included) would exceed
//!   8192 bytes; keys and values percent-encoded.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

/// The header name.
pub const HEADER: &str = "baggage";
/// Most members carried.
pub const MAX_ITEMS: usize = 64;
/// Most bytes carried (the whole header, commas included).
pub const MAX_BYTES: usize = 8192;

/// Characters encoded in keys: everything outside the HTTP token characters.
const KEY_ENCODE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'(')
    .add(b')')
    .add(b',')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'{')
    .add(b'}')
    .add(b'%');
/// Characters encoded in values: everything outside W3C's `baggage-octet`, and `%`.
const VALUE_ENCODE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b',')
    .add(b';')
    .add(b'\\')
    .add(b'%');

/// `DD_TRACE_BAGGAGE_TAG_KEYS`: the extracted baggage members written as `baggage.<key>`
/// tags on the local root span (default `user.id,account.id,session.id`; `*`: every member;
/// empty: none). Keys are compared as written (`feature*flag` is a key, not a pattern).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaggageTagKeys {
    /// Every member.
    All,
    /// These keys.
    Keys(Vec<String>),
}

impl Default for BaggageTagKeys {
    fn default() -> Self {
        Self::Keys(
            ["user.id", "account.id", "session.id"]
                .map(String::from)
                .to_vec(),
        )
    }
}

impl BaggageTagKeys {
    /// Parses the comma-separated list (blank entries skipped).
    pub fn parse(raw: &str) -> Self {
        let keys: Vec<String> = raw
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(String::from)
            .collect();
        if keys.iter().any(|k| k == "*") {
            Self::All
        } else {
            Self::Keys(keys)
        }
    }

    /// The members of `baggage` to tag, in order.
    pub(crate) fn select<'a>(
        &'a self,
        baggage: &'a Baggage,
    ) -> impl Iterator<Item = &'a (String, String)> + 'a {
        baggage.items.iter().filter(move |(key, _)| match self {
            Self::All => true,
            Self::Keys(keys) => keys.iter().any(|k| k == key),
        })
    }
}

/// Baggage members, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baggage {
    items: Vec<(String, String)>,
}

impl Baggage {
    #[cfg(any(test, feature = "fuzzing"))]
    /// Members as given (at most [`MAX_ITEMS`] are kept).
    pub fn from_items(items: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            items: items.into_iter().take(MAX_ITEMS).collect(),
        }
    }

    /// Reads a `baggage` header; malformed headers give empty baggage.
    pub fn parse(header: &str) -> Self {
        let mut items = Vec::new();
        let mut bytes = 0;
        for (index, member) in header.split(',').enumerate() {
            // Bytes read so far, commas included: stop at the first member past the bound.
            bytes += member.len() + usize::from(index > 0);
            if items.len() == MAX_ITEMS || bytes > MAX_BYTES {
                break;
            }
            let member = member.split(';').next().unwrap_or("");
            let Some((key, value)) = member.split_once('=') else {
                return Self::default();
            };
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty() || value.is_empty() {
                return Self::default();
            }
            let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            items.push((decode(key), decode(value)));
        }
        Self { items }
    }

    /// The header to send, or `None` when there is nothing to carry.
    pub fn header(&self) -> Option<String> {
        let mut out = String::new();
        for (count, (key, value)) in self.items.iter().enumerate() {
            if count == MAX_ITEMS {
                break;
            }
            let (key, value) = (key.trim(), value.trim());
            // An empty key or value would make the receiver discard the whole header.
            if key.is_empty() || value.is_empty() {
                continue;
            }
            let member = format!(
                "{}={}",
                utf8_percent_encode(key, KEY_ENCODE),
                utf8_percent_encode(value, VALUE_ENCODE)
            );
            let added = member.len() + usize::from(!out.is_empty());
            if out.len() + added > MAX_BYTES {
                break;
            }
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&member);
        }
        (!out.is_empty()).then_some(out)
    }

    #[cfg(any(test, feature = "fuzzing"))]
    /// The members.
    pub fn items(&self) -> &[(String, String)] {
        &self.items
    }

    #[cfg(any(test, feature = "fuzzing"))]
    /// One member's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether there is no member.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_encoding() {
        let b = Baggage::parse(" user.id = 42 ,session=a%2Cb;prop=1, team=apm ");
        assert_eq!(
            b.items(),
            &[
                ("user.id".to_string(), "42".to_string()),
                ("session".to_string(), "a,b".to_string()),
                ("team".to_string(), "apm".to_string())
            ]
        );
        assert_eq!(
            b.header().as_deref(),
            Some("user.id=42,session=a%2Cb,team=apm")
        );
        let b = Baggage::from_items([("k y".to_string(), "\"é\" 100%".to_string())]);
        assert_eq!(b.header().as_deref(), Some("k%20y=%22%C3%A9%22%20100%25"));
        assert_eq!(Baggage::parse(&b.header().unwrap()), b);
    }

    #[test]
    fn one_bad_member_discards_all() {
        for bad in ["a=1,b", "a=1,=2", "a=1,b=", "a=1,,b=2", ""] {
            assert!(Baggage::parse(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn bounds_on_the_way_in_and_out() {
        let many: Vec<String> = (0..100).map(|i| format!("k{i}=v")).collect();
        let b = Baggage::parse(&many.join(","));
        assert_eq!(b.items().len(), MAX_ITEMS);
        assert_eq!(b.get("k63"), Some("v"));
        assert_eq!(b.get("k64"), None);

        let big = format!("a={},b=1", "x".repeat(MAX_BYTES));
        assert!(Baggage::parse(&big).is_empty());
        let near = format!("a={},b=1", "x".repeat(MAX_BYTES - 6));
        // "a=" + 8186 = 8188 bytes, then ",b=1" makes 8192: both fit.
        assert_eq!(Baggage::parse(&near).items().len(), 2);
        let over = format!("a={},b=12", "x".repeat(MAX_BYTES - 6));
        assert_eq!(Baggage::parse(&over).items().len(), 1);

        let items = (0..10).map(|i| (format!("k{i}"), "y".repeat(2000)));
        let header = Baggage::from_items(items).header().unwrap();
        assert!(header.len() <= MAX_BYTES);
        assert_eq!(header.split(',').count(), 4);
        let huge = Baggage::from_items([("k".to_string(), "y".repeat(MAX_BYTES))]);
        assert_eq!(huge.header(), None);
        // Members that would be empty once trimmed are not sent (the receiver would drop all).
        let blank = Baggage::parse("a=%20,b=2");
        assert_eq!(blank.header().as_deref(), Some("b=2"));
    }

    #[test]
    fn tag_keys_default_all_none_and_literal_asterisks() {
        let baggage = Baggage::parse(
            "user.id=doggo,session.id=mysession,foo=bar,feature*flag=xyz,account.id=9",
        );
        let keys = |k: &BaggageTagKeys| -> Vec<String> {
            k.select(&baggage).map(|(k, _)| k.clone()).collect()
        };
        assert_eq!(
            keys(&BaggageTagKeys::default()),
            ["user.id", "session.id", "account.id"]
        );
        assert_eq!(keys(&BaggageTagKeys::parse("*")).len(), 5);
        assert!(keys(&BaggageTagKeys::parse("")).is_empty());
        assert_eq!(keys(&BaggageTagKeys::parse("account.id,,")), ["account.id"]);
        assert_eq!(
            keys(&BaggageTagKeys::parse("account.id,feature*flag")),
            ["feature*flag", "account.id"]
        );
        assert_eq!(
            keys(&BaggageTagKeys::parse("session.id,foo")),
            ["session.id", "foo"]
        );
    }
}
