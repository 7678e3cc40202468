//! The five actions and their input fields: keys, labels, types, and where each may be used
//! (docs/SEGMENT_SPEC.md §2). Labels are Segment's, so messages read as Segment's do.

use serde::{Deserialize, Serialize};

/// A Segment Spec call type, one per mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Track,
    Page,
    Screen,
    Identify,
    Group,
}

impl Action {
    pub(crate) const ALL: [Action; 5] = [
        Action::Track,
        Action::Page,
        Action::Screen,
        Action::Identify,
        Action::Group,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Track => "track",
            Action::Page => "page",
            Action::Screen => "screen",
            Action::Identify => "identify",
            Action::Group => "group",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// A scalar type of a declared sub-field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar {
    Str,
    Num,
    Bool,
}

impl Scalar {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scalar::Str => "string",
            Scalar::Num => "number",
            Scalar::Bool => "boolean",
        }
    }
}

/// A sub-field of an object field with declared sub-properties.
#[derive(Debug)]
pub(crate) struct Sub {
    pub key: &'static str,
    pub label: &'static str,
    pub ty: Scalar,
    /// The key in the event (D1: the Spec spelling of device keys).
    pub out: &'static str,
}

impl Sub {
    /// Another spelling of the same output key exists and takes precedence over this one (D7).
    pub(crate) fn is_alias(&self) -> bool {
        self.key != self.out
    }
}

/// The type of a field.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FieldType {
    Str,
    /// An object whose sub-keys are declared: unknown ones are removed, the rest coerced.
    Object(&'static [Sub]),
    /// A free-form object (`properties`, `traits`, `consent`): kept as it is.
    FreeObject,
}

macro_rules! sub {
    ($key:literal, $label:literal, $ty:ident) => {
        Sub {
            key: $key,
            label: $label,
            ty: Scalar::$ty,
            out: $key,
        }
    };
    ($key:literal, $label:literal, $ty:ident, $out:literal) => {
        Sub {
            key: $key,
            label: $label,
            ty: Scalar::$ty,
            out: $out,
        }
    };
}

static APPLICATION: [Sub; 4] = [
    sub!("name", "Name", Str),
    sub!("version", "Version", Str),
    sub!("build", "Build", Str),
    sub!("namespace", "Namespace", Str),
];
static CAMPAIGN: [Sub; 5] = [
    sub!("name", "Name", Str),
    sub!("source", "Source", Str),
    sub!("medium", "Medium", Str),
    sub!("term", "Term", Str),
    sub!("content", "Content", Str),
];
static DEVICE: [Sub; 10] = [
    sub!("id", "ID", Str),
    sub!("advertising_id", "Advertising ID", Str, "advertisingId"),
    sub!("advertisingId", "Advertising ID", Str),
    sub!(
        "adTracking_Enabled",
        "Ad Tracking Enabled",
        Bool,
        "adTrackingEnabled"
    ),
    sub!("adTrackingEnabled", "Ad Tracking Enabled", Bool),
    sub!("manufacturer", "Manufacturer", Str),
    sub!("model", "Model", Str),
    sub!("name", "Name", Str),
    sub!("type", "Type", Str),
    sub!("token", "Token", Str),
];
static LOCATION: [Sub; 5] = [
    sub!("city", "City", Str),
    sub!("country", "Country", Str),
    sub!("latitude", "Latitude", Num),
    sub!("longitude", "Longitude", Num),
    sub!("speed", "Speed", Num),
];
static NETWORK: [Sub; 4] = [
    sub!("bluetooth", "Bluetooth", Bool),
    sub!("carrier", "Carrier", Str),
    sub!("cellular", "Cellular", Bool),
    sub!("wifi", "WiFi", Bool),
];
static OS: [Sub; 2] = [sub!("name", "Name", Str), sub!("version", "Version", Str)];
static PAGE: [Sub; 5] = [
    sub!("path", "Path", Str),
    sub!("referrer", "Referrer", Str),
    sub!("search", "Search", Str),
    sub!("title", "Title", Str),
    sub!("url", "URL", Str),
];
static SCREEN: [Sub; 3] = [
    sub!("density", "Density", Num),
    sub!("height", "Height", Num),
    sub!("width", "Width", Num),
];
static ADDRESS: [Sub; 5] = [
    sub!("street", "Street", Str),
    sub!("city", "City", Str),
    sub!("state", "State", Str),
    sub!("country", "Country", Str),
    sub!("postalCode", "Postal Code", Str),
];

