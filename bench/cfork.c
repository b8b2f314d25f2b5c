/* SPDX-License-Identifier: MIT */
/* cfork: the classic fork-per-connection daytime server (RFC 867, TCP).
 *
 * getaddrinfo(AI_PASSIVE) / socket / bind / listen, then accept() and fork()
 * a child per connection that writes ctime(3)'s line with CRLF and exits.
 * Children are reaped with waitpid() from a SIGCHLD handler, as classic servers do
 * (which also keeps their CPU time in the parent's accounting for the benchmark;
 * with SIGCHLD ignored the kernel would drop it).
 *
 * usage: cfork [-l HOST] PORT
 * Build: gcc -O2 -Wall -Wextra -o cfork cfork.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void reap(int sig)
{
	(void)sig;
	int saved = errno;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

int main(int argc, char **argv)
{
	const char *host = NULL;
	int opt;
	while ((opt = getopt(argc, argv, "l:")) != -1) {
		if (opt == 'l')
			host = optarg;
		else
			goto usage;
	}
	if (argc - optind != 1)
		goto usage;

	struct addrinfo hints = {.ai_flags = AI_PASSIVE, .ai_socktype = SOCK_STREAM}, *res, *ai;
	int rc = getaddrinfo(host, argv[optind], &hints, &res);
	if (rc) {
		fprintf(stderr, "cfork: %s\n", gai_strerror(rc));
		return 1;
	}
	int lfd = -1;
	for (ai = res; ai; ai = ai->ai_next) {
		lfd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (lfd < 0)
			continue;
		int one = 1;
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(lfd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(lfd, SOMAXCONN) == 0)
			break;
		close(lfd);
		lfd = -1;
	}
	freeaddrinfo(res);
	if (lfd < 0) {
		perror("cfork: bind/listen");
		return 1;
	}
	struct sigaction sa = {.sa_handler = reap, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, NULL);
	for (;;) {
		int cfd = accept(lfd, NULL, NULL);
		if (cfd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
				continue;
			perror("cfork: accept");
			return 1;
		}
		pid_t pid = fork();
		if (pid == 0) {
			char line[64];
			close(lfd);
			time_t now = time(NULL);
			int n = snprintf(line, sizeof line, "%.24s\r\n", ctime(&now));
			if (write(cfd, line, (size_t)n) < 0)
				_exit(1);
			close(cfd);
			_exit(0);
		}
		if (pid < 0)
			perror("cfork: fork");
		close(cfd);
	}
usage:
	fprintf(stderr, "usage: cfork [-l HOST] PORT\n");
	return 2;
}
