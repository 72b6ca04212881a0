//! Our own SASL GSSAPI security layer for a Kerberos bind over plain `ldap://`
//! (RFC 4752, RFC 4422 §3.7), underneath `ldap3`.
//!
//! `ldap3` 0.12 can seal a connection itself, but its decoder loses LDAP messages when
//! one SASL buffer holds several messages and the next buffer has already arrived (it
//! keeps the rest of the first only when nothing follows), and fails on a read that
//! ends inside the 4-octet length. Several lookups in flight on one connection hit
//! that: a search whose `SearchResultDone` was dropped never finishes. So on plain
//! LDAP the bind and the layer are ours:
//!
//! 1. connect to the server, run the bind's LDAP messages ourselves (`iwa_proto::ldap`),
//!    with the Kerberos context from our GSSAPI module (mutual authentication, sequence,
//!    integrity and confidentiality);
//! 2. insist on the confidentiality layer (RFC 4752 bit 4): a directory that offers
//!    none is an error, never a silent fallback to clear text;
//! 3. hand `ldap3` one end of a Unix socket pair (an `ldapi://` connection); a task
//!    seals what `ldap3` writes into SASL buffers no larger than the server accepts,
//!    and opens the server's buffers (each bounded by what we announced, each required
//!    to be sealed) back into the plain LDAP byte stream.
//!
//! Over `ldaps://` or StartTLS there is no SASL layer (TLS protects the connection),
//! and `ldap3`'s own bind, with the TLS channel binding, is used unchanged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use iwa_proto::ldap::{
    decode_bind_response, decode_security_offer, layer, message_length, sasl_bind_request,
    sasl_frame_length, security_choice, BindResponse, MAX_BIND_MESSAGE, SASL_BIND_IN_PROGRESS,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, warn};

use super::DirectoryError;
use crate::gss::{InitStep, InitiatorCred, SecContext, GSS_C_CONF_FLAG, GSS_C_INTEG_FLAG};

/// The largest SASL buffer we accept from the server, and announce (RFC 4752 §3.3).
/// Far above what a group lookup needs; bounds the memory of one buffer.
pub(super) const MAX_RECEIVE: usize = 4 * 1024 * 1024;

/// The most plain bytes sealed into one outgoing buffer (also capped by what the
/// server accepts).
const MAX_SEND_CHUNK: usize = 64 * 1024;

/// Binds with SASL GSSAPI as the owner of `cred` to `spn` on `host:port`, sets up the
/// confidentiality layer, and returns the plain end of the sealed connection for
/// `ldap3` (`ldapi://` with this stream). `who` names the client principal in errors.
pub(super) async fn bind_sealed(
    host: &str,
    port: u16,
    connect_timeout: Duration,
    cred: InitiatorCred,
    spn: &str,
    who: &str,
) -> Result<std::os::unix::net::UnixStream, DirectoryError> {
    let mut tcp =
        match tokio::time::timeout(connect_timeout, TcpStream::connect((host, port))).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(DirectoryError::Unavailable(format!(
                    "connecting to {host}:{port}: {e}"
                )))
            }
            Err(_) => return Err(DirectoryError::Timeout(connect_timeout)),
        };
    let _ = tcp.set_nodelay(true);
    let mut conn = BindConn {
        tcp: &mut tcp,
        buf: Vec::new(),
        next_id: 1,
    };
    let gss = |e: crate::gss::GssError| {
        DirectoryError::Kerberos(format!("SASL GSSAPI bind as {who} to {spn}: {e}"))
    };

    // The context's first leg may still ask the KDC: off the runtime.
    let target = spn.to_owned();
    let first = tokio::task::spawn_blocking(move || cred.initiate(&target))
        .await
        .map_err(|e| DirectoryError::Kerberos(format!("the Kerberos thread failed: {e}")))?
        .map_err(gss)?;
    let (mut ctx, flags) = {
        let mut step = first;
        loop {
            match step {
                InitStep::Continue(init, token) => {
                    let creds = conn.leg(Some(&token), who).await?;
                    step = init.step(&creds).map_err(gss)?;
                }
                InitStep::Complete(ctx, flags, token) => {
                    if let Some(token) = token {
                        // A last token for the server (not Kerberos' way, but allowed).
                        conn.leg(Some(&token), who).await?;
                    }
                    break (ctx, flags);
                }
            }
        }
    };
    if flags & (GSS_C_CONF_FLAG | GSS_C_INTEG_FLAG) != GSS_C_CONF_FLAG | GSS_C_INTEG_FLAG {
        return Err(DirectoryError::Kerberos(format!(
            "the Kerberos context to {spn} has no confidentiality (flags {flags:#x})"
        )));
    }

    // RFC 4752 §3.1: an empty response; the server answers with its wrapped offer.
    let offer = conn.leg(None, who).await?;
    let (offer, _) = ctx.unwrap(&offer).map_err(gss)?;
    let offer = decode_security_offer(&offer)
        .map_err(|e| DirectoryError::Protocol(format!("SASL GSSAPI bind: {e}")))?;
    if offer.layers & layer::CONFIDENTIALITY == 0 {
        return Err(DirectoryError::Bind(format!(
            "the directory offers no SASL confidentiality layer (layers {:#x}), so a \
             Kerberos bind over plain ldap:// would leave every lookup in clear; use \
             ldaps:// or StartTLS",
            offer.layers
        )));
    }
    let choice = security_choice(layer::CONFIDENTIALITY, MAX_RECEIVE as u32);
    let wrapped = ctx.wrap(false, &choice).map_err(gss)?;
    let raw = conn.send_bind(Some(&wrapped)).await?;
    let done = conn.answer(&raw)?;
    if done.result_code != 0 {
        return Err(bind_refused(&done, who));
    }
    let limit = match offer.max_size {
        0 => 0,
        max => ctx.wrap_size_limit(true, max).map_err(gss)?,
    };
    let chunk = (limit as usize).min(MAX_SEND_CHUNK);
    if chunk == 0 {
        return Err(DirectoryError::Protocol(format!(
            "the directory's SASL buffer size {} leaves no room for data",
            offer.max_size
        )));
    }
    let leftover = std::mem::take(&mut conn.buf);
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| DirectoryError::Unavailable(format!("a socket pair: {e}")))?;
    ours.set_nonblocking(true)
        .and_then(|()| theirs.set_nonblocking(true))
        .map_err(|e| DirectoryError::Unavailable(format!("a socket pair: {e}")))?;
    let ours = tokio::net::UnixStream::from_std(ours)
        .map_err(|e| DirectoryError::Unavailable(format!("a socket pair: {e}")))?;
    debug!(%spn, chunk, server_max = offer.max_size, "SASL GSSAPI bind done, sealing");
    tokio::spawn(relay(ours, tcp, ctx, chunk, leftover, spn.to_owned()));
    Ok(theirs)
}

