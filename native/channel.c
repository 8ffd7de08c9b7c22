/*
 * execd_spawn addon: the server's half of the native spawner.
 *
 * 1. The spawn helper's reply socket. Node cannot receive file descriptors
 *    over a unix socket (SCM_RIGHTS) by itself, so this addon owns the
 *    SOCK_SEQPACKET socket the helper replies on: libuv polls it, each packet
 *    (a `struct reply`, protocol.h) is read with recvmsg and handed to one JS
 *    callback with the pipe fds that came along (MSG_CMSG_CLOEXEC: they never
 *    leak into a child). Requests go the other way through a pipe written from JS.
 * 2. Exit watching. The helper starts children with CLONE_PARENT, so they are
 *    this process's children: each gets a pidfd (always O_CLOEXEC) in one epoll
 *    set that libuv polls; once it is readable the child is a zombie and
 *    wait4(pid, WNOHANG) reaps it with its rusage. No thread, no SIGCHLD
 *    handler (section 4): libuv reaps only the pids it spawned itself, so the
 *    two never take each other's children.
 *
 * JS API (src/runner/native-helper.ts):
 *   openChannel(onMessage) -> [helperFd, channel]
 *     helperFd: the helper's end, to hand it as fd 3 and then close here
 *     onMessage(type, id, pid, err, fd0, fd1, fd2, step); type 0: the channel closed (err: why, 0 at EOF)
 *   setRef(channel, bool)   keep the event loop alive for it, or not
 *   closeChannel(channel)   stop listening and close the socket (idempotent)
 *   watch(pid, onExit, ref?) reap pid when it exits (ref false: it does not keep the event loop alive): onExit(code | -1, signal | 0, userUs, systemUs, maxRssKiB)
 *                           (all -1 when the status could not be read); when it cannot watch, it kills
 *                           and reaps the child, then throws {code}
 *   watching()              children watched (ref) and not reaped yet (the helpers are not counted)
 *   readPipe(fd, onData)    read a child's output pipe (the fd becomes ours): onData(Buffer) per chunk,
 *                           then onData(null) once it is closed -> reader
 *   closePipe(reader)       stop reading and close the fd now, without onData(null) (idempotent)
 *   spawnHelper(path, replyFd) -> [pid, requestFd]   start a helper (section 4)
 *   kill(pid, signal) -> 0 | errno   kill(2), without an exception
 *   setDumpable(bool) -> 0 | errno   prctl(PR_SET_DUMPABLE): the server makes itself not dumpable at start
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#ifdef __GLIBC__ /* errno.h above defined it */
#include <malloc.h>
#endif
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

#include "protocol.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

enum { CH_OPEN, CH_CLOSING, CH_CLOSED };

/* A child told to go here, on SPAWNED, whose exec the helper has not reported yet (see on_spawned). */
typedef struct started {
  struct started *next;
  uint32_t id;
  pid_t pid;
  struct watcher *watcher; /* watched (pending) until JS gives its exit callback (take_watcher) */
  int fds[3];
  uint32_t nfds;
} started;

typedef struct channel {
  uv_poll_t poll; /* first: the handle's address is the channel's */
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  int fd;
  int state;
  bool js_alive; /* the external wrapping it has not been finalized */
  started *started;
} channel;

static void deliver_started(channel *c, bool to_js);

static void maybe_free(channel *c) {
  if (c->state == CH_CLOSED && !c->js_alive) free(c);
}

static void on_poll_closed(uv_handle_t *handle) {
  channel *c = (channel *)handle;
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->state = CH_CLOSED;
  maybe_free(c);
}

static void cleanup_hook(void *arg);

/* Stop polling, drop the JS callback, close the socket once libuv lets go of it. */
static void close_channel_as(channel *c, bool to_js) {
  if (c->state != CH_OPEN) return;
  /* Children that run are handed to JS (supervised like any run), never dropped. */
  deliver_started(c, to_js);
  c->state = CH_CLOSING;
  napi_remove_env_cleanup_hook(c->env, cleanup_hook, c);
  uv_poll_stop(&c->poll);
  if (c->callback) napi_delete_reference(c->env, c->callback);
  c->callback = NULL;
  if (c->async) napi_async_destroy(c->env, c->async);
  c->async = NULL;
  uv_close((uv_handle_t *)&c->poll, on_poll_closed);
}

static void close_channel(channel *c) {
  close_channel_as(c, true);
}

/* Environment teardown: libuv must not be left with our handle. The struct itself is freed by
   the external's finalizer if that still runs, or goes with the process. */
static void cleanup_hook(void *arg) {
  close_channel_as(arg, false);
}

/* Call a JS function from a libuv callback: a handle scope, and make_callback (which runs the microtask queue after). */
static void call_from_loop_result(napi_env env, napi_ref callback, napi_async_context async, size_t argc, napi_value *argv, napi_value *out) {
  napi_value cb, recv, result = NULL;
  napi_get_global(env, &recv); /* make_callback wants an object as `this` */
  if (!callback || napi_get_reference_value(env, callback, &cb) != napi_ok || !cb) return;
  napi_status st = napi_make_callback(env, async, recv, cb, argc, argv, &result);
  if (st == napi_ok && out) *out = result;
  if (st != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc);
    }
  }
}

static void call_from_loop(napi_env env, napi_ref callback, napi_async_context async, size_t argc, napi_value *argv) {
  call_from_loop_result(env, callback, async, argc, argv, NULL);
}

static void take_watcher(napi_env env, struct watcher *w, napi_value on_exit);
static struct watcher *pending_watcher(napi_env env, pid_t pid);
static void discard_watcher(napi_env env, struct watcher *w);

/* onMessage(type, id, pid, err, fd0, fd1, fd2, step, watched): `watched` is true when the child was told to
   go here (on_spawned) and is watched already: onMessage then returns its exit callback (or nothing, and it
   is reaped unseen). */
static void call_js(channel *c, const struct reply *r, const int fds[3], struct watcher *w) {
  napi_env env = c->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) {
    if (w) take_watcher(env, w, NULL);
    return;
  }
  napi_value argv[9], result = NULL;
  napi_create_uint32(env, r->type, &argv[0]);
  napi_create_uint32(env, r->id, &argv[1]);
  napi_create_int32(env, r->pid, &argv[2]);
  napi_create_int32(env, r->err, &argv[3]);
  for (int i = 0; i < 3; i++) napi_create_int32(env, fds[i], &argv[4 + i]);
  napi_create_uint32(env, r->step, &argv[7]);
  napi_get_boolean(env, w != NULL, &argv[8]);
  call_from_loop_result(env, c->callback, c->async, 9, argv, w ? &result : NULL);
  if (w) take_watcher(env, w, result);
  napi_close_handle_scope(env, scope);
}

