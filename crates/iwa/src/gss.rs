//! The one module where iwa calls MIT GSSAPI. Every `unsafe` block of the crate lives
//! here, each with a `SAFETY:` comment; every C handle has an owner type that frees it
//! in `Drop`. Nothing here parses network bytes: callers hand in tokens that
//! `iwa_proto` has already framed and bounded.

use std::ffi::CString;
use std::fmt;
use std::os::raw::c_void;
use std::path::Path;
use std::ptr;

use libgssapi_sys as sys;

/// DER content of the Kerberos v5 mechanism OID 1.2.840.113554.1.2.2 (RFC 1964).
const KRB5_MECH_OID: &[u8] = b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02";
/// DER content of GSS_KRB5_NT_PRINCIPAL_NAME, 1.2.840.113554.1.2.2.1 (RFC 1964 §2.1.1).
const KRB5_NT_PRINCIPAL_OID: &[u8] = b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02\x01";

/// GSS context flag set when the initiator's channel bindings matched ours
/// (`GSS_C_CHANNEL_BOUND_FLAG` in MIT krb5 ≥ 1.19).
pub const CHANNEL_BOUND_FLAG: u32 = 0x800;

/// A GSSAPI failure: the major and minor status words plus MIT's own text for both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GssError {
    pub major: u32,
    pub minor: u32,
    /// What MIT's `gss_display_status` says, major then minor.
    pub message: String,
}

impl fmt::Display for GssError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for GssError {}

/// The routine-error part of a major status (RFC 2744 §3.9.1).
pub const fn routine_error(major: u32) -> u32 {
    major & (0xff << 16)
}

pub mod major {
    //! Routine errors (already shifted), RFC 2744 §3.9.1.
    pub const BAD_MECH: u32 = 1 << 16;
    pub const BAD_NAME: u32 = 2 << 16;
    pub const BAD_BINDINGS: u32 = 4 << 16;
    pub const BAD_SIG: u32 = 6 << 16;
    pub const NO_CRED: u32 = 7 << 16;
    pub const DEFECTIVE_TOKEN: u32 = 9 << 16;
    pub const DEFECTIVE_CREDENTIAL: u32 = 10 << 16;
    pub const CREDENTIALS_EXPIRED: u32 = 11 << 16;
    pub const FAILURE: u32 = 13 << 16;
    /// Supplementary bit: the token was a duplicate of an earlier one.
    pub const DUPLICATE_TOKEN_INFO: u32 = 1 << 1;
    pub const CONTINUE_NEEDED: u32 = 1;
}

fn status_text(code: u32, kind: i32, mech: sys::gss_OID) -> String {
    let mut out = String::new();
    let mut ctx: sys::OM_uint32 = 0;
    // MIT returns one message per call; bound the loop in case a broken mech never
    // clears the context.
    for _ in 0..8 {
        let mut minor: sys::OM_uint32 = 0;
        let mut buf = empty_buffer();
        // SAFETY: all pointers are valid for the duration of the call; `buf` is
        // released below with gss_release_buffer, as the API requires.
        let major =
            unsafe { sys::gss_display_status(&mut minor, code, kind, mech, &mut ctx, &mut buf) };
        if major != 0 {
            break;
        }
        if !out.is_empty() {
            out.push_str("; ");
        }
        // SAFETY: on success `buf` holds `length` readable bytes owned by GSSAPI.
        out.push_str(&String::from_utf8_lossy(unsafe { buffer_bytes(&buf) }));
        // SAFETY: `buf` came from gss_display_status.
        unsafe { sys::gss_release_buffer(&mut minor, &mut buf) };
        if ctx == 0 {
            break;
        }
    }
    out
}

fn gss_error(major: u32, minor: u32) -> GssError {
    let mut oid = oid_desc(KRB5_MECH_OID);
    let major_text = status_text(major, sys::GSS_C_GSS_CODE as i32, ptr::null_mut());
    let minor_text = if minor != 0 {
        status_text(minor, sys::GSS_C_MECH_CODE as i32, &mut oid)
    } else {
        String::new()
    };
    let message = match (major_text.is_empty(), minor_text.is_empty()) {
        (_, true) => major_text,
        (true, false) => minor_text,
        (false, false) => format!("{major_text}: {minor_text}"),
    };
    GssError {
        major,
        minor,
        message,
    }
}

fn empty_buffer() -> sys::gss_buffer_desc {
    sys::gss_buffer_desc {
        length: 0,
        value: ptr::null_mut(),
    }
}

/// # Safety
/// `buf` must describe `length` readable bytes (or be empty) that outlive the slice.
unsafe fn buffer_bytes(buf: &sys::gss_buffer_desc) -> &[u8] {
    if buf.value.is_null() || buf.length == 0 {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(buf.value as *const u8, buf.length) }
    }
}

