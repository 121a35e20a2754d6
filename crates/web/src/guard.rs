//! Who may use the page.
//!
//! - **Host**: on a loopback address, a request must name the page by a
//!   loopback name (`127.0.0.1`, `localhost`, `[::1]`) and its port. A
//!   page of another site that rebinds its name to 127.0.0.1 sends its own
//!   name, and is refused (DNS rebinding).
//! - **Token**: the page needs the login token kept in the data
//!   directory (`p2pfs web` prints a link with it). `/login?token=` trades
//!   it for a cookie (`HttpOnly`, `SameSite=Lax`); scripts send it as
//!   `Authorization: Bearer TOKEN`. Without it, only the gateway's public
//!   blobs, the script and style sheet and the login itself answer; on a
//!   non-loopback address nothing but the login does.
//! - **Writes** (any method but GET and HEAD) with the cookie must come
//!   from the page itself: `Sec-Fetch-Site` (or, from a browser that
//!   sends none, `Origin`) says so, or the write is refused (CSRF). No CORS header is ever sent,
//!   so no other site can read an answer.
//! - **Headers**: every answer says `nosniff`, no referrer to other
//!   sites, no framing;
//!   pages run only the page's own script (Content-Security-Policy).

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{Query, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use crate::{App, pages};

/// The cookie that carries the token: `p2pfs_session_PORT`. Browsers keep
/// cookies by host, not port, so two nodes' pages on one machine each need
/// a name of their own.
const COOKIE: &str = "p2pfs_session";
/// How long a browser keeps it.
const COOKIE_AGE_SECS: u64 = 365 * 24 * 3600;
/// The policy of every page: its own script, style and connections only.
pub(crate) const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";
/// The policy of a file served from a room or the gateway: nothing in it
/// runs, even opened in the browser.
pub(crate) const FILE_CSP: &str = "default-src 'none'; sandbox";

/// The login token: 32 random bytes, as 52 base32 letters.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A secret: never in a log.
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A new random token.
    pub fn generate() -> Result<Self, crate::WebError> {
        let mut b = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
            .map_err(|_| crate::WebError::NoRandom)?;
        Ok(Self(
            data_encoding::BASE32_NOPAD.encode(&b).to_ascii_lowercase(),
        ))
    }

    /// A token read back (from the data directory).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        (s.len() == 52
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)))
        .then(|| Self(s.to_string()))
    }

    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this token, in time that does not depend on
    /// where they differ.
    fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// The guard's settings for one page.
#[derive(Debug)]
pub(crate) struct Access {
    addr: SocketAddr,
    token: Token,
    /// On a loopback address: the public parts answer without the token.
    loopback: bool,
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deny {
    /// The `Host` header names something else (DNS rebinding).
    Host,
    /// No valid token.
    Login,
    /// A write from another site.
    CrossSite,
}

/// What the guard looks at in a request.
#[derive(Debug, Default)]
pub(crate) struct Ask<'a> {
    pub(crate) method: Method,
    pub(crate) path: &'a str,
    pub(crate) host: Option<&'a str>,
    pub(crate) origin: Option<&'a str>,
    pub(crate) fetch_site: Option<&'a str>,
    pub(crate) cookie: Option<&'a str>,
    pub(crate) bearer: Option<&'a str>,
}

impl Access {
    pub(crate) fn new(addr: SocketAddr, token: Token) -> Self {
        Self {
            loopback: addr.ip().is_loopback(),
            addr,
            token,
        }
    }

    /// The name of this page's cookie.
    fn cookie_name(&self) -> String {
        format!("{COOKIE}_{}", self.addr.port())
    }

