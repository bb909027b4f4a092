/*
 * The IVR benchmark's load client: N callers, each on its own UDP socket, in C.
 *
 * Usage: ivrload --sessions N --seconds S [--address A] [--warmup-ms W] [--drain-ms D] [--slot-us U]
 *                [--digit-ms P] [--codec-pt C] [--event-pt E] [--rt 0|1]
 *
 * Protocol with the driver (bench/ivr_client.py), one line each way, then the run:
 *   1. It binds N UDP sockets on A (127.0.0.1) with ports the kernel hands out and prints
 *      "ports P0 P1 ... P(N-1)": session i is the caller on port Pi.
 *   2. It reads "dest D0 D1 ... D(N-1)" on stdin: session i sends to A:Di, the media worker's port for
 *      its leg. A session whose destination is its own port talks to itself: the calibration run, which
 *      measures this program alone (its pacing, its clock, its digit sending and counting).
 *   3. It prints "running" and starts every caller. The first W ms are a warm-up (the worker's playback
 *      starts, its first packets latch); at its end it prints "measuring" and measures the S s that
 *      follow, keeps reading for D ms more, then prints "digits N0 N1 ... N(N-1)" (the digits each session
 *      sent over the whole run, warm-up included, every one complete with its end packets) and one JSON
 *      object with what it measured, and exits 0.
 *
 * What a caller sends: a PCMA (payload type C, default 8) packet of A-law silence every 20 ms, and every
 * P ms (default 2000; the sessions' first digits spread evenly over that period) one RFC 4733 digit on
 * payload type E (default 101) in place of its audio: a start packet with the marker bit, three updates
 * (RFC 4733 §2.5.1.2, one per 20 ms, the duration growing by 160 each time) and the final report three
 * times 20 ms apart with the E bit (§2.5.1.4), every packet of the event carrying the RTP timestamp of its
 * start (§2.5.1.1): seven packets, a 100 ms tone. Audio resumes after, its timestamp advanced by the time
 * the digit took. Digit k of session i is "0123456789*#"[(i + k) % 12], so the driver knows what each
 * session should have reported.
 *
 * What a caller measures, on what arrives in the measured window (kernel arrival stamps, SO_TIMESTAMPNS):
 *   - pacing error of every packet k of payload type C. Its offset from the stream's RTP clock is
 *     o_k = (t_k - t_0) - (ts_k - ts_0) / 8000 s, t the arrival stamp, ts the RTP timestamp (unwrapped), 0
 *     the stream's first audio packet in the window. "first_*" report |o_k| itself; "pacing_*" report
 *     |o_k - median(o)|, the error against the stream's own clock phase rather than one packet's, whose
 *     own jitter would otherwise count into every other packet's error. Either way a player that sends
 *     late, bunches packets or skips audio (timestamp jumps) shows, one that merely starts late does
 *     not. Histograms of 1 us bins up to ~1 s, then 1 ms bins.
 *   - lost packets: gaps in the sequence numbers between the first and last packet of the window;
 *     "silent" sessions (nothing arrived in the window) and "stalled" ones (nothing in its last 100 ms).
 *   - digits seen: RFC 4733 events whose end arrived (the first E packet of each event timestamp); only
 *     the calibration run receives any, and each must be the digit sent (else "digits_wrong").
 *
 * Pacing is clock_nanosleep on CLOCK_MONOTONIC to the next slot of a U us grid (default 200) over which
 * the sessions' start times are spread; after each slot's sends every readable socket is drained (epoll
 * with no timeout). Arrivals are stamped by the kernel, so reading one a slot later changes nothing
 * measured. With --rt 1 it asks for SCHED_FIFO priority 1 (root only; "realtime" in the result says
 * whether it got it), so that a busy worker does not delay the callers' sends (their own lateness is
 * reported: late_p99_us, late_max_us).
 */
#define _GNU_SOURCE
#define PROGRAM "ivrload"
#include <inttypes.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "rtpbench.h"

#define TICK_NS 20000000LL    /* 20 ms packets */
#define TICK_TS 160u          /* RTP timestamp units per packet at 8 kHz */
#define NS_PER_TS 125000LL    /* 1 / 8000 s */
#define AUDIO_BYTES 160
#define RTP_HEADER 12
#define EVENT_TICKS 7         /* start, 3 updates, 3 ends */
#define EVENT_UPDATES 4       /* packets without E: durations 160, 320, 480, 640 */
#define EVENT_DURATION 800    /* the end reports: 100 ms */
#define EVENT_VOLUME 10
#define STALL_NS 100000000LL
#define EVENTS 256
#define DRAIN_WAKE_NS 1000000LL
#define DIGIT_CODES 12u       /* digits 0-9, * and # (RFC 4733 §3.2 events 0-11) */

