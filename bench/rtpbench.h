/*
 * What the benchmarks' C load programs (loadgen.c for the relay, ivrload.c for the IVR) share: clocks and
 * pacing, a histogram exact to the microsecond, kernel-stamped UDP sockets, the destination line of their
 * driver protocol, and the process set-up both do. Header only, every function static inline; define
 * PROGRAM (the name that prefixes error messages) before including it.
 */
#ifndef RTPBENCH_H
#define RTPBENCH_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#define HIST_FINE (1u << 20) /* 1 us bins: 0 .. ~1.05 s */
#define HIST_COARSE 60000u    /* then 1 ms bins (indexed by ms from 0; the first 1048 unused) .. 60 s */
#define HIST_BINS (HIST_FINE + HIST_COARSE)

struct histogram {
    uint32_t *bins;
    uint64_t count;
    uint64_t sum;
    uint64_t max; /* us */
};

static inline void die(const char *what)
{
    fprintf(stderr, PROGRAM ": %s: %s\n", what, strerror(errno));
    exit(2);
}

static inline int64_t clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* This process's user (``user`` != 0) or system CPU time in seconds. */
static inline double cpu_s(int user)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    struct timeval tv = user ? ru.ru_utime : ru.ru_stime;
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static inline struct histogram histogram_new(void)
{
    struct histogram h = {calloc(HIST_BINS, sizeof(uint32_t)), 0, 0, 0};
    if (!h.bins)
        die("calloc");
    return h;
}

static inline void record(struct histogram *h, int64_t ns)
{
    uint64_t us = ns < 0 ? 0 : (uint64_t)ns / 1000u;
    if (us > h->max)
        h->max = us;
    uint64_t ms = us / 1000u;
    h->bins[us < HIST_FINE ? us : HIST_FINE + (ms < HIST_COARSE ? ms : HIST_COARSE - 1)]++;
    h->count++;
    h->sum += us;
}

/* Nearest-rank percentile in us (the bin's lower edge); -1 with no samples. */
static inline int64_t percentile(const struct histogram *h, double fraction)
{
    if (h->count == 0)
        return -1;
    uint64_t rank = (uint64_t)(fraction * (double)h->count + 0.5);
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HIST_BINS; i++) {
        seen += h->bins[i];
        if (seen >= rank)
            return i < HIST_FINE ? i : (int64_t)(i - HIST_FINE) * 1000;
    }
    return (int64_t)(HIST_COARSE - 1) * 1000;
}

static inline uint32_t xorshift(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

static inline void sleep_until(int64_t at_ns)
{
    struct timespec ts = {.tv_sec = at_ns / 1000000000LL, .tv_nsec = at_ns % 1000000000LL};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* The options both programs take, with their defaults. */
struct run_options {
    double seconds;      /* --seconds: the measured window */
    const char *address; /* --address: where the sockets bind and the peer listens */
    int64_t warmup_ns;   /* --warmup-ms: traffic before the window, not measured */
    int64_t drain_ns;    /* --drain-ms: reading on after the window, for stragglers */
    int64_t slot_ns;     /* --slot-us: the pacing grid */
    int rt;              /* --rt 0|1: ask for SCHED_FIFO */
};
#define RUN_OPTIONS_DEFAULT {0, "127.0.0.1", 0, 300000000LL, 200000LL, 0}

/* Take ``arg value`` into ``o`` if it is one of the common options; returns whether it was. */
static inline int run_option(struct run_options *o, const char *arg, const char *value)
{
    if (!strcmp(arg, "--seconds"))
        o->seconds = strtod(value, NULL);
    else if (!strcmp(arg, "--address"))
        o->address = value;
    else if (!strcmp(arg, "--warmup-ms"))
        o->warmup_ns = strtoll(value, NULL, 10) * 1000000LL;
    else if (!strcmp(arg, "--drain-ms"))
        o->drain_ns = strtoll(value, NULL, 10) * 1000000LL;
    else if (!strcmp(arg, "--slot-us"))
        o->slot_ns = strtoll(value, NULL, 10) * 1000LL;
    else if (!strcmp(arg, "--rt"))
        o->rt = atoi(value);
    else
        return 0;
    return 1;
}

/* The per-process set-up: the descriptor limit raised to the hard one (a socket per stream end),
 * SCHED_FIFO priority 1 when ``rt`` (root only: a busy peer must not make the program send late) and no
 * timer slack (the default 50 us would show as send lateness on every slot). Returns 1 if realtime. */
static inline int prepare_process(int rt)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int realtime = 0;
    if (rt) {
        struct sched_param sp = {.sched_priority = 1};
        realtime = sched_setscheduler(0, SCHED_FIFO, &sp) == 0;
    }
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    return realtime;
}

/* A non-blocking UDP socket bound to ``addr`` on a port the kernel picks (stored in ``*port``), with
 * kernel arrival stamps (SO_TIMESTAMPNS) and its queue's drop counter (SO_RXQ_OVFL) on every datagram. */
static inline int open_stamped(struct in_addr addr, int rcvbuf, uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0)
        die("socket");
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) < 0
        || setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on) < 0
        || setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &on, sizeof on) < 0)
        die("setsockopt");
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr = addr, .sin_port = 0};
    socklen_t len = sizeof sin;
    if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0
        || getsockname(fd, (struct sockaddr *)&sin, &len) < 0)
        die("bind");
    *port = ntohs(sin.sin_port);
    return fd;
}

