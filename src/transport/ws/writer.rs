//! The one task that writes a plain-WebSocket connection: frames from the
//! session's outbox in order, `?batch=` batches, heartbeat pings, and the
//! final close frame.
//!
//! Heartbeat and proof: every `WS_PING_INTERVAL` the writer first writes
//! everything already queued (a pending batch included), then a ping, and
//! notes when; the reader closes the connection when no pong came within
//! `WS_PING_TIMEOUT` of that. So a connection still open `interval +
//! timeout` (plus a margin, [`proof_window`]) after an event was queued has
//! had that event read: clients answer a ping only after the frames
//! before it. A write that blocks for `WS_PING_TIMEOUT` (a peer that stopped
//! reading) ends the connection too.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::SinkExt;
use futures::stream::SplitSink;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::now_ms;
use crate::transport::frame;
use crate::transport::outbox::{Out, Outbox};

/// Slack for scheduling delays between a ping and our clock.
const PROOF_MARGIN: Duration = Duration::from_secs(2);
/// Events one batch frame holds at most.
const MAX_BATCH_LEN: usize = 256;

/// How long after a send an open connection proves the client read it.
pub fn proof_window(interval: Duration, timeout: Duration) -> Duration {
    interval + timeout + PROOF_MARGIN
}

/// What the reader and the writer of one connection share.
pub struct Shared {
    /// When the unanswered ping went out (ms; 0: none outstanding).
    ping_sent: AtomicI64,
    /// The session's outbox: its `end` token and close code.
    pub outbox: Arc<Outbox>,
}

impl Shared {
    pub fn new(outbox: Arc<Outbox>) -> Arc<Self> {
        Arc::new(Self {
            ping_sent: AtomicI64::new(0),
            outbox,
        })
    }

    pub fn end(&self) -> &CancellationToken {
        &self.outbox.end
    }

    /// Ends the connection with `code` (unless an end was already decided).
    pub fn finish(&self, code: u16, reason: &str) {
        self.outbox.finish(code, reason);
    }

    pub fn pong(&self) {
        self.ping_sent.store(0, Ordering::Release);
    }

    /// A ping has waited more than `timeout` for its pong.
    pub fn is_dead(&self, timeout: Duration) -> bool {
        let sent = self.ping_sent.load(Ordering::Acquire);
        sent > 0 && now_ms() - sent > timeout.as_millis() as i64
    }
}

pub struct Writer {
    pub tx: SplitSink<WebSocket, Message>,
    pub rx: mpsc::Receiver<Out>,
    pub shared: Arc<Shared>,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub batch: Option<Duration>,
    /// Whether the server is shutting down: a session ended without a
    /// close code of its own then closes with 1012 (reconnect elsewhere).
    pub tasks: crate::tasks::Tasks,
}

/// A write failed, or blocked for `WS_PING_TIMEOUT` (`stalled`: a peer
/// that stopped reading, i.e. a slow consumer).
struct Broken {
    stalled: bool,
}

impl Writer {
    pub async fn run(mut self) {
        let start = Instant::now() + self.ping_interval;
        let mut ping = tokio::time::interval_at(start, self.ping_interval);
        let mut batch: Vec<Value> = Vec::new();
        let mut due: Option<Instant> = None;
        loop {
            let far = Instant::now() + Duration::from_secs(3600);
            let step = tokio::select! {
                biased;
                _ = self.shared.end().cancelled() => None,
                out = self.rx.recv() => match out {
                    Some(out) => Some(self.put(out, &mut batch, &mut due).await),
                    None => None,
                },
                _ = tokio::time::sleep_until(due.unwrap_or(far)), if due.is_some() => {
                    due = None;
                    Some(self.flush(&mut batch).await)
                }
                _ = ping.tick() => Some(self.ping(&mut batch, &mut due).await),
            };
            match step {
                Some(Ok(())) => {}
                Some(Err(Broken { stalled })) => {
                    if stalled {
                        tracing::warn!(
                            "slow consumer: a write blocked for WS_PING_TIMEOUT, disconnecting (its durable events will be replayed)"
                        );
                        crate::metrics::slow_consumer_disconnect();
                    }
                    self.shared.finish(1011, "write failed");
                    return;
                }
                None => break,
            }
        }
        // What was queued before the end (a final error, `session:expired`)
        // goes out before the close frame.
        while let Ok(out) = self.rx.try_recv() {
            if self.put(out, &mut batch, &mut due).await.is_err() {
                return;
            }
        }
        if self.flush(&mut batch).await.is_err() {
            return;
        }
        let (code, reason) = self.shared.outbox.close_frame().unwrap_or_else(|| {
            if self.tasks.is_draining() {
                (1012, "server restarting; reconnect".to_string())
            } else {
                (1000, "closed".to_string())
            }
        });
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = self.write(Message::Close(Some(frame))).await;
    }

    async fn write(&mut self, msg: Message) -> Result<(), Broken> {
        match tokio::time::timeout(self.ping_timeout, self.tx.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Broken { stalled: false }),
            Err(_) => Err(Broken { stalled: true }),
        }
    }

    async fn text(&mut self, v: &Value) -> Result<(), Broken> {
        let text = serde_json::to_string(v).unwrap_or_default();
        self.write(Message::Text(text.into())).await
    }

    async fn put(
        &mut self,
        out: Out,
        batch: &mut Vec<Value>,
        due: &mut Option<Instant>,
    ) -> Result<(), Broken> {
        match (out, self.batch) {
            (
                Out::Event {
                    frame,
                    critical: false,
                    ..
                },
                Some(every),
            ) => {
                batch.push(frame);
                if batch.len() >= MAX_BATCH_LEN {
                    *due = None;
                    return self.flush(batch).await;
                }
                due.get_or_insert_with(|| Instant::now() + every);
                Ok(())
            }
            // Critical events and messages are never delayed; a waiting
            // batch goes first so the order stays.
            (Out::Event { frame, .. }, _) | (Out::Message(frame), _) => {
                *due = None;
                self.flush(batch).await?;
                self.text(&frame).await
            }
        }
    }

    async fn flush(&mut self, batch: &mut Vec<Value>) -> Result<(), Broken> {
        if batch.is_empty() {
            return Ok(());
        }
        let frame = frame::batch(std::mem::take(batch));
        self.text(&frame).await
    }

    /// Everything queued until now, then the ping (see the module doc).
    async fn ping(
        &mut self,
        batch: &mut Vec<Value>,
        due: &mut Option<Instant>,
    ) -> Result<(), Broken> {
        if self.shared.ping_sent.load(Ordering::Acquire) == 0 {
            self.shared.ping_sent.store(now_ms(), Ordering::Release);
        }
        for _ in 0..self.rx.len() {
            match self.rx.try_recv() {
                Ok(out) => self.put(out, batch, due).await?,
                Err(_) => break,
            }
        }
        *due = None;
        self.flush(batch).await?;
        self.write(Message::Ping(Default::default())).await
    }
}
