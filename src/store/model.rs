//! What the store keeps: destinations and registered mappings, and the checked values that
//! make them up.

use std::fmt;

use crate::sender::WriteKey;

/// The most mappings one destination may have (docs/DESIGN.md).
pub const MAX_MAPPINGS_PER_DESTINATION: usize = 50;

/// The longest destination or mapping name accepted.
pub(super) const MAX_NAME_LEN: usize = 200;

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

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A model name (what a mapping reads, what rows are submitted for): non-empty, at most
/// [`MAX_NAME_LEN`] bytes.
pub fn check_model(model: &str) -> Result<(), &'static str> {
    match model.len() {
        0 => Err("is required"),
        n if n > MAX_NAME_LEN => Err("is longer than 200 bytes"),
        _ => Ok(()),
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
        // Read as the HTTP client will read it, so the host checked is the host connected to.
        let url = url::Url::parse(s).map_err(|_| "is not a valid URL")?;
        if url.host().is_none() {
            return Err("has no host");
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain a user name or password");
        }
        let mut base = s.trim_end_matches('/');
        if let Some(b) = base.strip_suffix("/v1") {
            base = b.trim_end_matches('/');
        }
        Ok(Region::Custom(base.to_owned()))
    }

    /// Where the write key goes: the scheme, host and port of [`Region::base_url`].
    pub(crate) fn origin(&self) -> url::Origin {
        match url::Url::parse(self.base_url()) {
            Ok(u) => u.origin(),
            Err(_) => url::Origin::new_opaque(),
        }
    }

    /// The host of a custom base URL; `None` for `us` and `eu`.
    pub(crate) fn custom_host(&self) -> Option<url::Host<String>> {
        match self {
            Region::Us | Region::Eu => None,
            Region::Custom(base) => url::Url::parse(base).ok()?.host().map(|h| h.to_owned()),
        }
    }

    /// The value given back to callers: `us`, `eu` or the base URL.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Region::Us => "us",
            Region::Eu => "eu",
            Region::Custom(url) => url,
        }
    }

    /// The Tracking API base; paths are `{base}/v1/batch` etc.
    pub(crate) fn base_url(&self) -> &str {
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

/// The hosts a custom base URL may name (`--allowed-upstreams`): none by default, so a write
/// key only ever goes to Segment (`us`, `eu`) unless the operator says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedUpstreams(Vec<url::Host<String>>);

impl AllowedUpstreams {
    /// Host names or IP addresses (`proxy.internal`, `127.0.0.1`, `::1` or `[::1]`), no scheme,
    /// port or path; any port of a listed host is allowed.
    pub fn parse<S: AsRef<str>>(hosts: &[S]) -> Result<AllowedUpstreams, String> {
        let mut allowed = Vec::with_capacity(hosts.len());
        for given in hosts {
            let h = given.as_ref().trim();
            let bracketed = match h.contains(':') && !h.starts_with('[') {
                true => format!("[{h}]"),
                false => h.to_owned(),
            };
            let host = match h.is_empty() || h.contains(['/', '@', '?', '#']) {
                true => None,
                false => url::Host::parse(&bracketed).ok(),
            };
            match host {
                Some(host) => allowed.push(host),
                None => return Err(format!("{h:?} is not a host name or IP address")),
            }
        }
        Ok(AllowedUpstreams(allowed))
    }

    /// Whether a write key may be sent to `region`: `us` and `eu` always; a custom base URL when
    /// its host is listed.
    pub(crate) fn allows(&self, region: &Region) -> bool {
        match region.custom_host() {
            None => matches!(region, Region::Us | Region::Eu),
            Some(host) => self.0.contains(&host),
        }
    }

    /// Why `region` is refused, naming its host and the flag.
    pub(crate) fn refusal(region: &Region) -> String {
        let host = region
            .custom_host()
            .map(|h| h.to_string())
            .unwrap_or_default();
        format!(
            "host {host} is not allowed: a custom base URL's host must be listed in \
             --allowed-upstreams (SEGMENT_CONNECTIONS_ALLOWED_UPSTREAMS)"
        )
    }
}

/// A destination's rate limit: the most events per second one replica sends it, or unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit(Option<std::num::NonZeroU32>);

impl RateLimit {
    /// The highest limit accepted (events per second): far above what one source's Tracking
    /// API takes, low enough that a typo is caught.
    pub const MAX: u32 = 100_000;

    pub const UNLIMITED: RateLimit = RateLimit(None);

    /// `0` is unlimited; otherwise at most [`RateLimit::MAX`].
    pub fn parse(per_second: u32) -> Result<RateLimit, &'static str> {
        if per_second > RateLimit::MAX {
            return Err(
                "is more than 100000 events per second (0 means unlimited); at most 100000",
            );
        }
        Ok(RateLimit(std::num::NonZeroU32::new(per_second)))
    }

    /// Events per second, `None` when unlimited.
    pub fn per_second(self) -> Option<std::num::NonZeroU32> {
        self.0
    }

    /// As stored and shown: events per second, `0` when unlimited.
    pub fn get(self) -> u32 {
        self.0.map_or(0, std::num::NonZeroU32::get)
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
    pub rate_limit: RateLimit,
}

/// A destination to create.
#[derive(Debug, Clone)]
pub struct NewDestination {
    pub name: Name,
    pub region: Region,
    pub write_key: WriteKey,
    pub enabled: bool,
    pub rate_limit: RateLimit,
}

/// Changes to a destination: `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct DestinationPatch {
    pub name: Option<Name>,
    pub region: Option<Region>,
    pub write_key: Option<WriteKey>,
    pub enabled: Option<bool>,
    pub rate_limit: Option<RateLimit>,
}

