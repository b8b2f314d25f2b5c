/* SPDX-License-Identifier: MIT */
/* loadgen: closed-loop load generator for RFC 867 daytime servers.
 *
 * TCP: each of -c slots does non-blocking connect, reads to EOF, verifies the
 * answer (one line of printable ASCII ending in CRLF), closes and reconnects at
 * once.  UDP (-u): each slot sends one datagram on a connected socket and waits
 * for the reply, verifies it and sends the next.  Slots are spread over -t
 * threads, each with its own epoll instance.  Latency is measured from just
 * before connect()/send() to EOF/reply.
 *
 * Output: one JSON object on stdout (connections/s or replies/s, p50/p99/max
 * latency, errors split refused/reset/timeout/bad_line/other, own CPU time from
 * getrusage and whole-machine CPU use from /proc/stat over the run).
 *
 * -w (talkative client): after connecting, write a request line before reading,
 * as clients that speak first do.  A server that closes with that input unread
 * makes the kernel send RST, and the client may see ECONNRESET instead of its line.
 *
 * Source addresses: with -s N (N > 1) and an IPv4 loopback target, sockets are
 * bound to 127.0.0.1 .. 127.0.0.N (IP_BIND_ADDRESS_NO_PORT) before connect, so
 * each source address has its own ephemeral port range.  With the default
 * (-s 0, automatic) a thread switches to 16 source addresses the first time
 * connect() fails with EADDRNOTAVAIL (ephemeral ports exhausted).
 *
 * Build: gcc -O2 -Wall -Wextra -pthread -o loadgen loadgen.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define BUFSZ 512
#define AUTO_SRC 16

struct slot {
	int fd;
	int len;
	int wrote;
	uint64_t start_ns;
	char buf[BUFSZ];
};

struct thr {
	pthread_t tid;
	int idx;
	int nslots;
	int nsrc; /* source addresses in use; 0/1 = let the kernel choose */
	unsigned src_next;
	struct slot *slots;
	uint64_t ok;
	uint64_t refused, reset, timeout, bad_line, other, addrnotavail;
	uint64_t *lat; /* latency samples in ns */
	size_t nlat, caplat;
};

static struct sockaddr_storage g_addr;
static socklen_t g_addrlen;
static int g_udp;
static int g_srcopt; /* -s value: 0 auto, 1 never, N fixed */
static int g_talk;   /* -w: a talkative client writes a request line before reading */
static const char g_req[] = "GET / HTTP/1.0\r\n\r\n";
static int g_timeout_ms = 2000;
static double g_duration = 5.0;
static atomic_int g_stop;
static uint64_t g_end_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static int is_v4_loopback(void)
{
	if (g_addr.ss_family != AF_INET)
		return 0;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&g_addr;
	return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
}

static void add_lat(struct thr *t, uint64_t ns)
{
	if (t->nlat == t->caplat) {
		t->caplat = t->caplat ? t->caplat * 2 : 65536;
		t->lat = realloc(t->lat, t->caplat * sizeof *t->lat);
		if (!t->lat)
			die("realloc");
	}
	t->lat[t->nlat++] = ns;
}

/* One line of printable ASCII, then CRLF, nothing after. */
static int line_ok(const char *b, int n)
{
	if (n < 3 || b[n - 2] != '\r' || b[n - 1] != '\n')
		return 0;
	for (int i = 0; i < n - 2; i++)
		if ((unsigned char)b[i] < 0x20 || (unsigned char)b[i] > 0x7e)
			return 0;
	return 1;
}

static void count_errno(struct thr *t, int e)
{
	switch (e) {
	case ECONNREFUSED:
		t->refused++;
		break;
	case ECONNRESET:
	case EPIPE:
		t->reset++;
		break;
	case ETIMEDOUT:
		t->timeout++;
		break;
	default:
		t->other++;
		break;
	}
}

static void slot_close(struct slot *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	s->len = 0;
}