fn bind_refused(r: &BindResponse<'_>, who: &str) -> DirectoryError {
    let text = r.diagnostic_text();
    DirectoryError::Bind(format!(
        "result code {} for a SASL GSSAPI bind as {who}{}",
        r.result_code,
        if text.is_empty() {
            String::new()
        } else {
            format!(" ({text})")
        }
    ))
}

/// The bind's plain LDAP exchange on the TCP connection.
struct BindConn<'a> {
    tcp: &'a mut TcpStream,
    /// Bytes read but not yet used.
    buf: Vec<u8>,
    next_id: u32,
}

impl BindConn<'_> {
    /// Sends a SASL GSSAPI bind with `credentials` and returns the raw answer.
    async fn send_bind(&mut self, credentials: Option<&[u8]>) -> Result<Vec<u8>, DirectoryError> {
        let id = self.next_id;
        self.next_id += 1;
        let req = sasl_bind_request(id, "GSSAPI", credentials);
        self.tcp
            .write_all(&req)
            .await
            .map_err(|e| DirectoryError::Unavailable(format!("sending the bind: {e}")))?;
        self.read_message().await
    }

    /// Decodes `raw` as the answer to the last bind.
    fn answer<'r>(&self, raw: &'r [u8]) -> Result<BindResponse<'r>, DirectoryError> {
        let r = decode_bind_response(raw)
            .map_err(|e| DirectoryError::Protocol(format!("SASL GSSAPI bind: {e}")))?;
        if r.message_id != self.next_id - 1 {
            return Err(DirectoryError::Protocol(format!(
                "SASL GSSAPI bind: the answer is for message {}, not {}",
                r.message_id,
                self.next_id - 1
            )));
        }
        Ok(r)
    }

    /// One leg that must be answered with "in progress" and the server's token.
    async fn leg(
        &mut self,
        credentials: Option<&[u8]>,
        who: &str,
    ) -> Result<Vec<u8>, DirectoryError> {
        let raw = self.send_bind(credentials).await?;
        let r = self.answer(&raw)?;
        match (r.result_code, r.server_sasl_creds) {
            (SASL_BIND_IN_PROGRESS, Some(t)) => Ok(t.to_vec()),
            (SASL_BIND_IN_PROGRESS, None) => Err(DirectoryError::Protocol(
                "the server sent no GSSAPI token in the SASL bind".into(),
            )),
            (0, _) => Err(DirectoryError::Protocol(
                "the server ended the SASL GSSAPI bind before agreeing on a security layer".into(),
            )),
            _ => Err(bind_refused(&r, who)),
        }
    }

    async fn read_message(&mut self) -> Result<Vec<u8>, DirectoryError> {
        loop {
            let need = message_length(&self.buf, MAX_BIND_MESSAGE)
                .map_err(|e| DirectoryError::Protocol(format!("SASL GSSAPI bind: {e}")))?;
            if let Some(n) = need {
                if self.buf.len() >= n {
                    let rest = self.buf.split_off(n);
                    return Ok(std::mem::replace(&mut self.buf, rest));
                }
            }
            let mut chunk = [0u8; 8192];
            let got = self.tcp.read(&mut chunk).await.map_err(|e| {
                DirectoryError::Unavailable(format!("reading the bind answer: {e}"))
            })?;
            if got == 0 {
                return Err(DirectoryError::Unavailable(
                    "the directory closed the connection during the SASL GSSAPI bind".into(),
                ));
            }
            self.buf.extend_from_slice(&chunk[..got]);
        }
    }
}