/*
 * SPAWNED, handled here: the child waits before its exec for our go. We watch it (its pidfd in the
 * epoll set: all that can fail is done before the go) and say go at once; JS hears
 * of it once, at EXECED or EXEC_FAILED, with the fds, and gives its exit callback then. A round of JS
 * per run less, and the child waits for no JS. False when it cannot be watched here (out of fds): JS
 * then takes SPAWNED as before, fails the same way, and kills the child before it ran.
 */
static bool on_spawned(channel *c, const struct reply *r, const int fds[3]) {
  struct watcher *w = pending_watcher(c->env, r->pid);
  if (!w) return false;
  started *s = malloc(sizeof *s);
  if (!s) {
    discard_watcher(c->env, w);
    return false;
  }
  s->id = r->id;
  s->pid = r->pid;
  s->watcher = w;
  s->nfds = r->nfds;
  memcpy(s->fds, fds, sizeof s->fds);
  s->next = c->started;
  c->started = s;
  /* ESRCH: killed by someone meanwhile; EXEC_FAILED follows (ECANCELED). */
  kill(r->pid, GO_SIGNAL);
  return true;
}

static started *take_started(channel *c, uint32_t id) {
  for (started **p = &c->started; *p; p = &(*p)->next) {
    if ((*p)->id == id) {
      started *s = *p;
      *p = s->next;
      return s;
    }
  }
  return NULL;
}

/* The helper went away between a go and its exec's report: such a child runs, and JS supervises it like
   any run (EXECED; a failed exec shows as exit status 127). At teardown (`to_js` false) only the fds go. */
static void deliver_started(channel *c, bool to_js) {
  while (c->started) {
    started *s = c->started;
    c->started = s->next;
    if (to_js && c->callback) {
      struct reply r;
      memset(&r, 0, sizeof r);
      r.type = REPLY_EXECED;
      r.id = s->id;
      r.pid = s->pid;
      r.nfds = s->nfds;
      call_js(c, &r, s->fds, s->watcher);
    } else {
      for (int i = 0; i < 3; i++)
        if (s->fds[i] >= 0) close(s->fds[i]);
      if (to_js) take_watcher(c->env, s->watcher, NULL); /* reaped unseen */
    }
    free(s);
  }
}

static void report_closed(channel *c, int err) {
  struct reply r;
  int none[3] = {-1, -1, -1};
  memset(&r, 0, sizeof r);
  r.type = 0;
  r.err = err;
  r.pid = -1;
  deliver_started(c, true);
  call_js(c, &r, none, NULL);
  close_channel(c);
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  (void)events;
  channel *c = (channel *)handle;
  if (status < 0) {
    report_closed(c, -status);
    return;
  }
  while (c->state == CH_OPEN) {
    struct reply r;
    union {
      char buf[CMSG_SPACE(3 * sizeof(int))];
      struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = &r, .iov_len = sizeof r};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    ssize_t n = recvmsg(c->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      report_closed(c, n == 0 ? 0 : errno);
      return;
    }
    int fds[3] = {-1, -1, -1};
    int nfds = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
      int count = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      int got[3];
      if (count > 3) count = 3; /* cannot happen: the buffer holds three */
      memcpy(got, CMSG_DATA(cm), (size_t)count * sizeof(int));
      for (int i = 0; i < count; i++) {
        if (nfds < 3) fds[nfds++] = got[i];
        else close(got[i]);
      }
    }
    bool bad = (size_t)n != sizeof r || (msg.msg_flags & MSG_TRUNC);
    if (!bad && (msg.msg_flags & MSG_CTRUNC) && r.type == REPLY_SPAWNED) {
      /* We are out of descriptors: the kernel installed what fitted and dropped the rest. The child
         waits for our go before its exec; JS kills it instead (err set, no fds). */
      for (int i = 0; i < nfds; i++) close(fds[i]);
      fds[0] = fds[1] = fds[2] = -1;
      nfds = 0;
      r.err = EMFILE;
      r.nfds = 0;
      msg.msg_flags &= ~MSG_CTRUNC;
    }
    bad = bad || (msg.msg_flags & MSG_CTRUNC) || (uint32_t)nfds != r.nfds;
    if (bad) {
      for (int i = 0; i < nfds; i++) close(fds[i]);
      report_closed(c, EPROTO);
      return;
    }
    if (r.type == REPLY_SPAWNED && r.err == 0 && r.pid > 0 && on_spawned(c, &r, fds)) continue;
    struct watcher *w = NULL;
    if (r.type == REPLY_EXECED || r.type == REPLY_EXEC_FAILED) {
      started *st = take_started(c, r.id);
      if (st) {
        memcpy(fds, st->fds, sizeof fds);
        r.nfds = st->nfds;
        r.pid = st->pid;
        w = st->watcher;
        free(st);
      }
    }
    call_js(c, &r, fds, w);
  }
}

static void finalize_channel(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  channel *c = data;
  c->js_alive = false;
  close_channel(c);
  maybe_free(c);
}

static bool get_channel(napi_env env, napi_value value, channel **out) {
  void *data = NULL;
  napi_valuetype t;
  if (napi_typeof(env, value, &t) != napi_ok || t != napi_external || napi_get_value_external(env, value, &data) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected a channel");
    return false;
  }
  *out = data;
  return true;
}

static const char *errno_name(int e) {
  switch (e) {
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case ESRCH: return "ESRCH";
    case ENOSYS: return "ENOSYS";
    case EINVAL: return "EINVAL";
    case EPERM: return "EPERM";
    default: return "EIO";
  }
}

/* An Error with .code = the errno name, as Node's system errors have. */
static void throw_errno(napi_env env, int err, const char *what) {
  napi_value msg, code, error;
  napi_create_string_utf8(env, what, NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, msg, &error);
  napi_throw(env, error);
}

