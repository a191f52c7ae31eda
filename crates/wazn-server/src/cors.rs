//! Cross-origin requests from browsers: refused (no CORS headers at all) unless the operator
//! names the web origins that may call the server, as `--cors-origin` does.

use std::time::Duration;

use axum::http::{HeaderValue, Method};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The web origins whose pages may call the server; none by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS headers are sent: a browser keeps other sites' pages from reading answers.
    #[default]
    None,
    /// Every origin (`*`).
    Any,
    /// These origins exactly, each as `scheme://host[:port]`.
    List(Vec<HeaderValue>),
}

/// Why an origin given to `--cors-origin` cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("--cors-origin {origin:?}: {reason}")]
pub struct CorsOriginError {
    origin: String,
    reason: &'static str,
}

impl CorsOrigins {
    /// The origins as given on the command line; `*` among them allows every origin.
    pub fn parse<S: AsRef<str>>(given: &[S]) -> Result<CorsOrigins, CorsOriginError> {
        if given.is_empty() {
            return Ok(CorsOrigins::None);
        }
        if given.iter().any(|origin| origin.as_ref() == "*") {
            return Ok(CorsOrigins::Any);
        }
        let origins = given
            .iter()
            .map(|origin| parse_origin(origin.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CorsOrigins::List(origins))
    }

    /// The layer that answers preflights and marks answers for the allowed origins; `None`
    /// when no origin is allowed, so that nothing about CORS is sent.
    pub(crate) fn layer(&self) -> Option<CorsLayer> {
        let allow_origin = match self {
            CorsOrigins::None => return None,
            CorsOrigins::Any => AllowOrigin::any(),
            CorsOrigins::List(origins) => AllowOrigin::list(origins.iter().cloned()),
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow_origin)
                .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
                // Echoes the headers the page asks for: `*` would not cover `Authorization`,
                // which browsers never count in a wildcard.
                .allow_headers(AllowHeaders::mirror_request())
                .max_age(PREFLIGHT_MAX_AGE),
        )
    }
}

/// An origin as browsers send it in `Origin`: `scheme://host[:port]`, nothing after. A path
/// or a trailing slash would never match, so it is refused rather than silently useless.
fn parse_origin(origin: &str) -> Result<HeaderValue, CorsOriginError> {
    let refuse = |reason| CorsOriginError {
        origin: origin.to_string(),
        reason,
    };
    let Some((scheme, host)) = origin.split_once("://") else {
        return Err(refuse(
            "an origin is scheme://host[:port], e.g. https://example.com",
        ));
    };
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(refuse("the scheme is not a URL scheme"));
    }
    if host.is_empty() {
        return Err(refuse("the host is missing"));
    }
    if host.contains('/') {
        return Err(refuse(
            "an origin has no path, not even a trailing slash: browsers send scheme://host[:port]",
        ));
    }
    if host.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(refuse(
            "an origin has no spaces or characters outside printable ASCII",
        ));
    }
    HeaderValue::from_str(origin).map_err(|_| refuse("not a valid header value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_read_as_browsers_send_them() {
        assert_eq!(CorsOrigins::parse::<&str>(&[]).unwrap(), CorsOrigins::None);
        assert_eq!(
            CorsOrigins::parse(&["https://a.example", "*"]).unwrap(),
            CorsOrigins::Any
        );
        assert_eq!(
            CorsOrigins::parse(&["http://localhost:3000"]).unwrap(),
            CorsOrigins::List(vec![HeaderValue::from_static("http://localhost:3000")])
        );
        for bad in [
            "example.com",
            "https://example.com/",
            "https://example.com/app",
            "https://",
            "://example.com",
            "https://exa mple.com",
            "https://exämple.com",
        ] {
            let error = CorsOrigins::parse(&[bad]).expect_err(bad);
            assert!(error.to_string().contains(bad), "{error}");
        }
    }
}
