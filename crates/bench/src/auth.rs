//! Tokens for the benchmark's servers with JWT authentication (`switchyard-auth-hs256`,
//! `switchyard-auth-es256`): the server's key settings (environment) and one token every client sends
//! in its handshake `auth`. The ES256 key pair is made at run time; nothing secret is kept.

use serde_json::json;
use std::path::Path;

/// The fixed HS256 secret of the benchmark (not a secret: it guards nothing).
pub const BENCH_SECRET: &str = "switchyard-bench HS256 secret, 32 bytes or more";

/// What a server with auth needs, and the token its clients send.
pub struct AuthSetup {
    /// Environment of the server process (`SWITCHYARD_AUTH_JWT_*`).
    pub env: Vec<(String, String)>,
    pub token: String,
}

/// `alg` is `hs256` or `es256`; the ES256 public key is written into `dir`.
pub fn setup(alg: &str, dir: &Path) -> Result<AuthSetup, String> {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // Valid for the whole run; the claims of a typical chat user.
    let claims = json!({"sub": "bench-user", "exp": now + 24 * 3600, "rooms": ["bench:*", "fanout"]});
    match alg {
        "hs256" => {
            let token =
                encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(BENCH_SECRET.as_bytes()))
                    .map_err(|e| e.to_string())?;
            Ok(AuthSetup { env: vec![("SWITCHYARD_AUTH_JWT_SECRET".into(), BENCH_SECRET.into())], token })
        }
        "es256" => {
            let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
            let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).map_err(|e| e.to_string())?;
            let token = encode(&Header::new(Algorithm::ES256), &claims, &key).map_err(|e| e.to_string())?;
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let path = dir.join("bench-es256.pem");
            std::fs::write(&path, pair.public_key_pem()).map_err(|e| format!("{}: {e}", path.display()))?;
            let path = path.to_string_lossy().into_owned();
            Ok(AuthSetup { env: vec![("SWITCHYARD_AUTH_JWT_PUBLIC_KEY_FILE".into(), path)], token })
        }
        other => Err(format!("unknown token algorithm {other:?} (hs256 or es256)")),
    }
}
