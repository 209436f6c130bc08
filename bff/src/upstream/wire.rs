//! HTTP/1.1 on the wire to an upstream (RFC 9112): the request head as it is written, the
//! response head parsed (by httparse, the parser hyper itself uses), and the framing of the
//! response body — a length, chunks, or until the connection closes.
//!
//! Only what a proxy's client needs: no pipelining, no upgrades, no HTTP/1.0 requests. What does
//! not parse is an error that names it; nothing here guesses.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use std::mem::MaybeUninit;

/// Response heads larger than this are refused.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// At most this many fields in a response head (hyper's default limit).
const MAX_HEADERS: usize = 100;
/// Header fields the BFF's layers may add to an answer.
const ADDED_ON_THE_WAY_OUT: usize = 4;
/// A chunk-size line (with its extensions) longer than this is refused.
const MAX_CHUNK_LINE_BYTES: usize = 1024;
/// A trailer section longer than this is refused (trailers are read and dropped).
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// What made an upstream's answer unreadable.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("invalid response head: {0}")]
    Head(httparse::Error),
    #[error("the response head is larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("invalid status code {0}")]
    Status(u16),
    #[error("invalid response header field {0:?}")]
    Field(String),
    #[error("invalid or conflicting Content-Length")]
    ContentLength,
    #[error("invalid chunked body: {0}")]
    Chunked(&'static str),
}

/// The request target was not a valid origin-form target (a space, a control character).
#[derive(Debug, thiserror::Error)]
#[error("the request target {0:?} cannot be sent")]
pub struct InvalidTarget(pub String);

/// How a request's body is framed after its head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body.
    None,
    /// A `Content-Length` header was written: the body's bytes as they come.
    Length,
    /// `Transfer-Encoding: chunked` (the body's length is unknown).
    Chunked,
}

/// A request head as it goes on the wire. Kept whole after it was written, so the same request
/// can be sent again on another connection without building it twice.
#[derive(Debug)]
pub struct RequestHead {
    bytes: Vec<u8>,
    framing: RequestFraming,
    is_head: bool,
    closes: bool,
}

