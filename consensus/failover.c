/* Failover: a follower whose leader's Raft stream ends starts an election at once, and the
 * server port's timing for silent peers (issue 10).
 *
 * A leader killed (kill -9, a crash) has its sockets closed by the kernel at once: every
 * follower reads EOF (or a reset) on the Raft stream the leader opened to it. Waiting out the
 * election timeout then only wastes time: with pre-vote a follower grants a vote only once it
 * stopped following the old leader itself, so the cluster waited for the SLOWER follower's
 * randomized timeout (1 to 2 election timeouts, ~0.9 s from kill to the first acknowledged
 * write at the 500 ms default). So when the last Raft stream from our current leader ends
 * (raft_stream.c calls cons__peer_lost), a follower that votes starts a pre-vote itself:
 *
 *  - libraft has no "start an election now" call, but our io supplies its clock (io->time,
 *    wrapped in io.c): the clock is moved forward (only forward, so it stays monotonic) by
 *    twice the election timeout, past any randomized timeout, and libraft's tick is called at
 *    once; its follower rule sees the election timer expired and converts to candidate
 *    (pre-vote). The jump is like a pause of the process, which libraft tolerates anyway;
 *  - the followers see the end at the same moment, and two pre-vote candidates that both
 *    start before hearing from each other grant each other's pre-vote, then split the real
 *    vote (each votes for itself): another full randomized timeout. So they go in turn, by
 *    rank: the voters other than the lost leader sorted by id, rank r waits r x STAGGER
 *    heartbeats. The first one's pre-vote is refused by the others (they still follow the
 *    leader), but it stopped following: it grants the second one's pre-vote and vote, and the
 *    second wins (in a 3-server cluster; in general the one whose turn completes a majority),
 *    about STAGGER heartbeats after the kill. A follower that lags (busy, starved) is simply
 *    passed: whoever asks after it converted gets its vote;
 *  - libraft keeps a follower a follower while entries it received are still being written
 *    (or a snapshot installed), which under writes can be the case at that moment:
 *    then the turn is tried again every TRY_EVERY_MS (a write takes about a millisecond),
 *    up to TRIES_MAX times;
 *  - the one whose turn comes may have the shorter log (the last append reached the other
 *    one first): the earlier candidate refuses its pre-vote for that (Raft's election
 *    restriction), and both would wait out a randomized election timeout. So a pre-vote
 *    candidate of this episode that refuses a pre-vote (cons__vote_sent sees the refusal go
 *    out) runs its own pre-vote again at once: the other one stopped following, and grants
 *    it (at most RERUNS_MAX times per episode);
 *  - a spurious end (the leader is alive and only redialed) cannot disrupt anything: libraft
 *    refuses any vote request, pre-vote or real, while it follows a leader (recvRequestVote:
 *    "local server has a leader -> reject"; the leader itself refuses as leader), and a
 *    pre-vote does not raise the term. The follower that started it becomes a follower again
 *    with the leader's next heartbeat, in the same term. And a message from the leader after
 *    the end (it redialed in the meantime) cancels a turn still waiting.
 *
 * Silent peers. A partition (or a dead host) closes nothing: the connections stay open while
 * their data goes unacknowledged, and TCP backs off its retransmissions exponentially (0.2,
 * 0.4, 0.8, 1.6, 3.2 s ...): a healed server took seconds to hear from the new leader. So
 * outgoing server connections carry TCP_USER_TIMEOUT (cons__silent_ms: data unacknowledged
 * that long aborts the connection and libraft redials), and the TCP connect of a dial is
 * bounded by cons__connect_ms (a SYN lost to a partition is retried by the kernel only after
 * 1 s, then 3 s: a fresh dial is faster). Both scale with the heartbeat (raft_multiplier).
 * A stopped or starved peer's kernel still acknowledges, so neither fires for a slow process;
 * only a full receive window held longer than cons__silent_ms would (zero-window probes count
 * too), and that ends in a redial and, at worst, a pre-vote that is refused. */
#include "internal.h"

#include <inttypes.h>

#define STAGGER_HEARTBEATS 2  /* between the turns of two followers */
#define SILENT_HEARTBEATS  10 /* TCP_USER_TIMEOUT of outgoing server connections */
#define CONNECT_HEARTBEATS 4  /* the TCP connect of a dial */
#define RERUNS_MAX         3  /* pre-votes run again at once, per episode */
#define TRY_EVERY_MS       5  /* while libraft stays follower (writing entries) ... */
#define TRIES_MAX          40 /* ... at most this many times */

