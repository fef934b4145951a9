//! TLS to the store, with libpq's vocabulary: `sslmode=` and `sslrootcert=` in the connection
//! string (URL query or key=value), so the string an engineer already uses with `psql` works.
//!
//! | `sslmode` | what `runbook` does |
//! |---|---|
//! | absent, `disable`, `allow`, `prefer` | no TLS |
//! | `require` | TLS; the server's certificate is checked against `sslrootcert` when given (like libpq), else not checked |
//! | `verify-ca` | TLS; the certificate must chain to `sslrootcert` (host name not checked) |
//! | `verify-full` | TLS; the certificate must chain to `sslrootcert` **and** name the host connected to |
//!
//! `sslrootcert` is a PEM file of one or more CA certificates, or `system` (the platform's
//! trusted roots). `verify-ca`/`verify-full` without `sslrootcert` is refused (libpq's implicit
//! `~/.postgresql/root.crt` is not guessed). TLS is rustls (no OpenSSL), TLS 1.2 or 1.3.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Plain,
    /// TLS without checking the server's certificate (`require` without `sslrootcert`).
    Encrypt,
    /// TLS, certificate checked against the CA, host name not checked.
    VerifyCa,
    /// TLS, certificate checked against the CA and the host name.
    VerifyFull,
}

/// A connection string made ready for tokio-postgres: the config and, when TLS is asked for,
/// the connector.
pub(crate) struct Prepared {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) mode: Mode,
    pub(crate) tls: Option<MakeRustlsConnect>,
}

/// Why a connection string's TLS settings cannot be used (`sslmode`, `sslrootcert`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct TlsError(String);

/// Takes `sslmode` and `sslrootcert` out of `conn` (tokio-postgres knows neither `verify-*`
/// nor `sslrootcert`), parses the rest and builds the TLS connector they ask for.
pub(crate) fn prepare(conn: &str) -> Result<Prepared, TlsError> {
    let (rest, params) = extract(conn, &["sslmode", "sslrootcert"]);
    let sslmode = params[0].clone();
    let rootcert = params[1].clone();
    let mode = match sslmode.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("disable" | "allow" | "prefer") => Mode::Plain,
        Some("require") if rootcert.is_some() => Mode::VerifyCa,
        Some("require") => Mode::Encrypt,
        Some("verify-ca") => Mode::VerifyCa,
        Some("verify-full") => Mode::VerifyFull,
        Some(other) => {
            return Err(TlsError(format!(
                "invalid connection string: sslmode `{other}` (use disable, require, verify-ca or verify-full)"
            )));
        }
    };
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e: tokio_postgres::Error| TlsError(format!("invalid connection string: {e}")))?;
    if mode == Mode::Plain {
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        return Ok(Prepared {
            config,
            mode,
            tls: None,
        });
    }
    config.ssl_mode(tokio_postgres::config::SslMode::Require);
    let tls = connector(mode, rootcert.as_deref())?;
    Ok(Prepared {
        config,
        mode,
        tls: Some(tls),
    })
}

fn connector(mode: Mode, rootcert: Option<&str>) -> Result<MakeRustlsConnect, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("cannot set up TLS: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        Mode::Plain | Mode::Encrypt => Arc::new(Unchecked(provider)),
        Mode::VerifyCa | Mode::VerifyFull => {
            let Some(file) = rootcert else {
                return Err(TlsError(
                    "sslmode=verify-ca/verify-full needs sslrootcert=FILE (the CA's PEM) or sslrootcert=system"
                        .into(),
                ));
            };
            let roots = Arc::new(roots(file)?);
            let webpki =
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| TlsError(format!("cannot use the CA in {file}: {e}")))?;
            if mode == Mode::VerifyFull {
                webpki
            } else {
                Arc::new(AnyName(webpki))
            }
        }
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The trusted CAs: a PEM file, or `system`.
fn roots(file: &str) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    if file == "system" {
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            let _ = store.add(cert);
        }
        if store.is_empty() {
            return Err(TlsError(
                "sslrootcert=system: no trusted root certificates found on this system".into(),
            ));
        }
        return Ok(store);
    }
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_file_iter(Path::new(file))
        .map_err(|e| TlsError(format!("cannot read the CA file {file}: {e}")))?;
    for cert in certs {
        let cert = cert.map_err(|e| TlsError(format!("cannot read the CA file {file}: {e}")))?;
        store.add(cert).map_err(|e| {
            TlsError(format!(
                "the CA file {file} holds an unusable certificate: {e}"
            ))
        })?;
    }
    if store.is_empty() {
        return Err(TlsError(format!(
            "the CA file {file} holds no PEM certificate"
        )));
    }
    Ok(store)
}