/// A `gss_OID_desc` that borrows a static byte string. GSSAPI only reads through it.
fn oid_desc(bytes: &'static [u8]) -> sys::gss_OID_desc {
    sys::gss_OID_desc {
        length: bytes.len() as sys::OM_uint32,
        elements: bytes.as_ptr() as *mut c_void,
    }
}

/// A buffer GSSAPI allocated; freed on drop.
struct OwnedBuffer(sys::gss_buffer_desc);

impl OwnedBuffer {
    fn new() -> Self {
        OwnedBuffer(empty_buffer())
    }
    fn to_vec(&self) -> Vec<u8> {
        // SAFETY: the buffer is either empty or was filled by GSSAPI and not yet freed.
        unsafe { buffer_bytes(&self.0) }.to_vec()
    }
    fn is_empty(&self) -> bool {
        self.0.length == 0
    }
}

impl Drop for OwnedBuffer {
    fn drop(&mut self) {
        if !self.0.value.is_null() {
            let mut minor = 0;
            // SAFETY: the buffer was allocated by GSSAPI and is released once.
            unsafe { sys::gss_release_buffer(&mut minor, &mut self.0) };
        }
    }
}

/// A GSS name; released on drop.
struct OwnedName(sys::gss_name_t);

impl OwnedName {
    fn import(text: &str, name_type: &'static [u8]) -> Result<Self, GssError> {
        let mut oid = oid_desc(name_type);
        let mut buf = sys::gss_buffer_desc {
            length: text.len(),
            value: text.as_ptr() as *mut c_void,
        };
        let mut minor = 0;
        let mut name: sys::gss_name_t = ptr::null_mut();
        // SAFETY: `buf` points at `text`, alive for the call; GSSAPI copies it.
        let major = unsafe { sys::gss_import_name(&mut minor, &mut buf, &mut oid, &mut name) };
        if major != 0 {
            return Err(gss_error(major, minor));
        }
        Ok(OwnedName(name))
    }

    /// The first value of name attribute `attr` (RFC 6680), only if the mechanism
    /// marks it authenticated (for the PAC: its signatures verified by MIT).
    fn authenticated_attribute(&self, attr: &str) -> Option<Vec<u8>> {
        let mut attr_buf = sys::gss_buffer_desc {
            length: attr.len(),
            value: attr.as_ptr() as *mut c_void,
        };
        let mut authenticated: i32 = 0;
        let mut complete: i32 = 0;
        let mut more: i32 = -1;
        let mut value = OwnedBuffer::new();
        let mut display = OwnedBuffer::new();
        let mut minor = 0;
        // SAFETY: `attr_buf` borrows `attr` for the call; the out buffers are owned and
        // released by their Drop; `more = -1` asks for the first value.
        let major = unsafe {
            sys::gss_get_name_attribute(
                &mut minor,
                self.0,
                &mut attr_buf,
                &mut authenticated,
                &mut complete,
                &mut value.0,
                &mut display.0,
                &mut more,
            )
        };
        (major == 0 && authenticated != 0).then(|| value.to_vec())
    }

    fn display(&self) -> Result<String, GssError> {
        let mut minor = 0;
        let mut out = OwnedBuffer::new();
        // SAFETY: `self.0` is a valid name; `out` is released by its Drop.
        let major =
            unsafe { sys::gss_display_name(&mut minor, self.0, &mut out.0, ptr::null_mut()) };
        if major != 0 {
            return Err(gss_error(major, minor));
        }
        String::from_utf8(out.to_vec()).map_err(|_| GssError {
            major: major::BAD_NAME,
            minor: 0,
            message: "the client principal name is not valid UTF-8".into(),
        })
    }
}

impl Drop for OwnedName {
    fn drop(&mut self) {
        if !self.0.is_null() {
            let mut minor = 0;
            // SAFETY: the name was produced by GSSAPI and is released once.
            unsafe { sys::gss_release_name(&mut minor, &mut self.0) };
        }
    }
}

// ---------------------------------------------------------------------------------
// A few libkrb5 calls (not covered by the GSSAPI bindings): copying the file keytab into
// a MEMORY keytab once, so that accepting a ticket does not open and read the keytab
// file every time (MIT's FILE keytab re-reads the file on every lookup).

#[allow(non_camel_case_types)]
type krb5_context = *mut c_void;
#[allow(non_camel_case_types)]
type krb5_keytab = *mut c_void;
#[allow(non_camel_case_types)]
type krb5_kt_cursor = *mut c_void;

/// `krb5_keyblock` (krb5.h).
#[repr(C)]
struct Krb5Keyblock {
    magic: i32,
    enctype: i32,
    length: u32,
    contents: *mut u8,
}

/// `krb5_keytab_entry` (krb5.h).
#[repr(C)]
struct Krb5KeytabEntry {
    magic: i32,
    principal: *mut c_void,
    timestamp: i32,
    vno: u32,
    key: Krb5Keyblock,
}