struct caller {
    int fd;
    uint16_t port;
    struct sockaddr_in dest;
    /* sending */
    uint32_t ssrc;
    uint16_t seq;
    uint32_t ts0;
    int64_t offset_ns;    /* phase within the 20 ms period, on the slot grid */
    uint64_t tick;        /* packets due so far */
    uint64_t next_digit;  /* tick at which the next digit starts */
    uint32_t digits_sent; /* complete digits: all seven packets sent */
    /* receiving (the measured window) */
    int have_seq, have_ref;
    int64_t seq_ext, seq_min, seq_max;
    uint64_t received;
    int64_t t0_ns, ts_ext, ts_ref;
    int64_t *offsets; /* each audio packet's (t_k - t_0) - (ts_k - ts_0) / 8000, ns */
    uint32_t n_offsets, cap_offsets;
    int64_t last_ns;
    uint32_t drops;
    /* digits received (calibration) */
    int have_end;
    uint32_t end_ts;
    uint32_t digits_seen, digits_wrong;
};

static void usage(void)
{
    fprintf(stderr, "usage: ivrload --sessions N --seconds S [--address A] [--warmup-ms W] [--drain-ms D]"
                    " [--slot-us U] [--digit-ms P] [--codec-pt C] [--event-pt E] [--rt 0|1]\n");
    exit(2);
}

/* The packet session ``c`` owes at its tick ``k``: audio, or one of a digit's seven event packets. */
static size_t build_packet(struct caller *c, uint32_t index, uint64_t k, uint8_t codec_pt, uint8_t event_pt,
                           uint8_t *p)
{
    uint64_t into = k - c->next_digit; /* ticks into the current digit, if one is under way */
    int event = k >= c->next_digit && into < EVENT_TICKS;
    uint32_t ts = c->ts0 + (uint32_t)(event ? c->next_digit : k) * TICK_TS;
    uint16_t seq = htons((uint16_t)(c->seq + k));
    uint32_t ts_n = htonl(ts), ssrc_n = htonl(c->ssrc);
    p[0] = 0x80;
    p[1] = event ? (uint8_t)(event_pt | (into == 0 ? 0x80 : 0)) : codec_pt;
    memcpy(p + 2, &seq, 2);
    memcpy(p + 4, &ts_n, 4);
    memcpy(p + 8, &ssrc_n, 4);
    if (!event) {
        memset(p + RTP_HEADER, 0xd5, AUDIO_BYTES); /* A-law silence */
        return RTP_HEADER + AUDIO_BYTES;
    }
    int end = into >= EVENT_UPDATES;
    uint16_t duration = htons((uint16_t)(end ? EVENT_DURATION : (into + 1) * TICK_TS));
    p[RTP_HEADER] = (uint8_t)((index + c->digits_sent) % DIGIT_CODES); /* the event code (RFC 4733 §3.2) */
    p[RTP_HEADER + 1] = (uint8_t)((end ? 0x80 : 0) | EVENT_VOLUME);
    memcpy(p + RTP_HEADER + 2, &duration, 2);
    return RTP_HEADER + 4;
}

/* Send whatever session ``i`` owes up to ``now`` (one packet unless it fell behind). */
static void send_due(struct caller *c, uint32_t i, int64_t start, int64_t now, int64_t stop, uint8_t codec_pt,
                     uint8_t event_pt, uint64_t digit_ticks, int64_t measure_from, struct histogram *late,
                     uint64_t *sent)
{
    uint8_t packet[RTP_HEADER + AUDIO_BYTES];
    for (;;) {
        int64_t due = start + (int64_t)c->tick * TICK_NS + c->offset_ns;
        if (due > now || due >= stop)
            return;
        uint64_t k = c->tick++;
        if (k == c->next_digit && due + EVENT_TICKS * TICK_NS > stop)
            c->next_digit = UINT64_MAX; /* no digit that could not finish before the end */
        size_t len = build_packet(c, i, k, codec_pt, event_pt, packet);
        int64_t at = clock_ns(CLOCK_MONOTONIC);
        ssize_t done = sendto(c->fd, packet, len, 0, (struct sockaddr *)&c->dest, sizeof c->dest);
        if (done < 0 && errno != EAGAIN && errno != ENOBUFS && errno != ECONNREFUSED && errno != EINTR)
            die("sendto");
        if (due >= measure_from) {
            record(late, at - due);
            (*sent)++;
        }
        if (k == c->next_digit + EVENT_TICKS - 1) {
            c->digits_sent++;
            c->next_digit += digit_ticks;
        }
    }
}