/* Room for the control messages open_stamped's options attach to one datagram. */
#define STAMP_CONTROL (CMSG_SPACE(sizeof(struct timespec)) + CMSG_SPACE(sizeof(uint32_t)))

/* A received datagram's kernel arrival stamp (CLOCK_REALTIME ns, -1 if absent); ``*drops`` takes the
 * socket's drop counter when the datagram carries it. */
static inline int64_t arrival_stamp(struct msghdr *mh, uint32_t *drops)
{
    int64_t arrived = -1;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET)
            continue;
        if (cm->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(cm), sizeof ts);
            arrived = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        } else if (cm->cmsg_type == SO_RXQ_OVFL) {
            memcpy(drops, CMSG_DATA(cm), sizeof *drops);
        }
    }
    return arrived;
}

#define STAMPED_BATCH 16

/* Buffers for one recvmmsg of up to STAMPED_BATCH datagrams with their arrival stamps. */
struct stamped_batch {
    uint8_t bufs[STAMPED_BATCH][2048];
    char controls[STAMPED_BATCH][STAMP_CONTROL];
    struct mmsghdr msgs[STAMPED_BATCH];
    struct iovec iovs[STAMPED_BATCH];
};

/* Read what ``fd`` holds, up to STAMPED_BATCH datagrams, without blocking: how many (0 when none, or
 * when the last send from the socket was refused). Datagram i is b->bufs[i], b->msgs[i].msg_len octets;
 * arrival_stamp(&b->msgs[i].msg_hdr, ...) its stamp. */
static inline int recv_stamped(int fd, struct stamped_batch *b)
{
    memset(b->msgs, 0, sizeof b->msgs);
    for (int i = 0; i < STAMPED_BATCH; i++) {
        b->iovs[i] = (struct iovec){.iov_base = b->bufs[i], .iov_len = sizeof b->bufs[i]};
        b->msgs[i].msg_hdr.msg_iov = &b->iovs[i];
        b->msgs[i].msg_hdr.msg_iovlen = 1;
        b->msgs[i].msg_hdr.msg_control = b->controls[i];
        b->msgs[i].msg_hdr.msg_controllen = sizeof b->controls[i];
    }
    int got = recvmmsg(fd, b->msgs, STAMPED_BATCH, MSG_DONTWAIT, NULL);
    if (got < 0) {
        if (errno == EAGAIN || errno == EINTR || errno == ECONNREFUSED)
            return 0;
        die("recvmmsg");
    }
    return got;
}

/* Read the driver's "dest D0 D1 ... D(n-1)" line from stdin into ``dests`` (each A:Di); exits on anything
 * else. */
static inline void read_destinations(uint32_t n, struct in_addr addr, struct sockaddr_in *dests)
{
    size_t size = 16 + (size_t)n * 7;
    char *line = malloc(size);
    if (!line)
        die("malloc");
    if (!fgets(line, (int)size, stdin) || strncmp(line, "dest", 4) != 0) {
        fprintf(stderr, PROGRAM ": expected 'dest D0 D1 ...' on stdin\n");
        exit(2);
    }
    char *cursor = line + 4;
    for (uint32_t i = 0; i < n; i++) {
        char *next;
        unsigned long port = strtoul(cursor, &next, 10);
        if (next == cursor || port == 0 || port > 65535) {
            fprintf(stderr, PROGRAM ": destination %u missing or not a port\n", i);
            exit(2);
        }
        cursor = next;
        dests[i] = (struct sockaddr_in){
            .sin_family = AF_INET, .sin_addr = addr, .sin_port = htons((uint16_t)port)};
    }
    free(line);
}

#endif