impl RequestHead {
    /// The request line (`target` is the concatenation of its pieces, in origin form) and `Host`.
    ///
    /// Header names and values come typed (`HeaderName`, `HeaderValue` admit no CR or LF), and
    /// the target is checked here, so nothing a client sends can split the head.
    pub fn new(
        method: &Method,
        target: &[&str],
        host: &HeaderValue,
    ) -> Result<RequestHead, InvalidTarget> {
        let target_len: usize = target.iter().map(|piece| piece.len()).sum();
        // Room for a typical head (a supabase-js request with its JWT twice runs to ~1 KiB):
        // growing it cost ~500 instructions.
        let mut bytes = Vec::with_capacity(2048 + target_len);
        bytes.extend_from_slice(method.as_str().as_bytes());
        bytes.push(b' ');
        let target_start = bytes.len();
        for piece in target {
            bytes.extend_from_slice(piece.as_bytes());
        }
        if target_len == 0 || has_space_or_control(&bytes[target_start..]) {
            return Err(InvalidTarget(target.concat()));
        }
        bytes.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        bytes.extend_from_slice(host.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        Ok(RequestHead {
            bytes,
            framing: RequestFraming::None,
            is_head: *method == Method::HEAD,
            closes: false,
        })
    }

    /// One header field.
    pub fn header(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.bytes.extend_from_slice(name.as_str().as_bytes());
        self.bytes.extend_from_slice(b": ");
        self.bytes.extend_from_slice(value.as_bytes());
        self.bytes.extend_from_slice(b"\r\n");
    }

    /// `Connection: close`: the upstream closes the connection after its answer.
    pub fn close_after(&mut self) {
        self.bytes.extend_from_slice(b"connection: close\r\n");
        self.closes = true;
    }

    /// Ends the head; a chunked body gets its `Transfer-Encoding` here. With
    /// [`RequestFraming::Length`] the caller wrote the `Content-Length` field.
    pub fn finish(mut self, framing: RequestFraming) -> RequestHead {
        if framing == RequestFraming::Chunked {
            self.bytes
                .extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        self.bytes.extend_from_slice(b"\r\n");
        self.framing = framing;
        self
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn framing(&self) -> RequestFraming {
        self.framing
    }
}

/// True when `text` has a space, a control character or DEL, none of which may stand in a
/// request target. Every byte is looked at, without stopping at the first bad one, so that the
/// loop compiles to vector instructions (a short-circuiting one over the target's pieces cost
/// ~900 instructions for a PostgREST query).
fn has_space_or_control(text: &[u8]) -> bool {
    text.iter().fold(0u8, |bad, &b| {
        bad | u8::from(b <= b' ') | u8::from(b == 0x7f)
    }) != 0
}

/// A parsed response head: its own bytes, and its fields as ranges into them, so that the
/// header values share those bytes instead of being copied. Only [`parse_response_head`] makes
/// one, so the ranges always lie in the bytes httparse validated.
#[derive(Debug)]
pub struct ResponseHead {
    /// The head as it came, the blank line included.
    bytes: Bytes,
    pub status: u16,
    /// HTTP/1.0: the connection closes after the answer unless it says `keep-alive`.
    version_1_0: bool,
    /// (name start, name end, value start, value end) per field.
    fields: Vec<[usize; 4]>,
}

impl ResponseHead {
    /// 1xx: an interim answer (`100 Continue`, `103 Early Hints`); the real one follows.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status)
    }

    /// Its length in bytes, the blank line included.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
}

/// Parses a response head at the start of `buf` and takes it off the front; `None` (and `buf`
/// untouched) while it is incomplete.
pub fn parse_response_head(buf: &mut BytesMut) -> Result<Option<ResponseHead>, WireError> {
    let mut slots: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS] =
        [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD_BYTES => len,
        Ok(httparse::Status::Complete(_)) => return Err(WireError::HeadTooLarge),
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(WireError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(WireError::Head(e)),
    };
    // Offsets rather than slices, so the buffer can be frozen and shared afterwards. Every
    // slice httparse returns lies inside `buf`, an empty value aside (it may point anywhere).
    let base = buf.as_ptr() as usize;
    let offset = |slice: &[u8]| {
        if slice.is_empty() {
            0
        } else {
            slice.as_ptr() as usize - base
        }
    };
    let fields = response
        .headers
        .iter()
        .map(|field| {
            let (name, value) = (offset(field.name.as_bytes()), offset(field.value));
            [
                name,
                name + field.name.len(),
                value,
                value + field.value.len(),
            ]
        })
        .collect();
    let (status, version_1_0) = (response.code.unwrap_or(0), response.version == Some(0));
    Ok(Some(ResponseHead {
        bytes: buf.split_to(len).freeze(),
        status,
        version_1_0,
        fields,
    }))
}

/// A response head turned into what the caller hands on: status, header map, body framing, and
/// whether the connection can carry another request after this body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub framing: BodyFraming,
    pub reusable: bool,
}

/// The answer of a response head, its header values sharing the head's bytes. The fields that frame or concern only this connection (RFC 9110 §7.6.1:
/// `Connection` and what it names, `Transfer-Encoding`, `Keep-Alive`, ...) are consumed here
/// and not handed on, and neither are those `drop` picks.
pub fn answer(
    head: &ResponseHead,
    request: &RequestHead,
    drop: fn(&HeaderName) -> bool,
) -> Result<Answer, WireError> {
    let status = StatusCode::from_u16(head.status).map_err(|_| WireError::Status(head.status))?;
    let bytes = &head.bytes;
    let field = |range: &[usize; 4]| (&bytes[range[0]..range[1]], range[2]..range[3]);

    // `Connection` first: it may name fields that come before it.
    let (mut says_close, mut says_keep_alive) = (false, false);
    let mut named: Vec<HeaderName> = Vec::new();
    for range in &head.fields {
        let (name, value) = field(range);
        if name.eq_ignore_ascii_case(b"connection") {
            for token in connection_options(&bytes[value]) {
                if token.eq_ignore_ascii_case(b"close") {
                    says_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    says_keep_alive = true;
                } else if let Ok(name) = HeaderName::from_bytes(token) {
                    named.push(name);
                }
            }
        }
    }
    // HTTP/1.0 closes unless it says otherwise (RFC 9112 §9.3).
    let mut close = says_close || head.version_1_0 && !says_keep_alive;

    // Room for what the BFF adds on the way out (request id, `Vary`, CORS): growing the map
    // later rehashes it (~1,000 instructions per request, BENCHMARKS.md).
    let mut headers = HeaderMap::with_capacity(head.fields.len() + ADDED_ON_THE_WAY_OUT);
    let mut length: Option<u64> = None;
    let mut transfer_encoding: Option<bool> = None;
    for range in &head.fields {
        let (name, value) = field(range);
        let name = HeaderName::from_bytes(name)
            .map_err(|_| WireError::Field(String::from_utf8_lossy(name).into_owned()))?;
        let value = bytes.slice(value);
        if name == header::CONTENT_LENGTH {
            let this = parse_length(&value).ok_or(WireError::ContentLength)?;
            if length.is_some_and(|seen| seen != this) {
                return Err(WireError::ContentLength);
            }
            length = Some(this);
        } else if name == header::TRANSFER_ENCODING {
            // Chunked only when it is the last coding applied (RFC 9112 §6.3).
            let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
            transfer_encoding = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            continue;
        }
        if is_connection_field(&name) || named.contains(&name) || drop(&name) {
            continue;
        }
        // SAFETY: httparse admitted only HTAB, SP, visible ASCII and obs-text (0x80-0xFF) in a
        // field value (its HEADER_VALUE_MAP), the very bytes `HeaderValue::from_bytes` accepts;
        // checking them again cost ~700 instructions per answer. hyper's own parser does the same.
        let value = unsafe { HeaderValue::from_maybe_shared_unchecked(value) };
        headers.append(name, value);
    }

    let bodiless = request.is_head || status.as_u16() == 204 || status.as_u16() == 304;
    let framing = if bodiless {
        BodyFraming::Empty
    } else if let Some(chunked) = transfer_encoding {
        // A length beside a transfer coding is not to be trusted, nor what follows the body.
        if length.is_some() {
            headers.remove(header::CONTENT_LENGTH);
            close = true;
        }
        if chunked {
            BodyFraming::Chunked(Chunked::Size)
        } else {
            close = true;
            BodyFraming::UntilClose
        }
    } else if let Some(length) = length {
        BodyFraming::Length(length)
    } else {
        close = true;
        BodyFraming::UntilClose
    };
    Ok(Answer {
        status,
        headers,
        framing,
        reusable: !close && !request.closes,
    })
}

/// The options a `Connection` field lists (RFC 9110 §7.6.1): `close`, `keep-alive`, or the
/// names of further fields that concern this connection only.
pub fn connection_options(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// Fields that describe one connection, not the message (RFC 9110 §7.6.1).
pub fn is_connection_field(name: &HeaderName) -> bool {
    *name == header::CONNECTION
        || *name == header::TRANSFER_ENCODING
        || *name == header::TE
        || *name == header::TRAILER
        || *name == header::UPGRADE
        || *name == header::PROXY_AUTHORIZATION
        || *name == header::PROXY_AUTHENTICATE
        || matches!(name.as_str(), "keep-alive" | "proxy-connection")
}

/// A `Content-Length` value: digits only (a list of one repeated value is allowed).
fn parse_length(value: &[u8]) -> Option<u64> {
    let mut length = None;
    for item in value.split(|&b| b == b',') {
        let item = item.trim_ascii();
        if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let this = item
            .iter()
            .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
        if length.is_some_and(|seen| seen != this) {
            return None;
        }
        length = Some(this);
    }
    length
}

/// How a response body is delimited.
#[derive(Debug)]
pub enum BodyFraming {
    Empty,
    /// This many bytes still to come.
    Length(u64),
    Chunked(Chunked),
    /// Everything until the upstream closes the connection.
    UntilClose,
}

/// What decoding the buffered bytes gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    /// More bytes must be read first.
    NeedMore,
    /// The body is complete.
    End,
}

impl BodyFraming {
    /// Takes the next piece of the body off the front of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        match self {
            BodyFraming::Empty | BodyFraming::Length(0) => Ok(Decoded::End),
            BodyFraming::Length(left) => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let take = (*left).min(buf.len() as u64) as usize;
                *left -= take as u64;
                Ok(Decoded::Data(buf.split_to(take).freeze()))
            }
            BodyFraming::UntilClose if buf.is_empty() => Ok(Decoded::NeedMore),
            BodyFraming::UntilClose => Ok(Decoded::Data(buf.split().freeze())),
            BodyFraming::Chunked(state) => state.decode(buf),
        }
    }

    /// True when the connection closing ends the body properly (rather than cutting it short).
    pub fn ends_at_close(&self) -> bool {
        matches!(self, BodyFraming::UntilClose)
    }

    /// The bytes still to come, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            BodyFraming::Empty => Some(0),
            BodyFraming::Length(left) => Some(*left),
            _ => None,
        }
    }
}

