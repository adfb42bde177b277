/* gossip: membership and failure detection for Herald's agents, SWIM with Lifeguard, in
 * HashiCorp memberlist's and serf's wire format, so Debian's serf agent (0.9.x) is a real
 * peer (DESIGN.md 2.7, issue 11).
 *
 * Today the module holds, all internal and pure: the wire codec (gossip/wire.h: every
 * memberlist and serf message, compound, CRC, LZW compression, AES-GCM encryption; mp.h under
 * it), the member table's state transitions (gossip/member.h) and the broadcast queue
 * (gossip/queue.h). The probe loop, push-pull and the transport on libuv come next; admin/ is
 * not wired to it yet.
 *
 * Threads: the codec and the member table are pure and run on any thread; what will run on
 * the loop says so. Ownership: arguments are borrowed for the call unless a comment says
 * otherwise.
 */
#ifndef HERALD_GOSSIP_H
#define HERALD_GOSSIP_H

#include <stddef.h>
#include <stdint.h>

/* Decodes a gossip encryption key as `-encrypt` and serf's -encrypt give it: base64 of 16, 24
 * or 32 bytes (AES-128, -192, -256). 0 and *len; BASE_EINVAL otherwise. */
int gossip_key_decode(const char *b64, uint8_t key[32], size_t *len);

#endif
