/* SPDX-License-Identifier: MIT */
/* cepoll: an epoll daytime server (RFC 867, TCP, and UDP with -u), the
 * practical ceiling for one process.
 *
 * Non-blocking listening socket in epoll; on readiness accept4() until EAGAIN
 * and, for each connection, write the line (formatted once per second) and
 * close.  A fresh socket's send buffer is empty, so the write never blocks.
 *
 * usage: cepoll [-u] [-l HOST] PORT
 * Build: gcc -O2 -Wall -Wextra -o cepoll cepoll.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char g_line[64];
static int g_len;
static time_t g_when = -1;

static void refresh(void)
{
	time_t now = time(NULL);
	if (now != g_when) {
		struct tm tm;
		localtime_r(&now, &tm);
		g_len = (int)strftime(g_line, sizeof g_line, "%a %b %e %H:%M:%S %Y\r\n", &tm);
		g_when = now;
	}
}

int main(int argc, char **argv)
{
	const char *host = NULL;
	int udp = 0, opt;
	while ((opt = getopt(argc, argv, "ul:")) != -1) {
		if (opt == 'l')
			host = optarg;
		else if (opt == 'u')
			udp = 1;
		else
			goto usage;
	}
	if (argc - optind != 1)
		goto usage;
	signal(SIGPIPE, SIG_IGN);
	tzset();

	struct addrinfo hints = {.ai_flags = AI_PASSIVE, .ai_socktype = udp ? SOCK_DGRAM : SOCK_STREAM};
	struct addrinfo *res, *ai;
	int rc = getaddrinfo(host, argv[optind], &hints, &res);
	if (rc) {
		fprintf(stderr, "cepoll: %s\n", gai_strerror(rc));
		return 1;
	}
	int lfd = -1;
	for (ai = res; ai; ai = ai->ai_next) {
		lfd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			     ai->ai_protocol);
		if (lfd < 0)
			continue;
		int one = 1;
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(lfd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    (udp || listen(lfd, SOMAXCONN) == 0))
			break;
		close(lfd);
		lfd = -1;
	}
	freeaddrinfo(res);
	if (lfd < 0) {
		perror("cepoll: bind/listen");
		return 1;
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN}, evs[16];
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
		perror("cepoll: epoll");
		return 1;
	}
	for (;;) {
		int n = epoll_wait(ep, evs, 16, -1);
		if (n < 0 && errno != EINTR) {
			perror("cepoll: epoll_wait");
			return 1;
		}
		if (n <= 0)
			continue;
		for (;;) {
			if (udp) {
				struct sockaddr_storage ss;
				socklen_t sl = sizeof ss;
				char buf[512];
				if (recvfrom(lfd, buf, sizeof buf, 0, (struct sockaddr *)&ss, &sl) < 0)
					break;
				refresh();
				sendto(lfd, g_line, (size_t)g_len, 0, (struct sockaddr *)&ss, sl);
				continue;
			}
			int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (cfd < 0) {
				if (errno == EINTR || errno == ECONNABORTED)
					continue;
				break; /* EAGAIN, or EMFILE and friends: back to epoll */
			}
			refresh();
			if (write(cfd, g_line, (size_t)g_len) < 0) {
				/* the client went away first: nothing to do */
			}
			close(cfd);
		}
	}
usage:
	fprintf(stderr, "usage: cepoll [-u] [-l HOST] PORT\n");
	return 2;
}
