/*
 * The relay benchmark's load generator: G.711 20 ms RTP streams through a relay, one thread, in C.
 *
 * Usage: loadgen --ends N --seconds S [--address A] [--warmup-ms W] [--drain-ms D] [--slot-us U]
 *                [--rcvbuf B] [--rt 0|1]
 *
 * Protocol with the driver (bench/loadgen.py), one line each way, then the run:
 *   1. It binds N UDP sockets on A (127.0.0.1) with ports the kernel hands out and prints
 *      "ports P0 P1 ... P(N-1)". Ends 2k (the caller) and 2k+1 (the callee) are call k's two stream ends.
 *   2. It reads "dest D0 D1 ... D(N-1)" on stdin: end i sends to A:Di, the relay port facing it.
 *   3. It prints "running" and offers the load. The first W ms (default 0) are a warm-up whose packets
 *      are sent and relayed but not counted (a relay's first packet of a stream latches, logs, raises an
 *      event: a start-up cost, not its steady state). At the end of the warm-up it prints "measuring",
 *      measures for S seconds, keeps receiving for D ms more (stragglers), and prints one JSON object
 *      with what it measured, then exits 0.
 *
 * Each end sends a 172-byte RTP packet (PCMU, 160-byte payload) every 20 ms with its own SSRC, sequence
 * number and timestamp. Start times are spread across the 20 ms period on a grid of U us slots (default
 * 200): a wake-up sends every packet of its slot, so lateness is measured against the grid, not smeared
 * by it. Pacing is clock_nanosleep on CLOCK_MONOTONIC to the next slot; after each slot's sends every
 * readable socket is drained (epoll with no timeout). The generator never wakes for an arrival: the
 * kernel stamps it, so reading it up to one slot later changes nothing measured and saves a context
 * switch per packet.
 *
 * The payload starts with a magic number, the send time (CLOCK_REALTIME, taken just before the send
 * syscall, since the kernel's SO_TIMESTAMPNS arrival stamps use that clock), the sending end and the
 * stream's packet index. Latency is arrival stamp minus send time, so a generator slow to read its
 * sockets does not inflate it. Every sample goes into a histogram of 1 us bins up to ~1 s, then 1 ms
 * bins up to a minute, from which p50/p99/p99.9 are exact to the microsecond below a second.
 *
 * UDP takes a datagram's source port from its socket, so sendmmsg batches per stream end (a late end
 * sends all it owes in one call) and recvmmsg drains a readable socket in one call. On loopback the
 * kernel's delivery of each packet to the receiving socket runs inside the sender's syscall: that is the
 * bulk of this program's CPU and it is reported (cpu_user_s, cpu_sys_s) so the driver can show the
 * generator is not the bottleneck and account for the kernel's share honestly.
 *
 * With --rt 1 it asks for SCHED_FIFO priority 1 (root only; "realtime" in the result says whether it got
 * it): on a small machine the relay's processes keep the cores busy, and a generator that waits for a
 * time slice sends late, which would be charged to the relay as burstiness it did not cause. It sleeps
 * between slots, so the priority costs the relay no CPU beyond what the generator uses anyway.
 */
#define _GNU_SOURCE
#define PROGRAM "loadgen"
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "rtpbench.h"

#define PTIME_NS 20000000LL
#define PAYLOAD_BYTES 160
#define RTP_HEADER 12
#define PACKET_BYTES (RTP_HEADER + PAYLOAD_BYTES)
#define MAGIC 0x52544231u /* "RTB1" */
#define STAMP_BYTES 20    /* magic, send ns, sending end, packet index */
#define SEND_BATCH 16
#define EVENTS 256
#define DRAIN_WAKE_NS 1000000LL

struct end {
    int fd;
    uint16_t port;
    struct sockaddr_in dest;
    uint32_t ssrc;
    uint16_t seq;
    uint32_t ts;
    uint32_t index;          /* packets this end has sent */
    int64_t offset_ns;       /* phase within the 20 ms period, on the slot grid */
    uint8_t *seen;           /* bitmap of the peer's packet indices received here */
    uint32_t highest;        /* highest peer index received + 1 */
    uint32_t drops;          /* SO_RXQ_OVFL: datagrams this socket's queue dropped */
};

