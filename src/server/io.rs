//! One accepted TCP connection as the server holds it: the socket, the slot
//! it occupies (released when the connection is gone, also after a
//! WebSocket upgrade handed it to engineioxide), and a kill switch.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::reserve::ReserveGuard;

/// What a connection occupies while it lives.
pub enum Slot {
    /// One of `HTTP_MAX_CONNECTIONS`.
    Main(#[allow(dead_code)] OwnedSemaphorePermit),
    /// One of the reserve's, kept for health checks when the main slots are full.
    Reserve(#[allow(dead_code)] ReserveGuard),
}

/// Lets request handlers end the connection that carried a request (request
/// extension): reads and writes fail from then on, so hyper, or engineioxide
/// after an upgrade, closes it. Used to close refused Socket.IO connections.
#[derive(Clone, Debug)]
pub struct ConnectionHandle(CancellationToken);

impl ConnectionHandle {
    pub fn close(&self) {
        self.0.cancel();
    }
}

/// A TCP stream that holds its [`Slot`] and obeys its kill switch.
pub struct Guarded {
    stream: TcpStream,
    _slot: Slot,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Guarded {
    pub fn new(stream: TcpStream, slot: Slot, kill: CancellationToken) -> (Self, ConnectionHandle) {
        let handle = ConnectionHandle(kill.clone());
        let guarded = Self {
            stream,
            _slot: slot,
            killed: Box::pin(kill.cancelled_owned()),
        };
        (guarded, handle)
    }

    /// Polling the kill switch registers the task's waker, so a pending read
    /// wakes up when the connection is killed.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.killed.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection closed by the server",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
