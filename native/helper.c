/*
 * execd-spawn-helper: a small process that starts execd's children for it.
 *
 * Why (docs/design-native-spawn.md has the measurements):
 * - Node starts children with fork(), whose cost grows with the server's
 *   memory; here a child is clone(CLONE_VM|CLONE_VFORK)'d, like posix_spawn,
 *   from an address space of about 1 MB: nothing is copied;
 * - the server's event loop never sits in a vfork waiting for the child to
 *   exec (1-5 ms per spawn on a small VM): it writes a request and goes on;
 * - CLONE_PARENT makes every child the *server's* child: the server reaps it
 *   (pidfd + wait4, native/channel.c), ppid is the server, and a child does
 *   not care whether this helper lives on;
 * - the child's exec folds the old address space's peak RSS into its own
 *   ru_maxrss. From the server that would be the server's size; from here it
 *   is about 1 MB, so RunResult.usage.maxRssBytes means the child's peak.
 *
 * Channels (set up by src/runner/native-helper.ts; layouts in protocol.h):
 *   fd 0  requests from the server (end of input: exit)
 *   fd 3  replies, AF_UNIX SOCK_SEQPACKET; SPAWNED carries the server's ends
 *         of the child's pipes as SCM_RIGHTS
 * Every fd here is O_CLOEXEC, and the child closes everything from 3 up
 * before exec, so a child sees exactly 0, 1 and 2.
 *
 * The child does what glibc's posix_spawn child does (own process group,
 * chdir, dup2s, default signal dispositions, empty mask), plus run-as
 * (setgroups/setgid/setuid, as libuv does) which posix_spawn cannot; a failure
 * before exec comes back to us through the shared memory, as in glibc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "protocol.h"

#define REQ_FD 0
#define REPLY_FD 3
#define MAX_FRAME (256u << 20) /* far above ARG_MAX: a bigger frame is a protocol error */
#define CHILD_STACK (256u << 10)

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

static void fatal(const char *what) {
  fprintf(stderr, "execd-spawn-helper: %s: %s\n", what, strerror(errno));
  exit(2);
}

/* ---------- replies ---------- */

/* One packet; the fds (if any) ride along. The server gone means we are done. */
static void send_reply(const struct reply *r, const int *fds, int nfds) {
  struct iovec iov = {.iov_base = (void *)r, .iov_len = sizeof *r};
  union {
    char buf[CMSG_SPACE(3 * sizeof(int))];
    struct cmsghdr align;
  } control;
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfds > 0) {
    memset(&control, 0, sizeof control);
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
  }
  for (;;) {
    if (sendmsg(REPLY_FD, &msg, MSG_NOSIGNAL) >= 0) return;
    if (errno == EINTR) continue;
    exit(0); /* EPIPE / ECONNRESET: the server is gone, and its children with it are its business */
  }
}

/* A reply that carries no fds: a failure, or the end of a child's exec. */
static void reply_simple(uint32_t type, uint32_t id, int err, pid_t pid) {
  struct reply r;
  memset(&r, 0, sizeof r);
  r.type = type;
  r.id = id;
  r.pid = pid;
  r.err = err;
  send_reply(&r, NULL, 0);
}

/* ---------- the child ---------- */

struct request {
  uint32_t id, flags, uid, gid;
  uint32_t cols, rows; /* REQ_TTY: the first window size */
  const char *file, *cwd;
  char **argv, **envp;
};

/* Signals whose disposition is not the default here (SIGPIPE, which we ignore), found once at start. */
static int non_default[NSIG];
static int n_non_default;

static void find_non_default_signals(void) {
  for (int sig = 1; sig < NSIG; sig++) {
    struct sigaction cur;
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    if (sigaction(sig, NULL, &cur) == 0 && cur.sa_handler != SIG_DFL) non_default[n_non_default++] = sig;
  }
}

struct child_args {
  const struct request *q;
  int in_fd, out_fd, err_fd;
  int fds[3], nfds; /* the server's ends, sent with SPAWNED */
  volatile int err;      /* written by the child before _exit when something failed */
  volatile int reported; /* the child sent its own reply: SPAWNED (1) or FAILED (2) */
  volatile int execing;  /* the server said go: the child is at its exec */
};