static napi_value js_open_channel(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value args[1], result, v, name;
  napi_valuetype t;
  uv_loop_t *loop;
  int sv[2];
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc < 1 ||
      napi_typeof(env, args[0], &t) != napi_ok || t != napi_function) {
    napi_throw_type_error(env, NULL, "openChannel(onMessage)");
    return NULL;
  }
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    napi_throw_error(env, NULL, "no event loop");
    return NULL;
  }
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    throw_errno(env, errno, "socketpair failed");
    return NULL;
  }
  channel *c = calloc(1, sizeof *c);
  if (!c) {
    close(sv[0]);
    close(sv[1]);
    throw_errno(env, ENOMEM, "out of memory");
    return NULL;
  }
  c->env = env;
  c->fd = sv[0];
  c->state = CH_OPEN;
  c->js_alive = true;
  int err = uv_poll_init(loop, &c->poll, sv[0]); /* also makes our end non-blocking */
  if (err) {
    close(sv[0]);
    close(sv[1]);
    free(c);
    throw_errno(env, -err, "uv_poll_init failed");
    return NULL;
  }
  napi_create_string_utf8(env, "execd:spawn-helper", NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, args[0], 1, &c->callback) != napi_ok || napi_async_init(env, NULL, name, &c->async) != napi_ok) {
    close(sv[1]);
    c->js_alive = false;
    if (c->callback) napi_delete_reference(env, c->callback);
    c->callback = NULL;
    c->state = CH_CLOSING;
    uv_close((uv_handle_t *)&c->poll, on_poll_closed);
    napi_throw_error(env, NULL, "could not set up the channel");
    return NULL;
  }
  napi_add_env_cleanup_hook(env, cleanup_hook, c);
  uv_poll_start(&c->poll, UV_READABLE | UV_DISCONNECT, on_readable);
  napi_create_array_with_length(env, 2, &result);
  napi_create_int32(env, sv[1], &v);
  napi_set_element(env, result, 0, v);
  if (napi_create_external(env, c, finalize_channel, NULL, &v) != napi_ok) {
    /* Without the external nothing could close it: close it now. */
    close(sv[1]);
    c->js_alive = false;
    close_channel(c);
    napi_throw_error(env, NULL, "could not set up the channel");
    return NULL;
  }
  napi_set_element(env, result, 1, v);
  return result;
}

static napi_value js_set_ref(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2];
  channel *c;
  bool ref = true;
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 2 || !get_channel(env, args[0], &c)) return NULL;
  napi_get_value_bool(env, args[1], &ref);
  if (c->state == CH_OPEN) {
    if (ref) uv_ref((uv_handle_t *)&c->poll);
    else uv_unref((uv_handle_t *)&c->poll);
  }
  return NULL;
}

static napi_value js_close_channel(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value args[1];
  channel *c;
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 1 || !get_channel(env, args[0], &c)) return NULL;
  close_channel(c);
  return NULL;
}

/* ---------- exit watching and output pipes: one epoll set ---------- */

/*
 * Every pidfd and output pipe of every child sits in one epoll set of ours,
 * and libuv polls that set's fd, once. Per child this costs an epoll_ctl ADD
 * and DEL per fd; a uv_poll_t per fd cost eight system calls each (libuv's
 * pollability probe ADD/DEL, FIONBIO, ADD, and DELs at stop and close).
 * Items finished while a batch of events is being handled are freed after the
 * batch, so a later event of the same batch never reaches freed memory; each
 * fd leaves the set (EPOLL_CTL_DEL) before it is closed, since a fork of this
 * process could still hold the file and keep it registered.
 */
enum { ITEM_WATCHER = 1, ITEM_READER = 2 };

typedef struct reader reader;

typedef struct watcher {
  int kind; /* first: ITEM_WATCHER */
  bool dead;
  bool ref; /* keeps the event loop alive (every run; not the helpers) */
  struct watcher *prev, *next;
  struct watcher *next_free;
  napi_ref callback;
  pid_t pid;
  int pidfd;
  bool pending; /* told to go from C; JS has not given its callback yet (take_watcher) */
  bool parked; /* it exited while pending: off EPOLLIN until take_watcher (level-triggered, it would wake us each turn) */
} watcher;

/* Per environment (the main thread, or a worker): the epoll set and its items, so teardown can stop them. */
typedef struct watch_list {
  napi_env env;
  uv_poll_t *poll; /* libuv's watch on epfd; its own allocation, freed when libuv lets go of it */
  int epfd;
  int items; /* registered fds: the loop is kept alive while there are any */
  int dispatching;
  watcher *head;
  int count; /* referenced watchers: the children (not the helpers) */
  reader *readers; /* open output readers */
  watcher *free_watchers; /* finished during a batch: freed after it */
  reader *free_readers;
  /* One async context for every exit and output callback, made when the addon loads (outside
     any request): one per child and per pipe cost an async resource each, for no use. */
  napi_async_context async;
  /* Readers resting (see on_pipe_event): the timer gives them back their EPOLLIN. */
  uv_timer_t *rest_timer;
  reader *resting;
} watch_list;

static void close_readers(watch_list *list);
static watch_list *watches_of(napi_env env);
static void free_finished(watch_list *list);

/* Keep the event loop alive exactly while a child is watched or a pipe read. */
static void count_item(watch_list *list, int delta) {
  int before = list->items;
  list->items += delta;
  if (!list->poll) return;
  if (before == 0 && list->items > 0) uv_ref((uv_handle_t *)list->poll);
  else if (before > 0 && list->items == 0) uv_unref((uv_handle_t *)list->poll);
}

/* `ref`: while registered, the fd keeps the event loop alive. */
static int add_fd(watch_list *list, int fd, uint32_t events, void *item, bool ref) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = events;
  ev.data.ptr = item;
  if (epoll_ctl(list->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) return errno;
  if (ref) count_item(list, 1);
  return 0;
}

static void remove_fd(watch_list *list, int fd, bool ref) {
  epoll_ctl(list->epfd, EPOLL_CTL_DEL, fd, NULL);
  if (ref) count_item(list, -1);
}

/* Unlink, drop the JS side and close; `report` calls onExit first (not at teardown). */
static void finish_watcher(watch_list *list, watcher *w, bool report, int status, const struct rusage *ru, bool known) {
  napi_env env = list->env;
  if (w->dead) return;
  w->dead = true;
  if (w->prev) w->prev->next = w->next;
  else list->head = w->next;
  if (w->next) w->next->prev = w->prev;
  if (w->ref) list->count--;
  remove_fd(list, w->pidfd, w->ref);
  close(w->pidfd);
  w->pidfd = -1;
  if (report) {
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) == napi_ok) {
      napi_value argv[5];
      int code = -1, sig = 0;
      if (known && WIFEXITED(status)) code = WEXITSTATUS(status);
      else if (known && WIFSIGNALED(status)) sig = WTERMSIG(status);
      napi_create_int32(env, code, &argv[0]);
      napi_create_int32(env, sig, &argv[1]);
      napi_create_double(env, known ? (double)ru->ru_utime.tv_sec * 1e6 + (double)ru->ru_utime.tv_usec : -1, &argv[2]);
      napi_create_double(env, known ? (double)ru->ru_stime.tv_sec * 1e6 + (double)ru->ru_stime.tv_usec : -1, &argv[3]);
      napi_create_double(env, known ? (double)ru->ru_maxrss : -1, &argv[4]); /* KiB on Linux */
      call_from_loop(env, w->callback, list->async, 5, argv);
      napi_close_handle_scope(env, scope);
    }
  }
  if (w->callback) napi_delete_reference(env, w->callback);
  w->callback = NULL;
  w->next_free = list->free_watchers;
  list->free_watchers = w;
  if (!list->dispatching) free_finished(list);
}