/* Open a new connection (TCP) or send a new request (UDP) on slot i. */
static void slot_start(struct thr *t, int ep, int i)
{
	struct slot *s = &t->slots[i];
	for (int attempt = 0; attempt < 4 && !atomic_load_explicit(&g_stop, memory_order_relaxed);
	     attempt++) {
		if (g_udp && s->fd >= 0) {
			s->len = 0;
			s->start_ns = now_ns();
			if (send(s->fd, "\n", 1, 0) == 1)
				return;
			count_errno(t, errno);
			slot_close(s);
			continue;
		}
		int fd = socket(g_addr.ss_family,
				(g_udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			die("socket");
		if (!g_udp && t->nsrc > 1) {
			int one = 1;
			struct sockaddr_in src = {.sin_family = AF_INET};
			src.sin_addr.s_addr = htonl(0x7f000001u + (t->src_next++ % (unsigned)t->nsrc));
			setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
			if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0)
				die("bind source address");
		}
		s->fd = fd;
		s->len = 0;
		s->wrote = 0;
		s->start_ns = now_ns();
		if (connect(fd, (struct sockaddr *)&g_addr, g_addrlen) < 0 && errno != EINPROGRESS) {
			int e = errno;
			slot_close(s);
			if (e == EADDRNOTAVAIL) {
				t->addrnotavail++;
				if (g_srcopt == 0 && t->nsrc <= 1 && is_v4_loopback())
					t->nsrc = AUTO_SRC;
				continue;
			}
			count_errno(t, e);
			continue;
		}
		uint32_t evmask = EPOLLIN | EPOLLRDHUP | (g_talk && !g_udp ? EPOLLOUT : 0);
		struct epoll_event ev = {.events = evmask, .data.u32 = (uint32_t)i};
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
			die("epoll_ctl");
		if (g_udp) {
			if (send(fd, "\n", 1, 0) != 1) {
				count_errno(t, errno);
				slot_close(s);
				continue;
			}
		}
		return;
	}
}

static void finish(struct thr *t, struct slot *s, uint64_t end)
{
	if (line_ok(s->buf, s->len)) {
		t->ok++;
		add_lat(t, end - s->start_ns);
	} else {
		t->bad_line++;
	}
}

static void on_event(struct thr *t, int ep, int i, uint32_t events)
{
	struct slot *s = &t->slots[i];
	if (s->fd < 0)
		return;
	if (g_talk && !g_udp && !s->wrote && (events & EPOLLOUT) && !(events & EPOLLERR)) {
		/* connected: send the request, then only wait for the answer */
		s->wrote = 1;
		if (write(s->fd, g_req, sizeof g_req - 1) < 0 && errno != EAGAIN) {
			count_errno(t, errno);
			slot_close(s);
			slot_start(t, ep, i);
			return;
		}
		struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i};
		epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
		if (!(events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)))
			return;
	}
	if (g_udp) {
		char b[BUFSZ];
		ssize_t n = recv(s->fd, b, sizeof b, 0);
		if (n < 0) {
			if (errno == EAGAIN)
				return;
			count_errno(t, errno);
			slot_close(s);
		} else {
			memcpy(s->buf, b, (size_t)n);
			s->len = (int)n;
			finish(t, s, now_ns());
		}
		slot_start(t, ep, i);
		return;
	}
	for (;;) {
		ssize_t n = read(s->fd, s->buf + s->len, (size_t)(BUFSZ - s->len));
		if (n > 0) {
			s->len += (int)n;
			if (s->len >= BUFSZ) { /* far too long for a daytime line */
				t->bad_line++;
				break;
			}
			continue;
		}
		if (n == 0) {
			finish(t, s, now_ns());
			break;
		}
		if (errno == EAGAIN)
			return;
		if (errno == EINTR)
			continue;
		count_errno(t, errno);
		break;
	}
	slot_close(s);
	slot_start(t, ep, i);
}

