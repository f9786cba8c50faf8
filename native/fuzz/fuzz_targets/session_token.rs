//! Session tokens and keys: no text opens without the key (a token that opens was forged), a
//! token the decoder reads is canonical base64url, a sealed token opens to its plaintext under
//! its own context and under nothing else, and changing any one character makes it fail.
//! `key_from_hex` accepts exactly 64 hex digits and reads them right.
//!
//! Input: `<mode byte><rest>`; mode 0: rest is a token to open (the text before the first
//! `\xFF`, the context after); mode 1: seal `<plaintext>\xFF<context>`, then change character
//! `<plaintext's first byte>` to `<its second byte>`; mode 2: rest is key text.

#![no_main]

use agentgateway_native::mcp::{KEY_LEN, OVERHEAD, SessionCipher, TokenError, key_from_hex};
use agentgateway_native_fuzz::fields;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;

const KEY: [u8; KEY_LEN] = *b"0123456789abcdef0123456789abcdef";

fn open_arbitrary(cipher: &SessionCipher, token: &[u8], aad: &[u8]) {
    let Ok(token) = std::str::from_utf8(token) else {
        return;
    };
    match cipher.open(token, aad) {
        Ok(plaintext) => panic!("forged token {token:?} opened to {plaintext:?}"),
        Err(TokenError::Encoding) => assert!(URL_SAFE_NO_PAD.decode(token).is_err()),
        Err(TokenError::TooShort(n)) => {
            assert!(n < OVERHEAD);
            let decoded = URL_SAFE_NO_PAD.decode(token).expect("it decoded");
            assert_eq!(decoded.len(), n);
            assert_eq!(URL_SAFE_NO_PAD.encode(&decoded), token, "canonical");
        }
        Err(TokenError::Inauthentic) => {
            let decoded = URL_SAFE_NO_PAD.decode(token).expect("it decoded");
            assert!(decoded.len() >= OVERHEAD);
            assert_eq!(URL_SAFE_NO_PAD.encode(&decoded), token, "canonical");
        }
    }
}

fn seal_and_tamper(cipher: &SessionCipher, plaintext: &[u8], aad: &[u8]) {
    let token = cipher.seal(plaintext, aad).expect("sealed");
    assert_eq!(cipher.open(&token, aad).as_deref(), Ok(plaintext));
    let mut other_aad = aad.to_vec();
    other_aad.push(0);
    assert_eq!(
        cipher.open(&token, &other_aad),
        Err(TokenError::Inauthentic)
    );
    let other = SessionCipher::new(&[1; KEY_LEN]).expect("a key");
    assert_eq!(other.open(&token, aad), Err(TokenError::Inauthentic));

    let [at, to, ..] = plaintext else {
        return;
    };
    let mut changed = token.clone().into_bytes();
    let at = usize::from(*at) % changed.len();
    if changed[at] == *to {
        return;
    }
    changed[at] = *to;
    if let Ok(changed) = String::from_utf8(changed) {
        assert!(
            cipher.open(&changed, aad).is_err(),
            "{changed:?} still opens"
        );
    }
    // Cut short, or one character more.
    assert!(cipher.open(&token[..token.len() - 1], aad).is_err());
    assert!(cipher.open(&format!("{token}A"), aad).is_err());
}

fn key_text(text: &[u8]) {
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let valid = text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit());
    match key_from_hex(text) {
        Ok(key) => {
            assert!(valid);
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, text.to_ascii_lowercase());
        }
        Err(e) => {
            assert!(!valid, "{text:?}: {e}");
            let _ = e.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let cipher = SessionCipher::new(&KEY).expect("a 32-byte key");
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let parts = fields(rest);
    match mode % 3 {
        0 => open_arbitrary(&cipher, parts[0], parts.get(1).copied().unwrap_or_default()),
        1 => seal_and_tamper(&cipher, parts[0], parts.get(1).copied().unwrap_or_default()),
        _ => key_text(rest),
    }
});
