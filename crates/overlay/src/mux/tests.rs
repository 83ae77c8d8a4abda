use std::time::Duration;

use futures::future::poll_fn;
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::core::muxing::StreamMuxerExt;
use libp2p::identity::Keypair;
use tokio_util::compat::TokioAsyncReadCompatExt;

use super::*;
use crate::secure::{Secure, TLS_PROTOCOL};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Tls = crate::secure::SecureStream<tokio_util::compat::Compat<tokio::net::TcpStream>>;

/// A writer that takes at most `limit` bytes per call and notes every call it gets.
struct Recorder {
    out: Vec<u8>,
    calls: Vec<usize>,
    limit: usize,
    flushes: usize,
}

impl AsyncWrite for Recorder {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = buf.len().min(self.limit);
        self.out.extend_from_slice(&buf[..n]);
        self.calls.push(n);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(self.limit - n);
            self.out.extend_from_slice(&b[..take]);
            n += take;
        }
        self.calls.push(n);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.flushes += 1;
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Recorder {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(0))
    }
}

fn recorder(limit: usize) -> Coalesce<Recorder> {
    Coalesce::new(Recorder {
        out: Vec::new(),
        calls: Vec::new(),
        limit,
        flushes: 0,
    })
}

#[tokio::test]
async fn a_header_goes_out_in_the_same_write_as_the_body_after_it() -> Result<(), Error> {
    let mut w = recorder(usize::MAX);
    let body = vec![7u8; 1000];
    w.write_all(&[1; 12]).await?;
    assert!(w.inner.calls.is_empty(), "a header alone is held back");
    w.write_all(&body).await?;
    assert_eq!(w.inner.calls, vec![1012]);
    // Header-only frames (window updates, pings) go out at the next flush.
    w.write_all(&[2; 12]).await?;
    w.write_all(&[3; 12]).await?;
    w.flush().await?;
    assert_eq!(w.inner.calls, vec![1012, 24]);
    assert_eq!(w.inner.flushes, 1);
    let mut want = vec![1u8; 12];
    want.extend_from_slice(&body);
    want.extend_from_slice(&[2; 12]);
    want.extend_from_slice(&[3; 12]);
    assert_eq!(w.inner.out, want);
    Ok(())
}

#[tokio::test]
async fn short_writes_below_keep_every_byte_in_order() -> Result<(), Error> {
    // The layer below takes 5 bytes at a time: held bytes and the body are split anywhere.
    let mut w = recorder(5);
    let mut want = Vec::new();
    for i in 0..50u8 {
        let small = vec![i; usize::from(i % 13)];
        let large = vec![i.wrapping_mul(3); 65 + usize::from(i)];
        w.write_all(&small).await?;
        w.write_all(&large).await?;
        want.extend_from_slice(&small);
        want.extend_from_slice(&large);
    }
    w.write_all(b"tail").await?;
    w.close().await?;
    want.extend_from_slice(b"tail");
    assert_eq!(w.inner.out, want);
    Ok(())
}

/// A kith multiplexer over TLS on one side of a loopback connection and libp2p's stock
/// Yamux (16 KiB frames) on the other.
async fn kith_and_stock() -> Result<(Muxer<Coalesce<Tls>>, libp2p::yamux::Muxer<Tls>), Error> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let dial = tokio::net::TcpStream::connect(l.local_addr()?);
    let (d, a) = tokio::join!(dial, l.accept());
    let (d, a) = (d?.compat(), a?.0.compat());
    let (ka, kb) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (out, inb) = tokio::join!(
        Secure::new(&ka)?.upgrade_outbound(d, TLS_PROTOCOL),
        Secure::new(&kb)?.upgrade_inbound(a, TLS_PROTOCOL)
    );
    let kith = muxer().upgrade_outbound(out?.1, PROTOCOL).await?;
    let stock = libp2p::yamux::Config::default()
        .upgrade_inbound(inb?.1, PROTOCOL)
        .await?;
    Ok((kith, stock))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Drives a muxer until it fails or closes.
async fn drive<M: StreamMuxer + Unpin>(mut m: M) {
    while poll_fn(|cx| m.poll_unpin(cx)).await.is_ok() {}
}

#[tokio::test]
async fn large_frames_interoperate_with_stock_yamux_both_ways() -> Result<(), Error> {
    let (mut kith, mut stock) = kith_and_stock().await?;
    let size = 3 * 1024 * 1024 + 17;
    tokio::time::timeout(Duration::from_secs(30), async move {
        let mut ours = poll_fn(|cx| kith.poll_outbound_unpin(cx)).await?;
        let kith_task = tokio::spawn(drive(kith));
        // The stream reaches the other side with its first bytes.
        let sent = pattern(size, 1);
        ours.write_all(&sent[..1]).await?;
        ours.flush().await?;
        let theirs = poll_fn(|cx| stock.poll_inbound_unpin(cx)).await?;
        let stock_task = tokio::spawn(drive(stock));
        // Both directions at once, each side reading while it writes (a side that only
        // wrote would stall on the other's window).
        let (mut our_rd, mut our_wr) = ours.split();
        let (mut their_rd, mut their_wr) = theirs.split();
        let back = pattern(size, 2);
        let (w1, w2, at_stock, at_kith) = tokio::join!(
            async {
                our_wr.write_all(&sent[1..]).await?;
                our_wr.close().await
            },
            async {
                their_wr.write_all(&back).await?;
                their_wr.close().await
            },
            async {
                let mut got = Vec::new();
                their_rd.read_to_end(&mut got).await.map(|_| got)
            },
            async {
                let mut got = Vec::new();
                our_rd.read_to_end(&mut got).await.map(|_| got)
            },
        );
        w1?;
        w2?;
        assert!(at_stock? == sent, "kith to stock: bytes differ");
        assert!(at_kith? == back, "stock to kith: bytes differ");
        kith_task.abort();
        stock_task.abort();
        Ok::<_, Error>(())
    })
    .await?
}
