//! Store URLs as they may be shown: in logs and errors a password never appears.

/// What stands in for a secret in a shown store URL.
const REDACTED: &str = "[redacted]";

/// A store URL as it may be shown (logs, errors): the password of `user:password@` and the
/// value of every query parameter whose name says it is a secret ([`is_secret_parameter`])
/// become `[redacted]`. The password is what comes before the last `@` of the authority, as the
/// `url` crate (and so sqlx) reads it, `@` in it or not. `sqlite:` URLs hold no secret and are
/// shown as given; anything else that does not parse as a URL is shown as its scheme alone.
pub(crate) fn redact_store_url(url: &str) -> String {
    if url.starts_with("sqlite:") {
        return url.to_owned();
    }
    let Ok(parsed) = url::Url::parse(url) else {
        let scheme = url.split_once("://").map(|(scheme, _)| scheme).filter(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        return match scheme {
            Some(scheme) => format!("{scheme}://{REDACTED} (not a valid URL)"),
            None => format!("{REDACTED} (not a valid URL)"),
        };
    };
    let mut shown = format!("{}:", parsed.scheme());
    if parsed.has_authority() {
        shown.push_str("//");
        if !parsed.username().is_empty() || parsed.password().is_some() {
            shown.push_str(parsed.username());
            if parsed.password().is_some() {
                shown.push(':');
                shown.push_str(REDACTED);
            }
            shown.push('@');
        }
        shown.push_str(parsed.host_str().unwrap_or_default());
        if let Some(port) = parsed.port() {
            shown.push_str(&format!(":{port}"));
        }
    }
    shown.push_str(parsed.path());
    if parsed.query().is_some() {
        let pairs: Vec<String> = parsed
            .query_pairs()
            .map(|(name, value)| match is_secret_parameter(&name) {
                true => format!("{name}={REDACTED}"),
                false => format!("{name}={value}"),
            })
            .collect();
        shown.push('?');
        shown.push_str(&pairs.join("&"));
    }
    if parsed.fragment().is_some() {
        shown.push('#');
        shown.push_str(REDACTED);
    }
    shown
}

/// Whether a store URL query parameter holds a secret: its name has `pass` (`password`,
/// `sslpassword`, `passfile` aside), `pwd`, `secret` or `token` in it. Paths such as `sslkey`
/// or `sslrootcert` are not secrets.
fn is_secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name != "passfile"
        && ["pass", "pwd", "secret", "token"]
            .iter()
            .any(|s| name.contains(s))
}

/// `url` without the query parameters sqlx does not read whose name says they hold a secret
/// (sqlx would log their values while ignoring them), and their names. Unchanged when it does
/// not parse (sqlx then refuses it, showing nothing of it).
pub(crate) fn without_unread_secrets(url: &str) -> (String, Vec<String>) {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return (url.to_owned(), Vec::new());
    };
    let (dropped, kept): (Vec<_>, Vec<_>) = parsed
        .query_pairs()
        .into_owned()
        .partition(|(name, _)| name != "password" && is_secret_parameter(name));
    if dropped.is_empty() {
        return (url.to_owned(), Vec::new());
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(&kept);
    }
    (
        parsed.into(),
        dropped.into_iter().map(|(name, _)| name).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_is_redacted() {
        for (url, shown) in [
            (
                "postgres://app:hunter2@db:5432/app",
                "postgres://app:[redacted]@db:5432/app",
            ),
            // The password is what precedes the last `@`, as sqlx reads it.
            (
                "postgres://app:p@ss@db/app",
                "postgres://app:[redacted]@db/app",
            ),
            ("postgres://app:@db/app", "postgres://app@db/app"),
            (
                "postgresql://app@db/app?password=hunter2&sslmode=require",
                "postgresql://app@db/app?password=[redacted]&sslmode=require",
            ),
            (
                "postgres://db/app?sslpassword=hunter2&sslkey=/k/client.key&PassWord=x&auth_token=y",
                "postgres://db/app?sslpassword=[redacted]&sslkey=/k/client.key\
                 &PassWord=[redacted]&auth_token=[redacted]",
            ),
            (
                "postgres:///app?host=/run/postgresql&passfile=/p/.pgpass",
                "postgres:///app?host=/run/postgresql&passfile=/p/.pgpass",
            ),
            ("postgres://db/app#hunter2", "postgres://db/app#[redacted]"),
            // Unparsable (a `/` in the password ends the authority): the scheme alone.
            (
                "postgres://app:hun/ter2@db/app",
                "postgres://[redacted] (not a valid URL)",
            ),
            ("host=db password=hunter2", "[redacted] (not a valid URL)"),
            (
                "sqlite://./data/connections.db",
                "sqlite://./data/connections.db",
            ),
            ("sqlite:/var/lib/x.db", "sqlite:/var/lib/x.db"),
        ] {
            assert_eq!(redact_store_url(url), shown, "{url}");
        }
    }

    #[test]
    fn secrets_sqlx_does_not_read_are_dropped_before_it_sees_them() {
        let (url, dropped) = without_unread_secrets(
            "postgres://app@db/app?sslmode=disable&sslpassword=hunter2&password=pw&x=1",
        );
        assert_eq!(url, "postgres://app@db/app?sslmode=disable&password=pw&x=1");
        assert_eq!(dropped, ["sslpassword"]);
        let (url, dropped) = without_unread_secrets("postgres://db/app?sslpassword=hunter2");
        assert_eq!((url.as_str(), dropped.len()), ("postgres://db/app", 1));
        for same in [
            "postgres://app:pw@db/app?password=x",
            "postgres://a:b/c@d/e",
        ] {
            assert_eq!(without_unread_secrets(same), (same.to_owned(), Vec::new()));
        }
    }
}