static void on_pidfd_event(watch_list *list, watcher *w) {
  struct rusage ru;
  int wstatus = 0;
  pid_t r;
  memset(&ru, 0, sizeof ru);
  do r = wait4(w->pid, &wstatus, WNOHANG, &ru);
  while (r < 0 && errno == EINTR);
  if (r == 0) return; /* not waitable yet: the pidfd stays readable, the next turn reaps it */
  /* r < 0 (ECHILD) only if someone else reaped it (SIGCHLD ignored): the status is unknown. */
  finish_watcher(list, w, true, wstatus, &ru, r == w->pid);
}

/* Put a registered watcher on the list (and count it while it keeps the loop alive). */
static void link_watcher(watch_list *list, watcher *w) {
  w->next = list->head;
  if (list->head) list->head->prev = w;
  list->head = w;
  if (w->ref) list->count++;
}

/* A watcher for a child told to go from C (on_spawned), registered now (all that can fail, before the go);
   it reports from take_watcher on. An exit before that parks it (on_set_readable). */
static watcher *pending_watcher(napi_env env, pid_t pid) {
  watch_list *list = watches_of(env);
  if (!list || list->epfd < 0) return NULL;
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) return NULL;
  watcher *w = calloc(1, sizeof *w);
  if (!w || add_fd(list, pidfd, EPOLLIN, w, true) != 0) {
    free(w);
    close(pidfd);
    return NULL;
  }
  w->kind = ITEM_WATCHER;
  w->pid = pid;
  w->pidfd = pidfd;
  w->ref = true;
  w->pending = true;
  link_watcher(list, w);
  return w;
}

/* Undo pending_watcher for a child that was not told to go (JS takes it as before). */
static void discard_watcher(napi_env env, watcher *w) {
  watch_list *list = watches_of(env);
  if (list) finish_watcher(list, w, false, 0, NULL, false);
}

/* JS's exit callback for a pending watcher (NULL or not a function: reaped unseen); from now on it reports. */
static void take_watcher(napi_env env, watcher *w, napi_value on_exit) {
  watch_list *list = watches_of(env);
  napi_valuetype t = napi_undefined;
  if (!list || w->dead) return;
  w->pending = false;
  if (on_exit && napi_typeof(env, on_exit, &t) == napi_ok && t == napi_function) napi_create_reference(env, on_exit, 1, &w->callback);
  if (!w->parked) return; /* the usual case: it is on EPOLLIN already */
  w->parked = false;
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.ptr = w;
  if (epoll_ctl(list->epfd, EPOLL_CTL_MOD, w->pidfd, &ev) != 0) {
    /* Never seen (MOD allocates nothing): do not leave it unwatched; it has run, so it is reported. */
    struct rusage ru;
    int wstatus = 0;
    memset(&ru, 0, sizeof ru);
    kill(-w->pid, SIGKILL);
    kill(w->pid, SIGKILL);
    pid_t r;
    do r = wait4(w->pid, &wstatus, 0, &ru);
    while (r < 0 && errno == EINTR);
    finish_watcher(list, w, true, wstatus, &ru, r == w->pid);
  }
}

static napi_value js_watch(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3];
  napi_valuetype t;
  int32_t pid = 0;
  bool ref = true;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, args[0], &pid) != napi_ok || pid <= 0 || napi_typeof(env, args[1], &t) != napi_ok ||
      t != napi_function) {
    napi_throw_type_error(env, NULL, "watch(pid, onExit[, ref])");
    return NULL;
  }
  if (argc >= 3 && napi_get_value_bool(env, args[2], &ref) != napi_ok) ref = true;
  watch_list *list = watches_of(env);
  if (!list || list->epfd < 0) {
    throw_errno(env, ENOMEM, "cannot watch");
    return NULL;
  }
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  int err = pidfd < 0 ? errno : 0;
  watcher *w = NULL;
  if (!err && !(w = calloc(1, sizeof *w))) err = ENOMEM;
  if (!err) {
    w->kind = ITEM_WATCHER;
    w->pid = pid;
    w->pidfd = pidfd;
    w->ref = ref;
    if (napi_create_reference(env, args[1], 1, &w->callback) != napi_ok) err = ENOMEM;
    else err = add_fd(list, pidfd, EPOLLIN, w, w->ref);
  }
  if (err) {
    /* Out of fds, say. A child nobody watches would run unsupervised and end a zombie:
       kill it and reap it now (it dies at once). */
    if (w && w->callback) napi_delete_reference(env, w->callback);
    free(w);
    if (pidfd >= 0) close(pidfd);
    if (err != ESRCH) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    }
    throw_errno(env, err, pidfd < 0 ? "pidfd_open failed" : "cannot watch");
    return NULL;
  }
  link_watcher(list, w);
  return NULL;
}

static napi_value js_watching(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  watch_list *list = NULL;
  napi_get_instance_data(env, (void **)&list);
  napi_create_int32(env, list ? list->count : 0, &out);
  return out;
}

/*
 * Reading a child's stdout/stderr. Wrapping each pipe in a net.Socket cost
 * more server CPU than everything else a spawn does (two sockets per run:
 * handle type probe, stream state, end/close events). Here the epoll set
 * watches the fd and each chunk goes to one JS callback as a Buffer, then null
 * once the pipe is closed (EOF or an error) and its fd is closed.
 */
struct reader {
  int kind; /* first: ITEM_READER */
  bool dead; /* finished: the fd is closed (or was never ours to poll) */
  reader *prev, *next;
  reader *next_free;
  watch_list *list;
  napi_ref callback;
  int fd;
  bool js_alive; /* the external wrapping it has not been finalized */
  bool finished; /* off every list, not on the free list: freed by the finalizer */
  bool grown; /* the pipe was asked for PIPE_BYTES */
  bool big; /* ...and holds them: counted in pipes_big */
  bool rests; /* off EPOLLIN until the rest timer fires (on the list's resting list) */
  bool pipe; /* a pipe (not a terminal's master): EPOLLHUP without EPOLLIN is its end */
  reader *next_resting;
  uint64_t last_data_ns; /* when the last read that got bytes ended */
};