    /// Whether `host` (a `Host` header) names this page.
    fn host_ok(&self, host: Option<&str>) -> bool {
        if !self.loopback {
            // Anyone may name it; the token is needed for everything.
            return true;
        }
        let Some(host) = host else {
            return false;
        };
        let (name, port) = match host.rsplit_once(':') {
            Some((n, p)) if !p.contains(']') => (n, Some(p)),
            _ => (host, None),
        };
        if port.is_some_and(|p| p != self.addr.port().to_string()) {
            return false;
        }
        let name = name.trim_start_matches('[').trim_end_matches(']');
        name.eq_ignore_ascii_case("localhost")
            || name
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip == self.addr.ip())
    }

    /// Paths that answer without the token (on loopback).
    fn public(&self, path: &str) -> bool {
        path == "/login"
            || path.starts_with("/assets/")
            || (self.loopback && path.starts_with("/blob/"))
    }

    /// The guard's decision.
    pub(crate) fn decide(&self, ask: &Ask<'_>) -> Result<(), Deny> {
        if !self.host_ok(ask.host) {
            return Err(Deny::Host);
        }
        if self.public(ask.path) && matches!(ask.method, Method::GET | Method::HEAD) {
            return Ok(());
        }
        let by_bearer = ask.bearer.is_some_and(|t| self.token.matches(t));
        let by_cookie = ask.cookie.is_some_and(|t| self.token.matches(t));
        if !by_bearer && !by_cookie {
            return Err(Deny::Login);
        }
        if by_bearer || matches!(ask.method, Method::GET | Method::HEAD) {
            return Ok(());
        }
        // A write with the cookie: the page's own, or refused. A browser
        // says where a request comes from in `Sec-Fetch-Site` (no script
        // can set it); one that does not, in `Origin` (`null` when the
        // page's referrer policy hides it, which says nothing).
        let own = ask.host.map(|h| format!("http://{h}"));
        let origin_ok = |o: &str| o == "null" || Some(o) == own.as_deref();
        let same = match (ask.fetch_site, ask.origin) {
            (Some(site), origin) => site == "same-origin" && origin.is_none_or(origin_ok),
            (None, Some(origin)) => Some(origin) == own.as_deref(),
            (None, None) => false,
        };
        if same { Ok(()) } else { Err(Deny::CrossSite) }
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The middleware: refuses what the guard refuses, and sets the headers
/// every answer carries.
pub(crate) async fn check(State(app): State<App>, req: Request, next: Next) -> Response {
    let h = req.headers();
    let ask = Ask {
        method: req.method().clone(),
        path: req.uri().path(),
        host: text(h, header::HOST),
        origin: text(h, header::ORIGIN),
        fetch_site: h.get("sec-fetch-site").and_then(|v| v.to_str().ok()),
        cookie: cookie(h, &app.access.cookie_name()),
        bearer: text(h, header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer ")),
    };
    let mut response = match app.access.decide(&ask) {
        Ok(()) => next.run(req).await,
        Err(Deny::Host) => (
            StatusCode::MISDIRECTED_REQUEST,
            "this page answers only to its own address (127.0.0.1, localhost)\n",
        )
            .into_response(),
        Err(Deny::CrossSite) => (
            StatusCode::FORBIDDEN,
            "a change must come from the page itself (cross-site request refused)\n",
        )
            .into_response(),
        Err(Deny::Login) => {
            // A page opened without the token goes to the login page; any
            // other request is refused.
            let page = ask.method == Method::GET
                && text(req.headers(), header::ACCEPT).is_some_and(|a| a.contains("text/html"));
            let next_path = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            if page {
                let to = format!("/login?next={}", pages::query(&next_path));
                (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
            } else {
                (
                    StatusCode::UNAUTHORIZED,
                    "this needs the page's login token (`p2pfs web` prints a link with it)\n",
                )
                    .into_response()
            }
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_CSP),
        );
    }
    response
}

#[derive(Debug, Deserialize)]
pub(crate) struct Login {
    token: Option<String>,
    next: Option<String>,
}

/// Where a login may send the browser: a path of this page only.
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p,
        _ => "/",
    }
}

