/* DNS internals shared by zone/dns_*.c: protocol constants, the wire writer, name building,
 * the classification of a query name, and the catalog lookups the answers are made of.
 * Never included from outside zone/. */
#ifndef HERALD_ZONE_DNS_H
#define HERALD_ZONE_DNS_H

#include "zone/internal.h"

/* ---- protocol constants (RFC 1035 §3.2, §4.1.1; RFC 6891) ------------------------------ */
enum {
    ZONE__RR_A = 1,
    ZONE__RR_NS = 2,
    ZONE__RR_CNAME = 5,
    ZONE__RR_SOA = 6,
    ZONE__RR_PTR = 12,
    ZONE__RR_HINFO = 13,
    ZONE__RR_TXT = 16,
    ZONE__RR_AAAA = 28,
    ZONE__RR_SRV = 33,
    ZONE__RR_OPT = 41,
    ZONE__RR_IXFR = 251,
    ZONE__RR_AXFR = 252,
    ZONE__RR_ANY = 255,
};
#define ZONE__CLASS_IN  1
#define ZONE__CLASS_ANY 255

#define ZONE__RCODE_NOERROR  0
#define ZONE__RCODE_FORMERR  1
#define ZONE__RCODE_SERVFAIL 2
#define ZONE__RCODE_NXDOMAIN 3
#define ZONE__RCODE_NOTIMP   4
#define ZONE__RCODE_REFUSED  5
#define ZONE__RCODE_BADVERS  16

/* header flags word (bytes 2-3) */
#define ZONE__F_QR          0x8000u
#define ZONE__F_OPCODE_MASK 0x7800u
#define ZONE__F_AA          0x0400u
#define ZONE__F_TC          0x0200u
#define ZONE__F_RD          0x0100u
#define ZONE__F_RA          0x0080u
#define ZONE__F_Z           0x0040u
#define ZONE__F_AD          0x0020u
#define ZONE__F_CD          0x0010u

#define ZONE__HDR_LEN   12
#define ZONE__OPT_LEN   11     /* root owner, type, class, ttl, rdlen 0 */
#define ZONE__EDNS_DO   0x8000 /* in the OPT TTL's low 16 bits */
#define ZONE__MIN_UDP   512    /* RFC 1035 §4.2.1; RFC 6891 §6.2.5: smaller sizes count as 512 */
#define ZONE__MAX_LABEL 63

/* ---- names ----------------------------------------------------------------------------- */
/* A name in wire form, built label by label; bad once a label or the whole is over its limit. */
struct zone__name {
    uint8_t b[ZONE_DNS_MAX_NAME + 1];
    size_t n;
    bool bad;
};
void zone__name_init(struct zone__name *nm);
/* Appends one label (1..63 bytes). */
void zone__name_label(struct zone__name *nm, const void *p, size_t len);
/* Appends a wire-form name ending with the root label. */
void zone__name_wire(struct zone__name *nm, const uint8_t *p, size_t len);
/* Appends a dotted text name (trailing dot optional, no escapes) and the root label. */
void zone__name_text(struct zone__name *nm, const char *s);

/* ---- wire writer (dns_wire.c) ---------------------------------------------------------- */
struct zone__wire {
    uint8_t *p;
    size_t cap;   /* bytes of p */
    size_t limit; /* the message must end at or before this (<= cap) */
    size_t len;
    bool over;    /* a write went past cap since the current RR began */
    size_t rd_at; /* the current RR's rdlength field */
    uint16_t count[4];
    /* The question name, lowercased, as the target of every compression pointer (offset
     * ZONE__HDR_LEN + i for a suffix starting at i); is_label[i] marks label starts. */
    const uint8_t *qname;
    size_t qname_len;
    bool is_label[ZONE_DNS_MAX_NAME + 1];
};
enum { ZONE__SEC_QD = 0, ZONE__SEC_AN, ZONE__SEC_NS, ZONE__SEC_AR };

/* Starts a response for q in out[cap]: the header (ID and the given flags word, counts 0) and,
 * when q's question was parsed, the question copied byte for byte from the packet. */
void zone__wire_start(struct zone__wire *w, const struct zone_dns_query *q, uint8_t *out,
                      size_t cap, size_t limit, uint16_t flags);
void zone__wire_u16(struct zone__wire *w, uint16_t v);
void zone__wire_u32(struct zone__wire *w, uint32_t v);
void zone__wire_bytes(struct zone__wire *w, const void *p, size_t n);
/* Writes a name; with compress, its longest suffix that is a suffix of the question name
 * becomes a pointer into the question (the only compression target, see dns_wire.c). */
