/* dnsfw::module — C accessors for Unbound structures whose headers do not
 * compile as C++ (util/netevent.h: a forward-declared enum). Implemented in
 * ub_shim.c, compiled as C against the same Unbound tree. */
#ifndef DNSFW_MODULE_UB_SHIM_H
#define DNSFW_MODULE_UB_SHIM_H

#include <stddef.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

struct module_qstate;
struct module_env;
struct dns_msg;

/** How the first client of a query state reached the resolver. */
enum dnsfw_ub_transport {
	DNSFW_UB_UDP = 0,
	DNSFW_UB_TCP = 1,
	DNSFW_UB_TLS = 2,
	DNSFW_UB_HTTPS = 3,
	DNSFW_UB_OTHER = 4
};

/** The first client waiting for a query state's answer. */
struct dnsfw_ub_client {
	enum dnsfw_ub_transport transport;
	/** Client address (after PROXY protocol, if used). */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	/** The DNSSEC OK bit of the client's EDNS (0 without EDNS). */
	int do_bit;
};

/**
 * Describes the first entry of qstate->mesh_info->reply_list.
 * Returns 1 and fills *out if there is one; 0 if the state has no client
 * waiting (an internal query: prefetch, sub-query, libunbound callback).
 */
int dnsfw_ub_first_client(const struct module_qstate* qstate,
	struct dnsfw_ub_client* out);

/**
 * Index of the worker thread whose module_env this is (0..num-threads-1),
 * or -1 if env belongs to no worker (e.g. the daemon's env during init).
 */
int dnsfw_ub_thread_num(const struct module_env* env);

/** Number of worker threads Unbound will run (num-threads, at least 1). */
int dnsfw_ub_num_threads(const struct module_env* env);

/**
 * An address on which this Unbound answers plain DNS over UDP, for the
 * module's own refresh queries: the first `interface:` that is an IP
 * address (0.0.0.0 and :: become 127.0.0.1 and ::1), with its port;
 * 127.0.0.1 (or ::1) if none is configured. Returns 0 if Unbound does not
 * serve UDP (do-udp: no) or no usable address was found.
 */
int dnsfw_ub_listen_address(const struct module_env* env,
	struct sockaddr_storage* addr, socklen_t* addrlen);

/**
 * Whether the iterator will treat `response` (the upstream reply it is
 * about to process, as passed to an inplace_cb_query_response callback) as
 * a REFERRAL, i.e. store only its NS and glue RRsets and no message. Uses
 * the iterator's own classification (response_type_from_server with the
 * iterator's delegation point, query sent and RD chase flags, as
 * iterator.c processQueryResponse does). Returns 0 when in doubt (no
 * iterator state, forwarded query, anything but a referral).
 */
int dnsfw_ub_response_is_referral(struct module_qstate* qstate,
	struct dns_msg* response);

struct outbound_entry;

/**
 * Sends one UDP query "qname A IN" (no RD, no DO bit, no 0x20, no rate
 * limit) to addr through the worker's outside network, on behalf of
 * qstate (its module then gets module_event_reply, or module_event_noreply
 * after Unbound's UDP timeout). `zone` is the zone name the infrastructure
 * cache files the address under. Returns the outbound entry (in
 * qstate->region), or NULL if the query could not be sent.
 */
struct outbound_entry* dnsfw_ub_send_wakeup(struct module_qstate* qstate,
	const unsigned char* qname, size_t qname_len, const unsigned char* zone,
	size_t zone_len, const struct sockaddr_storage* addr, socklen_t addrlen);

/**
 * Stops the outstanding query of dnsfw_ub_send_wakeup() (as the iterator
 * stops its own queries when a query state is cleared). Only for an entry
 * whose reply or timeout has not been delivered yet.
 */
void dnsfw_ub_stop_wakeup(struct outbound_entry* e);

#ifdef __cplusplus
}
#endif

#endif /* DNSFW_MODULE_UB_SHIM_H */