/*
 * A fast writer (`head -c 1G /dev/zero` writes 8 KiB at a time) used to wake us
 * for each of its writes: an epoll turn, a JS call, a Buffer, a file write and a
 * socket write per 8 KiB. Now:
 * - a pipe found holding READ_GROW bytes or more is enlarged to PIPE_BYTES
 *   (F_SETPIPE_SZ; refused above /proc/sys/fs/pipe-max-size or the user's pipe
 *   quota: it then stays as it is), once;
 * - each read asks FIONREAD how much is there and reads it, up to READ_MAX,
 *   straight into a new Buffer of that size (no copy);
 * - a small read (under REST_BELOW bytes) that comes within REST_NS of the
 *   last one makes the reader rest off EPOLLIN for REST_MS (a timer), so the
 *   pipe fills meanwhile and the next read takes a large chunk; after a large
 *   read it reads on at once (the writer may be blocked on a full pipe). A line
 *   after a quiet spell is read at once; the most a chunk of a busy stream
 *   waits is REST_MS (plus the loop's lag). A hang-up is reported even while
 *   resting (epoll always reports EPOLLHUP).
 */
#define READ_SMALL 65536
#define READ_MAX (1u << 20)
#define READ_GROW (32u << 10)
#define PIPE_BYTES (1 << 20)
#define REST_NS 1000000ull
#define REST_BELOW (256u << 10)
#define REST_MS 1
/*
 * Pipe buffers count against the user's pipe quota (/proc/sys/fs/pipe-user-pages-soft,
 * 64 MiB by default): past it, every new pipe of the user gets 2 pages. At most
 * BIG_MAX pipes are enlarged at once (16 MiB), so many fast jobs never starve the
 * pipes of all the others.
 */
#define BIG_MAX 16
static _Thread_local unsigned pipes_big;
static _Thread_local char read_buf[READ_SMALL];

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void unrest(reader *r) {
  if (!r->rests) return;
  r->rests = false;
  for (reader **p = &r->list->resting; *p; p = &(*p)->next_resting) {
    if (*p == r) {
      *p = r->next_resting;
      break;
    }
  }
  r->next_resting = NULL;
}

/* Stop reading and close the fd; `report` tells JS (null) first. Idempotent. */
static void finish_reader(reader *r, bool report) {
  if (r->dead) return;
  watch_list *list = r->list;
  unrest(r);
  r->dead = true;
  if (r->prev) r->prev->next = r->next;
  else list->readers = r->next;
  if (r->next) r->next->prev = r->prev;
  remove_fd(list, r->fd, true);
  close(r->fd);
  r->fd = -1;
  if (r->big) {
    r->big = false;
    pipes_big--;
  }
  if (report) {
    napi_handle_scope scope;
    if (napi_open_handle_scope(list->env, &scope) == napi_ok) {
      napi_value arg;
      napi_get_null(list->env, &arg);
      call_from_loop(list->env, r->callback, list->async, 1, &arg);
      napi_close_handle_scope(list->env, scope);
    }
  }
  if (r->callback) napi_delete_reference(list->env, r->callback);
  r->callback = NULL;
  /* Freed once JS lets go of it too, and never during a batch of events. */
  r->next_free = list->free_readers;
  list->free_readers = r;
  if (!list->dispatching) free_finished(list);
}

/* Free what finished: watchers at once, readers the finalizer no longer needs (it frees the others). */
static void free_finished(watch_list *list) {
  while (list->free_watchers) {
    watcher *w = list->free_watchers;
    list->free_watchers = w->next_free;
    free(w);
  }
  while (list->free_readers) {
    reader *r = list->free_readers;
    list->free_readers = r->next_free;
    r->finished = true;
    if (!r->js_alive) free(r);
  }
}

static void close_readers(watch_list *list) {
  while (list->readers) finish_reader(list->readers, false);
}

/* Hand one chunk to JS; `buf` is a Buffer of exactly its bytes (or NULL: copy them from `data`). */
static void deliver(reader *r, napi_value buf, const char *data, size_t n) {
  napi_env env = r->list->env;
  napi_value chunk = buf;
  if (chunk || napi_create_buffer_copy(env, n, data, NULL, &chunk) == napi_ok) call_from_loop(env, r->callback, r->list->async, 1, &chunk);
}

static void on_rest_timer(uv_timer_t *timer) {
  watch_list *list = timer->data;
  if (!list) return;
  while (list->resting) {
    reader *r = list->resting;
    list->resting = r->next_resting;
    r->next_resting = NULL;
    r->rests = false;
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = r;
    epoll_ctl(list->epfd, EPOLL_CTL_MOD, r->fd, &ev);
  }
}

/* Take the reader off EPOLLIN for REST_MS (it stays registered: a hang-up still comes through). */
static void rest(reader *r) {
  watch_list *list = r->list;
  if (r->rests || !list->rest_timer) return;
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.data.ptr = r;
  if (epoll_ctl(list->epfd, EPOLL_CTL_MOD, r->fd, &ev) != 0) return;
  r->rests = true;
  r->next_resting = list->resting;
  list->resting = r;
  if (!uv_is_active((uv_handle_t *)list->rest_timer)) uv_timer_start(list->rest_timer, on_rest_timer, REST_MS, 0);
}

