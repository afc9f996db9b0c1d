// SPDX-License-Identifier: GPL-2.0
/* Socket load balancing for ClusterIPs (k8s-netlab, `cluster.proxy: ebpf`), as Cilium does it:
 * a Service address is replaced by a backend's in the socket layer, once per connect() (TCP, and
 * connected UDP) or per sendmsg() (unconnected UDP), before any packet exists. recvmsg() and
 * getpeername() give the Service address back. One copy of these programs and maps per node,
 * attached to the node's cgroup; the maps are written from lab/kube_proxy/ebpf.py (the layouts
 * below and there must agree: tests/unit/test_ebpf.py reads this file to check them).
 * North-south (NodePorts, externalIPs, LoadBalancer IPs) is the tc program at the end, on the node's
 * uplink and on the devices replies come back on: it rewrites packets, with a NAT table of its own.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ECONNREFUSED 111
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define MAX_BACKENDS 256

#define VERDICT_BALANCE 0 /* choose a backend */
#define VERDICT_REJECT 1  /* no endpoints anywhere: connection refused, as Cilium and kube-proxy */
#define VERDICT_DROP 2    /* internalTrafficPolicy Local and none on this node: dropped (EPERM) */

struct svc_key { __u32 ip; __u16 port; __u8 proto; __u8 pad; };  /* ip, port: network order */
struct svc_val { __u32 id; __u32 count; __u32 affinity_s; __u32 verdict; };
struct be_key { __u32 id; __u32 slot; };
struct be_val { __u32 ip; __u16 port; __u16 pad; };  /* network order */
struct aff_key { __u64 netns; __u32 id; __u32 pad; };  /* the client: its network namespace */
struct aff_val { __u64 at_ns; struct be_val be; };
struct rev_key { __u64 cookie; __u32 ip; __u16 port; __u16 pad; };
struct rev_val { __u32 ip; __u16 port; __u16 pad; };

struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 65536);
         __type(key, struct svc_key); __type(value, struct svc_val); } lb_services SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 262144);
         __type(key, struct be_key); __type(value, struct be_val); } lb_backends SEC(".maps");
/* connections per backend (id, slot): what `lab trace` and bpftool show of the choices made */
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 262144);
         __type(key, struct be_key); __type(value, __u64); } lb_hits SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LRU_HASH); __uint(max_entries, 65536);
         __type(key, struct aff_key); __type(value, struct aff_val); } lb_affinity SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LRU_HASH); __uint(max_entries, 65536);
         __type(key, struct rev_key); __type(value, struct rev_val); } lb_revnat SEC(".maps");

static __always_inline int same(struct be_val *a, struct be_val *b)
{
	return a->ip == b->ip && a->port == b->port;
}

/* The backend for this client: its affinity entry while valid and still a backend, else a random slot. */
static __always_inline struct be_val *choose(struct bpf_sock_addr *ctx, struct svc_val *svc, struct be_key *bk)
{
	struct aff_key ak = { .netns = bpf_get_netns_cookie(ctx), .id = svc->id };
	__u64 now = bpf_ktime_get_ns();
	struct be_val *be;

	bk->id = svc->id;
	if (svc->affinity_s) {
		struct aff_val *av = bpf_map_lookup_elem(&lb_affinity, &ak);
		if (av && now - av->at_ns < (__u64)svc->affinity_s * 1000000000ULL) {
			for (__u32 i = 0; i < MAX_BACKENDS && i < svc->count; i++) {
				bk->slot = i;
				be = bpf_map_lookup_elem(&lb_backends, bk);
				if (be && same(be, &av->be)) {
					av->at_ns = now;
					return be;
				}
			}
		}
	}
	bk->slot = bpf_get_prandom_u32() % svc->count;
	be = bpf_map_lookup_elem(&lb_backends, bk);
	if (be && svc->affinity_s) {
		struct aff_val nv = { .at_ns = now, .be = *be };
		bpf_map_update_elem(&lb_affinity, &ak, &nv, BPF_ANY);
	}
	return be;
}

