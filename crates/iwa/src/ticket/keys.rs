//! The key ring: 32-byte keys read from files, identified by a hash of the key.
//!
//! # Key file format
//!
//! Exactly one format is accepted: **64 hexadecimal characters** (the 32-byte key,
//! upper or lower case) **optionally followed by one `\n`**. Nothing else: no raw binary,
//! no base64, no surrounding spaces, no `\r\n`, no comments. A file in any other shape
//! is refused with an error naming the path and what was wrong; its content is never
//! echoed. `iwa keygen` (through [`KeyRing::generate_key_file`]) writes this format, and
//! so does `(umask 077; openssl rand -hex 32 > key)`.
//!
//! A key file must not be accessible by group or others (`mode & 0o077 == 0`); the
//! check is made on the opened file, so a symlink is judged by its target.
//!
//! # Key ids and rotation
//!
//! A key's id is the first 8 bytes of SHA-256 over the key, so no extra configuration
//! names keys. The current key seals; the current and previous keys open. To rotate
//! with no cookie lost:
//!
//! 1. generate a new key file; on every instance list it under *previous* and reload
//!    (every instance can now open tickets sealed with it);
//! 2. on every instance make it *current* and move the old current key to *previous*,
//!    then reload;
//! 3. once the longest ticket lifetime (the absolute cap, 8 hours by default) has passed,
//!    drop the old key from *previous*. Tickets sealed under it are then refused as
//!    [`TicketError::UnknownKey`](super::TicketError::UnknownKey).
//!
//! With a single instance, step 1 can be skipped. To invalidate every ticket at once
//! (a key leaked), replace the current key and list no previous keys.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::XChaCha20Poly1305;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Bytes in a key.
pub const KEY_LEN: usize = 32;
/// Bytes in a key id.
pub const KEY_ID_LEN: usize = 8;
/// Largest key file read; a valid one is 64 or 65 bytes.
const MAX_KEY_FILE_LEN: u64 = 1024;

/// Identifies a key: the first 8 bytes of SHA-256 over it. Not secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl KeyId {
    /// The id of `key`.
    pub fn of(key: &[u8; KEY_LEN]) -> Self {
        let digest = Sha256::digest(key);
        let mut id = [0u8; KEY_ID_LEN];
        for (dst, src) in id.iter_mut().zip(digest.iter()) {
            *dst = *src;
        }
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Why a key file's content is not a key. Never carries the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyFormatError {
    /// The file is empty (or only a newline).
    Empty,
    /// The file ends in `\r\n`.
    CarriageReturn,
    /// The file does not have 64 characters (plus an optional newline).
    WrongLength { len: u64 },
    /// A character at this 0-based offset is not a hexadecimal digit.
    NotHex { offset: usize },
}

impl fmt::Display for KeyFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            KeyFormatError::Empty => f.write_str("the file is empty"),
            KeyFormatError::CarriageReturn => {
                f.write_str("the file ends with a Windows line ending (\\r\\n)")
            }
            KeyFormatError::WrongLength { len } => {
                write!(f, "the file is {len} bytes long")?;
                // Hints from the length alone; the content is not inspected further.
                match len {
                    32 => f.write_str(" (raw binary keys are not accepted)"),
                    43..=45 => f.write_str(" (base64 keys are not accepted)"),
                    _ => Ok(()),
                }
            }
            KeyFormatError::NotHex { offset } => {
                write!(
                    f,
                    "the character at offset {offset} is not a hexadecimal digit"
                )
            }
        }
    }
}

/// A key file could not be loaded or written. Messages name the file and what to do;
/// they never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("key file {path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error(
        "key file {path} is accessible by group or others (mode {mode:03o}); \
         run `chmod 600 {path}`"
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error(
        "key file {path} is not a key: {problem}; expected exactly 64 hexadecimal \
         characters (32 bytes) and an optional trailing newline, as written by `iwa keygen` \
         or `openssl rand -hex 32`"
    )]
    Format {
        path: PathBuf,
        problem: KeyFormatError,
    },
    #[error("key file {path} already exists; not overwriting it")]
    AlreadyExists { path: PathBuf },
    #[error("cannot write key file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("the operating system's random number generator failed: {0}")]
    Random(getrandom::Error),
    /// More than one key file is wrong; each is listed.
    #[error("{}", join(.0))]
    Several(Vec<KeyError>),
}

