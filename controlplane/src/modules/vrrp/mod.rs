//! VRRP (RFC 5798 v3, RFC 3768 v2) failover of the virtual addresses
//! (issue 12). So far: the state machine as a pure function (`fsm`); the
//! wire format is `furiwake_dataplane::wire::vrrp`. To come here: the
//! instances' configuration, the control-loop step (timers, punted adverts,
//! tracking), `show vrrp` and metrics.

pub mod fsm;