/* We run as SCHED_BATCH (main): the children are put back to SCHED_OTHER. */
static bool batch;
/* The server (our parent), the children's parent too (CLONE_PARENT): the only sender of a go. */
static pid_t server_pid;
/* How long a child waits for the server's go before it gives up (never exec'd): a safety net only. */
#define GO_TIMEOUT_S 30

/* The child's reply, on its own copy of the reply socket: no allocation, no exit() (we share memory). */
static int child_reply(const struct child_args *a, uint32_t type, int err, uint32_t step) {
  struct reply r;
  union {
    char buf[CMSG_SPACE(3 * sizeof(int))];
    struct cmsghdr align;
  } control;
  struct iovec iov = {.iov_base = &r, .iov_len = sizeof r};
  struct msghdr msg;
  memset(&r, 0, sizeof r);
  r.type = type;
  r.id = a->q->id;
  r.pid = (int32_t)syscall(SYS_getpid);
  r.err = err;
  r.step = step;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (type == REPLY_SPAWNED && a->nfds > 0) {
    memset(&control, 0, sizeof control);
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(a->nfds * sizeof(int));
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(a->nfds * sizeof(int));
    memcpy(CMSG_DATA(c), a->fds, a->nfds * sizeof(int));
    r.nfds = (uint32_t)a->nfds;
  }
  for (;;) {
    if (sendmsg(REPLY_FD, &msg, MSG_NOSIGNAL) >= 0) return 0;
    if (errno != EINTR) return errno;
  }
}

/* Wait for the server's go: SIGUSR1 sent by the server itself with kill(2) (SI_USER cannot be forged
   with sigqueue). The server kills us instead when it cannot supervise us; if it dies, so do we. */
static int wait_for_go(void) {
  sigset_t go;
  siginfo_t info;
  struct timespec limit = {.tv_sec = GO_TIMEOUT_S, .tv_nsec = 0};
  sigemptyset(&go);
  sigaddset(&go, GO_SIGNAL);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return errno;
  if (getppid() != server_pid) return ECANCELED; /* the server died before the line above */
  for (;;) {
    int sig = sigtimedwait(&go, &info, &limit);
    if (sig < 0 && errno == EINTR) continue;
    if (sig < 0) return errno == EAGAIN ? ETIMEDOUT : errno;
    if (info.si_code == SI_USER && info.si_pid == server_pid) break;
  }
  /* Once started, a child outlives the server as with child_process. */
  if (prctl(PR_SET_PDEATHSIG, 0) != 0) return errno;
  return 0;
}

/*
 * Runs on its own stack in our address space (CLONE_VM) while we are
 * suspended (CLONE_VFORK), with every signal blocked: only plain syscalls
 * here, no allocation, nothing that takes a lock.
 */
static int child_main(void *arg) {
  struct child_args *a = arg;
  const struct request *q = a->q;
  struct sigaction dfl;
  sigset_t none;
  int e;
  uint32_t step = 0;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  /* Our dispositions are copied, not shared (no CLONE_SIGHAND): put ours back to default. */
  for (int i = 0; i < n_non_default; i++) sigaction(non_default[i], &dfl, NULL);
  /* Our SCHED_BATCH is not the child's (SCHED_RESET_ON_FORK resets only real-time policies). */
  if (batch) {
    struct sched_param no_priority = {0};
    if (sched_setscheduler(0, SCHED_OTHER, &no_priority) != 0) goto not_started;
  }
  if (q->flags & REQ_TTY) {
    /* Its own session, the pty's slave its controlling terminal: a terminal's line discipline sends
       Ctrl-C's SIGINT and a resize's SIGWINCH to the foreground group, and its hangup SIGHUP. The
       session's process group is the child's pid, as setpgid(0, 0) makes it otherwise. */
    if (setsid() < 0 || ioctl(a->in_fd, TIOCSCTTY, 0) != 0) {
      step = STEP_TTY;
      goto not_started;
    }
  } else if (setpgid(0, 0) != 0) goto not_started;
  /* Run-as first, as libuv does it (supplementary groups, then gid, then uid), and before the chdir:
     the cwd is entered with the run-as user's rights, so a directory it cannot reach is EACCES.
     Raw syscalls: glibc's wrappers would try to change the credentials of every thread of a process. */
  if (q->flags & (REQ_SET_UID | REQ_SET_GID)) {
    if (syscall(SYS_setgroups, 0, NULL) != 0 && errno != EPERM) goto not_started;
    if ((q->flags & REQ_SET_GID) && syscall(SYS_setgid, (gid_t)q->gid) != 0) goto not_started;
    if ((q->flags & REQ_SET_UID) && syscall(SYS_setuid, (uid_t)q->uid) != 0) goto not_started;
  }
  if (chdir(q->cwd) != 0) {
    step = STEP_CHDIR;
    goto not_started;
  }
  if (a->in_fd >= 0) {
    if (dup2(a->in_fd, 0) < 0) goto not_started;
  } else {
    int dn = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (dn < 0 || dup2(dn, 0) < 0) goto not_started;
  }
  if (dup2(a->out_fd, 1) < 0 || dup2(a->err_fd, 2) < 0) goto not_started;
  /* Tell the server we exist, then wait for it to watch us before anything runs. */
  if ((e = child_reply(a, REPLY_SPAWNED, 0, 0)) != 0) {
    a->err = e;
    _exit(127);
  }
  a->reported = REPLY_SPAWNED;
  if ((e = wait_for_go()) != 0) {
    a->err = e;
    _exit(127);
  }
  a->execing = 1;
  /* Everything of ours is O_CLOEXEC already; this also catches anything that is not. */
  syscall(SYS_close_range, 3u, ~0u, 0u);
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  execve(q->file, q->argv, q->envp);
  a->err = errno ? errno : EIO;
  _exit(127);
not_started:
  e = errno ? errno : EIO;
  a->err = e;
  if (child_reply(a, REPLY_FAILED, e, step) == 0) a->reported = REPLY_FAILED;
  _exit(127);
}

