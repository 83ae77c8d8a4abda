use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::core::transport::{ListenerId, Transport, TransportEvent};

use libp2p::core::upgrade::Version;
use libp2p::{Multiaddr, noise, tcp, yamux};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

use super::*;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Two ends of one loopback TCP connection.
async fn pair() -> Result<(Compat<tokio::net::TcpStream>, Compat<tokio::net::TcpStream>), Error> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let dial = tokio::net::TcpStream::connect(l.local_addr()?);
    let (d, a) = tokio::join!(dial, l.accept());
    Ok((d?.compat(), a?.0.compat()))
}

fn suite<C>(s: &SecureStream<C>) -> Option<rustls::CipherSuite> {
    match s {
        Either::Left(tls) => tls.get_ref().1.negotiated_cipher_suite().map(|s| s.suite()),
        Either::Right(_) => None,
    }
}

#[tokio::test]
async fn two_kith_peers_agree_on_aes_gcm_and_know_each_other() -> Result<(), Error> {
    let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (d, l) = pair().await?;
    let (sa, sb) = (Secure::new(&a)?, Secure::new(&b)?);
    let (out, inb) = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        tokio::join!(
            sa.upgrade_outbound(d, TLS_PROTOCOL),
            sb.upgrade_inbound(l, TLS_PROTOCOL)
        )
    })
    .await?;
    let ((peer_b, mut out), (peer_a, mut inb)) = (out?, inb?);
    assert_eq!(peer_b, b.public().to_peer_id());
    assert_eq!(peer_a, a.public().to_peer_id());
    assert_eq!(
        suite(&out),
        Some(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384)
    );
    assert_eq!(suite(&inb), suite(&out));
    out.write_all(b"hello").await?;
    out.flush().await?;
    let mut got = [0u8; 5];
    inb.read_exact(&mut got).await?;
    assert_eq!(&got, b"hello");
    Ok(())
}

#[tokio::test]
async fn a_stock_libp2p_tls_client_gets_aes_gcm_from_a_kith_server() -> Result<(), Error> {
    let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (d, l) = pair().await?;
    // libp2p-tls lists ChaCha20 first; the kith server chooses by its own order.
    let stock = libp2p::tls::Config::new(&a)?;
    let (out, inb) = tokio::join!(
        stock.upgrade_outbound(d, "/tls/1.0.0"),
        Secure::new(&b)?.upgrade_inbound(l, TLS_PROTOCOL)
    );
    let (peer_b, _) = out?;
    let (peer_a, inb) = inb?;
    assert_eq!(peer_b, b.public().to_peer_id());
    assert_eq!(peer_a, a.public().to_peer_id());
    assert_eq!(
        suite(&inb),
        Some(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384)
    );
    Ok(())
}

#[tokio::test]
async fn a_kith_client_is_accepted_by_a_stock_libp2p_tls_server() -> Result<(), Error> {
    let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (d, l) = pair().await?;
    let stock = libp2p::tls::Config::new(&b)?;
    let (out, inb) = tokio::join!(
        Secure::new(&a)?.upgrade_outbound(d, TLS_PROTOCOL),
        stock.upgrade_inbound(l, "/tls/1.0.0")
    );
    let (peer_b, out) = out?;
    assert_eq!(peer_b, b.public().to_peer_id());
    assert_eq!(inb?.0, a.public().to_peer_id());
    // The stock server follows the client's order: AES-GCM here too.
    assert_eq!(
        suite(&out),
        Some(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384)
    );
    Ok(())
}

/// One TCP connection through full transports: returns the peer each side saw.
async fn connect(dialer: Boxed, listener: Boxed) -> Result<(PeerId, PeerId), Error> {
    let (mut dialer, mut listener) = (dialer, listener);
    let id = ListenerId::next();
    listener.listen_on(id, "/ip4/127.0.0.1/tcp/0".parse()?)?;
    let addr: Multiaddr = loop {
        match futures::StreamExt::next(&mut listener).await {
            Some(TransportEvent::NewAddress { listen_addr, .. }) => break listen_addr,
            Some(_) => {}
            None => return Err("listener ended".into()),
        }
    };
    let dial = dialer.dial(
        addr,
        libp2p::core::transport::DialOpts {
            role: libp2p::core::Endpoint::Dialer,
            port_use: libp2p::core::transport::PortUse::New,
        },
    )?;
    let accept = async {
        loop {
            if let Some(TransportEvent::Incoming { upgrade, .. }) =
                futures::StreamExt::next(&mut listener).await
            {
                return upgrade.await.map(|(p, _)| p).map_err(Error::from);
            }
        }
    };
    let (d, l) = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        tokio::join!(dial, accept)
    })
    .await?;
    Ok((d.map_err(Error::from)?.0, l?))
}

type Boxed = libp2p::core::transport::Boxed<(PeerId, libp2p::core::muxing::StreamMuxerBox)>;

fn kith(key: &Keypair) -> Result<Boxed, Error> {
    Ok(tcp::tokio::Transport::new(tcp::Config::default())
        .upgrade(Version::V1)
        .authenticate(Secure::new(key)?)
        .multiplex(crate::mux::muxer())
        .map(|(p, m), _| (p, libp2p::core::muxing::StreamMuxerBox::new(m)))
        .boxed())
}

fn noise_only(key: &Keypair) -> Result<Boxed, Error> {
    Ok(tcp::tokio::Transport::new(tcp::Config::default())
        .upgrade(Version::V1)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .map(|(p, m), _| (p, libp2p::core::muxing::StreamMuxerBox::new(m)))
        .boxed())
}

#[tokio::test]
async fn peers_that_speak_only_noise_still_connect_both_ways() -> Result<(), Error> {
    let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (seen_b, seen_a) = connect(noise_only(&a)?, kith(&b)?).await?;
    assert_eq!(
        (seen_b, seen_a),
        (b.public().to_peer_id(), a.public().to_peer_id())
    );
    let (seen_a, seen_b) = connect(kith(&b)?, noise_only(&a)?).await?;
    assert_eq!(
        (seen_a, seen_b),
        (a.public().to_peer_id(), b.public().to_peer_id())
    );
    let (seen_b, seen_a) = connect(kith(&a)?, kith(&b)?).await?;
    assert_eq!(
        (seen_b, seen_a),
        (b.public().to_peer_id(), a.public().to_peer_id())
    );
    Ok(())
}
