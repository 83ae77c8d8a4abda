//! The secure channel on TCP (and relayed) connections: libp2p's TLS 1.3 handshake
//! (`/tls/1.0.0`, the same certificates and checks as every libp2p-tls peer) offered first,
//! with AES-GCM preferred, and Noise (`/noise`) for peers that offer nothing else.
//!
//! Why our own TLS configuration: libp2p-tls lists ChaCha20-Poly1305 first, and its
//! server follows the client's order, so two peers always pick ChaCha20 even on CPUs with
//! AES instructions, where AES-GCM costs a fraction of it. Here both sides list AES-GCM
//! first and the server chooses by its own order, so a kith server picks AES-GCM for any
//! client that offers it. The cipher is negotiated: stock libp2p-tls peers still connect.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use futures::future::{BoxFuture, Either};
use futures::io::BufReader;
use futures::{AsyncRead, AsyncWrite, FutureExt};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};
use libp2p::identity::Keypair;
use libp2p::{PeerId, noise, tls::certificate};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::aws_lc_rs::cipher_suite::{
    TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// The TLS handshake's protocol ID and ALPN, as libp2p specifies them.
pub const TLS_PROTOCOL: &str = "/tls/1.0.0";
const ALPN: &[u8] = b"libp2p";
const NOISE_PROTOCOL: &str = "/noise";
/// Encrypted bytes a connection queues before the socket takes them (rustls's default is
/// 64 KiB): room for a whole multiplexer frame ([`crate::mux::FRAME`]) and its header, so
/// a frame is encrypted and handed to the kernel in one go.
const SEND_BUFFER: usize = 2 * crate::mux::FRAME;
/// Bytes read from the socket at once under TLS. rustls asks for 4 KiB at a time, which
/// on a fast connection means several system calls per record; one read of up to 64 KiB
/// serves many records. It costs 64 KiB per TLS connection.
const READ_BUFFER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SecureError {
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("peer certificate: {0}")]
    Certificate(String),
    #[error("noise handshake failed: {0}")]
    Noise(#[from] noise::Error),
    #[error("cannot set up the secure channel: {0}")]
    Setup(String),
}

/// Offers TLS first, then Noise; the dialer's first choice the listener supports wins.
#[derive(Clone)]
pub struct Secure {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    noise: noise::Config,
}

/// The connection after either handshake.
pub type SecureStream<C> = Either<futures_rustls::TlsStream<BufReader<C>>, noise::Output<C>>;

impl Secure {
    pub fn new(key: &Keypair) -> Result<Self, SecureError> {
        let (cert, private) =
            certificate::generate(key).map_err(|e| SecureError::Setup(e.to_string()))?;
        let signer = rustls::crypto::aws_lc_rs::sign::any_ecdsa_type(&private)
            .map_err(|e| SecureError::Setup(e.to_string()))?;
        let certified = Arc::new(rustls::sign::CertifiedKey::new(vec![cert], signer));
        let resolver = Arc::new(OwnCert(certified));
        let verifier = Arc::new(PeerCert);

        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| SecureError::Setup(e.to_string()))?
            .with_client_cert_verifier(verifier.clone())
            .with_cert_resolver(resolver.clone());
        server.alpn_protocols = vec![ALPN.to_vec()];
        // Choose by our order (AES-GCM first), not the client's.
        server.ignore_client_order = true;

        let mut client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| SecureError::Setup(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(resolver);
        client.alpn_protocols = vec![ALPN.to_vec()];

        Ok(Self {
            server: Arc::new(server),
            client: Arc::new(client),
            noise: noise::Config::new(key)?,
        })
    }
}

/// aws-lc's provider with the TLS 1.3 suites in the order kith prefers.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    p.cipher_suites = vec![
        TLS13_AES_256_GCM_SHA384,
        TLS13_AES_128_GCM_SHA256,
        TLS13_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(p)
}

impl UpgradeInfo for Secure {
    type Info = &'static str;
    type InfoIter = std::array::IntoIter<&'static str, 2>;

    fn protocol_info(&self) -> Self::InfoIter {
        [TLS_PROTOCOL, NOISE_PROTOCOL].into_iter()
    }
}

