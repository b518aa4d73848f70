//! Writes at the end of the scheduler's turn, so peers are woken once per burst.
//!
//! A proxied request ends in two writes to loopback or LAN peers: the request to the upstream
//! and the response to the client. Written the moment each is ready, they interleave with the
//! reads of the other connections that became ready in the same `epoll_wait`, and the peer
//! (the upstream, or the client) is often back asleep between two of them: every write then
//! wakes it again, which on a virtual machine is an inter-processor interrupt and a VM exit,
//! paid in the proxy's system time. HAProxy's event loop does all its receives first and all
//! its sends after; deferring our writes by one yield gives the same order: the tasks made
//! ready by one `epoll_wait` all read and parse, then all write.
//!
//! Measured (`benches/README.md`, 2026-12-02, 2 vCPU VM, wrk -c64 behind nginx): IPIs to the
//! peers' CPU per request 0.11–0.17 → 0.06–0.07 (HAProxy 0.05–0.09), system time per request
//! −10 %. The cost when the proxy is idle: one extra `epoll_wait(0)` per write, about a
//! microsecond of latency.

/// Lets every other task that is ready in this turn run first; the caller then writes.
///
/// `tokio::task::yield_now` defers the wake-up until the scheduler has polled the I/O driver,
/// so the deferred writes happen together, after the reads that driver poll delivered.
pub(crate) async fn end_of_turn() {
    tokio::task::yield_now().await;
}