/* 1: go on (rewritten, or not a Service); 0: refuse, with the errno the verdict names. */
static __always_inline int translate(struct bpf_sock_addr *ctx, __u8 proto)
{
	struct svc_key key = { .ip = ctx->user_ip4, .port = (__u16)ctx->user_port, .proto = proto };
	struct svc_val *svc = bpf_map_lookup_elem(&lb_services, &key);
	struct be_key bk = {};
	struct be_val *be;
	__u64 one = 1, *hits;

	if (!svc)
		return 1;
	if (svc->verdict == VERDICT_REJECT || !svc->count) {
		bpf_set_retval(-ECONNREFUSED);
		return 0;
	}
	if (svc->verdict == VERDICT_DROP)
		return 0;
	be = choose(ctx, svc, &bk);
	if (!be)
		return 1;
	hits = bpf_map_lookup_elem(&lb_hits, &bk);
	if (hits)
		__sync_fetch_and_add(hits, 1);
	else
		bpf_map_update_elem(&lb_hits, &bk, &one, BPF_NOEXIST);
	struct rev_key rk = { .cookie = bpf_get_socket_cookie(ctx), .ip = be->ip, .port = be->port };
	struct rev_val rv = { .ip = key.ip, .port = key.port };
	bpf_map_update_elem(&lb_revnat, &rk, &rv, BPF_ANY);
	ctx->user_ip4 = be->ip;
	ctx->user_port = be->port;
	return 1;
}

static __always_inline void restore(struct bpf_sock_addr *ctx)
{
	struct rev_key rk = { .cookie = bpf_get_socket_cookie(ctx), .ip = ctx->user_ip4, .port = (__u16)ctx->user_port };
	struct rev_val *rv = bpf_map_lookup_elem(&lb_revnat, &rk);

	if (rv) {
		ctx->user_ip4 = rv->ip;
		ctx->user_port = rv->port;
	}
}

static __always_inline __u8 proto_of(struct bpf_sock_addr *ctx)
{
	return ctx->type == 1 /* SOCK_STREAM */ ? IPPROTO_TCP : IPPROTO_UDP;
}

SEC("cgroup/connect4")
int sock4_connect(struct bpf_sock_addr *ctx)
{
	return translate(ctx, proto_of(ctx));
}

SEC("cgroup/sendmsg4")
int sock4_sendmsg(struct bpf_sock_addr *ctx)
{
	return translate(ctx, IPPROTO_UDP);
}

SEC("cgroup/recvmsg4")
int sock4_recvmsg(struct bpf_sock_addr *ctx)
{
	restore(ctx);
	return 1;
}

SEC("cgroup/getpeername4")
int sock4_getpeername(struct bpf_sock_addr *ctx)
{
	restore(ctx);
	return 1;
}

/* --- north-south: tc on the node's devices --- */

/* snat: externalTrafficPolicy Cluster; fenced: an LB IP with loadBalancerSourceRanges (lb_sources) */
struct ext_val { __u32 id; __u32 count; __u32 affinity_s; __u32 verdict; __u32 snat; __u32 fenced; };
struct src_key { __u32 prefixlen; __u32 id; __u32 ip; };  /* prefixlen: 32 (the id) + the range's */
struct nat_key { __u32 saddr; __u32 daddr; __u16 sport; __u16 dport; __u8 proto; __u8 pad[3]; };
struct nat_val { __u32 saddr; __u32 daddr; __u16 sport; __u16 dport; };  /* what the packet becomes */
/* the node: its own address, its podCIDR and the cluster's (network order), and the source a
 * masquerade would give a packet to another node's pod (the tunnel's address, else node_ip) */
struct lb_cfg { __u32 node_ip; __u32 node_net; __u32 node_mask; __u32 pods_net; __u32 pods_mask; __u32 remote_ip; };

/* (NodePort on the node's address | externalIP | LB IP, port, proto) -> the external backends */
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 65536);
         __type(key, struct svc_key); __type(value, struct ext_val); } lb_external SEC(".maps");
/* a flow as it arrives -> as it leaves; lb_nat the client's direction, lb_nat_rev the replies' */
struct { __uint(type, BPF_MAP_TYPE_LRU_HASH); __uint(max_entries, 65536);
         __type(key, struct nat_key); __type(value, struct nat_val); } lb_nat SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LRU_HASH); __uint(max_entries, 65536);
         __type(key, struct nat_key); __type(value, struct nat_val); } lb_nat_rev SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1);
         __type(key, __u32); __type(value, struct lb_cfg); } lb_config SEC(".maps");
