#include <rte_config.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_cycles.h>
#include <rte_prefetch.h>
#include <rte_pause.h>
#include <rte_eth_bond_8023ad.h>
#include <rte_thash.h>
#include "shim.h"

uint16_t fw_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
                         struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{ return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts); }

uint16_t fw_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
                         struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{ return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts); }

struct rte_mbuf *fw_pktmbuf_alloc(struct rte_mempool *mp)
{ return rte_pktmbuf_alloc(mp); }

int fw_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
                          unsigned int count)
{ return rte_pktmbuf_alloc_bulk(mp, mbufs, count); }

void fw_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
char *fw_pktmbuf_mtod(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, char *); }
char *fw_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_prepend(m, len); }
char *fw_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }
char *fw_pktmbuf_adj(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_adj(m, len); }
int fw_pktmbuf_trim(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_trim(m, len); }
uint16_t fw_pktmbuf_headroom(const struct rte_mbuf *m) { return rte_pktmbuf_headroom(m); }
uint16_t fw_pktmbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }

unsigned int fw_lcore_id(void) { return rte_lcore_id(); }
int fw_errno(void) { return rte_errno; }
uint64_t fw_rdtsc(void) { return rte_rdtsc(); }
void fw_prefetch0(const void *p) { rte_prefetch0(p); }
void fw_pause(void) { rte_pause(); }

unsigned int fw_ring_enqueue_burst(struct rte_ring *r, void *const *obj_table,
                                   unsigned int n, unsigned int *free_space)
{ return rte_ring_enqueue_burst(r, obj_table, n, free_space); }

unsigned int fw_ring_dequeue_burst(struct rte_ring *r, void **obj_table,
                                   unsigned int n, unsigned int *available)
{ return rte_ring_dequeue_burst(r, obj_table, n, available); }

unsigned int fw_ring_count(const struct rte_ring *r) { return rte_ring_count(r); }

int fw_bond_lacp_state(uint16_t port_id, uint16_t member, uint8_t *actor, uint8_t *partner)
{
	struct rte_eth_bond_8023ad_slave_info info;
	int r = rte_eth_bond_8023ad_slave_info(port_id, member, &info);
	if (r != 0)
		return r;
	*actor = info.actor_state;
	*partner = info.partner_state;
	return 0;
}

/* The mbuf field the workers stamp a punted frame's TSC in (an
 * application's dynamic field: the name does not start with "rte_"). */
int fw_punt_stamp_field(void)
{
	static const struct rte_mbuf_dynfield desc = {
		.name = "furiwake_dynfield_punt_tsc",
		.size = sizeof(uint64_t),
		.align = __alignof__(uint64_t),
	};
	return rte_mbuf_dynfield_register(&desc);
}

int fw_bond_lacp_period(uint16_t port_id, uint32_t period_ms)
{
	struct rte_eth_bond_8023ad_conf conf;
	int r = rte_eth_bond_8023ad_conf_get(port_id, &conf);
	if (r != 0)
		return r;
	conf.slow_periodic_ms = period_ms;
	/* DPDK requires fast < slow periodic. */
	if (conf.fast_periodic_ms >= period_ms)
		conf.fast_periodic_ms = period_ms > 1 ? period_ms - 1 : 0;
	return rte_eth_bond_8023ad_setup(port_id, &conf);
}

uint32_t fw_softrss(const uint32_t *tuple, uint32_t len, const uint8_t *key)
{
	return rte_softrss((uint32_t *)(uintptr_t)tuple, len, key);
}