/// Where a chunked body's decoding stands (RFC 9112 §7.1).
#[derive(Debug)]
pub enum Chunked {
    /// A chunk-size line comes next.
    Size,
    /// This many bytes of the current chunk are still to come.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields (dropped) until the blank line; bytes seen so far.
    Trailers(usize),
    Done,
}

impl Chunked {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        loop {
            match *self {
                Chunked::Size => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.advance(used);
                        *self = if size == 0 {
                            Chunked::Trailers(0)
                        } else {
                            Chunked::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_LINE_BYTES => {
                        return Err(WireError::Chunked("chunk-size line too long"))
                    }
                    Ok(httparse::Status::Partial) => return Ok(Decoded::NeedMore),
                    Err(_) => return Err(WireError::Chunked("invalid chunk size")),
                },
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = left.min(buf.len() as u64) as usize;
                    *self = match left - take as u64 {
                        0 => Chunked::DataEnd,
                        left => Chunked::Data(left),
                    };
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(WireError::Chunked("no CRLF after a chunk"));
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers(seen) => match buf.windows(2).position(|w| w == b"\r\n") {
                    Some(0) => {
                        buf.advance(2);
                        *self = Chunked::Done;
                    }
                    Some(end) if seen + end + 2 <= MAX_TRAILER_BYTES => {
                        buf.advance(end + 2);
                        *self = Chunked::Trailers(seen + end + 2);
                    }
                    None if seen + buf.len() <= MAX_TRAILER_BYTES => return Ok(Decoded::NeedMore),
                    _ => return Err(WireError::Chunked("trailer section too long")),
                },
                Chunked::Done => return Ok(Decoded::End),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: Method) -> RequestHead {
        RequestHead::new(&method, &["/x"], &HeaderValue::from_static("up")).unwrap()
    }

