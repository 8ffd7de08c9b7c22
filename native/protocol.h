/* What execd-spawn-helper and the execd_spawn addon say to each other (see helper.c). */
#ifndef EXECD_SPAWN_PROTOCOL_H
#define EXECD_SPAWN_PROTOCOL_H
#include <signal.h>
#include <stdint.h>

/*
 * Requests (server -> helper, a byte stream on the helper's fd 0), all little-endian u32:
 *   length of what follows, id, flags, uid, gid, argc, envc,
 *   then file\0 cwd\0 argv[0]\0 ... env[0]\0 ...   ("K=V" entries)
 */
#define REQ_STDIN_PIPE 1u   /* a pipe to the child's stdin (else /dev/null) */
#define REQ_MERGE_STDERR 2u /* fds 1 and 2 are the same pipe, as 2>&1 */
#define REQ_SET_UID 4u
#define REQ_SET_GID 8u
/* A pseudo-terminal: the child gets its own session with the pty's slave as its controlling terminal on
   0, 1 and 2 (REQ_STDIN_PIPE and REQ_MERGE_STDERR are then ignored). Two more u32 words follow the
   header: cols, rows (the first window size). SPAWNED carries two fds of the master: a writer (a dup)
   and the reader, both O_NONBLOCK (one open file). */
#define REQ_TTY 16u
#define REQ_HEADER_WORDS 6u
#define REQ_TTY_WORDS 2u

/*
 * Replies (-> server), one `struct reply` per SOCK_SEQPACKET packet. A start is atomic from the
 * server's view: the child itself reports before it can run anything (SPAWNED or FAILED), then
 * waits, before its exec, for the server's go (SIGUSR1 from the server, SI_USER) or its SIGKILL.
 * The server says go only once it watches the child (pidfd), so a child that runs is supervised,
 * and one the server cannot take is killed before it ran. Every child reports on its own copy of
 * the reply socket (close-on-exec): once the socket reads end of input, every child that exists
 * has reported, whether the helper lives or not.
 */
#define REPLY_SPAWNED 1u /* from the child, before exec: id, pid; SCM_RIGHTS: [stdin writer], stdout reader, [stderr reader]
                            (REQ_TTY: master writer, master reader);
                            the server answers go or SIGKILL. Received with err != 0: the fds could not be taken (EMFILE) */
#define REPLY_FAILED 2u  /* not started: id, err; pid > 0 when a child was created and died before exec (the server reaps it) */
#define REPLY_EXECED 3u  /* from the helper, after SPAWNED: the child exec'd */
#define REPLY_EXEC_FAILED 4u /* from the helper, after SPAWNED: the exec failed with err (or the child was stopped first);
                                the server watches that pid since SPAWNED */
#define GO_SIGNAL SIGUSR1

struct reply {
  uint32_t type;
  uint32_t id;
  int32_t pid;
  int32_t err;
  uint32_t nfds;
  uint32_t step; /* FAILED from the child: the step that failed (STEP_*), 0 when not told */
};

#define STEP_CHDIR 1u /* entering the cwd (as the run-as user: identity comes first) */
#define STEP_TTY 2u   /* making the pty its controlling terminal (setsid, TIOCSCTTY) */

#endif
