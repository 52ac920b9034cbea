//! A PostgreSQL connection driven on the thread that uses it: no runtime, no other thread.
//!
//! Why: tokio-postgres splits a connection into a `Client` (what sends queries) and a
//! `Connection` (the socket's I/O), which normally runs as a task on a runtime. Every statement
//! then costs three thread switches (the caller wakes the I/O task to send, the reactor wakes it
//! for the answer, it wakes the caller), and on the benchmark's two cores those switches were
//! most of the host's CPU per event. Here the caller's thread polls both halves itself, over a
//! non-blocking socket, and waits for the answer in `poll(2)`: a statement is a write, a wait
//! and a read on the calling thread. The store blocks its caller for a statement anyway
//! (`Store`'s methods are synchronous), so nothing is lost.
//!
//! [`Direct::run`] is the whole driver: it polls the statement's future, then the connection
//! (which sends what the statement queued and hands out what the server answered), and sleeps
//! in `poll(2)` only when neither made progress. Several futures polled together (a `join`)
//! share one round trip: tokio-postgres pipelines them.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::Host;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, Config, Connection, NoTls, Statement};

use super::{Result, StoreError};

/// Prepared statements kept per connection; past this the cache starts over (statement texts
/// built per call, such as a claim's exclusion list, must not grow it without bound).
const STATEMENTS: usize = 256;

/// The socket, TCP or a Unix domain socket (a `host` that is a directory).
enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Socket {
    fn try_clone(&self) -> std::io::Result<Socket> {
        Ok(match self {
            Socket::Tcp(s) => Socket::Tcp(s.try_clone()?),
            Socket::Unix(s) => Socket::Unix(s.try_clone()?),
        })
    }

    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        match self {
            Socket::Tcp(s) => s.as_fd(),
            Socket::Unix(s) => s.as_fd(),
        }
    }
}

/// The connection's side of the socket: non-blocking reads and writes that answer `Pending`
/// when the socket is not ready, without registering a waker — [`Direct::run`] polls again
/// after `poll(2)` says the socket is ready, which is what a reactor would have done.
struct Stream {
    socket: Socket,
    /// Set when a write found the socket's buffer full: the driver then waits for writability too.
    write_blocked: Arc<AtomicBool>,
}

fn pending_if_would_block<T>(r: std::io::Result<T>) -> Option<Poll<std::io::Result<T>>> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => None,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Some(Poll::Pending),
        r => Some(Poll::Ready(r)),
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            let read = match &mut this.socket {
                Socket::Tcp(s) => s.read(buf.initialize_unfilled()),
                Socket::Unix(s) => s.read(buf.initialize_unfilled()),
            };
            if let Some(poll) = pending_if_would_block(read) {
                return poll.map_ok(|n| buf.advance(n));
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        loop {
            let written = match &mut this.socket {
                Socket::Tcp(s) => s.write(data),
                Socket::Unix(s) => s.write(data),
            };
            if let Some(poll) = pending_if_would_block(written) {
                if poll.is_pending() {
                    this.write_blocked.store(true, Ordering::Relaxed);
                }
                return poll;
            }
        }
    }

    /// Writes go straight to the socket: nothing is buffered here.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let how = std::net::Shutdown::Write;
        Poll::Ready(match &self.socket {
            Socket::Tcp(s) => s.shutdown(how),
            Socket::Unix(s) => s.shutdown(how),
        })
    }
}

/// A waker that only records that it was woken: the driver then polls again before it sleeps.
#[derive(Default)]
struct Woken(AtomicBool);

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

/// The I/O half and what the driver needs to wait on it.
struct Link {
    connection: Connection<Stream, NoTlsStream>,
    /// The same socket (a duplicate descriptor), to wait on while the connection owns it.
    waiter: Socket,
    write_blocked: Arc<AtomicBool>,
    /// The connection ended (the server closed it, or an I/O error): never polled again.
    closed: bool,
}

/// One PostgreSQL connection, used synchronously from whichever thread holds it.
pub(in crate::store) struct Direct {
    client: Client,
    link: Link,
    /// Prepared statements by their `?N` text.
    statements: HashMap<String, Statement>,
    /// Round trips ([`Direct::run`]) of every connection of the store, counted for metrics.
    trips: Arc<AtomicU64>,
}

