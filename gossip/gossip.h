/* gossip: membership and failure detection for Herald's agents, SWIM with Lifeguard, in
 * HashiCorp memberlist's and serf's wire format, so Debian's serf agent (0.9.x) is a real
 * peer (DESIGN.md 2.7, issue 11).
 *
 * Today the module holds the wire codec (gossip/wire.h, internal: every memberlist and serf
 * message, compound, CRC, LZW compression and AES-GCM encryption) and the member table's pure
 * state transitions (gossip/member.h); the probe loop, dissemination and push-pull on libuv
 * come next, and admin/ is not wired to it yet.
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