static void on_pipe_event(reader *r, uint32_t events) {
  napi_env env = r->list->env;
  bool got = false;
  size_t last = 0;
  /* Hung up with nothing left to read (a pipe reports EPOLLIN only while it holds bytes): the end,
     without asking FIONREAD and reading 0 bytes. Most runs end so, on both pipes. Not a terminal: its
     last output may still be on its way to the line discipline (a read waits for it), so it reads to EIO.
     Not while resting either: EPOLLIN is masked off then, and the pipe may still hold bytes. */
  if (r->pipe && !r->rests && (events & (EPOLLHUP | EPOLLIN)) == EPOLLHUP) {
    finish_reader(r, true);
    return;
  }
  /* Read what is there (the set is level-triggered), a bounded number of times. */
  for (int i = 0; i < 16 && !r->dead; i++) {
    int avail = 0;
    if (ioctl(r->fd, FIONREAD, &avail) != 0) avail = 0;
    if (avail >= (int)READ_GROW && !r->grown && pipes_big < BIG_MAX) {
      r->grown = true;
      /* A pty or a refusal: it stays as it is. */
      if (fcntl(r->fd, F_SETPIPE_SZ, PIPE_BYTES) >= PIPE_BYTES) {
        r->big = true;
        pipes_big++;
      }
    }
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    ssize_t n;
    size_t want = avail > 0 ? ((size_t)avail < READ_MAX ? (size_t)avail : READ_MAX) : 0;
    napi_value buf = NULL;
    void *data = NULL;
    if (want > 0 && napi_create_buffer(env, want, &data, &buf) == napi_ok) {
      do n = read(r->fd, data, want);
      while (n < 0 && errno == EINTR);
      if (n > 0 && (size_t)n < want) buf = NULL; /* never seen (we are the only reader): copied below */
    } else {
      /* Nothing announced (EOF, an error, a terminal's EIO) or no Buffer: the small buffer, copied. */
      want = READ_SMALL;
      data = read_buf;
      buf = NULL;
      do n = read(r->fd, read_buf, READ_SMALL);
      while (n < 0 && errno == EINTR);
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      napi_close_handle_scope(env, scope);
      break;
    }
    if (n <= 0) {
      napi_close_handle_scope(env, scope);
      finish_reader(r, true); /* EOF, or an error: the pipe is done either way */
      return;
    }
    deliver(r, buf, data, (size_t)n);
    napi_close_handle_scope(env, scope);
    got = true;
    last = (size_t)n;
    if ((size_t)n < want || want < READ_MAX) break; /* drained: the next event says when there is more */
  }
  if (!got || r->dead) return;
  uint64_t now = now_ns();
  if (last < REST_BELOW && now - r->last_data_ns < REST_NS) rest(r);
  r->last_data_ns = now;
}

/* The epoll set is readable: handle a batch of its events. */
static void on_set_readable(uv_poll_t *handle, int status, int events) {
  (void)status;
  (void)events;
  watch_list *list = handle->data;
  if (!list) return;
  struct epoll_event ev[64];
  int n;
  do n = epoll_wait(list->epfd, ev, 64, 0);
  while (n < 0 && errno == EINTR);
  if (n <= 0) return;
  /* One callback scope for the batch: a run's exit and its pipes' ends usually come together, and
     the promise jobs and ticks they queue run once, when it closes, not after each callback. */
  napi_env env = list->env;
  napi_handle_scope hs = NULL;
  napi_callback_scope cs = NULL;
  napi_value resource;
  if (list->async && napi_open_handle_scope(env, &hs) == napi_ok && napi_create_object(env, &resource) == napi_ok)
    napi_open_callback_scope(env, resource, list->async, &cs);
  list->dispatching++;
  for (int i = 0; i < n; i++) {
    int kind = *(int *)ev[i].data.ptr;
    if (kind == ITEM_WATCHER) {
      watcher *w = ev[i].data.ptr;
      if (w->dead) continue;
      if (!w->pending) on_pidfd_event(list, w);
      else if (!w->parked) {
        /* Exited before its EXECED reached JS: wait for take_watcher, without waking us every turn. */
        struct epoll_event off;
        memset(&off, 0, sizeof off);
        off.data.ptr = w;
        if (epoll_ctl(list->epfd, EPOLL_CTL_MOD, w->pidfd, &off) == 0) w->parked = true;
      }
    } else {
      reader *r = ev[i].data.ptr;
      if (!r->dead) on_pipe_event(r, ev[i].events);
    }
  }
  list->dispatching--;
  if (!list->dispatching) free_finished(list);
  if (cs) napi_close_callback_scope(env, cs);
  if (hs) napi_close_handle_scope(env, hs);
}

static void on_set_poll_closed(uv_handle_t *handle) {
  free(handle);
}

static void watch_cleanup(void *arg) {
  watch_list *list = arg;
  while (list->head) finish_watcher(list, list->head, false, 0, NULL, false);
  close_readers(list);
  list->dispatching = 0;
  free_finished(list);
  list->resting = NULL;
  if (list->rest_timer) {
    list->rest_timer->data = NULL;
    uv_timer_stop(list->rest_timer);
    uv_close((uv_handle_t *)list->rest_timer, on_set_poll_closed);
    list->rest_timer = NULL;
  }
  if (list->poll) {
    list->poll->data = NULL;
    uv_poll_stop(list->poll);
    uv_close((uv_handle_t *)list->poll, on_set_poll_closed);
    list->poll = NULL;
  }
  if (list->epfd >= 0) close(list->epfd);
  list->epfd = -1;
  if (list->async) napi_async_destroy(list->env, list->async);
  list->async = NULL;
  /* Readers JS still holds are freed by their finalizers, which must not touch the list. */
  free(list);
}

static watch_list *watches_of(napi_env env) {
  watch_list *list = NULL;
  uv_loop_t *loop;
  if (napi_get_instance_data(env, (void **)&list) == napi_ok && list) return list;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return NULL;
  list = calloc(1, sizeof *list);
  if (!list) return NULL;
  list->env = env;
  list->epfd = epoll_create1(EPOLL_CLOEXEC);
  list->poll = list->epfd >= 0 ? calloc(1, sizeof *list->poll) : NULL;
  if (!list->poll || uv_poll_init(loop, list->poll, list->epfd) != 0) {
    if (list->epfd >= 0) close(list->epfd);
    free(list->poll);
    free(list);
    return NULL;
  }
  list->poll->data = list;
  uv_poll_start(list->poll, UV_READABLE, on_set_readable);
  /* The readers' rest timer: never keeps the loop alive (the readers' fds do); without it readers never rest. */
  list->rest_timer = calloc(1, sizeof *list->rest_timer);
  if (list->rest_timer && uv_timer_init(loop, list->rest_timer) == 0) {
    list->rest_timer->data = list;
    uv_unref((uv_handle_t *)list->rest_timer);
  } else {
    free(list->rest_timer);
    list->rest_timer = NULL;
  }
  uv_unref((uv_handle_t *)list->poll); /* nothing to wait for yet */
  napi_value name;
  napi_create_string_utf8(env, "execd:child", NAPI_AUTO_LENGTH, &name);
  if (napi_async_init(env, NULL, name, &list->async) != napi_ok) list->async = NULL; /* callbacks then run without one */
  if (napi_set_instance_data(env, list, NULL, NULL) != napi_ok) {
    if (list->rest_timer) uv_close((uv_handle_t *)list->rest_timer, on_set_poll_closed);
    uv_close((uv_handle_t *)list->poll, on_set_poll_closed);
    close(list->epfd);
    free(list);
    return NULL;
  }
  /* Teardown (process exit, worker end): stop watching, free everything. */
  napi_add_env_cleanup_hook(env, watch_cleanup, list);
  return list;
}