/* A telephone-event packet arrived (the calibration run): count each event once, at its first end. */
static void event_received(struct caller *c, uint32_t index, const uint8_t *p, size_t len)
{
    if (len < RTP_HEADER + 4 || !(p[RTP_HEADER + 1] & 0x80))
        return;
    uint32_t ts;
    memcpy(&ts, p + 4, 4);
    if (c->have_end && ts == c->end_ts)
        return; /* a retransmitted end (RFC 4733 §2.5.1.4) */
    c->have_end = 1;
    c->end_ts = ts;
    if (p[RTP_HEADER] != (index + c->digits_seen) % DIGIT_CODES)
        c->digits_wrong++;
    c->digits_seen++;
}

/* One RTP packet in the measured window: sequence accounting, and pacing for the audio. */
static void measure(struct caller *c, const uint8_t *p, int64_t arrived, uint8_t codec_pt,
                    struct histogram *from_first)
{
    uint16_t seq = (uint16_t)(p[2] << 8 | p[3]);
    uint32_t ts = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
    if (!c->have_seq) {
        c->have_seq = 1;
        c->seq_ext = c->seq_min = c->seq_max = seq;
    } else {
        c->seq_ext += (int16_t)(uint16_t)(seq - (uint16_t)c->seq_ext);
        c->seq_min = c->seq_ext < c->seq_min ? c->seq_ext : c->seq_min;
        c->seq_max = c->seq_ext > c->seq_max ? c->seq_ext : c->seq_max;
    }
    c->received++;
    c->last_ns = arrived;
    if ((p[1] & 0x7f) != codec_pt)
        return;
    if (!c->have_ref) {
        c->have_ref = 1;
        c->t0_ns = arrived;
        c->ts_ext = c->ts_ref = ts;
    } else {
        c->ts_ext += (int32_t)(ts - (uint32_t)c->ts_ext);
    }
    int64_t offset = (arrived - c->t0_ns) - (c->ts_ext - c->ts_ref) * NS_PER_TS;
    record(from_first, offset < 0 ? -offset : offset);
    if (c->n_offsets == c->cap_offsets) {
        c->cap_offsets = c->cap_offsets ? 2 * c->cap_offsets : 1024;
        c->offsets = realloc(c->offsets, c->cap_offsets * sizeof *c->offsets);
        if (!c->offsets)
            die("realloc");
    }
    c->offsets[c->n_offsets++] = offset;
}