fn join(errors: &[KeyError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One key of the ring: its id and an AEAD instance holding it (zeroized on drop by
/// `chacha20poly1305`).
pub(super) struct RingKey {
    pub(super) id: KeyId,
    pub(super) cipher: XChaCha20Poly1305,
    source: Option<PathBuf>,
}

impl RingKey {
    fn new(key: &[u8; KEY_LEN], source: Option<PathBuf>) -> Self {
        RingKey {
            id: KeyId::of(key),
            cipher: XChaCha20Poly1305::new(key.into()),
            source,
        }
    }
}

impl fmt::Debug for RingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Key");
        d.field("id", &self.id);
        if let Some(p) = &self.source {
            d.field("file", p);
        }
        d.finish_non_exhaustive()
    }
}

/// The keys tickets are sealed and opened with: one current key (seals and opens) and
/// any number of previous keys (open only). `Debug` shows key ids and file names only.
#[derive(Debug)]
pub struct KeyRing {
    pub(super) current: RingKey,
    pub(super) previous: Vec<RingKey>,
}

impl KeyRing {
    /// Loads the current key and the previous keys from files in the format described
    /// in the [module docs](self). Every file is checked; if several are wrong, the
    /// error lists them all ([`KeyError::Several`]). A previous key identical to the
    /// current key or to an earlier previous key is ignored.
    pub fn load(current: &Path, previous: &[PathBuf]) -> Result<KeyRing, KeyError> {
        let mut errors = Vec::new();
        let current = match read_key_file(current) {
            Ok(k) => Some(RingKey::new(&k, Some(current.to_owned()))),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let mut prev = Vec::new();
        for path in previous {
            match read_key_file(path) {
                Ok(k) => prev.push(RingKey::new(&k, Some(path.clone()))),
                Err(e) => errors.push(e),
            }
        }
        match (current, errors.len()) {
            (Some(current), 0) => Ok(KeyRing::assemble(current, prev)),
            (_, 1) => Err(errors.remove(0)),
            _ => Err(KeyError::Several(errors)),
        }
    }

    /// A ring from keys already in memory (for embedders that keep keys elsewhere, and
    /// for tests). Same deduplication as [`load`](Self::load).
    pub fn from_keys(current: &[u8; KEY_LEN], previous: &[[u8; KEY_LEN]]) -> KeyRing {
        let prev = previous.iter().map(|k| RingKey::new(k, None)).collect();
        KeyRing::assemble(RingKey::new(current, None), prev)
    }

    fn assemble(current: RingKey, previous: Vec<RingKey>) -> KeyRing {
        let mut ring = KeyRing {
            current,
            previous: Vec::with_capacity(previous.len()),
        };
        for key in previous {
            // Equal ids mean equal keys (a 64-bit SHA-256 prefix collision between two
            // random keys is not a practical event), so a duplicate adds nothing.
            if ring.find(key.id).is_none() {
                ring.previous.push(key);
            }
        }
        ring
    }

    /// The id of the key new tickets are sealed with.
    pub fn current_id(&self) -> KeyId {
        self.current.id
    }

    /// The ids of every key that opens tickets, current first.
    pub fn ids(&self) -> Vec<KeyId> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .map(|k| k.id)
            .collect()
    }

    pub(super) fn find(&self, id: KeyId) -> Option<&RingKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
    }

    /// Writes a new random key to `path` in the accepted format, creating the file with
    /// mode 0600 (the umask can only make it stricter). Refuses to overwrite an existing
    /// file. Returns the new key's id.
    pub fn generate_key_file(path: &Path) -> Result<KeyId, KeyError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(key.as_mut_slice()).map_err(KeyError::Random)?;
        let mut text = Zeroizing::new(String::with_capacity(2 * KEY_LEN + 1));
        for b in key.iter() {
            text.push(hex_digit(b >> 4));
            text.push(hex_digit(b & 0x0f));
        }
        text.push('\n');

        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| {
                if source.kind() == io::ErrorKind::AlreadyExists {
                    KeyError::AlreadyExists {
                        path: path.to_owned(),
                    }
                } else {
                    KeyError::Write {
                        path: path.to_owned(),
                        source,
                    }
                }
            })?;
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(source) = written {
            drop(file);
            // Best effort: do not leave a partial key behind to be loaded later.
            let _ = std::fs::remove_file(path);
            return Err(KeyError::Write {
                path: path.to_owned(),
                source,
            });
        }
        Ok(KeyId::of(&key))
    }
}