static void finalize_reader(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  reader *r = data;
  r->js_alive = false;
  if (!r->dead) finish_reader(r, false); /* a reader JS dropped while open: stop it (its list is alive) */
  if (r->finished) free(r);
  /* else it is on its list's free list: free_finished frees it after the batch */
}

static bool get_reader(napi_env env, napi_value value, reader **out) {
  void *data = NULL;
  napi_valuetype t;
  if (napi_typeof(env, value, &t) != napi_ok || t != napi_external || napi_get_value_external(env, value, &data) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected a reader");
    return false;
  }
  *out = data;
  return true;
}

/* readPipe(fd, onData[, pipe]) -> reader: the fd is ours from now on (closed when done), even when this throws.
   `pipe`: the fd is a pipe (the default); false for a terminal's master. */
static napi_value js_read_pipe(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3], out;
  napi_valuetype t;
  int32_t fd = -1;
  bool is_pipe = true;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, args[0], &fd) != napi_ok || fd < 0 || napi_typeof(env, args[1], &t) != napi_ok ||
      t != napi_function) {
    napi_throw_type_error(env, NULL, "readPipe(fd, onData[, pipe])");
    return NULL;
  }
  if (argc >= 3 && napi_get_value_bool(env, args[2], &is_pipe) != napi_ok) is_pipe = true;
  watch_list *list = watches_of(env);
  reader *r = list && list->epfd >= 0 ? calloc(1, sizeof *r) : NULL;
  int one = 1;
  if (!r) {
    close(fd);
    throw_errno(env, ENOMEM, "cannot read");
    return NULL;
  }
  r->kind = ITEM_READER;
  r->list = list;
  r->fd = fd;
  r->pipe = is_pipe;
  int err = ioctl(fd, FIONBIO, &one) != 0 ? errno : 0; /* reads until EAGAIN must never block */
  if (!err && (napi_create_reference(env, args[1], 1, &r->callback) != napi_ok ||
               napi_create_external(env, r, finalize_reader, NULL, &out) != napi_ok)) err = ENOMEM;
  if (!err) r->js_alive = true;
  if (!err) err = add_fd(list, fd, EPOLLIN | EPOLLRDHUP, r, true);
  if (err) {
    if (r->callback) napi_delete_reference(env, r->callback);
    close(fd);
    if (r->js_alive) {
      /* the external exists: its finalizer frees r */
      r->dead = true;
      r->callback = NULL;
      r->finished = true;
    } else free(r);
    throw_errno(env, err, "cannot read");
    return NULL;
  }
  r->next = list->readers;
  if (list->readers) list->readers->prev = r;
  list->readers = r;
  return out;
}

/* closePipe(reader): stop reading now and close the fd, without calling onData (idempotent). */
static napi_value js_close_pipe(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value args[1];
  reader *r;
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 1 || !get_reader(env, args[0], &r)) return NULL;
  finish_reader(r, false);
  return NULL;
}

/* ---------- starting a helper ---------- */

/*
 * 4. The helper itself, started here (clone(CLONE_VM|CLONE_VFORK) and exec, as
 *    posix_spawn does) rather than by child_process. libuv installs its SIGCHLD
 *    handler while it has a child process of its own, and then every run's end
 *    (a SIGCHLD, since runs are our children) interrupted the loop, went through
 *    the handler's lock and signal pipes and made libuv call waitpid for each
 *    helper: seven system calls and a signal per run. With no libuv child,
 *    SIGCHLD keeps its default disposition and the kernel drops it at once; the
 *    helper is watched and reaped through its pidfd like any run. Like
 *    child_process's detached: true, the helper gets its own session.
 *
 * spawnHelper(path, replyFd) -> [pid, requestFd]: the helper's fd 0 reads the
 * requests (a pipe; requestFd is the write end, ours), 1 is /dev/null, 2 is ours,
 * 3 is replyFd; nothing else, an empty environment, cwd /. Throws {code} when
 * it cannot start (the exec's errno comes back through the shared memory).
 */
#define HELPER_STACK (64u << 10)

struct helper_start {
  const char *path;
  int req_rd, reply_fd, devnull;
  int err; /* set by the child when exec fails */
};

static int helper_main(void *arg) {
  struct helper_start *a = arg;
  /* Our dispositions are copied, not shared (no CLONE_SIGHAND): put them back to default before unblocking. */
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) {
    struct sigaction old;
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    if (sigaction(sig, NULL, &old) == 0 && old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN) sigaction(sig, &dfl, NULL);
  }
  /* SIGPIPE ignored by node would stay ignored across exec: the helper expects the default (it checks writes). */
  sigaction(SIGPIPE, &dfl, NULL);
  /* Out of 0-3's way first (either may be 3), then into place: dup2's copies are not close-on-exec. */
  int req = fcntl(a->req_rd, F_DUPFD, 4), reply = fcntl(a->reply_fd, F_DUPFD, 4);
  if (req < 0 || reply < 0 || setsid() < 0 || dup2(req, 0) < 0 || dup2(a->devnull, 1) < 0 || dup2(reply, 3) < 0 || chdir("/") != 0) {
    a->err = errno;
    _exit(127);
  }
  syscall(SYS_close_range, 4u, ~0u, 0u);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  char *argv[] = {(char *)a->path, NULL};
  char *envp[] = {NULL};
  execve(a->path, argv, envp);
  a->err = errno;
  _exit(127);
}