static void check_timeouts(struct thr *t, int ep, uint64_t now)
{
	uint64_t lim = (uint64_t)g_timeout_ms * 1000000ull;
	for (int i = 0; i < t->nslots; i++) {
		struct slot *s = &t->slots[i];
		if (s->fd >= 0 && now - s->start_ns > lim) {
			t->timeout++;
			slot_close(s); /* UDP too: a new socket, so a late reply is not miscounted */
			slot_start(t, ep, i);
		} else if (s->fd < 0) {
			slot_start(t, ep, i);
		}
	}
}

static void *worker(void *arg)
{
	struct thr *t = arg;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	struct epoll_event evs[256];
	for (int i = 0; i < t->nslots; i++)
		slot_start(t, ep, i);
	uint64_t last_scan = now_ns();
	for (;;) {
		uint64_t now = now_ns();
		if (now >= g_end_ns)
			break;
		int n = epoll_wait(ep, evs, 256, 10);
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		for (int k = 0; k < n; k++)
			on_event(t, ep, (int)evs[k].data.u32, evs[k].events);
		now = now_ns();
		if (now - last_scan > 10000000ull) {
			check_timeouts(t, ep, now);
			last_scan = now;
		}
	}
	atomic_store(&g_stop, 1);
	for (int i = 0; i < t->nslots; i++)
		slot_close(&t->slots[i]);
	close(ep);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Sum of busy and total jiffies over all CPUs (first line of /proc/stat). */
static int machine_cpu(unsigned long long *busy, unsigned long long *total)
{
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return -1;
	unsigned long long v[10] = {0};
	int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
		       &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
	fclose(f);
	if (n < 5)
		return -1;
	*total = 0;
	for (int i = 0; i < 8; i++) /* guest time is already in user */
		*total += v[i];
	*busy = *total - v[3] - v[4]; /* minus idle and iowait */
	return 0;
}

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: loadgen [-u] [-w] [-c CONCURRENCY] [-t THREADS] [-d SECONDS] [-T TIMEOUT_MS]\n"
		"               [-s SOURCE_ADDRS] HOST PORT\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int conc = 1, nthr = 1, opt;
	while ((opt = getopt(argc, argv, "uwc:t:d:T:s:")) != -1) {
		switch (opt) {
		case 'w':
			g_talk = 1;
			break;
		case 'u':
			g_udp = 1;
			break;
		case 'c':
			conc = atoi(optarg);
			break;
		case 't':
			nthr = atoi(optarg);
			break;
		case 'd':
			g_duration = atof(optarg);
			break;
		case 'T':
			g_timeout_ms = atoi(optarg);
			break;
		case 's':
			g_srcopt = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 2 || conc < 1 || nthr < 1 || g_duration <= 0 || g_srcopt < 0 ||
	    g_srcopt > 254)
		usage();
	if (nthr > conc)
		nthr = conc;
	const char *host = argv[optind], *port = argv[optind + 1];
	struct addrinfo hints = {.ai_socktype = g_udp ? SOCK_DGRAM : SOCK_STREAM}, *ai;
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		fprintf(stderr, "loadgen: %s:%s: %s\n", host, port, gai_strerror(rc));
		return 2;
	}
	memcpy(&g_addr, ai->ai_addr, ai->ai_addrlen);
	g_addrlen = ai->ai_addrlen;
	freeaddrinfo(ai);
	int nsrc = g_srcopt;
	if (nsrc > 1 && !is_v4_loopback())
		nsrc = 1;

	/* Raise the fd limit a little if needed (c sockets + epoll fds). */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)conc + 64) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	struct thr *th = calloc((size_t)nthr, sizeof *th);
	if (!th)
		die("calloc");
	for (int k = 0; k < nthr; k++) {
		th[k].idx = k;
		th[k].nslots = conc / nthr + (k < conc % nthr);
		th[k].nsrc = nsrc;
		th[k].src_next = (unsigned)k;
		th[k].slots = calloc((size_t)th[k].nslots, sizeof(struct slot));
		if (!th[k].slots)
			die("calloc");
		for (int i = 0; i < th[k].nslots; i++)
			th[k].slots[i].fd = -1;
	}

	struct rusage ru0, ru1;
	unsigned long long b0 = 0, t0 = 0, b1 = 0, t1 = 0;
	int have_stat = machine_cpu(&b0, &t0) == 0;
	getrusage(RUSAGE_SELF, &ru0);
	uint64_t start = now_ns();
	g_end_ns = start + (uint64_t)(g_duration * 1e9);
	for (int k = 0; k < nthr; k++)
		if (pthread_create(&th[k].tid, NULL, worker, &th[k]))
			die("pthread_create");
	for (int k = 0; k < nthr; k++)
		pthread_join(th[k].tid, NULL);
	uint64_t end = now_ns();
	getrusage(RUSAGE_SELF, &ru1);
	have_stat = have_stat && machine_cpu(&b1, &t1) == 0;

	uint64_t ok = 0, refused = 0, reset = 0, timeout = 0, bad = 0, other = 0, eadna = 0;
	size_t nlat = 0;
	int srcmax = 0;
	for (int k = 0; k < nthr; k++) {
		ok += th[k].ok;
		refused += th[k].refused;
		reset += th[k].reset;
		timeout += th[k].timeout;
		bad += th[k].bad_line;
		other += th[k].other;
		eadna += th[k].addrnotavail;
		nlat += th[k].nlat;
		if (th[k].nsrc > srcmax)
			srcmax = th[k].nsrc;
	}
	uint64_t *all = malloc((nlat ? nlat : 1) * sizeof *all);
	if (!all)
		die("malloc");
	size_t p = 0;
	for (int k = 0; k < nthr; k++) {
		memcpy(all + p, th[k].lat, th[k].nlat * sizeof *all);
		p += th[k].nlat;
	}
	qsort(all, nlat, sizeof *all, cmp_u64);
	double p50 = nlat ? (double)all[(nlat - 1) * 50 / 100] / 1e3 : 0;
	double p99 = nlat ? (double)all[(nlat - 1) * 99 / 100] / 1e3 : 0;
	double pmax = nlat ? (double)all[nlat - 1] / 1e3 : 0;
	double wall = (double)(end - start) / 1e9;
	double usr = tv_s(ru1.ru_utime) - tv_s(ru0.ru_utime);
	double sys = tv_s(ru1.ru_stime) - tv_s(ru0.ru_stime);
	double busy = (have_stat && t1 > t0) ? 100.0 * (double)(b1 - b0) / (double)(t1 - t0) : -1;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	printf("{\"mode\": \"%s\", \"talkative\": %s, \"host\": \"%s\", \"port\": \"%s\", \"concurrency\": %d, "
	       "\"threads\": %d, \"duration_s\": %.3f, \"connections\": %llu, "
	       "\"conn_per_s\": %.1f, "
	       "\"latency_us\": {\"p50\": %.1f, \"p99\": %.1f, \"max\": %.1f}, "
	       "\"errors\": {\"refused\": %llu, \"reset\": %llu, \"timeout\": %llu, "
	       "\"bad_line\": %llu, \"other\": %llu, \"addrnotavail\": %llu}, "
	       "\"source_addrs\": %d, "
	       "\"cpu\": {\"user_s\": %.3f, \"sys_s\": %.3f, \"pct_of_one_core\": %.1f}, "
	       "\"machine\": {\"cpus\": %ld, \"busy_pct\": %.1f}}\n",
	       g_udp ? "udp" : "tcp", g_talk ? "true" : "false", host, port, conc, nthr, wall, (unsigned long long)ok,
	       (double)ok / wall, p50, p99, pmax, (unsigned long long)refused,
	       (unsigned long long)reset, (unsigned long long)timeout, (unsigned long long)bad,
	       (unsigned long long)other, (unsigned long long)eadna, srcmax > 1 ? srcmax : 1, usr,
	       sys, 100.0 * (usr + sys) / wall, ncpu, busy);
	return 0;
}
