//! Self-contained MCP session tokens (DESIGN §4).
//!
//! The gateway's `Mcp-Session-Id` carries the session state itself (each target's upstream
//! session id), sealed with AES-256-GCM so that any worker or replica holding the key can
//! serve the session and nobody else can read or forge it. A token is
//! `base64url-no-padding(nonce || ciphertext || tag)`: the URL-safe alphabet is visible ASCII
//! as MCP requires of session ids, and survives headers, URLs and logs unescaped.
//!
//! Nonces are 96 random bits, fresh for every seal. With random nonces one key should seal
//! fewer than 2^32 tokens (NIST SP 800-38D §8.3); a gateway mints one per session.

use std::fmt;

use aes_gcm::aead::{AeadCore, AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Bytes of a sealed empty plaintext; every valid token decodes to at least this many.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// A session key that is not 32 bytes, or key text that is not 64 hex digits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    Length(usize),
    HexLength(usize),
    /// A character that is not a hex digit, and its position in characters.
    HexDigit {
        position: usize,
        found: char,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Length(n) => write!(
                f,
                "a session key must be exactly {KEY_LEN} bytes (AES-256), got {n}"
            ),
            KeyError::HexLength(n) => write!(
                f,
                "a session key must be {} hex characters ({KEY_LEN} bytes, e.g. from `openssl \
                 rand -hex 32`), got {n} characters",
                KEY_LEN * 2
            ),
            KeyError::HexDigit { position, found } => write!(
                f,
                "a session key must be hex: {found:?} at position {position} is not a hex digit"
            ),
        }
    }
}

impl std::error::Error for KeyError {}

/// Why a token did not open. The reasons are kept coarse on purpose: a client holding a bad
/// token learns only that it is bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not canonical base64url without padding.
    Encoding,
    /// Decodes to fewer bytes than a nonce and a tag.
    TooShort(usize),
    /// The tag does not match: tampered, forged, or sealed under another key or context.
    Inauthentic,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Encoding => {
                f.write_str("session token is not canonical base64url without padding")
            }
            TokenError::TooShort(n) => write!(
                f,
                "session token is too short: {n} bytes, a sealed token has at least {OVERHEAD}"
            ),
            TokenError::Inauthentic => f.write_str(
                "session token failed authentication (tampered, or sealed under another key or \
                 context)",
            ),
        }
    }
}

impl std::error::Error for TokenError {}

/// Why a token could not be sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealError {
    /// The operating system's random source failed.
    Random(getrandom::Error),
    /// The plaintext or associated data exceed AES-GCM's limits (64 GiB).
    TooLong,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealError::Random(e) => write!(f, "no random nonce for the session token: {e}"),
            SealError::TooLong => f.write_str("session state too long for AES-GCM"),
        }
    }
}

impl std::error::Error for SealError {}

/// Seals and opens session tokens under one 32-byte key. The AES key schedule is computed
/// once, here, not per token.
#[derive(Clone)]
pub struct SessionCipher {
    aead: Aes256Gcm,
}

impl fmt::Debug for SessionCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.write_str("SessionCipher { .. }")
    }
}

impl SessionCipher {
    pub fn new(key: &[u8]) -> Result<Self, KeyError> {
        let aead = Aes256Gcm::new_from_slice(key).map_err(|_| KeyError::Length(key.len()))?;
        Ok(SessionCipher { aead })
    }

    /// Encrypts `plaintext` bound to `aad` (which is authenticated, not stored: `open` must
    /// be given the same bytes) under a fresh random nonce.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(SealError::Random)?;
        self.seal_with_nonce(nonce, plaintext, aad)
    }

    /// `seal` with a given nonce; only tests may choose nonces, since reusing one under a key
    /// breaks GCM.
    fn seal_with_nonce(
        &self,
        nonce: [u8; NONCE_LEN],
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<String, SealError> {
        let body_end = NONCE_LEN + plaintext.len();
        let mut sealed = Vec::with_capacity(body_end + TAG_LEN);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(plaintext);
        let tag = self
            .aead
            .encrypt_inout_detached(
                &Nonce::from(nonce),
                aad,
                (&mut sealed[NONCE_LEN..body_end]).into(),
            )
            .map_err(|_| SealError::TooLong)?;
        sealed.extend_from_slice(&tag);
        let mut token = String::with_capacity(sealed.len().div_ceil(3) * 4);
        URL_SAFE_NO_PAD.encode_string(&sealed, &mut token);
        Ok(token)
    }

    /// Decrypts a token sealed under this key with the same `aad`.
    pub fn open(&self, token: &str, aad: &[u8]) -> Result<Vec<u8>, TokenError> {
        // The decoder rejects padding, other alphabets and non-zero trailing bits, so each
        // sealed byte string has exactly one accepted token.
        let mut sealed = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Encoding)?;
        if sealed.len() < OVERHEAD {
            return Err(TokenError::TooShort(sealed.len()));
        }
        let body_end = sealed.len() - TAG_LEN;
        let (head, tag) = sealed.split_at_mut(body_end);
        let (nonce, body) = head.split_at_mut(NONCE_LEN);
        let nonce = Nonce::<<Aes256Gcm as AeadCore>::NonceSize>::try_from(&*nonce)
            .expect("split at the nonce length");
        let tag = Tag::try_from(&*tag).expect("split at the tag length");
        self.aead
            .decrypt_inout_detached(&nonce, aad, body.into(), &tag)
            .map_err(|_| TokenError::Inauthentic)?;
        sealed.copy_within(NONCE_LEN..body_end, 0);
        sealed.truncate(body_end - NONCE_LEN);
        Ok(sealed)
    }
}

