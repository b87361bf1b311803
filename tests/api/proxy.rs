//! A TCP proxy the test owns, put between an instance and its database, so
//! that faults are injected rather than awaited: the link can be cut (a
//! partition: packets silently dropped), reset (the far end refuses), and
//! healed.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Bytes flow both ways.
    Up,
    /// Nothing flows and nothing is said: open connections stall with their
    /// sockets left open, and new ones are accepted and then ignored, as
    /// when a network drops every packet.
    Cut,
    /// Every connection, open or new, is reset at once, as by a database
    /// server that is down or a host that refuses.
    Reset,
}

pub struct Proxy {
    addr: SocketAddr,
    link: watch::Sender<Link>,
    accepting: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a port of its own on 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the proxy binds");
        let addr = listener.local_addr().unwrap();
        let (link, watching) = watch::channel(Link::Up);
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream, watching.clone()));
            }
        });
        Proxy {
            addr,
            link,
            accepting,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every packet from now on, both ways, on every connection.
    pub fn cut(&self) {
        self.link.send_replace(Link::Cut);
    }

    /// Resets every connection and every new one.
    pub fn reset(&self) {
        self.link.send_replace(Link::Reset);
    }

    /// New connections forward again. Those a cut stalled are reset, as a
    /// partition that lasted long enough for the ends to give up leaves them.
    pub fn heal(&self) {
        self.link.send_replace(Link::Up);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// One client connection, from its accept to its end. The sockets are
/// dropped when the proxy is (its sender gone), or when either end closes.
async fn relay(mut client: TcpStream, upstream: SocketAddr, mut link: watch::Receiver<Link>) {
    let state = *link.borrow_and_update();
    match state {
        Link::Reset => return reset(client),
        // Accepted, never answered.
        Link::Cut => return stall(client, link).await,
        Link::Up => {}
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return reset(client);
    };
    let state = {
        let forwarding = tokio::io::copy_bidirectional(&mut client, &mut server);
        tokio::pin!(forwarding);
        loop {
            tokio::select! {
                // One end closed or failed: so does the other.
                _ = &mut forwarding => return,
                changed = link.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let state = *link.borrow_and_update();
                    if state != Link::Up {
                        // What was in flight is dropped with the copy.
                        break state;
                    }
                }
            }
        }
    };
    match state {
        Link::Reset => {
            reset(server);
            reset(client);
        }
        _ => {
            stall(client, link).await;
            reset(server);
        }
    }
}

/// Holds the connection open without reading or writing until the link
/// changes again (or the proxy is dropped), then resets it.
async fn stall(client: TcpStream, mut link: watch::Receiver<Link>) {
    if link.changed().await.is_ok() {
        reset(client);
    }
}

/// Closes with RST rather than FIN, as a refusing host does.
fn reset(stream: TcpStream) {
    // A zero linger makes the close send RST; unlike a positive one, it
    // never blocks.
    let _ = stream.set_zero_linger();
    drop(stream);
}

// ---- the proxy's own tests ----

/// How long a proxy that works takes at most, on a busy machine.
const WAIT: Duration = Duration::from_secs(5);

/// An echo server standing in for the database.
async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn round_trip(conn: &mut TcpStream, within: Duration) -> std::io::Result<bool> {
    conn.write_all(b"ping").await?;
    let mut buf = [0; 4];
    match tokio::time::timeout(within, conn.read_exact(&mut buf)).await {
        Ok(read) => read.map(|_| &buf == b"ping"),
        Err(_) => Ok(false),
    }
}

#[tokio::test]
async fn a_cut_stalls_open_and_new_connections_and_a_heal_resets_them_and_serves_new_ones() {
    // Arrange
    let proxy = Proxy::start(echo().await).await;
    let mut before = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(round_trip(&mut before, WAIT).await.unwrap());

    // Act
    proxy.cut();
    let stalled = round_trip(&mut before, Duration::from_millis(300)).await;
    let mut during = TcpStream::connect(proxy.addr()).await.unwrap();
    let unanswered = round_trip(&mut during, Duration::from_millis(300)).await;
    proxy.heal();
    let mut after = TcpStream::connect(proxy.addr()).await.unwrap();

    // Assert: silence, not an error, while cut.
    assert!(!stalled.unwrap(), "no answer on an open connection");
    assert!(!unanswered.unwrap(), "no answer on a new connection");
    assert!(round_trip(&mut after, WAIT).await.unwrap());
    let mut buf = [0; 1];
    for stalled in [&mut before, &mut during] {
        let read = tokio::time::timeout(WAIT, stalled.read(&mut buf)).await;
        assert!(read.expect("reset at the heal").is_err(), "RST, not EOF");
    }
}

#[tokio::test]
async fn a_reset_fails_open_and_new_connections_at_once() {
    // Arrange
    let proxy = Proxy::start(echo().await).await;
    let mut before = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(round_trip(&mut before, WAIT).await.unwrap());

    // Act
    proxy.reset();
    let mut buf = [0; 1];
    let open = tokio::time::timeout(WAIT, before.read(&mut buf)).await;
    let mut during = TcpStream::connect(proxy.addr()).await.unwrap();
    let new = tokio::time::timeout(WAIT, during.read(&mut buf)).await;
    proxy.heal();
    let mut after = TcpStream::connect(proxy.addr()).await.unwrap();

    // Assert
    assert!(open.expect("a reset is at once").is_err(), "RST, not EOF");
    assert!(new.expect("a reset is at once").is_err(), "RST, not EOF");
    assert!(round_trip(&mut after, WAIT).await.unwrap());
}
