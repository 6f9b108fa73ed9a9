/* dnsfw::module — C accessors for Unbound internals (see ub_shim.h). */
#include "config.h"
#include "module/ub_shim.h"

#include "util/module.h"
#include "util/netevent.h"
#include "util/config_file.h"
#include "services/mesh.h"
#include "daemon/worker.h"
#include "util/net_help.h"
#include "services/modstack.h"
#include "services/outbound_list.h"
#include "services/outside_network.h"
#include "services/cache/dns.h"
#include "iterator/iterator.h"
#include "iterator/iter_resptype.h"
#include "util/data/msgreply.h"
#include "sldns/pkthdr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

int dnsfw_ub_first_client(const struct module_qstate* qstate,
	struct dnsfw_ub_client* out)
{
	const struct mesh_reply* r;
	const struct comm_point* c;
	if(!qstate || !qstate->mesh_info)
		return 0;
	r = qstate->mesh_info->reply_list;
	if(!r)
		return 0;
	c = r->query_reply.c;
	out->transport = DNSFW_UB_OTHER;
	if(c) {
		if(c->type == comm_udp)
			out->transport = DNSFW_UB_UDP;
		else if(c->type == comm_http)
			out->transport = DNSFW_UB_HTTPS;
		else if(c->type == comm_tcp)
			out->transport = c->ssl ? DNSFW_UB_TLS : DNSFW_UB_TCP;
	}
	memset(&out->addr, 0, sizeof(out->addr));
	out->addrlen = 0;
	if(r->query_reply.client_addrlen > 0 &&
		(size_t)r->query_reply.client_addrlen <= sizeof(out->addr)) {
		memcpy(&out->addr, &r->query_reply.client_addr,
			(size_t)r->query_reply.client_addrlen);
		out->addrlen = r->query_reply.client_addrlen;
	}
	out->do_bit = (r->edns.edns_present && (r->edns.bits & EDNS_DO)) ? 1 : 0;
	return 1;
}

int dnsfw_ub_thread_num(const struct module_env* env)
{
	if(!env || !env->worker)
		return -1;
	return env->worker->thread_num;
}

int dnsfw_ub_num_threads(const struct module_env* env)
{
	if(!env || !env->cfg || env->cfg->num_threads < 1)
		return 1;
	return env->cfg->num_threads;
}

/** Parses "addr" or "addr@port" into *addr; unspecified becomes loopback. */
static int parse_listen(const char* text, int port,
	struct sockaddr_storage* addr, socklen_t* addrlen)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char* at = strchr(text, '@');
	size_t len = at ? (size_t)(at - text) : strlen(text);
	struct sockaddr_in* sin = (struct sockaddr_in*)addr;
	struct sockaddr_in6* sin6 = (struct sockaddr_in6*)addr;
	if(len == 0 || len >= sizeof(host))
		return 0;
	memcpy(host, text, len);
	host[len] = 0;
	if(at) {
		long p = strtol(at + 1, NULL, 10);
		if(p <= 0 || p > 65535)
			return 0;
		port = (int)p;
	}
	memset(addr, 0, sizeof(*addr));
	if(inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		if(sin->sin_addr.s_addr == htonl(INADDR_ANY))
			sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		*addrlen = (socklen_t)sizeof(*sin);
		return 1;
	}
	if(inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		if(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr))
			sin6->sin6_addr = in6addr_loopback;
		*addrlen = (socklen_t)sizeof(*sin6);
		return 1;
	}
	return 0; /* an interface name, or garbage */
}

int dnsfw_ub_listen_address(const struct module_env* env,
	struct sockaddr_storage* addr, socklen_t* addrlen)
{
	const struct config_file* cfg = env ? env->cfg : NULL;
	int i;
	if(!cfg || !cfg->do_udp)
		return 0;
	for(i = 0; i < cfg->num_ifs; i++) {
		if(cfg->ifs[i] && parse_listen(cfg->ifs[i], cfg->port, addr,
			addrlen))
			return 1;
	}
	if(cfg->num_ifs > 0)
		return 0; /* only interface names: no address to send to */
	return parse_listen(cfg->do_ip4 ? "127.0.0.1" : "::1", cfg->port,
		addr, addrlen);
}

int dnsfw_ub_response_is_referral(struct module_qstate* qstate,
	struct dns_msg* response)
{
	int iter_id;
	struct iter_qstate* iq;
	enum response_type type;
	if(!qstate || !response || !response->rep || !qstate->env ||
		!qstate->env->mesh)
		return 0;
	iter_id = modstack_find(&qstate->env->mesh->mods, "iterator");
	if(iter_id < 0 || iter_id >= MAX_MODULE)
		return 0;
	iq = (struct iter_qstate*)qstate->minfo[iter_id];
	if(!iq || !iq->dp || iq->response != response)
		return 0;
	/* forwarding: the iterator turns referrals into answers */
	if((iq->chase_flags & BIT_RD) && !iq->auth_zone_response)
		return 0;
	type = response_type_from_server(
		(int)((iq->chase_flags & BIT_RD) || iq->chase_to_rd),
		response, &iq->qinfo_out, iq->dp);
	return type == RESPONSE_TYPE_REFERRAL;
}

struct outbound_entry* dnsfw_ub_send_wakeup(struct module_qstate* qstate,
	const unsigned char* qname, size_t qname_len, const unsigned char* zone,
	size_t zone_len, const struct sockaddr_storage* addr, socklen_t addrlen)
{
	struct query_info qinfo;
	struct sockaddr_storage to;
	int ratelimited = 0;
	if(!qstate || !qstate->env || !qstate->env->send_query || !addr ||
		addrlen == 0 || addrlen > (socklen_t)sizeof(to))
		return NULL;
	memset(&qinfo, 0, sizeof(qinfo));
	qinfo.qname = (uint8_t*)qname;
	qinfo.qname_len = qname_len;
	qinfo.qtype = LDNS_RR_TYPE_A;
	qinfo.qclass = LDNS_RR_CLASS_IN;
	memcpy(&to, addr, (size_t)addrlen);
	return (*qstate->env->send_query)(&qinfo, 0 /* flags: no RD */,
		0 /* no DO bit */, 0 /* want_dnssec */, 1 /* nocaps: no 0x20 */,
		0 /* check_ratelimit */, &to, addrlen, (uint8_t*)zone, zone_len,
		0 /* tcp_upstream */, 0 /* ssl_upstream */, NULL, qstate,
		&ratelimited);
}

void dnsfw_ub_stop_wakeup(struct outbound_entry* e)
{
	if(e && e->qsent)
		outnet_serviced_query_stop(e->qsent, e);
}