/// `GET /login?token=..&next=..`: the token for a cookie.
pub(crate) async fn login(State(app): State<App>, Query(q): Query<Login>) -> Response {
    let next = local_path(q.next.as_deref()).to_string();
    match q.token.as_deref() {
        Some(t) if app.access.token.matches(t.trim()) => {
            let cookie = format!(
                "{}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={COOKIE_AGE_SECS}",
                app.access.cookie_name(),
                app.access.token.as_str()
            );
            let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, next)]).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Some(_) => (StatusCode::FORBIDDEN, pages::login(&next, true)).into_response(),
        None => pages::login(&next, false).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(addr: &str) -> (Access, String) {
        let token = Token::generate().expect("random");
        let t = token.as_str().to_string();
        (Access::new(addr.parse().expect("addr"), token), t)
    }

    fn ask<'a>(method: Method, path: &'a str, host: &'a str) -> Ask<'a> {
        Ask {
            method,
            path,
            host: Some(host),
            ..Ask::default()
        }
    }

    #[test]
    fn only_loopback_names_of_the_page_pass_the_host_check() {
        let (a, _) = access("127.0.0.1:7474");
        for host in [
            "127.0.0.1:7474",
            "localhost:7474",
            "[::1]:7474",
            "LOCALHOST:7474",
            "127.0.0.1",
        ] {
            assert_eq!(
                a.decide(&ask(Method::GET, "/blob/x", host)),
                Ok(()),
                "{host}"
            );
        }
        for host in [
            "evil.example:7474",
            "evil.example",
            "127.0.0.1:80",
            "192.168.1.2:7474",
            "",
        ] {
            assert_eq!(
                a.decide(&ask(Method::GET, "/blob/x", host)),
                Err(Deny::Host),
                "{host}"
            );
        }
        let mut no_host = ask(Method::GET, "/blob/x", "");
        no_host.host = None;
        assert_eq!(a.decide(&no_host), Err(Deny::Host));
    }

    #[test]
    fn pages_need_the_token_and_public_blobs_do_not() {
        let (a, t) = access("127.0.0.1:7474");
        let host = "127.0.0.1:7474";
        assert_eq!(a.decide(&ask(Method::GET, "/", host)), Err(Deny::Login));
        assert_eq!(
            a.decide(&ask(Method::GET, "/r/x/f/a", host)),
            Err(Deny::Login)
        );
        assert_eq!(a.decide(&ask(Method::GET, "/blob/abc", host)), Ok(()));
        assert_eq!(a.decide(&ask(Method::GET, "/assets/app.js", host)), Ok(()));
        let mut wrong = ask(Method::GET, "/", host);
        wrong.cookie = Some("nottoken");
        assert_eq!(a.decide(&wrong), Err(Deny::Login));
        let mut right = ask(Method::GET, "/", host);
        right.cookie = Some(&t);
        assert_eq!(a.decide(&right), Ok(()));
    }

    #[test]
    fn writes_with_the_cookie_must_come_from_the_page() {
        let (a, t) = access("127.0.0.1:7474");
        let host = "127.0.0.1:7474";
        let write = |origin: Option<&'static str>, site: Option<&'static str>| {
            let mut w = ask(Method::POST, "/rooms", host);
            w.cookie = Some(&t);
            w.origin = origin;
            w.fetch_site = site;
            a.decide(&w)
        };
        assert_eq!(write(Some("http://127.0.0.1:7474"), None), Ok(()));
        assert_eq!(write(None, Some("same-origin")), Ok(()));
        // A form posted under `Referrer-Policy` hiding the origin.
        assert_eq!(write(Some("null"), Some("same-origin")), Ok(()));
        assert_eq!(
            write(Some("http://evil.example"), Some("same-origin")),
            Err(Deny::CrossSite)
        );
        assert_eq!(
            write(Some("http://127.0.0.1:7474"), Some("same-site")),
            Err(Deny::CrossSite)
        );
        assert_eq!(
            write(Some("http://evil.example"), None),
            Err(Deny::CrossSite)
        );
        assert_eq!(write(Some("null"), None), Err(Deny::CrossSite));
        assert_eq!(write(None, Some("cross-site")), Err(Deny::CrossSite));
        assert_eq!(write(None, None), Err(Deny::CrossSite));
        // A script with the token in a header is no cross-site request.
        let mut bearer = ask(Method::PUT, "/r/x/f/a", host);
        bearer.bearer = Some(&t);
        assert_eq!(a.decide(&bearer), Ok(()));
        // Nor is the gateway open to writes.
        assert_eq!(
            a.decide(&ask(Method::PUT, "/blob/x", host)),
            Err(Deny::Login)
        );
    }

    #[test]
    fn off_loopback_everything_needs_the_token() {
        let (a, t) = access("0.0.0.0:7474");
        let host = "mybox.lan:7474";
        assert_eq!(
            a.decide(&ask(Method::GET, "/blob/abc", host)),
            Err(Deny::Login)
        );
        assert_eq!(a.decide(&ask(Method::GET, "/login", host)), Ok(()));
        let mut with = ask(Method::GET, "/blob/abc", host);
        with.cookie = Some(&t);
        assert_eq!(a.decide(&with), Ok(()));
    }

    #[test]
    fn tokens_round_trip_and_logins_stay_on_the_page() {
        let t = Token::generate().expect("random");
        assert_eq!(Token::parse(&format!("{}\n", t.as_str())), Some(t.clone()));
        assert_eq!(Token::parse("short"), None);
        assert!(!format!("{t:?}").contains(t.as_str()));
        assert_eq!(local_path(Some("/join")), "/join");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(None), "/");
    }
}