static int by_value(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* After the run: each audio packet's pacing error against the stream's median offset (its own clock's
 * phase, not one packet's), into ``pacing``. */
static void settle(struct caller *c, struct histogram *pacing)
{
    if (c->n_offsets == 0)
        return;
    int64_t *sorted = malloc(c->n_offsets * sizeof *sorted);
    if (!sorted)
        die("malloc");
    memcpy(sorted, c->offsets, c->n_offsets * sizeof *sorted);
    qsort(sorted, c->n_offsets, sizeof *sorted, by_value);
    int64_t median = sorted[c->n_offsets / 2];
    free(sorted);
    for (uint32_t k = 0; k < c->n_offsets; k++) {
        int64_t error = c->offsets[k] - median;
        record(pacing, error < 0 ? -error : error);
    }
}

struct window {
    int64_t from_real, to_real; /* the measured window on CLOCK_REALTIME, the kernel stamps' clock */
    uint8_t codec_pt, event_pt;
};

static void receive(struct caller *c, uint32_t index, const struct window *w, struct histogram *from_first)
{
    static struct stamped_batch batch;
    for (;;) {
        int got = recv_stamped(c->fd, &batch);
        for (int i = 0; i < got; i++) {
            int64_t arrived = arrival_stamp(&batch.msgs[i].msg_hdr, &c->drops);
            const uint8_t *p = batch.bufs[i];
            size_t len = batch.msgs[i].msg_len;
            if (len < RTP_HEADER || (p[0] & 0xc0) != 0x80)
                continue;
            if ((p[1] & 0x7f) == w->event_pt)
                event_received(c, index, p, len);
            if (arrived < 0)
                arrived = clock_ns(CLOCK_REALTIME);
            if (arrived >= w->from_real && arrived < w->to_real)
                measure(c, p, arrived, w->codec_pt, from_first);
        }
        if (got < STAMPED_BATCH)
            return;
    }
}

static void open_callers(struct caller *callers, uint32_t n, struct in_addr addr, int ep, int64_t slot_ns,
                         uint64_t digit_ticks)
{
    uint32_t seed = (uint32_t)clock_ns(CLOCK_REALTIME) | 1u;
    int64_t slots = TICK_NS / slot_ns > 0 ? TICK_NS / slot_ns : 1;
    int rcvbuf = 1 << 18;
    for (uint32_t i = 0; i < n; i++) {
        struct caller *c = &callers[i];
        c->fd = open_stamped(addr, rcvbuf, &c->port);
        /* Random SSRCs, sequence numbers and timestamps, so that wrap-around gets exercised. */
        c->ssrc = xorshift(&seed);
        c->seq = (uint16_t)xorshift(&seed);
        c->ts0 = xorshift(&seed);
        c->offset_ns = ((int64_t)i * slots / n) * (TICK_NS / slots);
        c->next_digit = 1 + (uint64_t)i * digit_ticks / n;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            die("epoll_ctl");
    }
}

int main(int argc, char **argv)
{
    uint32_t n = 0;
    struct run_options o = RUN_OPTIONS_DEFAULT;
    int64_t digit_ns = 2000000000LL;
    long codec_pt = 8, event_pt = 101;
    if (argc % 2 == 0)
        usage(); /* options come in pairs */
    for (int i = 1; i < argc; i += 2) {
        const char *arg = argv[i], *value = argv[i + 1];
        if (!strcmp(arg, "--sessions"))
            n = (uint32_t)strtoul(value, NULL, 10);
        else if (!strcmp(arg, "--digit-ms"))
            digit_ns = strtoll(value, NULL, 10) * 1000000LL;
        else if (!strcmp(arg, "--codec-pt"))
            codec_pt = strtol(value, NULL, 10);
        else if (!strcmp(arg, "--event-pt"))
            event_pt = strtol(value, NULL, 10);
        else if (!run_option(&o, arg, value))
            usage();
    }
    double seconds = o.seconds;
    int64_t warmup_ns = o.warmup_ns, drain_ns = o.drain_ns, slot_ns = o.slot_ns;
    if (n == 0 || n > 60000 || seconds <= 0 || seconds > 86400 || slot_ns <= 0 || drain_ns < 0
        || warmup_ns < 0 || digit_ns < (EVENT_TICKS + 1) * TICK_NS || codec_pt < 0 || codec_pt > 127
        || event_pt < 0 || event_pt > 127 || codec_pt == event_pt)
        usage();
    struct in_addr addr;
    if (inet_pton(AF_INET, o.address, &addr) != 1) {
        fprintf(stderr, "ivrload: bad IPv4 address %s\n", o.address);
        return 2;
    }
    int realtime = prepare_process(o.rt);
    uint64_t digit_ticks = (uint64_t)(digit_ns / TICK_NS);
    struct caller *callers = calloc(n, sizeof *callers);
    struct histogram pacing = histogram_new(), from_first = histogram_new(), late = histogram_new();
    struct sockaddr_in *dests = calloc(n, sizeof *dests);
    if (!callers || !dests)
        die("calloc");
    int ep = epoll_create1(0);
    if (ep < 0)
        die("epoll_create1");
    open_callers(callers, n, addr, ep, slot_ns, digit_ticks);
    printf("ports");
    for (uint32_t i = 0; i < n; i++)
        printf(" %u", callers[i].port);
    printf("\n");
    fflush(stdout);
    read_destinations(n, addr, dests);
    for (uint32_t i = 0; i < n; i++)
        callers[i].dest = dests[i];
    free(dests);

    printf("running\n");
    fflush(stdout);
    /* Warm-up in whole ticks, so that "measuring" falls on a tick of the grid. */
    warmup_ns = (warmup_ns + TICK_NS - 1) / TICK_NS * TICK_NS;
    int64_t start = clock_ns(CLOCK_MONOTONIC) + 1000000LL;
    int64_t measure_from = start + warmup_ns, stop_send = measure_from + (int64_t)(seconds * 1e9);
    int64_t stop = stop_send + drain_ns;
    int64_t real_offset = clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_MONOTONIC);
    struct window w = {measure_from + real_offset, stop_send + real_offset, (uint8_t)codec_pt,
                       (uint8_t)event_pt};
    double cpu0 = cpu_s(1) + cpu_s(0), cpu_window = 0;
    int measuring = 0, sending = 1;
    uint64_t sent = 0;
    uint32_t cursor = 0; /* callers are ordered by phase: a cursor finds each slot's senders */
    int64_t cycle = start, wake = start;
    struct epoll_event events[EVENTS];
    for (;;) {
        sleep_until(wake);
        int64_t now = clock_ns(CLOCK_MONOTONIC);
        if (!measuring && now >= measure_from) {
            measuring = 1;
            printf("measuring\n");
            fflush(stdout);
            cpu0 = cpu_s(1) + cpu_s(0);
        }
        if (sending) {
            while (cycle + callers[cursor].offset_ns <= now && cycle < stop_send) {
                send_due(&callers[cursor], cursor, start, now, stop_send, (uint8_t)codec_pt,
                         (uint8_t)event_pt, digit_ticks, measure_from, &late, &sent);
                if (++cursor == n) {
                    cursor = 0;
                    cycle += TICK_NS;
                }
            }
            wake = cycle + callers[cursor].offset_ns;
            if (wake >= stop_send) {
                sending = 0;
                cpu_window = cpu_s(1) + cpu_s(0) - cpu0;
            }
        }
        int got;
        do {
            got = epoll_wait(ep, events, EVENTS, 0);
            if (got < 0 && errno != EINTR)
                die("epoll_wait");
            for (int i = 0; i < got; i++)
                receive(&callers[events[i].data.u32], events[i].data.u32, &w, &from_first);
        } while (got == EVENTS);
        if (!sending) {
            if (now >= stop)
                break;
            wake = now + DRAIN_WAKE_NS < stop ? now + DRAIN_WAKE_NS : stop;
        }
    }
    double wall = (double)(stop_send - measure_from) / 1e9;
    uint64_t received = 0, lost = 0, drops = 0, digits_sent = 0, digits_seen = 0, digits_wrong = 0;
    uint32_t silent = 0, stalled = 0;
    printf("digits");
    for (uint32_t i = 0; i < n; i++) {
        struct caller *c = &callers[i];
        printf(" %u", c->digits_sent);
        settle(c, &pacing);
        received += c->received;
        if (c->have_seq && c->seq_max - c->seq_min + 1 > (int64_t)c->received)
            lost += (uint64_t)(c->seq_max - c->seq_min + 1) - c->received;
        silent += !c->have_seq;
        stalled += c->have_seq && c->last_ns < w.to_real - STALL_NS;
        drops += c->drops;
        digits_sent += c->digits_sent;
        digits_seen += c->digits_seen;
        digits_wrong += c->digits_wrong;
    }
    printf("\n");
    printf("{\"sessions\": %u, \"seconds\": %g, \"warmup_s\": %.3f, \"sent\": %" PRIu64
           ", \"received\": %" PRIu64 ", \"audio_received\": %" PRIu64 ", \"lost\": %" PRIu64
           ", \"silent\": %u, \"stalled\": %u, \"socket_drops\": %" PRIu64 ", \"digits_sent\": %" PRIu64
           ", \"digits_seen\": %" PRIu64 ", \"digits_wrong\": %" PRIu64 ", \"pacing_p50_us\": %" PRId64
           ", \"pacing_p99_us\": %" PRId64 ", \"pacing_p999_us\": %" PRId64 ", \"pacing_max_us\": %" PRIu64
           ", \"first_p99_us\": %" PRId64 ", \"first_max_us\": %" PRIu64 ", \"late_p99_us\": %" PRId64
           ", \"late_max_us\": %" PRIu64 ", \"cpu_s\": %.4f, \"wall_s\": %.4f, \"realtime\": %d}\n",
           n, seconds, (double)warmup_ns / 1e9, sent, received, pacing.count, lost, silent, stalled, drops,
           digits_sent, digits_seen, digits_wrong, percentile(&pacing, 0.5), percentile(&pacing, 0.99),
           percentile(&pacing, 0.999), pacing.max, percentile(&from_first, 0.99), from_first.max,
           percentile(&late, 0.99), late.max, cpu_window, wall,
           realtime);
    fflush(stdout);
    return 0;
}