#[link(name = "krb5")]
extern "C" {
    fn krb5_init_context(context: *mut krb5_context) -> i32;
    fn krb5_free_context(context: krb5_context);
    fn krb5_kt_resolve(
        context: krb5_context,
        name: *const std::os::raw::c_char,
        kt: *mut krb5_keytab,
    ) -> i32;
    fn krb5_kt_start_seq_get(
        context: krb5_context,
        kt: krb5_keytab,
        cursor: *mut krb5_kt_cursor,
    ) -> i32;
    fn krb5_kt_next_entry(
        context: krb5_context,
        kt: krb5_keytab,
        entry: *mut Krb5KeytabEntry,
        cursor: *mut krb5_kt_cursor,
    ) -> i32;
    fn krb5_kt_end_seq_get(
        context: krb5_context,
        kt: krb5_keytab,
        cursor: *mut krb5_kt_cursor,
    ) -> i32;
    fn krb5_kt_add_entry(
        context: krb5_context,
        kt: krb5_keytab,
        entry: *mut Krb5KeytabEntry,
    ) -> i32;
    fn krb5_free_keytab_entry_contents(context: krb5_context, entry: *mut Krb5KeytabEntry) -> i32;
    fn krb5_kt_close(context: krb5_context, kt: krb5_keytab) -> i32;
    fn krb5_get_error_message(context: krb5_context, code: i32) -> *const std::os::raw::c_char;
    fn krb5_free_error_message(context: krb5_context, msg: *const std::os::raw::c_char);
}

/// `KRB5_KT_END`: no more entries.
const KRB5_KT_END: i32 = -1765328202;

/// A process-lifetime copy of a keytab in MIT's MEMORY keytab type. MIT keeps MEMORY
/// keytabs in a process-global list while a handle is open; we hold one for as long as
/// the acceptor credential that uses it.
#[derive(Debug)]
pub struct MemoryKeytab {
    context: krb5_context,
    keytab: krb5_keytab,
    /// `MEMORY:iwa-<pid>-<n>`, for the credential store.
    pub name: String,
    /// How many keys were copied.
    pub entries: usize,
}

// SAFETY: the context and keytab handle are used only in Drop (and in `load`, before the
// value exists); MIT's MEMORY keytab list is internally locked.
unsafe impl Send for MemoryKeytab {}
// SAFETY: `&MemoryKeytab` exposes no operation on the handles.
unsafe impl Sync for MemoryKeytab {}

fn krb5_error(context: krb5_context, code: i32, what: &str) -> GssError {
    // SAFETY: `context` is a live context; the message is freed with the matching call.
    let text = unsafe {
        let msg = krb5_get_error_message(context, code);
        if msg.is_null() {
            format!("error {code}")
        } else {
            let t = std::ffi::CStr::from_ptr(msg).to_string_lossy().into_owned();
            krb5_free_error_message(context, msg);
            t
        }
    };
    GssError {
        major: major::FAILURE,
        minor: code as u32,
        message: format!("{what}: {text}"),
    }
}

impl MemoryKeytab {
    /// Copies every entry of the keytab file `path` into a new MEMORY keytab.
    pub fn load(path: &Path) -> Result<Self, GssError> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "MEMORY:iwa-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let file_name = CString::new(format!("FILE:{}", path.display())).map_err(|_| GssError {
            major: major::FAILURE,
            minor: 0,
            message: "the keytab path contains a NUL byte".into(),
        })?;
        let mem_name = CString::new(name.clone()).map_err(|_| GssError {
            major: major::FAILURE,
            minor: 0,
            message: "bad MEMORY keytab name".into(),
        })?;
        let mut context: krb5_context = ptr::null_mut();
        // SAFETY: out-pointer to a local; freed in Drop (or below on failure).
        let code = unsafe { krb5_init_context(&mut context) };
        if code != 0 {
            return Err(GssError {
                major: major::FAILURE,
                minor: code as u32,
                message: format!("krb5_init_context failed ({code})"),
            });
        }
        let mut me = MemoryKeytab {
            context,
            keytab: ptr::null_mut(),
            name,
            entries: 0,
        };
        let mut file: krb5_keytab = ptr::null_mut();
        // SAFETY: valid context and NUL-terminated names; handles are closed below/Drop.
        unsafe {
            let code = krb5_kt_resolve(me.context, file_name.as_ptr(), &mut file);
            if code != 0 {
                return Err(krb5_error(me.context, code, "cannot open the keytab"));
            }
            let code = krb5_kt_resolve(me.context, mem_name.as_ptr(), &mut me.keytab);
            if code != 0 {
                krb5_kt_close(me.context, file);
                return Err(krb5_error(
                    me.context,
                    code,
                    "cannot create a MEMORY keytab",
                ));
            }
            let result = me.copy_from(file);
            krb5_kt_close(me.context, file);
            result?;
        }
        Ok(me)
    }

    /// # Safety
    /// `file` must be an open keytab handle of `self.context`.
    unsafe fn copy_from(&mut self, file: krb5_keytab) -> Result<(), GssError> {
        let mut cursor: krb5_kt_cursor = ptr::null_mut();
        // SAFETY: guaranteed by the caller; the cursor is ended below.
        let code = unsafe { krb5_kt_start_seq_get(self.context, file, &mut cursor) };
        if code != 0 {
            return Err(krb5_error(self.context, code, "cannot read the keytab"));
        }
        let mut result = Ok(());
        loop {
            let mut entry = Krb5KeytabEntry {
                magic: 0,
                principal: ptr::null_mut(),
                timestamp: 0,
                vno: 0,
                key: Krb5Keyblock {
                    magic: 0,
                    enctype: 0,
                    length: 0,
                    contents: ptr::null_mut(),
                },
            };
            // SAFETY: `entry` is a properly laid-out krb5_keytab_entry owned here; its
            // contents are freed with krb5_free_keytab_entry_contents after the copy.
            let code = unsafe { krb5_kt_next_entry(self.context, file, &mut entry, &mut cursor) };
            if code == KRB5_KT_END {
                break;
            }
            if code != 0 {
                result = Err(krb5_error(self.context, code, "cannot read a keytab entry"));
                break;
            }
            // SAFETY: MEMORY keytabs copy the entry; we then free our copy.
            let add = unsafe { krb5_kt_add_entry(self.context, self.keytab, &mut entry) };
            // SAFETY: the entry was filled by krb5_kt_next_entry.
            unsafe { krb5_free_keytab_entry_contents(self.context, &mut entry) };
            if add != 0 {
                result = Err(krb5_error(self.context, add, "cannot copy a keytab entry"));
                break;
            }
            self.entries += 1;
        }
        // SAFETY: the cursor came from krb5_kt_start_seq_get on `file`.
        unsafe { krb5_kt_end_seq_get(self.context, file, &mut cursor) };
        result
    }
}