    fn parse(raw: &[u8]) -> Result<Option<ResponseHead>, WireError> {
        parse_response_head(&mut BytesMut::from(raw))
    }

    fn answer_of(raw: &str, request: &RequestHead) -> Result<Answer, WireError> {
        let parsed = parse(raw.as_bytes())?.expect("a complete head");
        answer(&parsed, request, |_| false)
    }

    /// The whole body of `raw` (a head and what follows), fed `step` bytes at a time.
    fn body_of(raw: &str, step: usize) -> Result<(Vec<u8>, bool), WireError> {
        let parsed = parse(raw.as_bytes())?.unwrap();
        let mut framing = answer_of(raw, &head(Method::GET))?.framing;
        let rest = &raw.as_bytes()[parsed.len()..];
        let (mut buf, mut body, mut fed) = (BytesMut::new(), Vec::new(), 0);
        loop {
            match framing.decode(&mut buf)? {
                Decoded::Data(data) => body.extend_from_slice(&data),
                Decoded::End => return Ok((body, true)),
                Decoded::NeedMore if fed == rest.len() => return Ok((body, false)),
                Decoded::NeedMore => {
                    let next = (fed + step).min(rest.len());
                    buf.extend_from_slice(&rest[fed..next]);
                    fed = next;
                }
            }
        }
    }

    #[test]
    fn a_request_head_is_written_as_given() {
        let mut request = RequestHead::new(
            &Method::POST,
            &["/rest", "/items", "?", "id=eq.1"],
            &HeaderValue::from_static("db:3000"),
        )
        .unwrap();
        request.header(
            &header::CONTENT_TYPE,
            &HeaderValue::from_static("application/json"),
        );
        request.header(&header::CONTENT_LENGTH, &HeaderValue::from_static("2"));
        let request = request.finish(RequestFraming::Length);
        assert_eq!(
            std::str::from_utf8(request.bytes()).unwrap(),
            "POST /rest/items?id=eq.1 HTTP/1.1\r\nhost: db:3000\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n"
        );
        let chunked = head(Method::PUT).finish(RequestFraming::Chunked);
        assert!(std::str::from_utf8(chunked.bytes())
            .unwrap()
            .ends_with("\r\ntransfer-encoding: chunked\r\n\r\n"));
    }

    #[test]
    fn a_target_that_could_split_the_head_is_refused() {
        let host = HeaderValue::from_static("up");
        for target in ["/a b", "/a\r\nx: y", "/a\n", "/\x7f", ""] {
            assert!(
                RequestHead::new(&Method::GET, &[target], &host).is_err(),
                "{target:?}"
            );
        }
    }