unsigned cons__silent_ms(const struct cons *c)
{
    return SILENT_HEARTBEATS * c->heartbeat_ms;
}

unsigned cons__connect_ms(const struct cons *c)
{
    return CONNECT_HEARTBEATS * c->heartbeat_ms;
}

static raft_id current_leader(struct cons *c)
{
    raft_id lid = 0;
    const char *address = NULL;
    raft_leader(&c->raft, &lid, &address);
    return lid;
}

/* The clock jumps past any randomized election timeout, and libraft's tick sees it. */
static void expire_now(struct cons *c)
{
    c->clock_skew += 2 * (uint64_t)c->raft.election_timeout + 1;
    c->raft_tick(&c->io);
}

static void lost_cb(uv_timer_t *t)
{
    struct cons *c = t->data;
    if (c->stopping)
        return;
    if (c->lost_rerun) {
        c->lost_rerun = false;
        if (raft_state(&c->raft) == RAFT_CANDIDATE && c->raft.candidate_state.in_pre_vote) {
            LOG_INFO("consensus", "refused a pre-vote with a longer log: running ours again");
            expire_now(c);
        }
        return;
    }
    if (raft_state(&c->raft) != RAFT_FOLLOWER || current_leader(c) != c->lost_id ||
        c->leader_msgs != c->lost_msgs)
        return; /* someone else won already, or the leader spoke again */
    if (c->lost_tries++ == 0)
        LOG_INFO("consensus", "leader id=%" PRIu64 " is gone: starting a pre-vote now", c->lost_id);
    expire_now(c);
    /* libraft stays follower (and restarts its timer) while entries it took are still being
     * written, or a snapshot installed: try again shortly */
    if (raft_state(&c->raft) == RAFT_FOLLOWER && c->lost_tries < TRIES_MAX) {
        LOG_DEBUG("consensus", "still a follower (entries being written?): again in %d ms",
                  TRY_EVERY_MS);
        uv_timer_start(&c->lost_timer, lost_cb, TRY_EVERY_MS, 0);
    }
}

void cons__vote_sent(struct cons *c, const struct raft_message *m)
{
    if (m->type != RAFT_REQUEST_VOTE_RESULT || !m->request_vote_result.pre_vote ||
        m->request_vote_result.vote_granted || c->lost_id == 0 || c->reruns >= RERUNS_MAX ||
        c->stopping || raft_state(&c->raft) != RAFT_CANDIDATE ||
        !c->raft.candidate_state.in_pre_vote)
        return;
    c->reruns++;
    c->lost_rerun = true; /* from the loop: we are inside libraft here */
    uv_timer_start(&c->lost_timer, lost_cb, 0, 0);
}

void cons__peer_lost(struct cons *c, uint64_t id)
{
    if (c->stopping || !c->raft_started || !c->raft_tick || raft_state(&c->raft) != RAFT_FOLLOWER ||
        current_leader(c) != id || cons__role_of(c, c->id) != RAFT_VOTER)
        return;
    const struct raft_configuration *conf = &c->raft.configuration;
    unsigned rank = 0;
    for (unsigned i = 0; i < conf->n; i++)
        if (conf->servers[i].role == RAFT_VOTER && conf->servers[i].id != id &&
            conf->servers[i].id < c->id)
            rank++;
    unsigned delay = rank * STAGGER_HEARTBEATS * c->heartbeat_ms;
    c->lost_id = id;
    c->lost_msgs = c->leader_msgs;
    c->lost_rerun = false;
    c->reruns = 0;
    c->lost_tries = 0;
    LOG_INFO("consensus",
             "the Raft stream from leader id=%" PRIu64 " ended: election in %u ms "
             "unless it speaks again",
             id, delay);
    uv_timer_start(&c->lost_timer, lost_cb, delay, 0);
}

void cons__failover_init(struct cons *c)
{
    int rv = uv_timer_init(c->loop, &c->lost_timer);
    assert(rv == 0);
    BASE_UNUSED(rv);
    c->lost_timer.data = c;
    uv_unref((uv_handle_t *)&c->lost_timer);
}
