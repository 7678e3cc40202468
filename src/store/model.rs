//! What the store keeps: destinations and registered mappings, and the checked values that
//! make them up.

use std::fmt;

use super::secret::WriteKey;

/// The most mappings one destination may have (docs/DESIGN.md).
pub const MAX_MAPPINGS_PER_DESTINATION: usize = 50;

/// The longest destination or mapping name accepted.
pub const MAX_NAME_LEN: usize = 200;

/// A destination's or a mapping's name: non-empty, at most [`MAX_NAME_LEN`] bytes, no control
/// characters, no surrounding whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub fn parse(s: String) -> Result<Name, &'static str> {
        if s.is_empty() {
            return Err("is required");
        }
        if s.len() > MAX_NAME_LEN {
            return Err("is longer than 200 bytes");
        }
        if s.trim() != s {
            return Err("must not start or end with whitespace");
        }
        if s.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Name(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Where a destination's Tracking API lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Region {
    /// `https://api.segment.io`
    Us,
    /// `https://events.eu1.segmentapis.com`
    Eu,
    /// An http(s) base URL without `/v1` and without a trailing slash.
    Custom(String),
}

impl Region {
    /// `us`, `eu`, or an http(s) base URL; a trailing `/` and `/v1` are stripped.
    pub fn parse(s: &str) -> Result<Region, &'static str> {
        match s {
            "us" => return Ok(Region::Us),
            "eu" => return Ok(Region::Eu),
            "" => return Err("is required (us, eu or an http(s) base URL)"),
            _ => {}
        }
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .ok_or("must be us, eu or an http(s) base URL")?;
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain whitespace");
        }
        if s.contains(['?', '#']) {
            return Err("must not have a query or a fragment");
        }
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() {
            return Err("has no host");
        }
        let mut base = s.trim_end_matches('/');
        if let Some(b) = base.strip_suffix("/v1") {
            base = b.trim_end_matches('/');
        }
        Ok(Region::Custom(base.to_owned()))
    }

    /// The value given back to callers: `us`, `eu` or the base URL.
    pub fn as_str(&self) -> &str {
        match self {
            Region::Us => "us",
            Region::Eu => "eu",
            Region::Custom(url) => url,
        }
    }

    /// The Tracking API base; paths are `{base}/v1/batch` etc.
    pub fn base_url(&self) -> &str {
        match self {
            Region::Us => "https://api.segment.io",
            Region::Eu => "https://events.eu1.segmentapis.com",
            Region::Custom(url) => url,
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored destination, as reads return it: the write key only as its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub id: String,
    pub name: String,
    pub region: Region,
    pub write_key_fingerprint: String,
    pub enabled: bool,
    pub version: u64,
}

/// A destination to create.
#[derive(Debug, Clone)]
pub struct NewDestination {
    pub name: Name,
    pub region: Region,
    pub write_key: WriteKey,
    pub enabled: bool,
}

/// Changes to a destination: `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct DestinationPatch {
    pub name: Option<Name>,
    pub region: Option<Region>,
    pub write_key: Option<WriteKey>,
    pub enabled: Option<bool>,
}

/// A registered mapping: its document and what the document says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingRecord {
    pub id: String,
    pub destination_id: String,
    pub name: String,
    pub model: String,
    pub enabled: bool,
    pub version: u64,
    /// The mapping JSON as registered.
    pub document: String,
}

/// A validated mapping document to store (the caller compiled it).
#[derive(Debug, Clone)]
pub struct MappingContent {
    pub name: Name,
    pub model: String,
    pub enabled: bool,
    pub document: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions() {
        assert_eq!(Region::parse("us").unwrap(), Region::Us);
        assert_eq!(
            Region::parse("eu").unwrap().base_url(),
            "https://events.eu1.segmentapis.com"
        );
        for (given, base) in [
            ("https://proxy.example.com", "https://proxy.example.com"),
            ("https://proxy.example.com/", "https://proxy.example.com"),
            ("https://proxy.example.com/v1", "https://proxy.example.com"),
            ("https://proxy.example.com/v1/", "https://proxy.example.com"),
            (
                "http://127.0.0.1:8080/segment/v1",
                "http://127.0.0.1:8080/segment",
            ),
        ] {
            assert_eq!(
                Region::parse(given).unwrap(),
                Region::Custom(base.into()),
                "{given}"
            );
        }
        for bad in [
            "",
            "US",
            "ftp://x",
            "https://",
            "https:///v1",
            "https://a b",
            "https://x?y=1",
        ] {
            assert!(Region::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(Name::parse("prod".into()).is_ok());
        for bad in ["", " x", "x ", "a\nb"] {
            assert!(Name::parse(bad.into()).is_err(), "{bad:?}");
        }
        assert!(Name::parse("x".repeat(201)).is_err());
    }
}