fn hex_digit(nibble: u8) -> char {
    // The mask keeps the index below 16, the table's length.
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Reads and checks one key file.
fn read_key_file(path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyError> {
    let io_err = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    // Judge the file we opened, not the path again (no check-then-open race).
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(KeyError::NotAFile {
            path: path.to_owned(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    let format_err = |problem| KeyError::Format {
        path: path.to_owned(),
        problem,
    };
    if meta.len() > MAX_KEY_FILE_LEN {
        return Err(format_err(KeyFormatError::WrongLength { len: meta.len() }));
    }
    let mut content = Zeroizing::new(Vec::with_capacity(2 * KEY_LEN + 1));
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_end(&mut content)
        .map_err(io_err)?;
    parse_key(&content).map_err(format_err)
}

/// Parses the one accepted key file format: 64 hex digits and an optional `\n`.
pub(super) fn parse_key(content: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyFormatError> {
    let body = content.strip_suffix(b"\n").unwrap_or(content);
    if body.is_empty() {
        return Err(KeyFormatError::Empty);
    }
    if body.ends_with(b"\r") {
        return Err(KeyFormatError::CarriageReturn);
    }
    if body.len() != 2 * KEY_LEN {
        return Err(KeyFormatError::WrongLength {
            len: content.len() as u64,
        });
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    for (i, (dst, pair)) in key.iter_mut().zip(body.chunks_exact(2)).enumerate() {
        let mut value = 0u8;
        for (j, &c) in pair.iter().enumerate() {
            let Some(v) = hex_value(c) else {
                return Err(KeyFormatError::NotHex { offset: 2 * i + j });
            };
            value = (value << 4) | v;
        }
        *dst = value;
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const HEX_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn write(dir: &Path, name: &str, content: &[u8], mode: u32) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn key_id_is_sha256_prefix() {
        // SHA-256 of 32 zero bytes = 66687aad f862bd77 6c8fc18b ...
        assert_eq!(KeyId::of(&[0u8; 32]).to_string(), "66687aadf862bd77");
    }

    #[test]
    fn parses_hex_with_and_without_newline_in_either_case() {
        let k = parse_key(HEX_A.as_bytes()).unwrap();
        assert_eq!(k[0], 0);
        assert_eq!(k[31], 0x1f);
        let with_nl = format!("{HEX_A}\n");
        assert_eq!(*parse_key(with_nl.as_bytes()).unwrap(), *k);
        let upper = HEX_A.to_uppercase();
        assert_eq!(*parse_key(upper.as_bytes()).unwrap(), *k);
    }

    #[test]
    fn rejects_every_other_shape() {
        use KeyFormatError::*;
        let cases: Vec<(Vec<u8>, KeyFormatError)> = vec![
            (b"".to_vec(), Empty),
            (b"\n".to_vec(), Empty),
            (vec![7u8; 32], WrongLength { len: 32 }),
            (
                b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_vec(),
                WrongLength { len: 44 },
            ),
            (HEX_A.as_bytes()[..63].to_vec(), WrongLength { len: 63 }),
            (format!("{HEX_A}0").into_bytes(), WrongLength { len: 65 }),
            (format!("{HEX_A}\n\n").into_bytes(), WrongLength { len: 66 }),
            (format!(" {HEX_A}").into_bytes(), WrongLength { len: 65 }),
            (format!("{HEX_A}\r\n").into_bytes(), CarriageReturn),
            (
                format!("{}g", &HEX_A[..63]).into_bytes(),
                NotHex { offset: 63 },
            ),
            (
                format!("0x{}", &HEX_A[2..]).into_bytes(),
                NotHex { offset: 1 },
            ),
        ];
        for (content, want) in cases {
            assert_eq!(parse_key(&content).err(), Some(want), "{content:?}");
        }
    }

    #[test]
    fn format_errors_explain_the_format_and_hint_at_common_mistakes() {
        let raw = KeyError::Format {
            path: "/k".into(),
            problem: KeyFormatError::WrongLength { len: 32 },
        }
        .to_string();
        assert!(raw.contains("raw binary keys are not accepted"), "{raw}");
        assert!(raw.contains("64 hexadecimal characters"), "{raw}");
        let b64 = KeyFormatError::WrongLength { len: 44 }.to_string();
        assert!(b64.contains("base64"), "{b64}");
    }

    #[test]
    fn refuses_files_readable_by_group_or_others() {
        let dir = tempfile::tempdir().unwrap();
        let body = format!("{HEX_A}\n");
        for mode in [0o644, 0o640, 0o604, 0o660, 0o601] {
            let p = write(dir.path(), &format!("k{mode:o}"), body.as_bytes(), mode);
            let err = KeyRing::load(&p, &[]).unwrap_err();
            assert!(
                matches!(&err, KeyError::InsecurePermissions { path, mode: m } if path == &p && *m == mode),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&p.display().to_string()), "{msg}");
            assert!(msg.contains("chmod 600"), "{msg}");
        }
        for mode in [0o600, 0o400] {
            let p = write(dir.path(), &format!("ok{mode:o}"), body.as_bytes(), mode);
            let ring = KeyRing::load(&p, &[]).unwrap();
            assert_eq!(
                ring.current_id(),
                KeyId::of(&parse_key(HEX_A.as_bytes()).unwrap())
            );
        }
    }

    #[test]
    fn load_errors_name_the_file_and_never_show_the_content() {
        let dir = tempfile::tempdir().unwrap();
        // A valid key with one bad character at the end: the error must not echo it.
        let almost = format!("{}z\n", &HEX_A[..63]);
        let p = write(dir.path(), "bad", almost.as_bytes(), 0o600);
        let err = KeyRing::load(&p, &[]).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(
            err,
            KeyError::Format {
                problem: KeyFormatError::NotHex { offset: 63 },
                ..
            }
        ));
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(!msg.contains(&HEX_A[..16]), "{msg}");

        let missing = dir.path().join("missing");
        assert!(matches!(
            KeyRing::load(&missing, &[]),
            Err(KeyError::Io { .. })
        ));
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(matches!(
            KeyRing::load(&sub, &[]),
            Err(KeyError::NotAFile { .. })
        ));
        let big = write(dir.path(), "big", &vec![b'a'; 4096], 0o600);
        assert!(matches!(
            KeyRing::load(&big, &[]),
            Err(KeyError::Format {
                problem: KeyFormatError::WrongLength { len: 4096 },
                ..
            })
        ));
    }

    #[test]
    fn load_reports_every_bad_file_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let good = write(dir.path(), "good", HEX_A.as_bytes(), 0o600);
        let open = write(dir.path(), "open", HEX_A.as_bytes(), 0o644);
        let empty = write(dir.path(), "empty", b"", 0o600);
        let err = KeyRing::load(&good, &[open.clone(), empty.clone()]).unwrap_err();
        let KeyError::Several(list) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(list.len(), 2);
        let msg = err.to_string();
        assert!(msg.contains("open") && msg.contains("empty"), "{msg}");
    }

    #[test]
    fn generated_key_file_is_0600_loads_and_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ticket.key");
        let id = KeyRing::generate_key_file(&p).unwrap();
        let meta = fs::metadata(&p).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 65);
        let ring = KeyRing::load(&p, &[]).unwrap();
        assert_eq!(ring.current_id(), id);
        let before = fs::read(&p).unwrap();
        assert!(matches!(
            KeyRing::generate_key_file(&p),
            Err(KeyError::AlreadyExists { .. })
        ));
        assert_eq!(fs::read(&p).unwrap(), before);
        let p2 = dir.path().join("second.key");
        assert_ne!(KeyRing::generate_key_file(&p2).unwrap(), id);
    }

    #[test]
    fn debug_shows_ids_and_files_but_no_key_material() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "cur", HEX_A.as_bytes(), 0o600);
        let ring = KeyRing::load(&p, &[]).unwrap();
        let dbg = format!("{ring:?}");
        assert!(dbg.contains(&ring.current_id().to_string()), "{dbg}");
        assert!(dbg.contains("cur"), "{dbg}");
        assert!(!dbg.contains(&HEX_A[..16]), "{dbg}");
        assert!(!dbg.contains("[0, 1, 2, 3"), "{dbg}");
        let key = parse_key(HEX_A.as_bytes()).unwrap();
        let dbg = format!("{:?}", KeyRing::from_keys(&key, &[]));
        assert!(!dbg.contains("[0, 1, 2, 3"), "{dbg}");
    }

    #[test]
    fn duplicate_previous_keys_are_ignored() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let ring = KeyRing::from_keys(&a, &[a, b, b]);
        assert_eq!(ring.ids(), vec![KeyId::of(&a), KeyId::of(&b)]);
    }
}