static void usage(void)
{
    fprintf(stderr, "usage: loadgen --ends N --seconds S [--address A] [--warmup-ms W] [--drain-ms D]"
                    " [--slot-us U] [--rcvbuf BYTES] [--rt 0|1]\n");
    exit(2);
}

struct counters {
    uint64_t sent, received, duplicates, reordered, misrouted, malformed, send_errors;
};

/* Drain one readable socket with recvmmsg; every valid packet is a latency sample. */
static void receive(struct end *ends, uint32_t n_ends, uint32_t e, struct histogram *latency,
                    struct counters *c, uint32_t warm_index, uint32_t max_index)
{
    static struct stamped_batch batch;
    struct end *me = &ends[e];
    for (;;) {
        int got = recv_stamped(me->fd, &batch);
        int64_t fallback = -1;
        for (int i = 0; i < got; i++) {
            int64_t arrived = arrival_stamp(&batch.msgs[i].msg_hdr, &me->drops);
            const uint8_t *p = batch.bufs[i];
            uint32_t magic, from, index;
            int64_t sent_ns;
            if (batch.msgs[i].msg_len < RTP_HEADER + STAMP_BYTES) {
                c->malformed++;
                continue;
            }
            memcpy(&magic, p + RTP_HEADER, 4);
            memcpy(&sent_ns, p + RTP_HEADER + 4, 8);
            memcpy(&from, p + RTP_HEADER + 12, 4);
            memcpy(&index, p + RTP_HEADER + 16, 4);
            if (magic != MAGIC || from >= n_ends || index >= max_index) {
                c->malformed++;
                continue;
            }
            if (index < warm_index)
                continue; /* a warm-up packet */
            if (from != (e ^ 1u)) {
                c->misrouted++; /* a relay that crossed two calls' streams */
                continue;
            }
            uint8_t bit = (uint8_t)(1u << (index & 7u));
            if (me->seen[index >> 3] & bit) {
                c->duplicates++;
                continue;
            }
            me->seen[index >> 3] |= bit;
            if (index + 1 < me->highest)
                c->reordered++;
            else
                me->highest = index + 1;
            if (arrived < 0) {
                if (fallback < 0)
                    fallback = clock_ns(CLOCK_REALTIME);
                arrived = fallback;
            }
            record(latency, arrived - sent_ns);
            c->received++;
        }
        if (got < STAMPED_BATCH)
            return;
    }
}

/* Send every packet end ``e`` owes up to ``now`` (normally one) in one sendmmsg; returns how many. */
static uint32_t send_due(struct end *me, uint32_t e, int64_t start, int64_t now, int64_t stop,
                         uint32_t warm_index, struct histogram *late, struct counters *c)
{
    static uint8_t bufs[SEND_BATCH][PACKET_BYTES];
    struct mmsghdr msgs[SEND_BATCH];
    struct iovec iovs[SEND_BATCH];
    int64_t dues[SEND_BATCH];
    uint32_t indices[SEND_BATCH];
    uint32_t n = 0;
    for (;;) {
        int64_t due = start + (int64_t)me->index * PTIME_NS + me->offset_ns;
        if (due > now || due >= stop || n == SEND_BATCH)
            break;
        uint8_t *p = bufs[n];
        uint16_t seq = htons((uint16_t)(me->seq + me->index));
        uint32_t ts = htonl(me->ts + me->index * 160u);
        uint32_t ssrc = htonl(me->ssrc);
        p[0] = 0x80;
        p[1] = 0; /* PCMU */
        memcpy(p + 2, &seq, 2);
        memcpy(p + 4, &ts, 4);
        memcpy(p + 8, &ssrc, 4);
        uint32_t magic = MAGIC;
        memcpy(p + RTP_HEADER, &magic, 4);
        memcpy(p + RTP_HEADER + 12, &e, 4);
        memcpy(p + RTP_HEADER + 16, &me->index, 4);
        memset(p + RTP_HEADER + STAMP_BYTES, 0xff, PAYLOAD_BYTES - STAMP_BYTES); /* PCMU silence */
        iovs[n].iov_base = p;
        iovs[n].iov_len = PACKET_BYTES;
        memset(&msgs[n].msg_hdr, 0, sizeof msgs[n].msg_hdr);
        msgs[n].msg_hdr.msg_name = &me->dest;
        msgs[n].msg_hdr.msg_namelen = sizeof me->dest;
        msgs[n].msg_hdr.msg_iov = &iovs[n];
        msgs[n].msg_hdr.msg_iovlen = 1;
        dues[n] = due;
        indices[n] = me->index;
        me->index++;
        n++;
    }
    if (n == 0)
        return 0;
    int64_t sent_mono = clock_ns(CLOCK_MONOTONIC);
    int64_t sent_real = clock_ns(CLOCK_REALTIME);
    for (uint32_t i = 0; i < n; i++)
        memcpy(bufs[i] + RTP_HEADER + 4, &sent_real, 8);
    int done = sendmmsg(me->fd, msgs, n, 0);
    if (done < 0) {
        if (errno != EAGAIN && errno != ENOBUFS && errno != ECONNREFUSED && errno != EINTR)
            die("sendmmsg");
        done = 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (indices[i] < warm_index)
            continue;
        if (i < (uint32_t)done) {
            record(late, sent_mono - dues[i]);
            c->sent++;
        } else {
            c->send_errors++;
        }
    }
    return n;
}

