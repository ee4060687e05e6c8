/* Real symbols for DPDK's static-inline fast-path functions and macros.
 * Each one is a direct call; no logic lives here. */
#ifndef FURIWAKE_SHIM_H
#define FURIWAKE_SHIM_H

#include <stdint.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

uint16_t fw_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
                         struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t fw_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
                         struct rte_mbuf **tx_pkts, uint16_t nb_pkts);

struct rte_mbuf *fw_pktmbuf_alloc(struct rte_mempool *mp);
int fw_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
                          unsigned int count);
void fw_pktmbuf_free(struct rte_mbuf *m);
char *fw_pktmbuf_mtod(struct rte_mbuf *m);
char *fw_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *fw_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *fw_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int fw_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
uint16_t fw_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t fw_pktmbuf_tailroom(const struct rte_mbuf *m);

unsigned int fw_lcore_id(void);
int fw_errno(void);
uint64_t fw_rdtsc(void);
void fw_prefetch0(const void *p);
void fw_pause(void);

unsigned int fw_ring_enqueue_burst(struct rte_ring *r, void *const *obj_table,
                                   unsigned int n, unsigned int *free_space);
unsigned int fw_ring_dequeue_burst(struct rte_ring *r, void **obj_table,
                                   unsigned int n, unsigned int *available);
unsigned int fw_ring_count(const struct rte_ring *r);

/* An 802.3ad bond member's LACP actor and partner state bytes
 * (IEEE 802.1AX 6.4.2.3); 0 or a negative errno. */
int fw_bond_lacp_state(uint16_t port_id, uint16_t member, uint8_t *actor, uint8_t *partner);

/* Sets an 802.3ad bond's periodic LACPDU interval (the slow periodic time,
 * IEEE 802.1AX 6.4.4: 30 s; DPDK's default 29 s) to `period_ms`, the rest of its mode
 * 4 configuration kept; 0 or a negative errno (rte_eth_bond_8023ad_setup). */
int fw_bond_lacp_period(uint16_t port_id, uint32_t period_ms);
int fw_punt_stamp_field(void);

/* rte_softrss (static inline in rte_thash.h): DPDK's own Toeplitz hash of
 * `len` host-order 32-bit words under the key as the NIC takes it, for the
 * tests of furiwake_dataplane::rss. */
uint32_t fw_softrss(const uint32_t *tuple, uint32_t len, const uint8_t *key);

#endif
