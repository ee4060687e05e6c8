//! What `furiwake run` needs to be the appliance's service (README,
//! "The appliance"): systemd's notifications and watchdog (`notify`),
//! the PCI data NICs bound before DPDK starts and given back at stop
//! (`nics`), and the configuration it starts from: the operator's file,
//! or the last one that started when that file is broken (`lastgood`).

pub mod lastgood;
pub mod nics;
pub mod notify;