impl<C> InboundConnectionUpgrade<C> for Secure
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, SecureStream<C>);
    type Error = SecureError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, socket: C, info: Self::Info) -> Self::Future {
        if info == NOISE_PROTOCOL {
            return self
                .noise
                .upgrade_inbound(socket, NOISE_PROTOCOL)
                .map(|r| r.map(|(p, s)| (p, Either::Right(s))).map_err(Into::into))
                .boxed();
        }
        async move {
            let mut stream = futures_rustls::TlsAcceptor::from(self.server)
                .accept(BufReader::with_capacity(READ_BUFFER, socket))
                .await
                .map_err(SecureError::Tls)?;
            stream.get_mut().1.set_buffer_limit(Some(SEND_BUFFER));
            let peer = peer_of(stream.get_ref().1)?;
            Ok((peer, Either::Left(stream.into())))
        }
        .boxed()
    }
}

impl<C> OutboundConnectionUpgrade<C> for Secure
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, SecureStream<C>);
    type Error = SecureError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, socket: C, info: Self::Info) -> Self::Future {
        if info == NOISE_PROTOCOL {
            return self
                .noise
                .upgrade_outbound(socket, NOISE_PROTOCOL)
                .map(|r| r.map(|(p, s)| (p, Either::Right(s))).map_err(Into::into))
                .boxed();
        }
        async move {
            // The libp2p TLS spec: clients send no server name (an unspecified address
            // turns SNI off).
            let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into());
            let mut stream = futures_rustls::TlsConnector::from(self.client)
                .connect(name, BufReader::with_capacity(READ_BUFFER, socket))
                .await
                .map_err(SecureError::Tls)?;
            stream.get_mut().1.set_buffer_limit(Some(SEND_BUFFER));
            let peer = peer_of(stream.get_ref().1)?;
            Ok((peer, Either::Left(stream.into())))
        }
        .boxed()
    }
}

/// The peer ID in the one certificate the handshake verified.
fn peer_of(state: &rustls::CommonState) -> Result<PeerId, SecureError> {
    match state.peer_certificates() {
        Some([cert]) => certificate::parse(cert)
            .map(|c| c.peer_id())
            .map_err(|e| SecureError::Certificate(e.to_string())),
        _ => Err(SecureError::Certificate("expected exactly one".into())),
    }
}

/// Presents this node's certificate (a fresh key, signed by the node's identity key).
#[derive(Debug)]
struct OwnCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for OwnCert {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl rustls::server::ResolvesServerCert for OwnCert {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// libp2p's certificate rules, both ways: exactly one self-signed certificate carrying a
/// valid signature of its key by the peer's identity key; handshakes signed by that key.
/// Which peer it is gets checked by the swarm against the address dialed.
#[derive(Debug)]
struct PeerCert;

fn one_cert(end: &CertificateDer<'_>, rest: &[CertificateDer<'_>]) -> Result<(), rustls::Error> {
    if !rest.is_empty() {
        return Err(rustls::Error::General(
            "libp2p TLS takes exactly one certificate".into(),
        ));
    }
    certificate::parse(end)?;
    Ok(())
}

fn check_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    certificate::parse(cert)?.verify_signature(dss.scheme, message, dss.signature())?;
    Ok(HandshakeSignatureValid::assertion())
}

fn schemes() -> Vec<SignatureScheme> {
    vec![
        SignatureScheme::ECDSA_NISTP384_SHA384,
        SignatureScheme::ECDSA_NISTP256_SHA256,
        SignatureScheme::ED25519,
        SignatureScheme::RSA_PSS_SHA512,
        SignatureScheme::RSA_PSS_SHA384,
        SignatureScheme::RSA_PSS_SHA256,
        SignatureScheme::RSA_PKCS1_SHA512,
        SignatureScheme::RSA_PKCS1_SHA384,
        SignatureScheme::RSA_PKCS1_SHA256,
    ]
}

fn no_tls12() -> rustls::Error {
    rustls::Error::General("libp2p TLS is TLS 1.3 only".into())
}

impl ServerCertVerifier for PeerCert {
    fn verify_server_cert(
        &self,
        end: &CertificateDer<'_>,
        rest: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        one_cert(end, rest)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

impl ClientCertVerifier for PeerCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end: &CertificateDer<'_>,
        rest: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        one_cert(end, rest)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

#[cfg(test)]
mod tests;