/* (external id, a loadBalancerSourceRanges prefix) -> 1: the sources a fenced LB IP lets in */
struct { __uint(type, BPF_MAP_TYPE_LPM_TRIE); __uint(max_entries, 16384); __uint(map_flags, BPF_F_NO_PREALLOC);
         __type(key, struct src_key); __type(value, __u8); } lb_sources SEC(".maps");

#define IP_OFF ETH_HLEN
#define IP_CSUM (IP_OFF + 10)
#define IP_SRC (IP_OFF + 12)
#define IP_DST (IP_OFF + 16)

/* Write `to` over the flow `from` (addresses, ports), keeping the IP and L4 checksums right. */
static __always_inline int rewrite(struct __sk_buff *skb, __u32 l4, __u8 proto, struct nat_key *from, struct nat_val *to)
{
	__u32 csum = l4 + (proto == IPPROTO_TCP ? 16 : 6);
	__u64 flags = proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (from->saddr != to->saddr) {
		bpf_l4_csum_replace(skb, csum, from->saddr, to->saddr, flags | BPF_F_PSEUDO_HDR | 4);
		bpf_l3_csum_replace(skb, IP_CSUM, from->saddr, to->saddr, 4);
		bpf_skb_store_bytes(skb, IP_SRC, &to->saddr, 4, 0);
	}
	if (from->daddr != to->daddr) {
		bpf_l4_csum_replace(skb, csum, from->daddr, to->daddr, flags | BPF_F_PSEUDO_HDR | 4);
		bpf_l3_csum_replace(skb, IP_CSUM, from->daddr, to->daddr, 4);
		bpf_skb_store_bytes(skb, IP_DST, &to->daddr, 4, 0);
	}
	if (from->sport != to->sport) {
		bpf_l4_csum_replace(skb, csum, from->sport, to->sport, flags | 2);
		bpf_skb_store_bytes(skb, l4, &to->sport, 2, 0);
	}
	if (from->dport != to->dport) {
		bpf_l4_csum_replace(skb, csum, from->dport, to->dport, flags | 2);
		bpf_skb_store_bytes(skb, l4 + 2, &to->dport, 2, 0);
	}
	return TC_ACT_OK;
}

/* The source a masquerade would give this backend's packet: the node's address, or towards another
 * node's pod the tunnel's (as lab.routing's sending_address). */
static __always_inline __u32 snat_source(struct lb_cfg *cfg, __u32 backend)
{
	if ((backend & cfg->node_mask) != cfg->node_net && (backend & cfg->pods_mask) == cfg->pods_net)
		return cfg->remote_ip;
	return cfg->node_ip;
}

