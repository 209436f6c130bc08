//! A browser's side of a BFF session, for tests: the cookies it keeps (by hand, so a test sees
//! exactly what was set) and the `X-CSRF: 1` header its fetches add. Redirects are never
//! followed: tests look at each hop.

use reqwest::header::{HeaderMap, HeaderValue, COOKIE, SET_COOKIE};
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

pub const SESSION_COOKIE: &str = "__Host-dana_session";
pub const LOGIN_COOKIE: &str = "__Host-dana_login";

/// An HTTP client that follows no redirects.
pub fn no_redirects() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The `Set-Cookie` headers of a response, by cookie name (the whole header as value).
pub fn set_cookies(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| Some((v.split('=').next()?.to_owned(), v.to_owned())))
        .collect()
}

/// A browser talking to one BFF.
#[derive(Clone)]
pub struct Browser {
    pub base: String,
    pub http: Client,
    pub cookies: BTreeMap<String, String>,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http: no_redirects(),
            cookies: BTreeMap::new(),
        }
    }

    /// The same cookies, sent to another BFF instance.
    pub fn at(&self, base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            ..self.clone()
        }
    }

    pub fn session(&self) -> Option<&str> {
        self.cookies.get(SESSION_COOKIE).map(String::as_str)
    }

    fn cookie_header(&self) -> Option<HeaderValue> {
        if self.cookies.is_empty() {
            return None;
        }
        let text: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        Some(HeaderValue::from_str(&text.join("; ")).unwrap())
    }

    /// A request with the cookies, without `X-CSRF` (a navigation, or a forged request).
    pub fn bare(&self, method: Method, path_or_url: &str) -> RequestBuilder {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        let mut request = self.http.request(method, url);
        if let Some(cookies) = self.cookie_header() {
            request = request.header(COOKIE, cookies);
        }
        request
    }

    /// A request as the app's own fetches send it: cookies and `X-CSRF: 1`.
    pub fn fetch(&self, method: Method, path: &str) -> RequestBuilder {
        self.bare(method, path).header("x-csrf", "1")
    }

    /// Keeps what a response set (an empty value or `Max-Age=0` removes the cookie).
    pub fn absorb(&mut self, response: &Response) {
        for (name, header) in set_cookies(response.headers()) {
            let value = header
                .split(';')
                .next()
                .and_then(|p| p.split_once('='))
                .map(|(_, v)| v.to_owned())
                .unwrap_or_default();
            if value.is_empty() || header.contains("Max-Age=0") {
                self.cookies.remove(&name);
            } else {
                self.cookies.insert(name, value);
            }
        }
    }

    /// Signs in with a password; panics unless the BFF answers 200.
    pub async fn login(&mut self, email: &str, password: &str) -> Value {
        let response = self
            .fetch(Method::POST, "/bff/login")
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        self.absorb(&response);
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, StatusCode::OK, "login of {email}: {body}");
        assert!(self.session().is_some(), "login set no session cookie");
        body
    }

    /// `GET` with cookies and X-CSRF; answers status and JSON body (Null when not JSON).
    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let response = self.fetch(Method::GET, path).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `method` with a JSON body, cookies and X-CSRF.
    pub async fn send_json(&self, method: Method, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self.fetch(method, path).json(body).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}