impl Drop for MemoryKeytab {
    fn drop(&mut self) {
        // SAFETY: handles were created by `load` and are released once, keytab first.
        unsafe {
            if !self.keytab.is_null() {
                krb5_kt_close(self.context, self.keytab);
            }
            if !self.context.is_null() {
                krb5_free_context(self.context);
            }
        }
    }
}

/// An acceptor credential for the Kerberos mechanism, acquired once from a keytab and
/// shared by every handshake.
#[derive(Debug)]
pub struct AcceptorCred {
    cred: sys::gss_cred_id_t,
    /// The in-memory copy of the keytab the credential reads from; dropped after it.
    _keytab: Option<MemoryKeytab>,
}

// SAFETY: an MIT krb5 credential handle is internally locked and may be used by
// concurrent gss_accept_sec_context calls on different contexts; it is only freed in
// Drop, when no one else holds it.
unsafe impl Send for AcceptorCred {}
// SAFETY: see above; `&AcceptorCred` only ever passes the handle to accept calls.
unsafe impl Sync for AcceptorCred {}

impl AcceptorCred {
    /// Acquires an acceptor credential from `keytab` (copied into memory once). With `principal` (e.g.
    /// `HTTP/web.example.test@EXAMPLE.TEST`) only tickets for that principal are
    /// accepted; without it, any key in the keytab will do. `rcache` names the replay
    /// cache (`dfl:`, `file2:/path`, ...); `None` keeps MIT's default.
    pub fn acquire(
        keytab: &Path,
        principal: Option<&str>,
        rcache: Option<&str>,
    ) -> Result<Self, GssError> {
        let invalid = |what: &str| GssError {
            major: major::FAILURE,
            minor: 0,
            message: format!("{what} contains a NUL byte"),
        };
        let memory = MemoryKeytab::load(keytab)?;
        let keytab_c = CString::new(memory.name.clone()).map_err(|_| invalid("the keytab name"))?;
        let rcache_c = rcache
            .map(CString::new)
            .transpose()
            .map_err(|_| invalid("the replay cache name"))?;
        let key_keytab = c"keytab";
        let key_rcache = c"rcache";
        let mut elements = vec![sys::gss_key_value_element_desc {
            key: key_keytab.as_ptr(),
            value: keytab_c.as_ptr(),
        }];
        if let Some(rc) = &rcache_c {
            elements.push(sys::gss_key_value_element_desc {
                key: key_rcache.as_ptr(),
                value: rc.as_ptr(),
            });
        }
        let store = sys::gss_key_value_set_desc {
            count: elements.len() as sys::OM_uint32,
            elements: elements.as_mut_ptr(),
        };
        let name = principal
            .map(|p| OwnedName::import(p, KRB5_NT_PRINCIPAL_OID))
            .transpose()?;
        let mut mech = oid_desc(KRB5_MECH_OID);
        let mut mechs = sys::gss_OID_set_desc {
            count: 1,
            elements: &mut mech,
        };
        let mut minor = 0;
        let mut cred: sys::gss_cred_id_t = ptr::null_mut();
        // SAFETY: every pointer refers to a local that outlives the call; GSSAPI copies
        // what it keeps. The returned credential is owned by the AcceptorCred below.
        let major = unsafe {
            sys::gss_acquire_cred_from(
                &mut minor,
                name.as_ref().map_or(ptr::null_mut(), |n| n.0),
                0,
                &mut mechs,
                sys::GSS_C_ACCEPT as sys::gss_cred_usage_t,
                &store,
                &mut cred,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if major != 0 {
            return Err(gss_error(major, minor));
        }
        Ok(AcceptorCred {
            cred,
            _keytab: Some(memory),
        })
    }
}

impl Drop for AcceptorCred {
    fn drop(&mut self) {
        if !self.cred.is_null() {
            let mut minor = 0;
            // SAFETY: the credential came from gss_acquire_cred_from; released once.
            unsafe { sys::gss_release_cred(&mut minor, &mut self.cred) };
        }
    }
}

/// An initiator credential for a client principal whose keys are in a client keytab:
/// MIT gets the initial ticket (TGT) from the keytab by itself, into the `MEMORY:`
/// credential cache named at acquisition, when a context needs one and the cache has
/// none (or it is due for refresh). Explicit credential-store elements (`client_keytab`,
/// `ccache`), so neither the process environment (`KRB5CCNAME`, `KRB5_CLIENT_KTNAME`)
/// nor the user's default ccache is read or changed. For SASL GSSAPI binds to LDAP.
pub struct InitiatorCred {
    cred: sys::gss_cred_id_t,
}

impl fmt::Debug for InitiatorCred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitiatorCred").finish_non_exhaustive()
    }
}

