//! A deliberately minimal HTTP/1.1 keep-alive client over one `TcpStream`.
//!
//! The generator must never be the bottleneck, so a request is one `write_all` of bytes
//! the caller built, and a response is parsed in place with `httparse` (hyper's parser);
//! bodies are skipped, never copied. Only what the benchmark needs is extracted: the
//! status, one authentication challenge, the first `Set-Cookie`, and `Connection: close`.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_HEADERS: usize = 64;
const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug)]
pub enum HttpError {
    Io(io::Error),
    /// The server closed the connection before a whole response arrived.
    Closed,
    Parse,
    TooLarge,
}

impl HttpError {
    pub fn kind(&self) -> &'static str {
        match self {
            HttpError::Io(e) if e.kind() == io::ErrorKind::ConnectionReset => "reset",
            HttpError::Io(_) => "io",
            HttpError::Closed => "closed",
            HttpError::Parse => "parse",
            HttpError::TooLarge => "too_large",
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Io(e) => write!(f, "i/o error: {e}"),
            HttpError::Closed => f.write_str("connection closed mid-response"),
            HttpError::Parse => f.write_str("malformed HTTP response"),
            HttpError::TooLarge => f.write_str("response head too large"),
        }
    }
}

impl From<io::Error> for HttpError {
    fn from(e: io::Error) -> Self {
        HttpError::Io(e)
    }
}

#[derive(Debug, Default)]
pub struct Response {
    pub status: u16,
    /// Token of the first `WWW-Authenticate: <scheme> <token>` whose scheme matched the
    /// one asked for.
    pub challenge: Option<String>,
    /// `name=value` of the first `Set-Cookie`.
    pub set_cookie: Option<String>,
    /// The server will close the connection after this response.
    pub close: bool,
}

enum Body {
    Length(usize),
    Chunked,
    UntilClose,
}

pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(8192),
        })
    }

    /// Reads more bytes into the buffer; EOF is an error (`Closed`).
    async fn fill(&mut self) -> Result<(), HttpError> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(8192);
        }
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(HttpError::Closed);
        }
        Ok(())
    }

    /// Sends `req` (a complete request) and reads one response.
    /// `challenge_scheme` (e.g. `"NTLM"`) selects which `WWW-Authenticate` token to keep.
    pub async fn exchange(
        &mut self,
        req: &[u8],
        challenge_scheme: Option<&str>,
    ) -> Result<Response, HttpError> {
        self.stream.write_all(req).await?;
        let (head_len, body, resp) = loop {
            if !self.buf.is_empty() {
                if let Some(parsed) = parse_head(&self.buf, challenge_scheme)? {
                    break parsed;
                }
                if self.buf.len() > MAX_HEAD {
                    return Err(HttpError::TooLarge);
                }
            }
            self.fill().await?;
        };
        let end = match body {
            Body::Length(n) => {
                let end = head_len + n;
                while self.buf.len() < end {
                    self.fill().await?;
                }
                end
            }
            Body::Chunked => self.skip_chunked(head_len).await?,
            Body::UntilClose => {
                loop {
                    match self.fill().await {
                        Ok(()) => {}
                        Err(HttpError::Closed) => break,
                        Err(e) => return Err(e),
                    }
                }
                self.buf.len()
            }
        };
        if end >= self.buf.len() {
            self.buf.clear();
        } else {
            self.buf.drain(..end);
        }
        Ok(resp)
    }

    /// Returns the offset just past the chunked body that starts at `pos`.
    async fn skip_chunked(&mut self, mut pos: usize) -> Result<usize, HttpError> {
        loop {
            let line_end = self.line_end(pos).await?;
            let line = self.buf.get(pos..line_end).ok_or(HttpError::Parse)?;
            let hex: Vec<u8> = line
                .iter()
                .copied()
                .take_while(|b| b.is_ascii_hexdigit())
                .collect();
            let hex = std::str::from_utf8(&hex).map_err(|_| HttpError::Parse)?;
            let size = usize::from_str_radix(hex, 16).map_err(|_| HttpError::Parse)?;
            pos = line_end + 2;
            if size == 0 {
                // Trailer section: header lines until an empty line.
                loop {
                    let end = self.line_end(pos).await?;
                    let empty = end == pos;
                    pos = end + 2;
                    if empty {
                        return Ok(pos);
                    }
                }
            }
            let need = pos + size + 2;
            while self.buf.len() < need {
                self.fill().await?;
            }
            pos = need;
        }
    }

    /// Offset of the next CRLF at or after `pos`, reading more as needed.
    async fn line_end(&mut self, pos: usize) -> Result<usize, HttpError> {
        loop {
            if let Some(tail) = self.buf.get(pos..) {
                if let Some(i) = tail.windows(2).position(|w| w == b"\r\n") {
                    return Ok(pos + i);
                }
            }
            if self.buf.len() > pos + MAX_HEAD {
                return Err(HttpError::TooLarge);
            }
            self.fill().await?;
        }
    }
}

fn parse_head(
    buf: &[u8],
    challenge_scheme: Option<&str>,
) -> Result<Option<(usize, Body, Response)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut headers);
    let head_len = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(HttpError::Parse),
    };
    let status = r.code.ok_or(HttpError::Parse)?;
    let mut resp = Response {
        status,
        close: r.version == Some(0),
        ..Response::default()
    };
    let mut length = None;
    let mut chunked = false;
    for h in r.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).map_err(|_| HttpError::Parse)?;
            length = Some(v.trim().parse::<usize>().map_err(|_| HttpError::Parse)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = contains_token(h.value, b"chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            if contains_token(h.value, b"close") {
                resp.close = true;
            } else if contains_token(h.value, b"keep-alive") {
                resp.close = false;
            }
        } else if name.eq_ignore_ascii_case("set-cookie") {
            if resp.set_cookie.is_none() {
                let v = String::from_utf8_lossy(h.value);
                let pair = v.split(';').next().unwrap_or("").trim().to_string();
                if !pair.is_empty() {
                    resp.set_cookie = Some(pair);
                }
            }
        } else if name.eq_ignore_ascii_case("www-authenticate") && resp.challenge.is_none() {
            if let Some(scheme) = challenge_scheme {
                let v = String::from_utf8_lossy(h.value);
                let mut parts = v.trim().splitn(2, ' ');
                if parts.next().is_some_and(|s| s.eq_ignore_ascii_case(scheme)) {
                    resp.challenge = Some(parts.next().unwrap_or("").trim().to_string());
                }
            }
        }
    }
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        Body::Length(0)
    } else if chunked {
        Body::Chunked
    } else if let Some(n) = length {
        Body::Length(n)
    } else {
        resp.close = true;
        Body::UntilClose
    };
    Ok(Some((head_len, body, resp)))
}

fn contains_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_head_with_challenge_and_cookie() {
        let raw = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Negotiate\r\nWWW-Authenticate: NTLM TlRMTVNT\r\nSet-Cookie: s=abc; path=/; HttpOnly\r\nContent-Length: 3\r\n\r\nabc";
        let (n, body, resp) = parse_head(raw, Some("NTLM")).unwrap().unwrap();
        assert_eq!(n, raw.len() - 3);
        assert!(matches!(body, Body::Length(3)));
        assert_eq!(resp.status, 401);
        assert_eq!(resp.challenge.as_deref(), Some("TlRMTVNT"));
        assert_eq!(resp.set_cookie.as_deref(), Some("s=abc"));
        assert!(!resp.close);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le", None)
            .unwrap()
            .is_none());
    }
}