/* A new flow to a NodePort, externalIP or LB IP: choose a backend, remember both directions, rewrite. */
static __always_inline int balance(struct __sk_buff *skb, __u32 l4, struct nat_key *k, struct ext_val *ev)
{
	struct lb_cfg *cfg;
	__u32 zero = 0;
	struct be_key bk = { .id = ev->id };
	struct be_val *be = 0;
	struct aff_key ak = { .netns = (1ULL << 63) | k->saddr, .id = ev->id };  /* the client: its address */
	__u64 now = bpf_ktime_get_ns(), one = 1, *hits;

	if (ev->fenced) {
		struct src_key src = { .prefixlen = 64, .id = ev->id, .ip = k->saddr };
		if (!bpf_map_lookup_elem(&lb_sources, &src))
			return TC_ACT_SHOT;  /* outside loadBalancerSourceRanges: dropped, as kube-proxy's firewall chain */
	}
	if (ev->verdict == VERDICT_DROP)
		return TC_ACT_SHOT;
	if (ev->verdict == VERDICT_REJECT || !ev->count)
		return TC_ACT_OK;  /* untouched: the node's own stack answers (RST, port unreachable) */
	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!cfg)
		return TC_ACT_OK;
	if (ev->affinity_s) {
		struct aff_val *av = bpf_map_lookup_elem(&lb_affinity, &ak);
		if (av && now - av->at_ns < (__u64)ev->affinity_s * 1000000000ULL) {
			for (__u32 i = 0; i < MAX_BACKENDS && i < ev->count; i++) {
				bk.slot = i;
				be = bpf_map_lookup_elem(&lb_backends, &bk);
				if (be && same(be, &av->be)) {
					av->at_ns = now;
					break;
				}
				be = 0;
			}
		}
	}
	if (!be) {
		bk.slot = bpf_get_prandom_u32() % ev->count;
		be = bpf_map_lookup_elem(&lb_backends, &bk);
		if (!be)
			return TC_ACT_OK;
		if (ev->affinity_s) {
			struct aff_val nv = { .at_ns = now, .be = *be };
			bpf_map_update_elem(&lb_affinity, &ak, &nv, BPF_ANY);
		}
	}
	hits = bpf_map_lookup_elem(&lb_hits, &bk);
	if (hits)
		__sync_fetch_and_add(hits, 1);
	else
		bpf_map_update_elem(&lb_hits, &bk, &one, BPF_NOEXIST);

	struct nat_val out = { .saddr = k->saddr, .daddr = be->ip, .sport = k->sport, .dport = be->port };
	struct nat_val back = { .saddr = k->daddr, .daddr = k->saddr, .sport = k->dport, .dport = k->sport };
	struct nat_key rk = { .saddr = be->ip, .sport = be->port, .proto = k->proto };
	if (ev->snat) {
		out.saddr = snat_source(cfg, be->ip);
		/* keep the client's port unless another flow holds it towards this backend */
		for (int i = 0; i < 8; i++) {
			rk.daddr = out.saddr;
			rk.dport = out.sport;
			struct nat_val *taken = bpf_map_lookup_elem(&lb_nat_rev, &rk);
			if (!taken || (taken->daddr == k->saddr && taken->dport == k->sport))
				break;
			out.sport = bpf_htons(32768 + bpf_get_prandom_u32() % 28232);
		}
	}
	rk.daddr = out.saddr;
	rk.dport = out.sport;
	bpf_map_update_elem(&lb_nat_rev, &rk, &back, BPF_ANY);
	bpf_map_update_elem(&lb_nat, k, &out, BPF_ANY);
	return rewrite(skb, l4, k->proto, k, &out);
}

/* tc ingress on the uplink (the client's packets) and on the devices a backend's replies arrive on
 * (the uplink, cni0, flannel.1): a reply is translated back, a known flow follows its entry, a new
 * flow to an external address is balanced, anything else passes untouched. */
SEC("tc")
int tc_nodeport(struct __sk_buff *skb)
{
	struct iphdr ip;
	__u16 ports[2];
	__u16 proto;
	struct nat_key k = {};
	struct nat_val *v;

	if (bpf_skb_load_bytes(skb, 12, &proto, 2) || proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, IP_OFF, &ip, sizeof(ip)))
		return TC_ACT_OK;
	if ((ip.protocol != IPPROTO_TCP && ip.protocol != IPPROTO_UDP) || (ip.frag_off & bpf_htons(0x3fff)))
		return TC_ACT_OK;
	__u32 l4 = IP_OFF + ip.ihl * 4;
	if (bpf_skb_load_bytes(skb, l4, ports, 4))
		return TC_ACT_OK;
	k.saddr = ip.saddr;
	k.daddr = ip.daddr;
	k.sport = ports[0];
	k.dport = ports[1];
	k.proto = ip.protocol;

	v = bpf_map_lookup_elem(&lb_nat_rev, &k);
	if (!v)
		v = bpf_map_lookup_elem(&lb_nat, &k);
	if (v) {
		struct nat_val to = *v;
		return rewrite(skb, l4, k.proto, &k, &to);
	}
	struct svc_key sk = { .ip = k.daddr, .port = k.dport, .proto = k.proto };
	struct ext_val *ev = bpf_map_lookup_elem(&lb_external, &sk);
	if (!ev)
		return TC_ACT_OK;
	return balance(skb, l4, &k, ev);
}

char _license[] SEC("license") = "GPL";
