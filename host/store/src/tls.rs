//! TLS for `rediss://`: the checks of a [`TlsConfig`], the settings handed to the
//! `redis` crate, and the rustls client configuration of the lean reader ([`wire`]).
//!
//! Both use rustls with the ring provider. The `redis` crate builds its rustls
//! configuration from the process-wide default provider; [`install_provider`] makes
//! that ring unless the application installed one already.
//!
//! [`wire`]: crate::wire

use std::sync::{Arc, Once};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::TlsConfig;
use crate::error::{Error, Result};

/// The certificates in a PEM text; an error (without any of the text) if there is none.
pub(crate) fn parse_certs(pem: &[u8]) -> std::result::Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate ({e})"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned());
    }
    Ok(certs)
}

/// The private key in a PEM text; the error never includes the text.
pub(crate) fn parse_key(pem: &[u8]) -> std::result::Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("not a PEM private key ({e})"))
}

/// Checks the settings on their own (done by [`StoreConfig::validate`](crate::StoreConfig::validate)).
pub(crate) fn check(tls: &TlsConfig) -> Result<()> {
    if let Some(ca) = &tls.ca_pem {
        parse_certs(ca).map_err(|e| Error::invalid(format!("the TLS CA certificate {e}")))?;
    }
    match (&tls.client_cert_pem, tls.client_key()) {
        (None, None) => {}
        (Some(cert), Some(key)) => {
            parse_certs(cert)
                .map_err(|e| Error::invalid(format!("the TLS client certificate {e}")))?;
            parse_key(key).map_err(|e| Error::invalid(format!("the TLS client key is {e}")))?;
        }
        (Some(_), None) => {
            return Err(Error::invalid("a TLS client certificate needs its key"));
        }
        (None, Some(_)) => {
            return Err(Error::invalid("a TLS client key needs its certificate"));
        }
    }
    Ok(())
}

/// Makes ring rustls's process-wide default provider, unless one is installed.
pub(crate) fn install_provider() {
    if CryptoProvider::get_default().is_none() {
        // Losing a race with another thread installing one is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Logs, once per process, that certificates are not verified.
pub(crate) fn warn_insecure(url: &str) {
    static WARNED: Once = Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            url,
            "TLS certificate verification is off (insecure): for development only"
        );
    });
}

/// The lean reader's rustls configuration: the same trust, identity and `insecure`
/// as the `redis` crate's connections.
pub(crate) fn client_config(tls: &TlsConfig, insecure: bool) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid(format!("TLS setup: {e}")))?;
    let builder = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(
                provider.signature_verification_algorithms,
            )))
    } else {
        let mut roots = RootCertStore::empty();
        match &tls.ca_pem {
            Some(ca) => {
                for cert in parse_certs(ca)
                    .map_err(|e| Error::invalid(format!("the TLS CA certificate {e}")))?
                {
                    roots.add(cert).map_err(|e| {
                        Error::invalid(format!("the TLS CA certificate is not usable: {e}"))
                    })?;
                }
            }
            None => {
                // Certificates the system store holds but rustls cannot use are skipped, as
                // the redis crate's own loading does with errors of single files.
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
            }
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&tls.client_cert_pem, tls.client_key()) {
        (Some(cert), Some(key)) => {
            let chain = parse_certs(cert)
                .map_err(|e| Error::invalid(format!("the TLS client certificate {e}")))?;
            let key =
                parse_key(key).map_err(|e| Error::invalid(format!("the TLS client key is {e}")))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                Error::invalid(format!(
                    "the TLS client certificate and key do not go together: {e}"
                ))
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The server's name as TLS checks it (a DNS name or an IP address).
pub(crate) fn server_name(host: &str, url: &str) -> Result<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|e| Error::invalid(format!("{url}: {host:?} is not a TLS server name: {e}")))
}

/// Why a connection's I/O failed in TLS (a handshake refused, a certificate not
/// trusted, an alert from the server), if it did.
pub(crate) fn failure_reason(e: &std::io::Error) -> Option<String> {
    let e = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    let hint = match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
            " (the server's certificate is not signed by the CA given, or by one the system trusts)"
        }
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired) => {
            " (the server wants a client certificate)"
        }
        _ => "",
    };
    Some(format!("{e}{hint}"))
}

/// `insecure`: accepts any server certificate (signatures are still checked, so the
/// handshake itself is sound; who is at the other end is not).
#[derive(Debug)]
struct NoVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
