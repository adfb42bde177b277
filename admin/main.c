/* herald: one binary for the agent and the CLI (DESIGN.md 1.1). */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: herald <command> [args]\n"
            "\n"
            "Commands:\n"
            "  agent [flags]                      run an agent (-dev for a single dev node;\n"
            "                                     herald agent -h lists the flags)\n"
            "  members [-detailed] [-status RE]   members of the gossip pool\n"
            "  force-leave [-prune] NODE          a failed member becomes left\n"
            "  maint -enable|-disable [-service ID] [-reason R]  maintenance mode\n"
            "  join ADDR... | leave               join a cluster / leave it gracefully\n"
            "  event -name N [-node RE] [-service RE] [-tag RE] [PAYLOAD]\n"
            "                                     fire a user event to the gossip pool\n"
            "  operator raft list-peers | remove-peer -address IP:PORT | -id ID\n"
            "  services register FILE.json | -name N [-id I] [-port P] [-address A] [-tag T]...\n"
            "  services deregister ID\n"
            "  catalog services | nodes | service NAME\n"
            "  kv get KEY | put KEY VALUE | delete KEY [-recurse] | export [PREFIX] | import FILE\n"
            "  snapshot save [-stale] FILE | restore FILE | inspect FILE\n"
            "  lock [-n N] [-name N] [-timeout D] [-shell=false] PREFIX CMD...\n"
            "                                     run CMD while holding a lock (a semaphore of N)\n"
            "  watch -type key|keyprefix|services|nodes|service|checks|event [-key K]\n"
            "        [-prefix P] [-service S] [-tag T] [-passingonly] [-state S] [-name N]\n"
            "        [-once] [HANDLER]            each change as JSON (to HANDLER's stdin)\n"
            "  keygen                             a new cluster key for -encrypt\n"
            "  keyring -list | -list-primary | -install KEY | -use KEY | -remove KEY\n"
            "                                     the gossip keyring across the pool\n"
            "  version\n"
            "\n"
            "The CLI talks to the agent's HTTP API: -http-addr, HERALD_HTTP_ADDR or\n"
            "CONSUL_HTTP_ADDR (default 127.0.0.1:8500).\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "agent") == 0)
        return adm_agent_main(argc - 2, argv + 2);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "-version") == 0 ||
        strcmp(cmd, "--version") == 0) {
        printf("Herald v%s\n", HERALD_VERSION);
        return 0;
    }
    if (strcmp(cmd, "keygen") == 0) {
        /* as consul keygen: 32 random bytes, base64 (the cluster key of -encrypt) */
        uint8_t key[32];
        if (argc != 2 || getrandom(key, sizeof key, 0) != (ssize_t)sizeof key) {
            fprintf(stderr, "%s\n", argc != 2 ? "usage: herald keygen" : strerror(errno));
            return 1;
        }
        struct base_arena a;
        base_arena_init(&a);
        printf("%s\n", base_b64_encode(&a, key, sizeof key));
        base_arena_close(&a);
        return 0;
    }
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    return adm_cli_main(cmd, argc - 2, argv + 2);
}