impl Direct {
    /// Connects to the first host of `config` that answers (each bounded by its
    /// `connect_timeout`), and authenticates. Its round trips are added to `trips`.
    pub(in crate::store) fn connect(config: &Config, trips: Arc<AtomicU64>) -> Result<Direct> {
        let timeout = config.get_connect_timeout().copied();
        let socket = open(config, timeout)?;
        let write_blocked = Arc::new(AtomicBool::new(false));
        let waiter = socket.try_clone()?;
        let stream = Stream {
            socket,
            write_blocked: write_blocked.clone(),
        };
        let deadline = timeout.map(|t| Instant::now() + t);
        let (client, connection) = wait_for(
            &waiter,
            &write_blocked,
            None,
            config.connect_raw(stream, NoTls),
            deadline,
        )??;
        Ok(Direct {
            client,
            link: Link {
                connection,
                waiter,
                write_blocked,
                closed: false,
            },
            statements: HashMap::new(),
            trips,
        })
    }

    /// Whether the connection ended. Reads what the server sent meanwhile first (without
    /// waiting): a connection the server closed while it sat idle is found closed here.
    pub(in crate::store) fn probe(&mut self) -> bool {
        let link = &mut self.link;
        if !link.closed {
            let waker = Waker::from(Arc::new(Woken::default()));
            let mut cx = Context::from_waker(&waker);
            if Pin::new(&mut link.connection).poll(&mut cx).is_ready() {
                link.closed = true;
            }
        }
        link.closed
    }

    /// Whether the connection is known to have ended (nothing read).
    pub(in crate::store) fn is_closed(&self) -> bool {
        self.link.closed
    }

    /// Runs the future `make` builds from this connection's client to its end on this thread,
    /// driving the connection meanwhile. A connection that ends fails the future.
    pub(in crate::store) fn run<'a, F: Future + 'a>(
        &'a mut self,
        make: impl FnOnce(&'a Client) -> F,
    ) -> Result<F::Output> {
        self.run_until(make, None)
    }

    /// [`Direct::run`], given up past `deadline` (if any): the connection is then closed (an
    /// answer may still come, and would be taken for the next statement's).
    pub(in crate::store) fn run_until<'a, F: Future + 'a>(
        &'a mut self,
        make: impl FnOnce(&'a Client) -> F,
        deadline: Option<Instant>,
    ) -> Result<F::Output> {
        self.trips.fetch_add(1, Ordering::Relaxed);
        let Direct { client, link, .. } = self;
        if link.closed {
            return Err(StoreError::Postgres("the connection is closed".into()));
        }
        wait_for(
            &link.waiter,
            &link.write_blocked,
            Some((&mut link.connection, &mut link.closed)),
            make(client),
            deadline,
        )
    }

    /// Sends `sql` (simple statements whose answer nobody reads) without waiting for its
    /// answer: the server runs it as soon as it arrives, and the connection's next use reads
    /// the answer first and drops it (answers come in order). False when it may not have
    /// left whole (the connection ended, or the socket's buffer was full): the caller then
    /// closes the connection. Not a round trip: nothing waits.
    pub(in crate::store) fn send_only(&mut self, sql: &str) -> bool {
        let Direct { client, link, .. } = self;
        if link.closed {
            return false;
        }
        let woken = Arc::new(Woken::default());
        let waker = Waker::from(woken);
        let mut cx = Context::from_waker(&waker);
        // Its first poll queues the request for the connection; dropped after that, its
        // answer is read and dropped by the connection (tokio-postgres pages through the
        // answers of a request whose receiver is gone).
        let mut statement = pin!(client.batch_execute(sql));
        if statement.as_mut().poll(&mut cx).is_ready() {
            // Answered at once: the client is closed.
            return false;
        }
        link.write_blocked.store(false, Ordering::Relaxed);
        if Pin::new(&mut link.connection).poll(&mut cx).is_ready() {
            link.closed = true;
            return false;
        }
        !link.write_blocked.load(Ordering::Relaxed)
    }

    /// Marks the connection ended: never used again, closed when dropped.
    pub(in crate::store) fn close(&mut self) {
        self.link.closed = true;
    }

    /// The statement prepared for `sql` (its `?N` text) on this connection, if it was.
    pub(in crate::store) fn cached(&self, sql: &str) -> Option<Statement> {
        self.statements.get(sql).cloned()
    }

    /// Keeps `statement`, prepared for `sql`, for the next calls.
    pub(in crate::store) fn remember(&mut self, sql: &str, statement: Statement) {
        if self.statements.len() >= STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), statement);
    }
}

