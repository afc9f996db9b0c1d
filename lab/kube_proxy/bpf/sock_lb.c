// SPDX-License-Identifier: GPL-2.0
/* Socket load balancing for ClusterIPs (k8s-netlab, `cluster.proxy: ebpf`), as Cilium does it:
 * a Service address is replaced by a backend's in the socket layer, once per connect() (TCP, and
 * connected UDP) or per sendmsg() (unconnected UDP), before any packet exists. recvmsg() and
 * getpeername() give the Service address back. One copy of these programs and maps per node,
 * attached to the node's cgroup; the maps are written from lab/kube_proxy/ebpf.py (the layouts
 * below and there must agree: tests/unit/test_ebpf.py reads this file to check them).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

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

char _license[] SEC("license") = "GPL";