/// Why the relay stopped.
#[derive(Debug)]
enum End {
    /// A side closed the connection at a buffer boundary: the normal end.
    Closed(&'static str),
    Io(&'static str, std::io::Error),
    /// The server broke the SASL layer (a buffer too large, not sealed, or not
    /// opening with our context): worth a warning.
    Layer(String),
}

/// Moves bytes between `ldap3` (`app`, plain) and the server (`tcp`, SASL buffers)
/// until either side closes or fails; then both are closed, which `ldap3` sees as a
/// closed connection (and the directory opens a new one on its next lookup).
async fn relay(
    app: tokio::net::UnixStream,
    tcp: TcpStream,
    ctx: SecContext,
    chunk: usize,
    leftover: Vec<u8>,
    spn: String,
) {
    let ctx = Arc::new(Mutex::new(ctx));
    let (mut app_r, mut app_w) = app.into_split();
    let (mut tcp_r, mut tcp_w) = tcp.into_split();
    let out_ctx = ctx.clone();
    let outbound = async move {
        let mut plain = vec![0u8; chunk];
        loop {
            let n = match app_r.read(&mut plain).await {
                Ok(0) => return End::Closed("the LDAP client"),
                Ok(n) => n,
                Err(e) => return End::Io("reading from the LDAP client", e),
            };
            let sealed = match lock(&out_ctx).wrap(true, &plain[..n]) {
                Ok(t) => t,
                Err(e) => return End::Layer(format!("gss_wrap: {e}")),
            };
            let Ok(len) = u32::try_from(sealed.len()) else {
                return End::Layer(format!("a sealed buffer of {} bytes", sealed.len()));
            };
            let mut frame = Vec::with_capacity(4 + sealed.len());
            frame.extend_from_slice(&len.to_be_bytes());
            frame.extend_from_slice(&sealed);
            if let Err(e) = tcp_w.write_all(&frame).await {
                return End::Io("writing to the directory", e);
            }
        }
    };
    let inbound = async move {
        let mut pending = std::io::Cursor::new(leftover);
        loop {
            let mut header = [0u8; 4];
            match read_exact_from(&mut pending, &mut tcp_r, &mut header).await {
                Ok(true) => {}
                Ok(false) => return End::Closed("the directory"),
                Err(e) => return End::Io("reading from the directory", e),
            }
            let len = match sasl_frame_length(header, MAX_RECEIVE) {
                Ok(l) => l,
                Err(e) => return End::Layer(e.to_string()),
            };
            let mut frame = vec![0u8; len];
            match read_exact_from(&mut pending, &mut tcp_r, &mut frame).await {
                Ok(true) => {}
                Ok(false) => {
                    return End::Layer(format!(
                        "the directory closed the connection inside a SASL buffer of {len} bytes"
                    ))
                }
                Err(e) => return End::Io("reading from the directory", e),
            }
            let (plain, sealed) = match lock(&ctx).unwrap(&frame) {
                Ok(p) => p,
                Err(e) => return End::Layer(format!("gss_unwrap: {e}")),
            };
            if !sealed {
                return End::Layer(
                    "the directory sent a SASL buffer that is signed but not encrypted".into(),
                );
            }
            if let Err(e) = app_w.write_all(&plain).await {
                return End::Io("writing to the LDAP client", e);
            }
        }
    };
    let end = tokio::select! {
        e = outbound => e,
        e = inbound => e,
    };
    match end {
        End::Closed(who) => debug!(%spn, "sealed LDAP connection closed by {who}"),
        End::Io(what, e) => debug!(%spn, "sealed LDAP connection ended {what}: {e}"),
        End::Layer(why) => {
            warn!(%spn, "the directory broke the SASL security layer: {why}; connection closed")
        }
    }
}

fn lock(ctx: &Mutex<SecContext>) -> std::sync::MutexGuard<'_, SecContext> {
    ctx.lock().unwrap_or_else(|p| p.into_inner())
}

/// Fills `out` from what is left of `pending`, then from `r`. `Ok(false)` when the
/// stream ends before the first byte of `out`; an error when it ends inside it.
async fn read_exact_from(
    pending: &mut std::io::Cursor<Vec<u8>>,
    r: &mut (impl AsyncReadExt + Unpin),
    out: &mut [u8],
) -> std::io::Result<bool> {
    let mut filled = std::io::Read::read(pending, out)?;
    while filled < out.len() {
        let n = r.read(&mut out[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(false);
            }
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
    }
    Ok(true)
}