/// A mapping field key (Segment's keys, so a mapping copied out of Segment works unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    UserId,
    AnonymousId,
    Timestamp,
    EventName,
    PageName,
    PageCategory,
    ScreenName,
    GroupId,
    Application,
    CampaignParameters,
    Device,
    IpAddress,
    Locale,
    Location,
    Network,
    OperatingSystem,
    Page,
    Screen,
    UserAgent,
    Timezone,
    Properties,
    Traits,
    Address,
    MessageId,
    Consent,
}

impl Field {
    pub(crate) const COUNT: usize = 25;
    pub(crate) const ALL: [Field; Field::COUNT] = [
        Field::UserId,
        Field::AnonymousId,
        Field::Timestamp,
        Field::EventName,
        Field::PageName,
        Field::PageCategory,
        Field::ScreenName,
        Field::GroupId,
        Field::Application,
        Field::CampaignParameters,
        Field::Device,
        Field::IpAddress,
        Field::Locale,
        Field::Location,
        Field::Network,
        Field::OperatingSystem,
        Field::Page,
        Field::Screen,
        Field::UserAgent,
        Field::Timezone,
        Field::Properties,
        Field::Traits,
        Field::Address,
        Field::MessageId,
        Field::Consent,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn key(self) -> &'static str {
        self.info().0
    }

    pub(crate) fn label(self) -> &'static str {
        self.info().1
    }

    pub(crate) fn ty(self) -> FieldType {
        self.info().2
    }

    pub(crate) fn from_key(key: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.key() == key)
    }

    fn info(self) -> (&'static str, &'static str, FieldType) {
        use FieldType::{FreeObject, Object, Str};
        match self {
            Field::UserId => ("user_id", "User ID", Str),
            Field::AnonymousId => ("anonymous_id", "Anonymous ID", Str),
            Field::Timestamp => ("timestamp", "Timestamp", Str),
            Field::EventName => ("event_name", "Event Name", Str),
            Field::PageName => ("page_name", "Page Name", Str),
            Field::PageCategory => ("page_category", "Page Category", Str),
            Field::ScreenName => ("screen_name", "Screen Name", Str),
            Field::GroupId => ("group_id", "Group ID", Str),
            Field::Application => ("application", "Application", Object(&APPLICATION)),
            Field::CampaignParameters => (
                "campaign_parameters",
                "Campaign Parameters",
                Object(&CAMPAIGN),
            ),
            Field::Device => ("device", "Device", Object(&DEVICE)),
            Field::IpAddress => ("ip_address", "IP Address", Str),
            Field::Locale => ("locale", "Locale", Str),
            Field::Location => ("location", "Location", Object(&LOCATION)),
            Field::Network => ("network", "Network", Object(&NETWORK)),
            Field::OperatingSystem => ("operating_system", "Operating System", Object(&OS)),
            Field::Page => ("page", "Page", Object(&PAGE)),
            Field::Screen => ("screen", "Screen", Object(&SCREEN)),
            Field::UserAgent => ("user_agent", "User Agent", Str),
            Field::Timezone => ("timezone", "Timezone", Str),
            Field::Properties => ("properties", "Properties", FreeObject),
            Field::Traits => ("traits", "Traits", FreeObject),
            Field::Address => ("address", "Address", Object(&ADDRESS)),
            Field::MessageId => ("message_id", "MessageId", Str),
            Field::Consent => ("consent", "Consent", FreeObject),
        }
    }

    /// Whether `action` has this field (docs/SEGMENT_SPEC.md §2).
    pub(crate) fn allowed(self, action: Action) -> bool {
        match self {
            Field::EventName => action == Action::Track,
            Field::PageName | Field::PageCategory => action == Action::Page,
            Field::ScreenName => action == Action::Screen,
            Field::Properties => matches!(action, Action::Track | Action::Page | Action::Screen),
            Field::Traits => matches!(action, Action::Track | Action::Identify | Action::Group),
            Field::Address => action == Action::Identify,
            _ => true,
        }
    }

    /// Whether `action` requires this field.
    pub(crate) fn required(self, action: Action) -> bool {
        matches!(
            (self, action),
            (Field::EventName, Action::Track) | (Field::GroupId, Action::Group)
        )
    }
}

/// The declared sub-field `key` of `subs`.
pub(crate) fn sub<'s>(subs: &'s [Sub], key: &str) -> Option<&'s Sub> {
    subs.iter().find(|s| s.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `events_total`'s series start at zero for these names (`metrics::ACTIONS`).
    #[test]
    fn the_metrics_know_every_action() {
        let mut ours: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        let mut theirs = crate::metrics::ACTIONS.to_vec();
        ours.sort_unstable();
        theirs.sort_unstable();
        assert_eq!(ours, theirs);
    }
}
