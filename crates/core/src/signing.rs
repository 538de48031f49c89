//! Signed packages: publishers' ed25519 keys in minisign's format, and the
//! check that a version's signature is by a key registered to its plugin's
//! owner.
//!
//! What is signed is the package's SHA-256, as 64 lowercase hex digits
//! without a newline (what `sha256sum` prints first), so the signature can
//! be checked whenever the code is loaded without reading the package
//! again (its bytes are checked against that hash on their own), and the
//! stock `minisign -S` tool can make one.
//!
//! Must never: accept a signature by a key of another owner, or by a
//! revoked key, as making a version trusted; let anything but a valid
//! signature lead to `trusted` (there is no switch that turns this off).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// A publisher's registered public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey {
    /// The key's id as minisign shows it (16 uppercase hex digits).
    pub id: String,
    /// The developer it is registered to (a plugin owner).
    pub owner: String,
    /// A name for people.
    pub name: String,
    /// The public key: minisign's base64 line.
    pub public_key: String,
    /// Registered.
    pub created_at: i64,
    /// Revoked (versions it signed are no longer trusted), if it was.
    pub revoked_at: Option<i64>,
}

/// Lengths of minisign's decoded public key and signature lines.
const PUBLIC_KEY_LEN: usize = 2 + 8 + 32;
const SIGNATURE_LEN: usize = 2 + 8 + 64;

fn key_id(keynum: &[u8]) -> String {
    let mut n = [0u8; 8];
    n.copy_from_slice(keynum);
    format!("{:016X}", u64::from_le_bytes(n))
}

/// The base64 line of a minisign public key given either as that line or
/// as the whole `.pub` file (an `untrusted comment:` line, then the key).
fn key_line(text: &str) -> Option<&str> {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    match lines.as_slice() {
        [key] => Some(key),
        [comment, key] if comment.starts_with("untrusted comment:") => Some(key),
        _ => None,
    }
}

/// Parse a public key (minisign's `.pub` file or its base64 line): its id
/// and base64 line, or why it is not one.
pub fn parse_public_key(text: &str) -> Result<(String, String), String> {
    let line = key_line(text).ok_or(
        "expected a minisign public key: its base64 line, or the .pub file (an `untrusted comment:` line and the key)",
    )?;
    let bytes = STANDARD
        .decode(line)
        .map_err(|_| "the key is not base64".to_owned())?;
    if bytes.len() != PUBLIC_KEY_LEN || &bytes[..2] != b"Ed" {
        return Err("not an Ed25519 minisign public key (wrong length or algorithm)".into());
    }
    minisign_verify::PublicKey::from_base64(line).map_err(|e| format!("not a usable public key: {e}"))?;
    Ok((key_id(&bytes[2..10]), line.to_owned()))
}

/// The id of the key that made `signature` (the text of a `.minisig`
/// file), or why it is not a minisign signature.
pub fn signature_key_id(signature: &str) -> Result<String, String> {
    let sig = minisign_verify::Signature::decode(signature)
        .map_err(|e| format!("not a minisign signature (the text of a .minisig file): {e}"))?;
    drop(sig);
    // The second line is the signature itself: algorithm, key id, bytes.
    let line = signature
        .lines()
        .map(str::trim)
        .nth(1)
        .ok_or("not a minisign signature: it has no signature line")?;
    let bytes = STANDARD
        .decode(line)
        .map_err(|_| "the signature line is not base64".to_owned())?;
    if bytes.len() != SIGNATURE_LEN {
        return Err("the signature line has the wrong length".into());
    }
    Ok(key_id(&bytes[2..10]))
}

/// Check that `signature` signs the package hash `sha256` with `key`, and
/// that the key may vouch for a plugin owned by `owner`. `Err` names the
/// key and the reason.
pub fn verify(key: &SigningKey, owner: &str, sha256: &str, signature: &str) -> Result<(), String> {
    if key.owner != owner {
        return Err(format!(
            "key {} is registered to {}, not to the plugin's owner {owner}",
            key.id, key.owner
        ));
    }
    if key.revoked_at.is_some() {
        return Err(format!("key {} was revoked", key.id));
    }
    let public = minisign_verify::PublicKey::from_base64(&key.public_key)
        .map_err(|e| format!("key {} is not usable: {e}", key.id))?;
    let sig = minisign_verify::Signature::decode(signature)
        .map_err(|e| format!("the signature is not a minisign signature: {e}"))?;
    public.verify(sha256.as_bytes(), &sig, false).map_err(|e| {
        format!(
            "the signature by key {} does not match this package (SHA-256 {sha256}): {e}",
            key.id
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A key pair made once with the `minisign` crate (no password), and
    // its signature of `HASH`.
    const PUB: &str = "untrusted comment: minisign public key: EF2CC3F0AE5F4F4B\nRWRLT1+u8MMs7xpwIEajFFXE5nX2mvDifQCibVm9Q2l8swQyNL/at0FD\n";
    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const SIG: &str = "untrusted comment: signature from rsign secret key\nRURLT1+u8MMs7/5QupuGTqsMxUubWNQr7O7dVboGfacRF3O22B/Yf4NjpMNcSwpPDiY0lJSJBy6nvJmVCsoNC1MriDZb9sfA6gU=\ntrusted comment: timestamp:1796044873\n+oOeRfGm6F1oul7C2LsjPbMdcLD5p619qPYTKdpEU8bYueUwnQelNRK4eQF5zURo9mFQEFJs8zf9wCP05d4kAg==\n";

    fn key(owner: &str) -> SigningKey {
        let (id, public_key) = parse_public_key(PUB).unwrap();
        SigningKey {
            id,
            owner: owner.into(),
            name: "laptop".into(),
            public_key,
            created_at: 0,
            revoked_at: None,
        }
    }

    #[test]
    fn a_signature_holds_only_for_its_hash_its_owner_and_a_live_key() {
        assert_eq!(signature_key_id(SIG).unwrap(), "EF2CC3F0AE5F4F4B");
        verify(&key("dev"), "dev", HASH, SIG).unwrap();
        let other_hash = HASH.replace('9', "8");
        let e = verify(&key("dev"), "dev", &other_hash, SIG).unwrap_err();
        assert!(
            e.contains("EF2CC3F0AE5F4F4B") && e.contains("does not match"),
            "{e}"
        );
        let e = verify(&key("mallory"), "dev", HASH, SIG).unwrap_err();
        assert!(e.contains("registered to mallory"), "{e}");
        let mut revoked = key("dev");
        revoked.revoked_at = Some(1);
        assert!(
            verify(&revoked, "dev", HASH, SIG)
                .unwrap_err()
                .contains("revoked")
        );
        let tampered = SIG.replace("+oOe", "+oOf");
        assert!(verify(&key("dev"), "dev", HASH, &tampered).is_err());
    }

    #[test]
    fn keys_parse_from_the_file_or_the_line_and_nothing_else() {
        let (id, line) = parse_public_key(PUB).unwrap();
        assert_eq!(id, "EF2CC3F0AE5F4F4B");
        assert_eq!(parse_public_key(&line).unwrap().0, id);
        for bad in [
            "",
            "hello",
            "untrusted comment: x\nnot base64!",
            "RWRY",
            "a\nb\nc",
        ] {
            assert!(parse_public_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signatures_name_their_key_and_garbage_is_refused() {
        assert!(signature_key_id("").is_err());
        assert!(signature_key_id("untrusted comment: x\nAAAA\ntrusted comment: y\nAAAA").is_err());
    }
}