/// Polls `future`, then the connection (if any), until the future is done; sleeps in `poll(2)`
/// on the socket when neither made progress. Past `deadline`, gives up.
fn wait_for<F: Future>(
    waiter: &Socket,
    write_blocked: &AtomicBool,
    mut connection: Option<(&mut Connection<Stream, NoTlsStream>, &mut bool)>,
    future: F,
    deadline: Option<Instant>,
) -> Result<F::Output> {
    let woken = Arc::new(Woken::default());
    let waker = Waker::from(woken.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        woken.0.store(false, Ordering::Release);
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Ok(output);
        }
        if let Some((connection, closed)) = connection.as_mut() {
            // Sends what the future queued, hands out what the server answered.
            if let Poll::Ready(ended) = Pin::new(&mut **connection).poll(&mut cx) {
                **closed = true;
                let reason = match ended {
                    Ok(()) => "the server closed the connection".to_string(),
                    Err(e) => e.to_string(),
                };
                return Err(StoreError::Postgres(reason));
            }
        }
        if woken.0.load(Ordering::Acquire) {
            continue;
        }
        let mut flags = PollFlags::IN;
        if write_blocked.swap(false, Ordering::Relaxed) {
            flags |= PollFlags::OUT;
        }
        let timeout = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    if let Some((_, closed)) = connection.as_mut() {
                        **closed = true;
                    }
                    return Err(StoreError::Postgres(
                        "timed out waiting for the server".into(),
                    ));
                }
                Some(rustix::time::Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: left.subsec_nanos().into(),
                })
            }
            None => None,
        };
        let mut fds = [PollFd::from_borrowed_fd(waiter.fd(), flags)];
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(StoreError::Postgres(format!("waiting for the server: {e}"))),
        }
    }
}

/// TCP keepalive probes after this long idle, this often, this many times: a server that
/// vanished without a reset (a failover, a NAT timeout, a cut cable) is found within about 30 s
/// instead of the system's 2 hours, and the statement waiting on it fails (the writer then
/// reconnects, intake answers 503) instead of blocking its thread for good.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;
/// Data sent and not acknowledged for this long ends the connection (keepalive probes only
/// start once the socket is idle, and a statement in flight is not idle).
const UNACKED_LIMIT: Duration = Duration::from_secs(30);

/// Turns on what finds a dead server on `stream`: keepalive probes and a bound on unacknowledged
/// data. `connect_raw` (unlike tokio-postgres's own `connect`) sets neither.
fn dead_peer_found(stream: &TcpStream) -> std::io::Result<()> {
    let socket = socket2::SockRef::from(stream);
    socket.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_RETRIES),
    )?;
    socket.set_tcp_user_timeout(Some(UNACKED_LIMIT))
}

/// A connected, non-blocking socket to the first host of `config` that accepts.
fn open(config: &Config, timeout: Option<Duration>) -> Result<Socket> {
    let ports = config.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let mut last: Option<std::io::Error> = None;
    let mut attempt = |i: usize, host: &Host| -> std::io::Result<Socket> {
        match host {
            Host::Tcp(name) => {
                let mut found = None;
                for addr in (name.as_str(), port(i)).to_socket_addrs()? {
                    let tried = match timeout {
                        Some(t) => TcpStream::connect_timeout(&addr, t),
                        None => TcpStream::connect(addr),
                    };
                    match tried {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let stream = found.ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no address answered")
                })?;
                // Statements are small messages waiting for their answer: never delay one.
                stream.set_nodelay(true)?;
                if config.get_keepalives() {
                    dead_peer_found(&stream)?;
                }
                stream.set_nonblocking(true)?;
                Ok(Socket::Tcp(stream))
            }
            Host::Unix(dir) => {
                let stream = UnixStream::connect(dir.join(format!(".s.PGSQL.{}", port(i))))?;
                stream.set_nonblocking(true)?;
                Ok(Socket::Unix(stream))
            }
        }
    };
    let hosts: Vec<Host> = if config.get_hosts().is_empty() {
        config
            .get_hostaddrs()
            .iter()
            .map(|a| Host::Tcp(a.to_string()))
            .collect()
    } else {
        config.get_hosts().to_vec()
    };
    let mut error = None;
    for (i, host) in hosts.iter().enumerate() {
        match attempt(i, host) {
            Ok(socket) => return Ok(socket),
            Err(e) => error = Some(e),
        }
    }
    let reason = error
        .or(last)
        .map_or_else(|| "no host in the URL".to_string(), |e| e.to_string());
    Err(StoreError::Postgres(format!("cannot connect: {reason}")))
}
