//! `warden plugin keygen` and `warden plugin sign`: a publisher's minisign
//! key pair, and signatures over a package's SHA-256 (what the server
//! checks before it lets a version be approved as `trusted`).
//!
//! Keys are minisign's files, so the stock `minisign` tool reads and makes
//! them too. A secret key is encrypted with the password in
//! `WARDEN_SIGNING_PASSWORD` when that is set, and stored unencrypted
//! (mode 0600) otherwise.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use sha2::{Digest, Sha256};

use super::publish::fail;
use super::{exit, hint};

/// The environment variable holding a secret key's password.
pub const PASSWORD_ENV: &str = "WARDEN_SIGNING_PASSWORD";

/// Arguments of `warden plugin keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the key pair: `NAME.key` (secret) and `NAME.pub`.
    #[arg(long, default_value = "warden-signing")]
    pub out: PathBuf,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `warden plugin sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The package (zip) to sign; the signature goes to `PACKAGE.minisig`.
    pub package: PathBuf,
    /// The secret key file (from `warden plugin keygen` or `minisign -G`).
    #[arg(long)]
    pub key: PathBuf,
}

fn password() -> Option<String> {
    std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty())
}

fn with_ext(base: &Path, ext: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(ext);
    PathBuf::from(s)
}

fn write_new(path: &Path, data: &[u8], mode: u32, force: bool) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).mode(mode);
    if force {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    o.open(path)?.write_all(data)
}

/// Run `keygen`.
pub fn keygen(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let (secret, public) = (with_ext(&args.out, ".key"), with_ext(&args.out, ".pub"));
    let pass = password();
    let encrypted = pass.is_some();
    let pair = match pass {
        Some(p) => minisign::KeyPair::generate_encrypted_keypair(Some(p)),
        None => minisign::KeyPair::generate_unencrypted_keypair(),
    }
    .map_err(|e| anyhow::anyhow!("cannot make a key pair: {e}"))?;
    let sk_box = pair
        .sk
        .to_box(Some("warden signing key"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let pk_box = pair.pk.to_box().map_err(|e| anyhow::anyhow!("{e}"))?;
    let public_text = pk_box.to_string();
    for (path, data, mode) in [
        (&secret, sk_box.to_string(), 0o600),
        (&public, public_text.clone(), 0o644),
    ] {
        if let Err(e) = write_new(path, data.as_bytes(), mode, args.force) {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                hint("pass --force to replace it, or --out another name");
            }
            return Ok(fail(2, &format!("{}: {e}", path.display())));
        }
    }
    let id = warden_core::signing::parse_public_key(&public_text)
        .map(|(id, _)| id)
        .unwrap_or_default();
    eprintln!(
        "{} key {id}: secret key {} ({}), public key {}",
        crate::style::ok("ok"),
        secret.display(),
        if encrypted {
            "encrypted with WARDEN_SIGNING_PASSWORD"
        } else {
            "unencrypted, mode 0600"
        },
        public.display()
    );
    hint(&format!(
        "register the public key: curl -H \"Authorization: Bearer $WARDEN_API_KEY\" -H 'content-type: application/json' \
         -d \"{{\\\"name\\\": \\\"laptop\\\", \\\"public_key\\\": \\\"$(tail -1 {})\\\"}}\" $WARDEN_SERVER/v1/signing-keys",
        public.display()
    ));
    print!("{public_text}");
    Ok(ExitCode::SUCCESS)
}

/// A minisign signature (the text of a `.minisig` file) over `sha256` (64
/// lowercase hex digits) with the secret key in `key`.
pub fn signature_for(key: &Path, sha256: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let sk_box = minisign::SecretKeyBox::from_string(&text)
        .map_err(|e| format!("{}: not a minisign secret key: {e}", key.display()))?;
    let sk = match sk_box.clone().into_unencrypted_secret_key() {
        Ok(sk) => sk,
        Err(_) => {
            let Some(pass) = password() else {
                return Err(format!(
                    "{}: the key is encrypted: set {PASSWORD_ENV} to its password",
                    key.display()
                ));
            };
            sk_box
                .into_secret_key(Some(pass))
                .map_err(|e| format!("{}: cannot open the key: {e}", key.display()))?
        }
    };
    let sig = minisign::sign(None, &sk, std::io::Cursor::new(sha256.as_bytes()), None, None)
        .map_err(|e| format!("cannot sign: {e}"))?;
    Ok(sig.to_string())
}

/// Run `sign`.
pub fn sign(args: SignArgs) -> anyhow::Result<ExitCode> {
    let bytes = match std::fs::read(&args.package) {
        Ok(b) => b,
        Err(e) => return Ok(fail(2, &format!("{}: {e}", args.package.display()))),
    };
    let sha256 = warden_core::model::hex(&Sha256::digest(&bytes));
    let signature = match signature_for(&args.key, &sha256) {
        Ok(s) => s,
        Err(e) => return Ok(fail(exit::VALIDATION, &e)),
    };
    let out = with_ext(&args.package, ".minisig");
    if let Err(e) = std::fs::write(&out, &signature) {
        return Ok(fail(2, &format!("{}: {e}", out.display())));
    }
    let id = warden_core::signing::signature_key_id(&signature).unwrap_or_default();
    eprintln!(
        "{} signed SHA-256 {sha256} with key {id}: {}",
        crate::style::ok("ok"),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_key_signs_what_the_server_checks() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("k");
        // Unencrypted (no password in the environment of this test).
        let pair = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        std::fs::write(with_ext(&base, ".key"), pair.sk.to_box(None).unwrap().to_string()).unwrap();
        let (id, line) =
            warden_core::signing::parse_public_key(&pair.pk.to_box().unwrap().to_string()).unwrap();
        let sha = "ab".repeat(32);
        let sig = signature_for(&with_ext(&base, ".key"), &sha).unwrap();
        let key = warden_core::signing::SigningKey {
            id: id.clone(),
            owner: "me".into(),
            name: "k".into(),
            public_key: line,
            created_at: 0,
            revoked_at: None,
        };
        warden_core::signing::verify(&key, "me", &sha, &sig).unwrap();
        assert_eq!(warden_core::signing::signature_key_id(&sig).unwrap(), id);
        let e = signature_for(&dir.path().join("missing.key"), &sha).unwrap_err();
        assert!(e.contains("missing.key"), "{e}");
    }
}
