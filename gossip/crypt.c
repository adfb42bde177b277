/* gossip/crypt.c: memberlist's encryption (security.go), AES-GCM with nettle.
 *
 * [vsn][12-byte nonce][ciphertext][16-byte tag]. Version 1 encrypts the message as it is;
 * version 0 (memberlist protocol 1) first pads it with PKCS#7 to a multiple of 16 bytes. The
 * key's length picks AES-128, -192 or -256. A packet has no additional data; a stream's
 * encrypted frame authenticates its 5-byte header ([10][u32 BE length]). Decryption tries every
 * key of the keyring, as memberlist does during key rotation.
 */
#include "gossip/gossip.h"
#include "gossip/wire.h"

#include <nettle/gcm.h>
#include <nettle/memops.h>
#include <string.h>

#define NONCE_LEN 12
#define TAG_LEN   16

union aes_gcm {
    struct gcm_aes128_ctx a128;
    struct gcm_aes192_ctx a192;
    struct gcm_aes256_ctx a256;
};

/* Encrypts (enc) or decrypts n bytes of in into out, leaving the tag in tag. */
static void gcm_run(bool enc, const uint8_t *key, size_t key_len, const uint8_t *nonce,
                    const uint8_t *ad, size_t ad_n, const uint8_t *in, size_t n, uint8_t *out,
                    uint8_t tag[TAG_LEN])
{
    union aes_gcm c;
    switch (key_len) {
    case 16:
        gcm_aes128_set_key(&c.a128, key);
        gcm_aes128_set_iv(&c.a128, NONCE_LEN, nonce);
        if (ad_n)
            gcm_aes128_update(&c.a128, ad_n, ad);
        if (enc)
            gcm_aes128_encrypt(&c.a128, n, out, in);
        else
            gcm_aes128_decrypt(&c.a128, n, out, in);
        gcm_aes128_digest(&c.a128, TAG_LEN, tag);
        break;
    case 24:
        gcm_aes192_set_key(&c.a192, key);
        gcm_aes192_set_iv(&c.a192, NONCE_LEN, nonce);
        if (ad_n)
            gcm_aes192_update(&c.a192, ad_n, ad);
        if (enc)
            gcm_aes192_encrypt(&c.a192, n, out, in);
        else
            gcm_aes192_decrypt(&c.a192, n, out, in);
        gcm_aes192_digest(&c.a192, TAG_LEN, tag);
        break;
    default:
        gcm_aes256_set_key(&c.a256, key);
        gcm_aes256_set_iv(&c.a256, NONCE_LEN, nonce);
        if (ad_n)
            gcm_aes256_update(&c.a256, ad_n, ad);
        if (enc)
            gcm_aes256_encrypt(&c.a256, n, out, in);
        else
            gcm_aes256_decrypt(&c.a256, n, out, in);
        gcm_aes256_digest(&c.a256, TAG_LEN, tag);
        break;
    }
}

void gossip__encrypt(struct base_buf *b, uint8_t vsn, const uint8_t *key, size_t key_len,
                     const uint8_t nonce[12], const uint8_t *msg, size_t n, const uint8_t *ad,
                     size_t ad_n)
{
    size_t pad = vsn == 0 ? 16 - n % 16 : 0;
    size_t len = n + pad;
    uint8_t *plain = base_malloc(len ? len : 1);
    if (n)
        memcpy(plain, msg, n);
    memset(plain + n, (int)pad, pad);
    base_buf_reserve(b, 1 + NONCE_LEN + len + TAG_LEN);
    base_buf_put_u8(b, vsn);
    base_buf_append(b, nonce, NONCE_LEN);
    uint8_t *ct = b->data + b->len;
    gcm_run(true, key, key_len, nonce, ad, ad_n, plain, len, ct, ct + len);
    b->len += len + TAG_LEN;
    base_free(plain);
}

void gossip__encrypt_stream(struct base_buf *b, const uint8_t *key, size_t key_len,
                            const uint8_t nonce[12], const uint8_t *msg, size_t n)
{
    uint32_t l = (uint32_t)(1 + NONCE_LEN + n + TAG_LEN);
    uint8_t h[5] = {GOSSIP_ENCRYPT, (uint8_t)(l >> 24), (uint8_t)(l >> 16), (uint8_t)(l >> 8),
                    (uint8_t)l};
    base_buf_append(b, h, 5);
    gossip__encrypt(b, 1, key, key_len, nonce, msg, n, h, 5);
}

int gossip__decrypt(const struct gossip_keyring *keys, const uint8_t *msg, size_t n,
                    const uint8_t *ad, size_t ad_n, struct base_arena *a, struct gossip_bytes *out)
{
    if (n < 1 || msg[0] > 1)
        return BASE_EPARSE;
    uint8_t vsn = msg[0];
    /* version 0 has at least one block of padding */
    if (n < 1 + NONCE_LEN + TAG_LEN + (vsn == 0 ? 16u : 0u))
        return BASE_EPARSE;
    size_t len = n - 1 - NONCE_LEN - TAG_LEN;
    if (vsn == 0 && len % 16 != 0)
        return BASE_EPARSE;
    const uint8_t *nonce = msg + 1, *ct = msg + 1 + NONCE_LEN, *tag = ct + len;
    uint8_t *plain = base_arena_alloc(a, len ? len : 1);
    for (size_t i = 0; keys && i < keys->n; i++) {
        size_t kl = keys->keys[i].len;
        if (kl != 16 && kl != 24 && kl != 32)
            continue;
        uint8_t got[TAG_LEN];
        gcm_run(false, keys->keys[i].key, kl, nonce, ad, ad_n, ct, len, plain, got);
        if (!memeql_sec(got, tag, TAG_LEN))
            continue;
        if (vsn == 0) {
            uint8_t pad = plain[len - 1];
            if (pad == 0 || pad > 16)
                return BASE_EPARSE;
            len -= pad;
        }
        *out = (struct gossip_bytes){plain, len};
        return 0;
    }
    return BASE_EACL;
}

int gossip_key_decode(const char *b64, uint8_t key[32], size_t *len)
{
    struct base_arena a;
    base_arena_init(&a);
    uint8_t *k;
    size_t n;
    int rv = b64 ? base_b64_decode(&a, b64, &k, &n) : BASE_EINVAL;
    if (rv == 0 && n != 16 && n != 24 && n != 32)
        rv = BASE_EINVAL;
    if (rv == 0) {
        memcpy(key, k, n);
        *len = n;
    } else {
        rv = BASE_EINVAL;
    }
    base_arena_close(&a);
    return rv;
}
