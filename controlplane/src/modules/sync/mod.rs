//! Connection-state sync with the HA peer (issue 12). So far: the UDP
//! datagram format (`wire`: header, the workers' `SyncRecord`s, an
//! HMAC-SHA256 tag; the replay window). The records themselves, the
//! per-worker rings and the workers' side (events, refresh and bulk walks,
//! installs) are `furiwake_dataplane::ctl::events` and
//! `furiwake_dataplane::pipeline` (`Worker::with_sync`, `owner_of`). To
//! come here: the transport (a UDP socket on the configured interface,
//! batching the workers' events into datagrams, routing the peer's records
//! to their owner worker), bulk requests on start, `show sync` and
//! metrics.

pub mod wire;
