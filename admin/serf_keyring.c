/* The gossip pool's keyring file, DATA/serf/local.keyring, as serf writes it and Consul reads
 * it: a JSON array of base64 keys, the primary first.
 *
 * At start (adm_keyring_load, the agent's start-up I/O): an existing file is the keyring, and
 * wins over -encrypt (with a warning, as Consul); without one, -encrypt's key starts the file
 * (Consul's initKeyring); without either, the pool is not encrypted. A file that is not such an
 * array of valid keys stops the start, naming it.
 *
 * After every change of the keyring (a keyring operation from any member: gossip/'s
 * on_keyring) adm_keyring_save rewrites it whole, to a .tmp then renamed, with fsync, on the
 * loop thread: a few milliseconds for an operator's rare action, and the member's answer to the
 * query must say whether it was saved (serf answers a failure when it cannot write the file). */
#include "internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void keyring_path(const char *data_dir, char *out, size_t n)
{
    snprintf(out, n, "%s/serf/local.keyring", data_dir);
}

int adm_keyring_save(const char *data_dir, const char *const *keys, size_t n, char *why,
                     size_t why_len)
{
    char dir[4096], path[4200], tmp[4300];
    snprintf(dir, sizeof dir, "%s/serf", data_dir);
    keyring_path(data_dir, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (mkdir(dir, 0700) && errno != EEXIST) {
        snprintf(why, why_len, "Failed to write keyring file: mkdir %s: %s", dir, strerror(errno));
        return -errno;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_string(keys[i]));
    char *text = json_dumps(arr, JSON_INDENT(2));
    json_decref(arr);
    int rc = 0;
    FILE *f = fopen(tmp, "w");
    if (!f || fputs(text, f) < 0 || fflush(f) || fsync(fileno(f)))
        rc = -errno;
    if (f && fclose(f) && !rc)
        rc = -errno;
    if (!rc && chmod(tmp, 0600))
        rc = -errno;
    if (!rc && rename(tmp, path))
        rc = -errno;
    free(text);
    if (rc) {
        snprintf(why, why_len, "Failed to write keyring file: %s: %s", path, base_strerror(rc));
        LOG_ERR("serf", "%s", why);
        return rc;
    }
    LOG_INFO("serf", "keyring saved to %s (%zu keys)", path, n);
    return 0;
}

int adm_keyring_load(const char *data_dir, const struct adm_config *c, struct adm_strv *keys,
                     char *err)
{
    char path[4200];
    keyring_path(data_dir, path, sizeof path);
    struct stat st;
    if (stat(path, &st) != 0) {
        if (!c->encrypt)
            return 0;
        char why[BASE_ERRMSG_LEN];
        const char *one[1] = {c->encrypt};
        int rc = adm_keyring_save(data_dir, one, 1, why, sizeof why);
        if (rc)
            return base_errf(err, rc, "%s", why);
        adm_strv_push(keys, c->encrypt);
        return 0;
    }
    json_error_t jerr;
    json_t *arr = json_load_file(path, 0, &jerr);
    if (!arr)
        return base_errf(err, BASE_EINVAL, "keyring %s: %s", path, jerr.text);
    int rc = 0;
    if (!json_is_array(arr) || json_array_size(arr) == 0 ||
        json_array_size(arr) > GOSSIP_KEYRING_MAX)
        rc = base_errf(err, BASE_EINVAL, "keyring %s: expected a JSON array of 1 to %d base64 keys",
                       path, GOSSIP_KEYRING_MAX);
    for (size_t i = 0; !rc && i < json_array_size(arr); i++) {
        const char *k = json_string_value(json_array_get(arr, i));
        uint8_t raw[32];
        size_t len;
        if (!k || gossip_key_decode(k, raw, &len) != 0)
            rc = base_errf(err, BASE_EINVAL,
                           "keyring %s: key %zu is not base64 of 16, 24 or 32 bytes", path, i);
        else
            adm_strv_push(keys, k);
    }
    json_decref(arr);
    if (rc) {
        adm_strv_free(keys);
        return rc;
    }
    if (c->encrypt)
        LOG_WARN("serf", "LAN keyring exists but -encrypt given, using keyring (%s)", path);
    LOG_INFO("serf", "keyring loaded from %s (%zu keys)", path, keys->n);
    return 0;
}