void zone__wire_name(struct zone__wire *w, const uint8_t *name, size_t len, bool compress);
/* Begins an RR (owner, type, class IN, ttl, rdlength to patch); returns its start offset. */
size_t zone__wire_rr_begin(struct zone__wire *w, const uint8_t *owner, size_t owner_len,
                           uint16_t type, uint32_t ttl);
/* Ends the RR begun at start: patches its rdlength and keeps it, counted in section sec, when
 * the message still fits within limit - reserve; else removes it and returns false. */
bool zone__wire_rr_end(struct zone__wire *w, size_t start, size_t reserve, int sec);
/* Appends an OPT RR (RFC 6891 §6.1.2): our UDP size, the extended rcode's upper 8 bits,
 * version 0, DO as given, no options. Never fails when ZONE__OPT_LEN bytes were reserved. */
void zone__wire_opt(struct zone__wire *w, unsigned rcode, bool do_bit);
/* Sets or clears header flag bits and the rcode's low 4 bits. */
void zone__wire_flags(struct zone__wire *w, uint16_t set, uint16_t clear);
/* Patches the counts; returns the message length. */
size_t zone__wire_finish(struct zone__wire *w);

/* ---- name classification (dns_name.c) -------------------------------------------------- */
enum zone__kind {
    ZONE__K_APEX,    /* the domain itself: SOA, NS */
    ZONE__K_ENT,     /* an empty non-terminal (RFC 8020): NODATA */
    ZONE__K_NX,      /* nothing here or below: NXDOMAIN */
    ZONE__K_SERVICE, /* [tag.]svc.service, _svc._tag.service */
    ZONE__K_NODE,    /* node.node */
    ZONE__K_ADDR,    /* hex.addr */
    ZONE__K_PTR,     /* a complete reverse name (in-addr.arpa, ip6.arpa) */
    ZONE__K_FOREIGN, /* other reverse names: not ours to answer */
};
struct zone__qname {
    enum zone__kind kind;
    size_t domain_off; /* where the matched domain starts in the question name */
    bool ent_if_empty; /* "_x.service": NODATA rather than NXDOMAIN when no such service */
    /* NUL-terminated labels, lowercased ("" when absent) */
    char service[ZONE__MAX_LABEL + 1];
    char tag[ZONE__MAX_LABEL + 1];
    char node[ZONE__MAX_LABEL + 1];
    int family; /* ADDR, PTR: 4 or 6 */
    uint8_t ip[16];
};
/* Text to lowercased wire form; false when it is not a valid name. */
bool zone__dns_text2wire(const char *s, struct zone__name *out);
void zone__dns_classify(const struct zone_dns_config *cfg, const struct zone_dns_query *q,
                        struct zone__qname *out);
/* dns_config.service_ttl for a (lowercased) service name: exact, longest "prefix*", "*", 0. */
uint32_t zone__dns_service_ttl(const struct zone_dns_config *cfg, const char *service);

/* ---- catalog lookups (dns_lookup.c) ---------------------------------------------------- */
/* One service instance as the answers need it. Strings point into LMDB pages (valid until the
 * read ends). */
struct zone__inst {
    const char *node; /* the node's name as registered */
    uint16_t port;
    uint16_t weight; /* Weights.Passing, or Weights.Warning for a warning instance */
    int family;      /* 4 or 6 with ip, 0 for a hostname address (host) */
    uint8_t ip[16];
    const char *host;
    bool own;        /* the address is the service's own (SRV target: the .addr. name) */
    int node_family; /* the node's address when it was read (want_node, or no own address) */
    uint8_t node_ip[16];
};
/* The visible instances of a service (critical and maintenance hidden, warning too with
 * only_passing), with the tag (case-insensitive) when tag is not empty; in the arena, in
 * index order. want_node reads every instance's node address (NS glue). 0 or BASE_ESTORE. */
int zone__dns_instances(struct zone_read *r, const struct zone_dns_config *cfg, const char *name,
                        const char *tag, bool want_node, struct base_arena *a,
                        struct zone__inst **out, size_t *n) BASE_MUSTCHECK;
/* One owner of an address: node (lowercased, as keyed) and the service's name, or NULL for the
 * node's own address. */
struct zone__ptr {
    const char *node;
    size_t node_len;
    const char *service;
};
int zone__dns_ptrs(struct zone_read *r, int family, const uint8_t *ip, struct base_arena *a,
                   struct zone__ptr **out, size_t *n) BASE_MUSTCHECK;
/* The catalog index (the SOA serial). */
int zone__dns_serial(struct zone_read *r, uint32_t *serial) BASE_MUSTCHECK;

#endif