int main(int argc, char **argv)
{
    uint32_t n_ends = 0;
    struct run_options o = RUN_OPTIONS_DEFAULT;
    int rcvbuf = 1 << 20;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!value)
            usage();
        if (!strcmp(arg, "--ends"))
            n_ends = (uint32_t)strtoul(value, NULL, 10);
        else if (!strcmp(arg, "--rcvbuf"))
            rcvbuf = atoi(value);
        else if (!run_option(&o, arg, value))
            usage();
        i++;
    }
    double seconds = o.seconds;
    const char *address = o.address;
    int64_t drain_ns = o.drain_ns, slot_ns = o.slot_ns, warmup_ns = o.warmup_ns;
    int rt = o.rt;
    if (n_ends == 0 || n_ends % 2 || n_ends > 200000 || seconds <= 0 || seconds > 86400 || slot_ns <= 0
        || drain_ns < 0 || warmup_ns < 0 || warmup_ns > 3600000000000LL)
        usage();

    struct in_addr addr;
    if (inet_pton(AF_INET, address, &addr) != 1) {
        fprintf(stderr, "loadgen: bad IPv4 address %s\n", address);
        return 2;
    }
    int realtime = prepare_process(rt);
    /* Warm-up in whole periods, so that "measuring" falls exactly on the first measured packet's due time. */
    uint32_t warm_index = (uint32_t)((warmup_ns + PTIME_NS - 1) / PTIME_NS);
    warmup_ns = (int64_t)warm_index * PTIME_NS;
    uint32_t max_index = warm_index + (uint32_t)(seconds * 1e9 / (double)PTIME_NS) + 2;
    struct end *ends = calloc(n_ends, sizeof *ends);
    struct histogram latency = histogram_new(), late = histogram_new();
    if (!ends)
        die("calloc");
    int ep = epoll_create1(0);
    if (ep < 0)
        die("epoll_create1");
    uint32_t seed = (uint32_t)clock_ns(CLOCK_REALTIME) | 1u;
    int64_t slots = PTIME_NS / slot_ns;
    if (slots < 1)
        slots = 1;
    for (uint32_t e = 0; e < n_ends; e++) {
        struct end *me = &ends[e];
        me->fd = open_stamped(addr, rcvbuf, &me->port);
        me->ssrc = xorshift(&seed);
        me->seq = (uint16_t)xorshift(&seed);
        me->ts = xorshift(&seed);
        /* Even spread over the period, snapped down to the slot grid. */
        me->offset_ns = ((int64_t)e * slots / n_ends) * (PTIME_NS / slots);
        me->seen = calloc((max_index + 7) / 8, 1);
        if (!me->seen)
            die("calloc");
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = e};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, me->fd, &ev) < 0)
            die("epoll_ctl");
    }
    printf("ports");
    for (uint32_t e = 0; e < n_ends; e++)
        printf(" %u", ends[e].port);
    printf("\n");
    fflush(stdout);

    struct sockaddr_in *dests = calloc(n_ends, sizeof *dests);
    if (!dests)
        die("calloc");
    read_destinations(n_ends, addr, dests);
    for (uint32_t e = 0; e < n_ends; e++)
        ends[e].dest = dests[e];
    free(dests);

    printf("running\n");
    fflush(stdout);
    double user0 = cpu_s(1), sys0 = cpu_s(0);
    int64_t start = clock_ns(CLOCK_MONOTONIC) + 1000000LL; /* 1 ms to get into the loop */
    int64_t measure_from = start + warmup_ns;
    int measuring = 0;
    int64_t stop_send = measure_from + (int64_t)(seconds * 1e9);
    int64_t stop = stop_send + drain_ns;
    double user_sent = 0, sys_sent = 0;
    int sending = 1;
    struct counters c = {0};
    /* Ends are ordered by phase, so a cursor over them finds each slot's senders without a heap. */
    uint32_t cursor_end = 0;
    int64_t cycle_start = start;
    int64_t wake = start;
    struct epoll_event events[EVENTS];
    for (;;) {
        sleep_until(wake);
        int64_t now = clock_ns(CLOCK_MONOTONIC);
        if (!measuring && now >= measure_from) {
            measuring = 1;
            printf("measuring\n");
            fflush(stdout);
            user0 = cpu_s(1);
            sys0 = cpu_s(0);
        }
        if (sending) {
            while (cycle_start + ends[cursor_end].offset_ns <= now && cycle_start < stop_send) {
                send_due(&ends[cursor_end], cursor_end, start, now, stop_send, warm_index, &late, &c);
                if (++cursor_end == n_ends) {
                    cursor_end = 0;
                    cycle_start += PTIME_NS;
                }
            }
            wake = cycle_start + ends[cursor_end].offset_ns;
            if (wake >= stop_send) {
                /* An end that fell behind by whole periods sent all it owed above; none is left. */
                sending = 0;
                user_sent = cpu_s(1) - user0;
                sys_sent = cpu_s(0) - sys0;
            }
        }
        int n;
        do {
            n = epoll_wait(ep, events, EVENTS, 0);
            if (n < 0 && errno != EINTR)
                die("epoll_wait");
            for (int i = 0; i < n; i++)
                receive(ends, n_ends, events[i].data.u32, &latency, &c, warm_index, max_index);
        } while (n == EVENTS);
        if (!sending) {
            if (now >= stop)
                break;
            wake = now + DRAIN_WAKE_NS < stop ? now + DRAIN_WAKE_NS : stop;
        }
    }
    double user = cpu_s(1) - user0, sys = cpu_s(0) - sys0;
    double wall = (double)(clock_ns(CLOCK_MONOTONIC) - measure_from) / 1e9;
    uint64_t drops = 0;
    for (uint32_t e = 0; e < n_ends; e++)
        drops += ends[e].drops;
    uint64_t lost = c.sent > c.received ? c.sent - c.received : 0;
    printf("{\"ends\": %u, \"seconds\": %g, \"sent\": %" PRIu64 ", \"received\": %" PRIu64
           ", \"lost\": %" PRIu64 ", \"duplicates\": %" PRIu64 ", \"reordered\": %" PRIu64
           ", \"misrouted\": %" PRIu64 ", \"malformed\": %" PRIu64 ", \"send_errors\": %" PRIu64
           ", \"socket_drops\": %" PRIu64 ", \"p50_us\": %" PRId64 ", \"p99_us\": %" PRId64
           ", \"p999_us\": %" PRId64 ", \"max_us\": %" PRIu64 ", \"late_p50_us\": %" PRId64
           ", \"late_p99_us\": %" PRId64 ", \"late_max_us\": %" PRIu64 ", \"cpu_user_s\": %.4f"
           ", \"cpu_sys_s\": %.4f, \"send_cpu_s\": %.4f, \"wall_s\": %.4f, \"realtime\": %d"
           ", \"warmup_s\": %.3f}\n",
           n_ends, seconds, c.sent, c.received, lost, c.duplicates, c.reordered, c.misrouted, c.malformed,
           c.send_errors, drops, percentile(&latency, 0.5), percentile(&latency, 0.99),
           percentile(&latency, 0.999), latency.max, percentile(&late, 0.5), percentile(&late, 0.99),
           late.max, user, sys, user_sent + sys_sent, wall, realtime, (double)warmup_ns / 1e9);
    fflush(stdout);
    return 0;
}