/// `verify-ca`: the chain must be trusted; the name in the certificate is not checked.
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `require` without a CA (libpq's meaning): encrypted, the certificate not checked; the
/// handshake signatures still are.
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `conn` without the parameters `keys` (case-insensitive), and their values (last one wins),
/// for both the URL form (`?k=v&…`, values percent-decoded) and the key=value form (values may
/// be single-quoted).
fn extract(conn: &str, keys: &[&str]) -> (String, Vec<Option<String>>) {
    let mut found: Vec<Option<String>> = vec![None; keys.len()];
    let wanted = |k: &str| keys.iter().position(|w| w.eq_ignore_ascii_case(k.trim()));
    let lower = conn.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        let Some(q) = conn.find('?') else {
            return (conn.to_string(), found);
        };
        let (head, query) = conn.split_at(q);
        let mut kept = Vec::new();
        for p in query[1..].split('&') {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match wanted(k) {
                Some(i) => {
                    found[i] = Some(
                        percent_encoding::percent_decode_str(v)
                            .decode_utf8_lossy()
                            .into_owned(),
                    );
                }
                None => kept.push(p),
            }
        }
        let rest = if kept.is_empty() {
            head.to_string()
        } else {
            format!("{head}?{}", kept.join("&"))
        };
        return (rest, found);
    }
    // key=value form.
    let mut out = String::new();
    let mut chars = conn.char_indices().peekable();
    let bytes = conn;
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            out.push(c);
            chars.next();
            continue;
        }
        // A key, then optional spaces, '=', optional spaces, a value.
        let mut key_end = start;
        while let Some(&(i, c)) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key_end = i + c.len_utf8();
            chars.next();
        }
        let key = &bytes[start..key_end];
        while chars.peek().is_some_and(|&(_, c)| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_some_and(|&(_, c)| c == '=') {
            chars.next();
        }
        while chars.peek().is_some_and(|&(_, c)| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        let value_start = chars.peek().map_or(conn.len(), |&(i, _)| i);
        if chars.peek().is_some_and(|&(_, c)| c == '\'') {
            chars.next();
            let mut esc = false;
            for (_, c) in chars.by_ref() {
                if esc {
                    value.push(c);
                    esc = false;
                } else if c == '\\' {
                    esc = true;
                } else if c == '\'' {
                    break;
                } else {
                    value.push(c);
                }
            }
        } else {
            while let Some(&(_, c)) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        let value_end = chars.peek().map_or(conn.len(), |&(i, _)| i);
        match wanted(key) {
            Some(i) => found[i] = Some(value),
            None => {
                out.push_str(key);
                out.push('=');
                out.push_str(&conn[value_start..value_end]);
            }
        }
    }
    (out, found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_parameters_are_taken_out_of_both_forms() {
        let (rest, v) = extract(
            "postgres://a:b@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.pem",
            &["sslmode", "sslrootcert"],
        );
        assert_eq!(rest, "postgres://a:b@h:5/db?application_name=x");
        assert_eq!(v[0].as_deref(), Some("verify-full"));
        assert_eq!(v[1].as_deref(), Some("/tmp/ca.pem"));

        let (rest, v) = extract(
            "host=h sslmode = verify-ca sslrootcert='/a b/ca.pem' user=x",
            &["sslmode", "sslrootcert"],
        );
        assert_eq!(
            rest.split_whitespace().collect::<Vec<_>>(),
            ["host=h", "user=x"]
        );
        assert_eq!(v[0].as_deref(), Some("verify-ca"));
        assert_eq!(v[1].as_deref(), Some("/a b/ca.pem"));
    }

    #[test]
    fn modes() -> Result<(), TlsError> {
        assert_eq!(prepare("postgres://h/db")?.mode, Mode::Plain);
        assert_eq!(
            prepare("postgres://h/db?sslmode=require")?.mode,
            Mode::Encrypt
        );
        let missing = prepare("postgres://h/db?sslmode=verify-full").err();
        assert!(missing.is_some_and(|e| e.0.contains("needs sslrootcert")));
        let unreadable =
            prepare("host=h sslmode=verify-full sslrootcert=/nonexistent/ca.pem").err();
        assert!(unreadable.is_some_and(|e| e.0.contains("cannot read the CA file")));
        assert!(prepare("postgres://h/db?sslmode=bogus").is_err());
        Ok(())
    }
}