// SAFETY: an MIT krb5 credential handle is internally locked; InitiatorCred only uses
// it through `&self` in calls MIT serializes, and frees it in Drop (or hands it on in
// `into_ldap_cred`), when no one else holds it.
unsafe impl Send for InitiatorCred {}
// SAFETY: see above.
unsafe impl Sync for InitiatorCred {}

/// `GSS_C_MUTUAL_FLAG` (RFC 2744).
const GSS_C_MUTUAL_FLAG: sys::OM_uint32 = 2;

impl InitiatorCred {
    /// Acquires the credential of `principal` (`websvc@EXAMPLE.TEST`) with the keys of
    /// the keytab file `client_keytab` and the credential cache `ccache`
    /// (`MEMORY:name`: private to this process). Local only: MIT checks the keytab holds
    /// a key for the principal, and talks to no KDC yet.
    pub fn acquire(client_keytab: &Path, principal: &str, ccache: &str) -> Result<Self, GssError> {
        let invalid = |what: &str| GssError {
            major: major::FAILURE,
            minor: 0,
            message: format!("{what} contains a NUL byte"),
        };
        let keytab_c = CString::new(format!("FILE:{}", client_keytab.display()))
            .map_err(|_| invalid("the keytab path"))?;
        let ccache_c = CString::new(ccache).map_err(|_| invalid("the ccache name"))?;
        let key_keytab = c"client_keytab";
        let key_ccache = c"ccache";
        let mut elements = [
            sys::gss_key_value_element_desc {
                key: key_keytab.as_ptr(),
                value: keytab_c.as_ptr(),
            },
            sys::gss_key_value_element_desc {
                key: key_ccache.as_ptr(),
                value: ccache_c.as_ptr(),
            },
        ];
        let store = sys::gss_key_value_set_desc {
            count: elements.len() as sys::OM_uint32,
            elements: elements.as_mut_ptr(),
        };
        let name = OwnedName::import(principal, KRB5_NT_PRINCIPAL_OID)?;
        let mut mech = oid_desc(KRB5_MECH_OID);
        let mut mechs = sys::gss_OID_set_desc {
            count: 1,
            elements: &mut mech,
        };
        let mut minor = 0;
        let mut cred: sys::gss_cred_id_t = ptr::null_mut();
        // SAFETY: every pointer refers to a local that outlives the call; GSSAPI copies
        // what it keeps. The returned credential is owned by the InitiatorCred below.
        let major = unsafe {
            sys::gss_acquire_cred_from(
                &mut minor,
                name.0,
                0,
                &mut mechs,
                sys::GSS_C_INITIATE as sys::gss_cred_usage_t,
                &store,
                &mut cred,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if major != 0 {
            return Err(gss_error(major, minor));
        }
        Ok(InitiatorCred { cred })
    }

    /// Establishes (and discards) the first leg of a context to `target`
    /// (`ldap/dc1.example.test@EXAMPLE.TEST`, a Kerberos principal name): MIT gets the
    /// TGT (from the keytab) and the service ticket into the credential cache, so a
    /// context made next with this credential needs no KDC. Blocking (KDC round trips
    /// under MIT's own timeouts): call it off the async runtime.
    pub fn fetch_service_ticket(&self, target: &str) -> Result<(), GssError> {
        let name = OwnedName::import(target, KRB5_NT_PRINCIPAL_OID)?;
        let mut mech = oid_desc(KRB5_MECH_OID);
        let mut ctx: sys::gss_ctx_id_t = ptr::null_mut();
        let mut output = OwnedBuffer::new();
        let mut minor = 0;
        // SAFETY: the credential and name are live handles; the context and output
        // buffer are out-pointers to locals freed below / by OwnedBuffer's Drop. No
        // input token or channel bindings on the first leg.
        let major = unsafe {
            sys::gss_init_sec_context(
                &mut minor,
                self.cred,
                &mut ctx,
                name.0,
                &mut mech,
                GSS_C_MUTUAL_FLAG,
                0,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                &mut output.0,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if !ctx.is_null() {
            let mut m = 0;
            // SAFETY: the half-made context came from gss_init_sec_context; deleted once.
            unsafe { sys::gss_delete_sec_context(&mut m, &mut ctx, ptr::null_mut()) };
        }
        if major & 0xffff_0000 != 0 {
            return Err(gss_error(major, minor));
        }
        Ok(())
    }

    /// Hands the credential to `ldap3`'s SASL GSSAPI bind (`Ldap::sasl_gssapi_cred_bind`),
    /// which takes cross-krb5's credential type; that one frees it when dropped.
    pub fn into_ldap_cred(self) -> cross_krb5::Cred {
        let raw = self.cred;
        std::mem::forget(self);
        // Ownership of the handle moves to libgssapi 0.9's Cred (the same libgssapi-sys
        // handle type), which releases it with gss_release_cred in its Drop.
        cross_krb5::Cred::from(libgssapi_09::credential::Cred::from(raw))
    }
}

/// `GSS_C_SEQUENCE_FLAG`, `GSS_C_CONF_FLAG`, `GSS_C_INTEG_FLAG` (RFC 2744).
const GSS_C_SEQUENCE_FLAG: sys::OM_uint32 = 8;
pub const GSS_C_CONF_FLAG: u32 = 16;
pub const GSS_C_INTEG_FLAG: u32 = 32;

/// A Kerberos context being established as initiator, for a SASL GSSAPI bind with a
/// security layer (RFC 4752): mutual authentication, sequencing, integrity and
/// confidentiality asked for. It owns the credential it was started with.
pub struct Initiating {
    cred: InitiatorCred,
    target: OwnedName,
    ctx: SecContext,
}

impl fmt::Debug for Initiating {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Initiating").finish_non_exhaustive()
    }
}

// SAFETY: the credential, name and context handles are only used through `self`
// (moved, never shared), so never concurrently; MIT handles may change threads.
unsafe impl Send for Initiating {}

/// What one initiator leg produced.
#[derive(Debug)]
pub enum InitStep {
    /// Send the token, wait for the acceptor's answer, then [`Initiating::step`].
    Continue(Initiating, Vec<u8>),
    /// Established: the context, its flags and a last token for the acceptor, if any.
    Complete(SecContext, u32, Option<Vec<u8>>),
}

impl InitiatorCred {
    /// Starts a context to `target` (`ldap/dc1.example.test@EXAMPLE.TEST`, a Kerberos
    /// principal name) and returns it with the first token (the AP-REQ). May talk to
    /// the KDC when the service ticket is not cached yet: call it off the async runtime.
    pub fn initiate(self, target: &str) -> Result<InitStep, GssError> {
        let target = OwnedName::import(target, KRB5_NT_PRINCIPAL_OID)?;
        Initiating {
            cred: self,
            target,
            ctx: SecContext(ptr::null_mut()),
        }
        .leg(None)
    }
}

impl Initiating {
    /// The next leg with the acceptor's `token` (for Kerberos: the AP-REP).
    pub fn step(self, token: &[u8]) -> Result<InitStep, GssError> {
        self.leg(Some(token))
    }

    fn leg(mut self, input: Option<&[u8]>) -> Result<InitStep, GssError> {
        let mut mech = oid_desc(KRB5_MECH_OID);
        let mut input_buf = input.map(|t| sys::gss_buffer_desc {
            length: t.len(),
            value: t.as_ptr() as *mut c_void,
        });
        let input_ptr = input_buf
            .as_mut()
            .map_or(ptr::null_mut(), |b| b as *mut sys::gss_buffer_desc);
        let mut output = OwnedBuffer::new();
        let mut ret_flags: sys::OM_uint32 = 0;
        let mut minor = 0;
        let flags = GSS_C_MUTUAL_FLAG | GSS_C_SEQUENCE_FLAG | GSS_C_CONF_FLAG | GSS_C_INTEG_FLAG;
        // SAFETY: the credential, name and context are live handles owned by `self` (the
        // context starts as GSS_C_NO_CONTEXT and is filled in by MIT); the input buffer
        // borrows `input` for the call; the output buffer is released by OwnedBuffer.
        let major = unsafe {
            sys::gss_init_sec_context(
                &mut minor,
                self.cred.cred,
                &mut self.ctx.0,
                self.target.0,
                &mut mech,
                flags,
                0,
                ptr::null_mut(),
                input_ptr,
                ptr::null_mut(),
                &mut output.0,
                &mut ret_flags,
                ptr::null_mut(),
            )
        };
        if major & 0xffff_0000 != 0 {
            return Err(gss_error(major, minor));
        }
        let token = (!output.is_empty()).then(|| output.to_vec());
        if major & major::CONTINUE_NEEDED != 0 {
            let token = token.ok_or_else(|| GssError {
                major,
                minor,
                message: "GSSAPI wants another leg but gave no token to send".into(),
            })?;
            return Ok(InitStep::Continue(self, token));
        }
        let ctx = std::mem::replace(&mut self.ctx, SecContext(ptr::null_mut()));
        Ok(InitStep::Complete(ctx, ret_flags, token))
    }
}

impl Drop for InitiatorCred {
    fn drop(&mut self) {
        if !self.cred.is_null() {
            let mut minor = 0;
            // SAFETY: the credential came from gss_acquire_cred_from; released once.
            unsafe { sys::gss_release_cred(&mut minor, &mut self.cred) };
        }
    }
}

/// The result of a completed acceptance.
#[derive(Debug)]
pub struct Accepted {
    /// The client's principal as MIT displays it, e.g. `alice@EXAMPLE.TEST`.
    pub principal: String,
    /// The token for the client (the AP-REP for mutual authentication), if any.
    pub output_token: Option<Vec<u8>>,
    /// GSS context flags (`ret_flags`).
    pub flags: u32,
    /// Seconds the context stays valid (the ticket's remaining lifetime).
    pub lifetime_secs: u32,
    /// The established context, for MIC operations (SPNEGO mechListMIC).
    pub context: SecContext,
    /// The PAC's KERB_VALIDATION_INFO (`urn:mspac:logon-info`), when asked for, present,
    /// and authenticated by MIT (PAC signatures checked with the service key).
    pub pac_logon_info: Option<Vec<u8>>,
}

/// An established (or half-established) GSS security context; deleted on drop.
#[derive(Debug)]
pub struct SecContext(sys::gss_ctx_id_t);

// SAFETY: a context may move between threads as long as it is not used concurrently;
// SecContext has no `&self` methods that call GSSAPI, only `&mut self` ones.
unsafe impl Send for SecContext {}

impl SecContext {
    /// Verifies `mic` over `message` (RFC 4178 mechListMIC).
    pub fn verify_mic(&mut self, message: &[u8], mic: &[u8]) -> Result<(), GssError> {
        let mut msg = sys::gss_buffer_desc {
            length: message.len(),
            value: message.as_ptr() as *mut c_void,
        };
        let mut tok = sys::gss_buffer_desc {
            length: mic.len(),
            value: mic.as_ptr() as *mut c_void,
        };
        let mut minor = 0;
        // SAFETY: both buffers borrow live slices for the call; GSSAPI only reads them.
        let major =
            unsafe { sys::gss_verify_mic(&mut minor, self.0, &mut msg, &mut tok, ptr::null_mut()) };
        if major != 0 {
            return Err(gss_error(major, minor));
        }
        Ok(())
    }

    /// `gss_wrap`: seals (`confidential`) or only signs `message`. Sealing that the
    /// mechanism could not apply is an error, never a silent downgrade.
    pub fn wrap(&mut self, confidential: bool, message: &[u8]) -> Result<Vec<u8>, GssError> {
        let mut msg = sys::gss_buffer_desc {
            length: message.len(),
            value: message.as_ptr() as *mut c_void,
        };
        let mut conf_state: i32 = 0;
        let mut out = OwnedBuffer::new();
        let mut minor = 0;
        // SAFETY: `msg` borrows a live slice for the call; `out` is released by its Drop.
        let major = unsafe {
            sys::gss_wrap(
                &mut minor,
                self.0,
                i32::from(confidential),
                0,
                &mut msg,
                &mut conf_state,
                &mut out.0,
            )
        };
        if major != 0 {
            return Err(gss_error(major, minor));
        }
        if confidential && conf_state == 0 {
            return Err(GssError {
                major: major::FAILURE,
                minor: 0,
                message: "gss_wrap did not encrypt although asked to".into(),
            });
        }
        Ok(out.to_vec())
    }

    /// `gss_unwrap`: the message and whether it was sealed (encrypted).
    pub fn unwrap(&mut self, token: &[u8]) -> Result<(Vec<u8>, bool), GssError> {
        let mut tok = sys::gss_buffer_desc {
            length: token.len(),
            value: token.as_ptr() as *mut c_void,
        };
        let mut conf_state: i32 = 0;
        let mut out = OwnedBuffer::new();
        let mut minor = 0;
        // SAFETY: `tok` borrows a live slice for the call; `out` is released by its Drop.
        let major = unsafe {
            sys::gss_unwrap(
                &mut minor,
                self.0,
                &mut tok,
                &mut out.0,
                &mut conf_state,
                ptr::null_mut(),
            )
        };
        // Supplementary bits (duplicate, old, unseq, gap) are errors for a stream.
        if major != 0 {
            return Err(gss_error(major, minor));
        }
        Ok((out.to_vec(), conf_state != 0))
    }

    /// `gss_wrap_size_limit`: the largest message whose sealed (`confidential`) or
    /// signed token fits in `max_token` bytes.
    pub fn wrap_size_limit(&mut self, confidential: bool, max_token: u32) -> Result<u32, GssError> {
        let mut max_input: sys::OM_uint32 = 0;
        let mut minor = 0;
        // SAFETY: plain values and an out-pointer to a local.
        let major = unsafe {
            sys::gss_wrap_size_limit(
                &mut minor,
                self.0,
                i32::from(confidential),
                0,
                max_token,
                &mut max_input,
            )
        };
        if major != 0 {
            return Err(gss_error(major, minor));
        }
        Ok(max_input)
    }

    /// Computes a MIC over `message`.
    pub fn get_mic(&mut self, message: &[u8]) -> Result<Vec<u8>, GssError> {
        let mut msg = sys::gss_buffer_desc {
            length: message.len(),
            value: message.as_ptr() as *mut c_void,
        };
        let mut out = OwnedBuffer::new();
        let mut minor = 0;
        // SAFETY: `msg` borrows a live slice; `out` is released by its Drop.
        let major = unsafe { sys::gss_get_mic(&mut minor, self.0, 0, &mut msg, &mut out.0) };
        if major != 0 {
            return Err(gss_error(major, minor));
        }
        Ok(out.to_vec())
    }
}

impl Drop for SecContext {
    fn drop(&mut self) {
        if !self.0.is_null() {
            let mut minor = 0;
            // SAFETY: the context came from gss_accept_sec_context or
            // gss_init_sec_context; deleted once.
            unsafe { sys::gss_delete_sec_context(&mut minor, &mut self.0, ptr::null_mut()) };
        }
    }
}

/// What one call to `accept` produced.
#[derive(Debug)]
pub enum Step {
    Complete(Accepted),
    /// The mechanism wants another leg; the token goes back to the client.
    ContinueNeeded(Vec<u8>),
}

/// Runs one `gss_accept_sec_context` on a fresh context with the Kerberos token
/// `token` (RFC 1964 framing). Blocking: it may read the keytab and replay cache, so
/// call it off the async runtime.
pub fn accept(
    cred: &AcceptorCred,
    token: &[u8],
    channel_bindings: Option<&[u8]>,
    want_pac: bool,
) -> Result<Step, GssError> {
    let mut ctx = SecContext(ptr::null_mut());
    let mut input = sys::gss_buffer_desc {
        length: token.len(),
        value: token.as_ptr() as *mut c_void,
    };
    let mut bindings = sys::gss_channel_bindings_struct {
        initiator_addrtype: 0,
        initiator_address: empty_buffer(),
        acceptor_addrtype: 0,
        acceptor_address: empty_buffer(),
        application_data: empty_buffer(),
    };
    let bindings_ptr = match channel_bindings {
        Some(cb) => {
            bindings.application_data = sys::gss_buffer_desc {
                length: cb.len(),
                value: cb.as_ptr() as *mut c_void,
            };
            &mut bindings as sys::gss_channel_bindings_t
        }
        None => ptr::null_mut(),
    };
    let mut src_name = OwnedName(ptr::null_mut());
    let mut output = OwnedBuffer::new();
    let mut flags: sys::OM_uint32 = 0;
    let mut time_rec: sys::OM_uint32 = 0;
    let mut minor = 0;
    // SAFETY: `input` and the bindings borrow live data for the call; every out
    // pointer refers to a local owner (context, name, buffer) that frees it on drop.
    // We pass no delegated-credential pointer, so none is created.
    let major = unsafe {
        sys::gss_accept_sec_context(
            &mut minor,
            &mut ctx.0,
            cred.cred,
            &mut input,
            bindings_ptr,
            &mut src_name.0,
            ptr::null_mut(),
            &mut output.0,
            &mut flags,
            &mut time_rec,
            ptr::null_mut(),
        )
    };
    // Calling and routine errors live in the high 16 bits; of the supplementary bits
    // only CONTINUE_NEEDED is acceptable (a duplicate/old/unsequenced token is not).
    if major & 0xffff_0000 != 0 || major & 0xffff & !major::CONTINUE_NEEDED != 0 {
        return Err(gss_error(major, minor));
    }
    if major & major::CONTINUE_NEEDED != 0 {
        return Ok(Step::ContinueNeeded(output.to_vec()));
    }
    let principal = src_name.display()?;
    let pac_logon_info = if want_pac {
        src_name.authenticated_attribute("urn:mspac:logon-info")
    } else {
        None
    };
    Ok(Step::Complete(Accepted {
        principal,
        pac_logon_info,
        output_token: (!output.is_empty()).then(|| output.to_vec()),
        flags,
        lifetime_secs: time_rec,
        context: ctx,
    }))
}