/// Reads the config form of a session key (`config.session.key`, `SESSION_KEY`): exactly 64
/// hex digits, either case, nothing around them.
pub fn key_from_hex(text: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let chars = text.chars().count();
    if chars != KEY_LEN * 2 {
        return Err(KeyError::HexLength(chars));
    }
    // 64 characters in 64 bytes: all ASCII, so byte positions are character positions.
    let digit = |position: usize| {
        let found = text.as_bytes()[position];
        char::from(found)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or(KeyError::HexDigit {
                position,
                found: char::from(found),
            })
    };
    if !text.is_ascii() {
        let (position, found) = text
            .chars()
            .enumerate()
            .find(|(_, c)| !c.is_ascii_hexdigit())
            .expect("non-ASCII text has a non-hex character");
        return Err(KeyError::HexDigit { position, found });
    }
    let mut key = [0u8; KEY_LEN];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = digit(2 * i)? << 4 | digit(2 * i + 1)?;
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; KEY_LEN] = [7; KEY_LEN];

    fn cipher() -> SessionCipher {
        SessionCipher::new(&KEY).unwrap()
    }

    #[test]
    fn round_trip() {
        let c = cipher();
        for plaintext in [&b""[..], b"x", br#"{"t":"mcp","s":[{"t":"a","s":"123"}]}"#] {
            for aad in [&b""[..], b"alice"] {
                let token = c.seal(plaintext, aad).unwrap();
                assert_eq!(c.open(&token, aad).unwrap(), plaintext);
                let sealed_len = OVERHEAD + plaintext.len();
                assert_eq!(token.len(), (sealed_len * 4).div_ceil(3));
                assert!(
                    token
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                );
            }
        }
    }

    #[test]
    fn nonces_are_fresh() {
        let c = cipher();
        let a = c.seal(b"same", b"").unwrap();
        let b = c.seal(b"same", b"").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn known_vector_layout() {
        // Fixed nonce: the token is nonce, then ciphertext, then tag, in base64url.
        let c = cipher();
        let nonce = [1u8; NONCE_LEN];
        let token = c.seal_with_nonce(nonce, b"hello", b"ctx").unwrap();
        let raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        assert_eq!(&raw[..NONCE_LEN], &nonce);
        assert_eq!(raw.len(), OVERHEAD + 5);
        assert_ne!(&raw[NONCE_LEN..NONCE_LEN + 5], b"hello");
        assert_eq!(c.open(&token, b"ctx").unwrap(), b"hello");
    }

    #[test]
    fn nist_gcm_test_vector() {
        // NIST GCM test vectors (gcmEncryptExtIV256), Count = 0 of the set with a 128-bit
        // plaintext and no AAD: checks that the token holds standard AES-256-GCM output.
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let key = hex("31bdadd96698c204aa9ce1448ea94ae1fb4a9a0b3c9d773b51bb1822666b8f22");
        let nonce: [u8; 12] = hex("0d18e06c7c725ac9e362e1ce").try_into().unwrap();
        let plaintext = hex("2db5168e932556f8089a0622981d017d");
        let expected = hex("fa4362189661d163fcd6a56d8bf0405ad636ac1bbedd5cc3ee727dc2ab4a9489");
        let c = SessionCipher::new(&key).unwrap();
        let token = c.seal_with_nonce(nonce, &plaintext, b"").unwrap();
        let raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        assert_eq!(&raw[NONCE_LEN..], &expected[..]);
    }

    #[test]
    fn tampering_wrong_key_and_wrong_aad_fail() {
        let c = cipher();
        let token = c.seal(b"state", b"alice").unwrap();
        assert_eq!(c.open(&token, b"bob"), Err(TokenError::Inauthentic));
        assert_eq!(c.open(&token, b""), Err(TokenError::Inauthentic));
        let other = SessionCipher::new(&[8; KEY_LEN]).unwrap();
        assert_eq!(other.open(&token, b"alice"), Err(TokenError::Inauthentic));
        // Flip every bit of every sealed byte.
        let raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for i in 0..raw.len() {
            for bit in 0..8 {
                let mut bad = raw.clone();
                bad[i] ^= 1 << bit;
                let bad = URL_SAFE_NO_PAD.encode(&bad);
                assert_eq!(c.open(&bad, b"alice"), Err(TokenError::Inauthentic));
            }
        }
        // Truncated or extended tokens.
        let mut longer = raw.clone();
        longer.push(0);
        assert_eq!(
            c.open(&URL_SAFE_NO_PAD.encode(&longer), b"alice"),
            Err(TokenError::Inauthentic)
        );
        let shorter = &raw[..raw.len() - 1];
        assert_eq!(
            c.open(&URL_SAFE_NO_PAD.encode(shorter), b"alice"),
            Err(TokenError::Inauthentic)
        );
    }

    #[test]
    fn malformed_tokens() {
        let c = cipher();
        let token = c.seal(b"state", b"").unwrap();
        assert_eq!(c.open("", b""), Err(TokenError::TooShort(0)));
        assert_eq!(
            c.open(&URL_SAFE_NO_PAD.encode([0u8; OVERHEAD - 1]), b""),
            Err(TokenError::TooShort(OVERHEAD - 1))
        );
        for bad in [
            format!("{token}="),
            format!("{token}=="),
            format!(" {token}"),
            format!("{token}\n"),
            token.replace(|c: char| c.is_ascii_alphanumeric(), "+"),
            format!("{token}!"),
            "a".into(),
        ] {
            assert_eq!(c.open(&bad, b""), Err(TokenError::Encoding), "{bad}");
        }
        // Non-zero trailing bits: another spelling of the same bytes is rejected, so every
        // change to the token text is detected.
        let sealed = URL_SAFE_NO_PAD.decode(&token).unwrap();
        if !sealed.len().is_multiple_of(3) {
            let last = token.as_bytes()[token.len() - 1];
            let mut alias = token.clone().into_bytes();
            *alias.last_mut().unwrap() = if last == b'B' { b'C' } else { last + 1 };
            let alias = String::from_utf8(alias).unwrap();
            assert!(c.open(&alias, b"").is_err());
        }
    }

    #[test]
    fn key_lengths() {
        assert!(SessionCipher::new(&[0; 32]).is_ok());
        for n in [0, 16, 31, 33, 64] {
            assert_eq!(
                SessionCipher::new(&vec![0; n]).unwrap_err(),
                KeyError::Length(n)
            );
        }
        assert_eq!(
            KeyError::Length(16).to_string(),
            "a session key must be exactly 32 bytes (AES-256), got 16"
        );
    }

    #[test]
    fn hex_keys() {
        let text = "00112233445566778899aabbccddeeffFFEEDDCCBBAA99887766554433221100";
        let key = key_from_hex(text).unwrap();
        assert_eq!(key[..4], [0x00, 0x11, 0x22, 0x33]);
        assert_eq!(key[16..18], [0xff, 0xee]);
        assert_eq!(key[31], 0x00);
        assert_eq!(key_from_hex(""), Err(KeyError::HexLength(0)));
        assert_eq!(key_from_hex(&text[1..]), Err(KeyError::HexLength(63)));
        assert_eq!(
            key_from_hex(&format!("{text}\n")),
            Err(KeyError::HexLength(65))
        );
        let bad = format!("{}g", &text[..63]);
        assert_eq!(
            key_from_hex(&bad),
            Err(KeyError::HexDigit {
                position: 63,
                found: 'g'
            })
        );
        // Positions count characters, also past multi-byte ones.
        let accented = format!("0\u{e9}{}", &text[2..]);
        assert_eq!(
            key_from_hex(&accented),
            Err(KeyError::HexDigit {
                position: 1,
                found: '\u{e9}'
            })
        );
        assert_eq!(
            KeyError::HexDigit {
                position: 3,
                found: 'x'
            }
            .to_string(),
            "a session key must be hex: 'x' at position 3 is not a hex digit"
        );
        assert_eq!(
            KeyError::HexLength(10).to_string(),
            "a session key must be 64 hex characters (32 bytes, e.g. from `openssl rand -hex \
             32`), got 10 characters"
        );
    }
}