impl DestinationPatch {
    /// Whether applying this patch to `current` would change nothing: every value it gives is
    /// the stored one. `stored_key` is the stored write key, decrypted (read only when the patch
    /// gives one; `None` when it does not open, which counts as a change).
    pub(crate) fn unchanged(&self, current: &Destination, stored_key: Option<&WriteKey>) -> bool {
        self.name
            .as_ref()
            .is_none_or(|n| n.as_str() == current.name)
            && self.region.as_ref().is_none_or(|r| *r == current.region)
            && self.enabled.is_none_or(|e| e == current.enabled)
            && self.rate_limit.is_none_or(|l| l == current.rate_limit)
            && self
                .write_key
                .as_ref()
                .is_none_or(|k| stored_key == Some(k))
    }

    /// Why this patch may not be applied to a destination now at `current`: a new region at
    /// another origin (scheme, host, port; `us` and `eu` are two) needs the write key in the
    /// same patch, so a stored key is never sent anywhere its owner did not send it.
    pub(crate) fn key_move_violation(&self, current: &Region) -> Option<String> {
        let new = self.region.as_ref()?;
        if self.write_key.is_some() || new.origin() == current.origin() {
            return None;
        }
        Some(format!(
            "is required to move the destination to another host ({} to {}): the stored key \
             is not sent to a new host",
            current.origin().ascii_serialization(),
            new.origin().ascii_serialization()
        ))
    }
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

impl MappingContent {
    /// Whether storing this over `stored` would change nothing: the same name, model and
    /// enabled, and the same document. Documents are compared as canonical JSON (the messageId's
    /// form: keys sorted, no whitespace, strings and numbers as JavaScript reads them), so a
    /// document re-indented, with its keys in another order, `1.0` for `1` or `\u0041` for `A`
    /// is the same document; anything that parses to another value is not.
    pub(crate) fn unchanged(&self, stored: &MappingRecord) -> bool {
        self.name.as_str() == stored.name
            && self.model == stored.model
            && self.enabled == stored.enabled
            && (self.document == stored.document
                || canonical(&self.document)
                    .is_some_and(|c| canonical(&stored.document) == Some(c)))
    }
}

/// `document` as canonical JSON; `None` if it is not JSON.
fn canonical(document: &str) -> Option<Vec<u8>> {
    let value: serde_json::Value = serde_json::from_str(document).ok()?;
    let mut out = Vec::with_capacity(document.len());
    crate::json::write_canonical(&mut out, &value);
    Some(out)
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
    fn user_info_is_refused_and_hosts_are_read_as_the_http_client_reads_them() {
        assert!(Region::parse("https://user:pw@proxy.example.com").is_err());
        assert!(Region::parse("https://evil.example@127.0.0.1").is_err());
        // A backslash ends the host, as it does for the HTTP client.
        let r = Region::parse("http://127.0.0.1\\@evil.example/").unwrap();
        assert_eq!(r.custom_host().unwrap().to_string(), "127.0.0.1");
        assert_eq!(Region::Us.custom_host(), None);
    }

    #[test]
    fn origins_tell_hosts_apart() {
        let o = |s: &str| Region::parse(s).unwrap().origin();
        assert_ne!(o("us"), o("eu"));
        assert_eq!(o("us"), o("https://api.segment.io/v1"));
        assert_eq!(o("http://127.0.0.1:8/a"), o("http://127.0.0.1:8/b"));
        assert_ne!(o("http://127.0.0.1:8"), o("http://127.0.0.1:9"));
        assert_ne!(o("http://127.0.0.1:8"), o("https://127.0.0.1:8"));
    }

    #[test]
    fn allowed_upstreams() {
        let allowed = AllowedUpstreams::parse(&["127.0.0.1", " Proxy.Example.com", "::1"]).unwrap();
        let ok = |s: &str| allowed.allows(&Region::parse(s).unwrap());
        assert!(ok("us") && ok("eu"));
        assert!(ok("http://127.0.0.1:8089"));
        assert!(ok("https://proxy.example.com/v1"));
        assert!(ok("http://[::1]:9/x"));
        assert!(!ok("http://127.0.0.2"));
        assert!(!ok("https://proxy.example.com.evil.example"));
        assert!(!AllowedUpstreams::default().allows(&Region::parse("http://127.0.0.1").unwrap()));
        for bad in ["", "http://x", "x/y", "a@b", "x:80"] {
            assert!(AllowedUpstreams::parse(&[bad]).is_err(), "{bad}");
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