    #[test]
    fn response_fields_are_handed_on_except_those_of_the_connection() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nContent-Range: 0-1/2\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\n[]";
        let answer = answer_of(raw, &head(Method::GET)).unwrap();
        assert_eq!(answer.status, 200);
        let names: Vec<&str> = answer.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "content-type",
                "content-range",
                "set-cookie",
                "content-length"
            ]
        );
        assert_eq!(answer.headers.get_all("set-cookie").iter().count(), 2);
        assert!(answer.reusable);
        assert!(matches!(answer.framing, BodyFraming::Length(2)));
    }

    #[test]
    fn fields_the_caller_drops_stay_behind() {
        let raw = "HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nContent-Length: 0\r\n\r\n";
        let parsed = parse(raw.as_bytes()).unwrap().unwrap();
        let answer = answer(&parsed, &head(Method::GET), |name| {
            name.as_str().starts_with("access-control-")
        })
        .unwrap();
        assert_eq!(answer.headers.len(), 1);
    }

    #[test]
    fn the_body_is_framed_as_rfc_9112_says() {
        let get = head(Method::GET);
        let framing = |raw: &str, request: &RequestHead| {
            let answer = answer_of(raw, request).unwrap();
            (format!("{:?}", answer.framing), answer.reusable)
        };
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                &get
            ),
            ("Chunked(Size)".into(), true)
        );
        // A length beside chunking is dropped, and the connection is not trusted again.
        let raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n";
        assert_eq!(framing(raw, &get), ("Chunked(Size)".into(), false));
        assert!(answer_of(raw, &get).unwrap().headers.is_empty());
        // Neither: the body runs until the connection closes.
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\n\r\n", &get),
            ("UntilClose".into(), false)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", &get),
            ("UntilClose".into(), false)
        );
        // No body after HEAD, 204 or 304, whatever the head says.
        let mut head_request = head(Method::HEAD);
        head_request.close_after();
        let head_request = head_request.finish(RequestFraming::None);
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n",
                &head_request
            ),
            ("Empty".into(), false)
        );
        assert_eq!(
            framing("HTTP/1.1 204 No Content\r\n\r\n", &get),
            ("Empty".into(), true)
        );
        assert_eq!(
            framing(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n",
                &get
            ),
            ("Empty".into(), true)
        );
        // The connection's own say.
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                &get
            ),
            ("Length(0)".into(), false)
        );
        assert_eq!(
            framing("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", &get),
            ("Length(0)".into(), false)
        );
        assert_eq!(
            framing(
                "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
                &get
            ),
            ("Length(0)".into(), true)
        );
    }

    #[test]
    fn lengths_must_agree_and_be_digits() {
        let get = head(Method::GET);
        assert!(matches!(
            answer_of("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n", &get)
                .unwrap()
                .framing,
            BodyFraming::Length(3)
        ));
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        ] {
            assert!(
                matches!(answer_of(raw, &get), Err(WireError::ContentLength)),
                "{raw}"
            );
        }
    }

    #[test]
    fn heads_are_parsed_when_complete_and_refused_when_invalid_or_huge() {
        assert!(parse(b"HTTP/1.1 200 OK\r\nA: b\r\n").unwrap().is_none());
        assert!(matches!(
            parse(b"HTTP/1.1 2000 OK\r\n\r\n"),
            Err(WireError::Head(_))
        ));
        assert!(matches!(
            parse(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(WireError::Head(_))
        ));
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD_BYTES));
        assert!(matches!(
            parse(huge.as_bytes()),
            Err(WireError::HeadTooLarge)
        ));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert!(parse(format!("HTTP/1.1 200 OK\r\n{many}\r\n").as_bytes()).is_err());
        let interim = parse(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap().unwrap();
        assert!(interim.is_interim());
        assert_eq!(interim.len(), 25);
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_reads_look_like() {
        let raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: dropped\r\n\r\n";
        for step in [1, 2, 3, 7, 1000] {
            assert_eq!(
                body_of(raw, step).unwrap(),
                (b"hello world".to_vec(), true),
                "step {step}"
            );
        }
        // Cut short: no end.
        let cut = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel";
        assert_eq!(body_of(cut, 2).unwrap(), (b"hel".to_vec(), false));
        for bad in [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX0\r\n\r\n",
        ] {
            assert!(
                matches!(body_of(bad, 1000), Err(WireError::Chunked(_))),
                "{bad}"
            );
        }
        let endless_size = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;{}",
            "x".repeat(2 * MAX_CHUNK_LINE_BYTES)
        );
        assert!(body_of(&endless_size, 100_000).is_err());
        let endless_trailers = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n{}",
            "X: y\r\n".repeat(MAX_TRAILER_BYTES)
        );
        assert!(body_of(&endless_trailers, 4096).is_err());
    }

    #[test]
    fn length_bodies_end_at_their_length() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
        assert_eq!(body_of(raw, 3).unwrap(), (b"hello".to_vec(), true));
    }
}