static napi_value js_spawn_helper(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2], result, v;
  char path[4096];
  size_t len = 0;
  int32_t reply_fd = -1;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_string_utf8(env, args[0], path, sizeof path, &len) != napi_ok || len == 0 || len >= sizeof path - 1 ||
      napi_get_value_int32(env, args[1], &reply_fd) != napi_ok || reply_fd < 0) {
    napi_throw_type_error(env, NULL, "spawnHelper(path, replyFd)");
    return NULL;
  }
  int req[2] = {-1, -1};
  struct helper_start a = {.path = path, .reply_fd = reply_fd, .devnull = -1, .err = 0};
  void *stack = MAP_FAILED;
  int err = 0;
  if (pipe2(req, O_CLOEXEC) != 0) err = errno;
  if (!err && (a.devnull = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0) err = errno;
  if (!err && (stack = mmap(NULL, HELPER_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0)) == MAP_FAILED) err = errno;
  pid_t pid = -1;
  if (!err) {
    a.req_rd = req[0];
    /* Every signal blocked while the child runs on our memory: no handler of ours may run in it. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = clone(helper_main, (char *)stack + HELPER_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
    if (pid < 0) err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid > 0 && a.err) {
      err = a.err;
      while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
      pid = -1;
    }
  }
  if (stack != MAP_FAILED) munmap(stack, HELPER_STACK);
  if (a.devnull >= 0) close(a.devnull);
  if (req[0] >= 0) close(req[0]);
  if (err) {
    if (req[1] >= 0) close(req[1]);
    throw_errno(env, err, "cannot start the spawn helper");
    return NULL;
  }
  napi_create_array_with_length(env, 2, &result);
  napi_create_int32(env, pid, &v);
  napi_set_element(env, result, 0, v);
  napi_create_int32(env, req[1], &v);
  napi_set_element(env, result, 1, v);
  return result;
}

/* kill(pid, sig) -> 0, or the errno: for signalling process groups that are usually gone (ESRCH) without
   the cost of an exception (Node's process.kill throws: ~25 µs a run in a busy server). */
static napi_value js_kill(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2], out;
  int32_t pid = 0, sig = 0;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc < 2 || napi_get_value_int32(env, args[0], &pid) != napi_ok ||
      napi_get_value_int32(env, args[1], &sig) != napi_ok || sig < 0 || sig >= NSIG) {
    napi_throw_type_error(env, NULL, "kill(pid, signal)");
    return NULL;
  }
  napi_create_int32(env, kill(pid, sig) == 0 ? 0 : errno, &out);
  return out;
}

/* resize(fd, cols, rows) -> 0 | errno: TIOCSWINSZ on a pty master; the kernel sends the terminal's foreground group SIGWINCH. */
static napi_value js_resize(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3], out;
  int32_t fd = -1, cols = 0, rows = 0;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc < 3 || napi_get_value_int32(env, args[0], &fd) != napi_ok ||
      napi_get_value_int32(env, args[1], &cols) != napi_ok || napi_get_value_int32(env, args[2], &rows) != napi_ok || fd < 0 ||
      cols < 1 || cols > 65535 || rows < 1 || rows > 65535) {
    napi_throw_type_error(env, NULL, "resize(fd, cols, rows)");
    return NULL;
  }
  struct winsize ws;
  memset(&ws, 0, sizeof ws);
  ws.ws_col = (unsigned short)cols;
  ws.ws_row = (unsigned short)rows;
  napi_create_int32(env, ioctl(fd, TIOCSWINSZ, &ws) == 0 ? 0 : errno, &out);
  return out;
}

/* setDumpable(bool) -> 0 | errno: prctl(PR_SET_DUMPABLE). Not dumpable, a process of our uid (a command
   run without run-as) can neither read our /proc/<pid>/environ or mem nor ptrace us; no core dump either. */
static napi_value js_set_dumpable(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value args[1], out;
  bool on = false;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc < 1 || napi_get_value_bool(env, args[0], &on) != napi_ok) {
    napi_throw_type_error(env, NULL, "setDumpable(bool)");
    return NULL;
  }
  napi_create_int32(env, prctl(PR_SET_DUMPABLE, on ? 1 : 0, 0, 0, 0) == 0 ? 0 : errno, &out);
  return out;
}

/* mallocTrim() -> bool: give the C heap's free pages back to the kernel (glibc's malloc_trim(0)), false
   where the C library has none. glibc returns a free chunk only from the top of an arena; after start-up
   11 MiB of the server's RSS was free malloc memory held below live chunks (docs/benchmarks.md). */
static napi_value js_malloc_trim(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
#ifdef __GLIBC__
  malloc_trim(0);
  napi_get_boolean(env, true, &out);
#else
  napi_get_boolean(env, false, &out);
#endif
  return out;
}

/* limitMallocArenas(n) -> bool: at most n malloc arenas from now on (glibc's mallopt(M_ARENA_MAX)), as
   MALLOC_ARENA_MAX=n in the environment would have from the start; false where the C library has none.
   glibc's default, 8 per core, each thread's frees in an arena of its own, fragmented the C heap under load
   (docs/benchmarks.md). Arenas made before the call stay; no thread makes a new one past n. */
static napi_value js_limit_malloc_arenas(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value args[1];
  int32_t n = 0;
  napi_value out;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc < 1 || napi_get_value_int32(env, args[0], &n) != napi_ok || n < 1) {
    napi_throw_type_error(env, NULL, "limitMallocArenas(n >= 1)");
    return NULL;
  }
#ifdef __GLIBC__
  napi_get_boolean(env, mallopt(M_ARENA_MAX, n) == 1, &out);
#else
  napi_get_boolean(env, false, &out);
#endif
  return out;
}

/* null when this kernel can do what we need (pidfd_open: Linux 5.3), else why not. */
static napi_value js_probe(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  if (fd < 0) {
    napi_create_string_utf8(env, "pidfd_open unavailable: Linux 5.3 or later is needed", NAPI_AUTO_LENGTH, &out);
    return out;
  }
  close(fd);
  napi_get_null(env, &out);
  return out;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_property_descriptor props[] = {
      {"openChannel", NULL, js_open_channel, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setRef", NULL, js_set_ref, NULL, NULL, NULL, napi_enumerable, NULL},
      {"closeChannel", NULL, js_close_channel, NULL, NULL, NULL, napi_enumerable, NULL},
      {"watch", NULL, js_watch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"watching", NULL, js_watching, NULL, NULL, NULL, napi_enumerable, NULL},
      {"probe", NULL, js_probe, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readPipe", NULL, js_read_pipe, NULL, NULL, NULL, napi_enumerable, NULL},
      {"closePipe", NULL, js_close_pipe, NULL, NULL, NULL, napi_enumerable, NULL},
      {"spawnHelper", NULL, js_spawn_helper, NULL, NULL, NULL, napi_enumerable, NULL},
      {"kill", NULL, js_kill, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setDumpable", NULL, js_set_dumpable, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mallocTrim", NULL, js_malloc_trim, NULL, NULL, NULL, napi_enumerable, NULL},
      {"limitMallocArenas", NULL, js_limit_malloc_arenas, NULL, NULL, NULL, napi_enumerable, NULL},
      {"resize", NULL, js_resize, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  watches_of(env); /* now, while the addon loads: its async context belongs to no request */
  return exports;
}