static void *child_stack;

/* Start the child as the server's (CLONE_PARENT); it reports itself. Returns clone's errno, 0 once the child has exec'd or exited. */
static int start_child(struct child_args *a, pid_t *pid) {
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &old);
  *pid = clone(child_main, (char *)child_stack + CHILD_STACK, CLONE_VM | CLONE_VFORK | CLONE_PARENT | SIGCHLD, a);
  int clone_err = errno;
  sigprocmask(SIG_SETMASK, &old, NULL);
  return *pid < 0 ? clone_err : 0;
}

/* ---------- requests ---------- */

static void close_fd(int *fd) {
  if (*fd >= 0) {
    close(*fd);
    *fd = -1;
  }
}

/*
 * A pseudo-terminal for a REQ_TTY request: the master (non-blocking, close-on-exec, not our
 * controlling terminal: we lead a session of our own and must not acquire one) with its window
 * size, and the slave, opened here so that the child only dup2s it. With run-as the slave belongs
 * to the run-as user, as login programs leave it. 0 or the errno.
 */
static int open_pty(const struct request *q, int *master, int *slave) {
  struct winsize ws;
  struct termios t;
  char name[64];
  *master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (*master < 0) return errno;
  memset(&ws, 0, sizeof ws);
  ws.ws_col = (unsigned short)q->cols;
  ws.ws_row = (unsigned short)q->rows;
  if (grantpt(*master) != 0 || unlockpt(*master) != 0 || ioctl(*master, TIOCSWINSZ, &ws) != 0) return errno;
  /* The environment says UTF-8 (LANG=C.UTF-8): erase a whole character, not a byte. */
  if (tcgetattr(*master, &t) == 0) {
    t.c_iflag |= IUTF8;
    tcsetattr(*master, TCSANOW, &t);
  }
#ifdef TIOCGPTPEER
  *slave = ioctl(*master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
#endif
  if (*slave < 0) {
    if (ptsname_r(*master, name, sizeof name) != 0) return errno ? errno : ENOTTY;
    *slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (*slave < 0) return errno;
  }
  if ((q->flags & REQ_SET_UID) && fchown(*slave, (uid_t)q->uid, (q->flags & REQ_SET_GID) ? (gid_t)q->gid : (gid_t)-1) != 0) return errno;
  int fl = fcntl(*master, F_GETFL);
  if (fl < 0 || fcntl(*master, F_SETFL, fl | O_NONBLOCK) != 0) return errno;
  return 0;
}

static void handle_request(const struct request *q) {
  int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  int master = -1, slave = -1, writer = -1;
  int merge = (q->flags & REQ_MERGE_STDERR) != 0;
  int err = 0;
  pid_t pid = -1;
  struct child_args a;
  memset(&a, 0, sizeof a);
  if (q->flags & REQ_TTY) {
    err = open_pty(q, &master, &slave);
    if (!err && (writer = fcntl(master, F_DUPFD_CLOEXEC, 3)) < 0) err = errno;
    if (!err) {
      a.q = q;
      a.in_fd = a.out_fd = a.err_fd = slave;
      a.fds[a.nfds++] = writer;
      a.fds[a.nfds++] = master;
      err = start_child(&a, &pid);
    }
  } else {
    if ((q->flags & REQ_STDIN_PIPE) && pipe2(in_pipe, O_CLOEXEC) != 0) err = errno;
    if (!err && pipe2(out_pipe, O_CLOEXEC) != 0) err = errno;
    if (!err && !merge && pipe2(err_pipe, O_CLOEXEC) != 0) err = errno;
  }
  if (!err && !(q->flags & REQ_TTY)) {
    a.q = q;
    a.in_fd = in_pipe[0];
    a.out_fd = out_pipe[1];
    a.err_fd = merge ? out_pipe[1] : err_pipe[1];
    if (in_pipe[1] >= 0) a.fds[a.nfds++] = in_pipe[1];
    a.fds[a.nfds++] = out_pipe[0];
    if (err_pipe[0] >= 0) a.fds[a.nfds++] = err_pipe[0];
    err = start_child(&a, &pid);
  }
  close_fd(&in_pipe[0]);
  close_fd(&out_pipe[1]);
  close_fd(&err_pipe[1]);
  /* The server holds its own copies of our ends, if it took them. */
  close_fd(&in_pipe[1]);
  close_fd(&out_pipe[0]);
  close_fd(&err_pipe[0]);
  close_fd(&slave);
  close_fd(&writer);
  close_fd(&master);
  if (err) {
    reply_simple(REPLY_FAILED, q->id, err, -1); /* no child */
  } else if (a.reported == REPLY_SPAWNED) {
    /* The server watches it since SPAWNED. Stopped before its exec (the server's SIGKILL): ECANCELED. */
    if (a.err || !a.execing) reply_simple(REPLY_EXEC_FAILED, q->id, a.err ? a.err : ECANCELED, -1);
    else reply_simple(REPLY_EXECED, q->id, 0, -1);
  } else if (a.reported != REPLY_FAILED) {
    /* It could not report itself (the server is going away, or it was killed first): say so for it. */
    reply_simple(REPLY_FAILED, q->id, a.err ? a.err : ECANCELED, pid);
  }
}

static uint32_t get_u32(const unsigned char *p) {
  uint32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* Point `out` at `count` NUL-terminated strings starting at *pos; 0 when the frame is short. */
static int take_strings(char *body, size_t len, size_t *pos, uint32_t count, char **out) {
  for (uint32_t i = 0; i < count; i++) {
    if (*pos >= len) return 0;
    char *s = body + *pos;
    char *nul = memchr(s, '\0', len - *pos);
    if (!nul) return 0;
    out[i] = s;
    *pos = (size_t)(nul - body) + 1;
  }
  return 1;
}

static void handle_frame(char *body, size_t len) {
  errno = EPROTO;
  if (len < REQ_HEADER_WORDS * 4) fatal("short request frame");
  const unsigned char *h = (const unsigned char *)body;
  struct request q;
  memset(&q, 0, sizeof q);
  q.id = get_u32(h);
  q.flags = get_u32(h + 4);
  q.uid = get_u32(h + 8);
  q.gid = get_u32(h + 12);
  uint32_t argc = get_u32(h + 16), envc = get_u32(h + 20);
  if (argc == 0 || argc > len || envc > len) fatal("malformed request frame");
  size_t pos = REQ_HEADER_WORDS * 4;
  if (q.flags & REQ_TTY) {
    if (len < (REQ_HEADER_WORDS + REQ_TTY_WORDS) * 4) fatal("short request frame");
    q.cols = get_u32(h + pos);
    q.rows = get_u32(h + pos + 4);
    pos += REQ_TTY_WORDS * 4;
  }
  char **argv = calloc((size_t)argc + 1, sizeof *argv);
  char **envp = calloc((size_t)envc + 1, sizeof *envp);
  if (!argv || !envp) {
    free(argv);
    free(envp);
    reply_simple(REPLY_FAILED, q.id, ENOMEM, -1);
    return;
  }
  char *fc[2];
  if (!take_strings(body, len, &pos, 2, fc) || !take_strings(body, len, &pos, argc, argv) ||
      !take_strings(body, len, &pos, envc, envp)) {
    errno = EPROTO;
    fatal("truncated request strings");
  }
  q.file = fc[0];
  q.cwd = fc[1];
  q.argv = argv;
  q.envp = envp;
  handle_request(&q);
  free(argv);
  free(envp);
}

static unsigned char *inbuf;
static size_t in_len, in_cap;

/* Read what fd 0 has (blocking until something comes) and handle every whole frame; 0 at end of input. */
static int read_requests(void) {
  if (in_cap - in_len < 65536) {
    size_t cap = in_cap ? in_cap * 2 : 262144;
    unsigned char *p = realloc(inbuf, cap);
    if (!p) fatal("request buffer");
    inbuf = p;
    in_cap = cap;
  }
  ssize_t n = read(REQ_FD, inbuf + in_len, in_cap - in_len);
  if (n < 0 && errno == EINTR) return 1;
  if (n < 0 && errno == ECONNRESET) return 0;
  if (n < 0) fatal("read requests");
  if (n == 0) return 0;
  in_len += (size_t)n;
  size_t off = 0;
  while (in_len - off >= 4) {
    uint32_t flen = get_u32(inbuf + off);
    if (flen > MAX_FRAME) {
      errno = EPROTO;
      fatal("request frame too large");
    }
    if (in_len - off - 4 < flen) break;
    handle_frame((char *)inbuf + off + 4, flen);
    off += 4 + (size_t)flen;
  }
  if (off > 0) {
    memmove(inbuf, inbuf + off, in_len - off);
    in_len -= off;
  }
  /* Do not keep a big buffer around after a huge request. */
  if (in_cap > (4u << 20) && in_len < (1u << 20)) {
    unsigned char *p = realloc(inbuf, 1u << 20);
    if (p) {
      inbuf = p;
      in_cap = 1u << 20;
    }
  }
  return 1;
}

int main(void) {
  int type = 0;
  socklen_t tl = sizeof type;
  if (getsockopt(REPLY_FD, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_SEQPACKET) {
    fprintf(stderr, "execd-spawn-helper: run by execd only (fd 3 must be its reply socket)\n");
    return 2;
  }
  /* The channels arrived without close-on-exec. */
  if (fcntl(REPLY_FD, F_SETFD, FD_CLOEXEC) != 0 || fcntl(REQ_FD, F_SETFD, FD_CLOEXEC) != 0) fatal("fcntl");
  int fl = fcntl(REQ_FD, F_GETFL);
  if (fl < 0 || fcntl(REQ_FD, F_SETFL, fl & ~O_NONBLOCK) != 0) fatal("fcntl");
  signal(SIGPIPE, SIG_IGN); /* children get default dispositions back */
  /* fds 0-2 taken (2 may come closed): a pipe of ours is then never 0-2, which the child dup2s over
     before it sends the server's ends by number. */
  while (fcntl(2, F_GETFD) < 0) {
    int dn = open("/dev/null", O_WRONLY);
    if (dn < 0) fatal("open /dev/null");
    if (dn > 2) {
      close(dn);
      break;
    }
  }
  server_pid = getppid();
  /* Our memory holds the requests: other callers' environments. Exec made us dumpable again, so a
     process of our uid could read it (/proc/<pid>/mem, ptrace); the server is not dumpable either. */
  prctl(PR_SET_DUMPABLE, 0);
  /* SCHED_BATCH: woken by a request, we never preempt the server's event loop (which goes on with
     other requests meanwhile); the scheduler puts us on an idle core if there is one, else runs us
     when the loop sleeps or its slice ends: 5 % more runs/s at 8 connections on 2 cores. Children
     go back to SCHED_OTHER before their exec (child_main). Best effort: refused, we run as we are. */
  struct sched_param no_priority = {0};
  batch = sched_setscheduler(0, SCHED_BATCH, &no_priority) == 0;
  find_non_default_signals();
  /* One stack for every child: a child runs on it only while we are suspended. */
  child_stack = mmap(NULL, CHILD_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (child_stack == MAP_FAILED) fatal("mmap");
  while (read_requests()) {}
  munmap(child_stack, CHILD_STACK);
  free(inbuf);
  return 0;
}
