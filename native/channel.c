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
 *    this process's children: each gets a pidfd (always O_CLOEXEC) polled by
 *    libuv; once it is readable the child is a zombie and wait4(pid, WNOHANG)
 *    reaps it with its rusage. No thread, no SIGCHLD handler: libuv reaps only
 *    the pids it spawned itself, so the two never take each other's children.
 *
 * JS API (src/services/runner/native-helper.ts):
 *   openChannel(onMessage) -> [helperFd, channel]
 *     helperFd: the helper's end, to hand it as fd 3 and then close here
 *     onMessage(type, id, pid, err, fd0, fd1, fd2); type 0: the channel closed (err: why, 0 at EOF)
 *   setRef(channel, bool)   keep the event loop alive for it, or not
 *   closeChannel(channel)   stop listening and close the socket (idempotent)
 *   watch(pid, onExit)      reap pid when it exits: onExit(code | -1, signal | 0, userUs, systemUs, maxRssKiB)
 *                           (all -1 when the status could not be read); when it cannot watch, it kills
 *                           and reaps the child, then throws {code}
 *   watching()              children watched and not reaped yet
 *   readPipe(fd, onData)    read a child's output pipe (the fd becomes ours): onData(Buffer) per chunk,
 *                           then onData(null) once it is closed -> reader
 *   closePipe(reader)       stop reading and close the fd now, without onData(null) (idempotent)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

#include "protocol.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

enum { CH_OPEN, CH_CLOSING, CH_CLOSED };

typedef struct channel {
  uv_poll_t poll; /* first: the handle's address is the channel's */
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  int fd;
  int state;
  bool js_alive; /* the external wrapping it has not been finalized */
} channel;

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
static void close_channel(channel *c) {
  if (c->state != CH_OPEN) return;
  c->state = CH_CLOSING;
  napi_remove_env_cleanup_hook(c->env, cleanup_hook, c);
  uv_poll_stop(&c->poll);
  if (c->callback) napi_delete_reference(c->env, c->callback);
  c->callback = NULL;
  if (c->async) napi_async_destroy(c->env, c->async);
  c->async = NULL;
  uv_close((uv_handle_t *)&c->poll, on_poll_closed);
}

/* Environment teardown: libuv must not be left with our handle. The struct itself is freed by
   the external's finalizer if that still runs, or goes with the process. */
static void cleanup_hook(void *arg) {
  close_channel(arg);
}

/* Call a JS function from a libuv callback: a handle scope, and make_callback (which runs the microtask queue after). */
static void call_from_loop(napi_env env, napi_ref callback, napi_async_context async, size_t argc, napi_value *argv) {
  napi_value cb, recv, result;
  napi_get_global(env, &recv); /* make_callback wants an object as `this` */
  if (!callback || napi_get_reference_value(env, callback, &cb) != napi_ok || !cb) return;
  if (napi_make_callback(env, async, recv, cb, argc, argv, &result) != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc);
    }
  }
}

static void call_js(channel *c, const struct reply *r, const int fds[3]) {
  napi_env env = c->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value argv[7];
  napi_create_uint32(env, r->type, &argv[0]);
  napi_create_uint32(env, r->id, &argv[1]);
  napi_create_int32(env, r->pid, &argv[2]);
  napi_create_int32(env, r->err, &argv[3]);
  for (int i = 0; i < 3; i++) napi_create_int32(env, fds[i], &argv[4 + i]);
  call_from_loop(env, c->callback, c->async, 7, argv);
  napi_close_handle_scope(env, scope);
}

static void report_closed(channel *c, int err) {
  struct reply r;
  int none[3] = {-1, -1, -1};
  memset(&r, 0, sizeof r);
  r.type = 0;
  r.err = err;
  r.pid = -1;
  call_js(c, &r, none);
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
    bool bad = (size_t)n != sizeof r || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || (uint32_t)nfds != r.nfds;
    if (bad) {
      for (int i = 0; i < nfds; i++) close(fds[i]);
      report_closed(c, EPROTO);
      return;
    }
    call_js(c, &r, fds);
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

/* ---------- exit watching ---------- */

typedef struct watcher {
  uv_poll_t poll; /* first: the handle's address is the watcher's */
  struct watcher *prev, *next;
  napi_env env;
  napi_ref callback;
  pid_t pid;
  int pidfd;
} watcher;

/* Per environment (the main thread, or a worker): the watchers, so teardown can stop them. */
typedef struct reader reader;

typedef struct watch_list {
  napi_env env;
  watcher *head;
  int count;
  reader *readers; /* open output readers (section 3) */
  /* One async context for every exit and output callback, made when the addon loads (outside
     any request): one per child and per pipe cost an async resource each, for no use. */
  napi_async_context async;
} watch_list;

static void close_readers(watch_list *list);

static watch_list *watches_of(napi_env env);

static void on_watcher_closed(uv_handle_t *handle) {
  watcher *w = (watcher *)handle;
  if (w->pidfd >= 0) close(w->pidfd);
  free(w);
}

/* Unlink, stop, drop the JS side and close; `report` calls onExit first (not at teardown). */
static void finish_watcher(watch_list *list, watcher *w, bool report, int status, const struct rusage *ru, bool known) {
  napi_env env = w->env;
  if (w->prev) w->prev->next = w->next;
  else list->head = w->next;
  if (w->next) w->next->prev = w->prev;
  list->count--;
  uv_poll_stop(&w->poll);
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
  uv_close((uv_handle_t *)&w->poll, on_watcher_closed);
}

static void on_pidfd_readable(uv_poll_t *handle, int status, int events) {
  (void)events;
  watcher *w = (watcher *)handle;
  watch_list *list = watches_of(w->env);
  struct rusage ru;
  int wstatus = 0;
  pid_t r;
  memset(&ru, 0, sizeof ru);
  do r = wait4(w->pid, &wstatus, WNOHANG, &ru);
  while (r < 0 && errno == EINTR);
  if (r == 0) return; /* not waitable yet: the pidfd stays readable, the next turn reaps it */
  /* r < 0 (ECHILD) only if someone else reaped it (SIGCHLD ignored): the status is unknown. */
  if (list) finish_watcher(list, w, true, wstatus, &ru, r == w->pid);
}

static void watch_cleanup(void *arg) {
  watch_list *list = arg;
  while (list->head) finish_watcher(list, list->head, false, 0, NULL, false);
  close_readers(list);
  free(list);
}

static watch_list *watches_of(napi_env env) {
  watch_list *list = NULL;
  if (napi_get_instance_data(env, (void **)&list) == napi_ok && list) return list;
  list = calloc(1, sizeof *list);
  if (!list) return NULL;
  list->env = env;
  napi_value name;
  napi_create_string_utf8(env, "execd:child", NAPI_AUTO_LENGTH, &name);
  if (napi_async_init(env, NULL, name, &list->async) != napi_ok) list->async = NULL; /* callbacks then run without one */
  if (napi_set_instance_data(env, list, NULL, NULL) != napi_ok) {
    free(list);
    return NULL;
  }
  /* Teardown (process exit, worker end): stop watching, free everything. */
  napi_add_env_cleanup_hook(env, watch_cleanup, list);
  return list;
}

static napi_value js_watch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2];
  napi_valuetype t;
  int32_t pid = 0;
  uv_loop_t *loop;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, args[0], &pid) != napi_ok || pid <= 0 || napi_typeof(env, args[1], &t) != napi_ok ||
      t != napi_function) {
    napi_throw_type_error(env, NULL, "watch(pid, onExit)");
    return NULL;
  }
  watch_list *list = watches_of(env);
  if (!list || napi_get_uv_event_loop(env, &loop) != napi_ok) {
    throw_errno(env, ENOMEM, "cannot watch");
    return NULL;
  }
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) {
    /* Out of fds, say. A child nobody watches would run unsupervised and end a zombie:
       kill it and reap it now (it dies at once). */
    int err = errno;
    if (err != ESRCH) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    }
    throw_errno(env, err, "pidfd_open failed");
    return NULL;
  }
  watcher *w = calloc(1, sizeof *w);
  if (!w) {
    close(pidfd);
    throw_errno(env, ENOMEM, "out of memory");
    return NULL;
  }
  w->env = env;
  w->pid = pid;
  w->pidfd = pidfd;
  int err = uv_poll_init(loop, &w->poll, pidfd);
  if (err) {
    close(pidfd);
    free(w);
    throw_errno(env, -err, "uv_poll_init failed");
    return NULL;
  }
  if (napi_create_reference(env, args[1], 1, &w->callback) != napi_ok) {
    if (w->callback) napi_delete_reference(env, w->callback);
    w->callback = NULL;
    uv_close((uv_handle_t *)&w->poll, on_watcher_closed);
    napi_throw_error(env, NULL, "cannot watch");
    return NULL;
  }
  w->next = list->head;
  if (list->head) list->head->prev = w;
  list->head = w;
  list->count++;
  uv_poll_start(&w->poll, UV_READABLE, on_pidfd_readable);
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

/* ---------- output pipes ---------- */

/*
 * 3. Reading a child's stdout/stderr. Wrapping each pipe in a net.Socket cost
 *    more server CPU than everything else a spawn does (two sockets per run:
 *    handle type probe, stream state, end/close events). Here libuv polls the
 *    fd and each chunk goes to one JS callback as a Buffer, then null once the
 *    pipe is closed (EOF or an error) and its fd is closed.
 */
struct reader {
  uv_poll_t poll; /* first: the handle's address is the reader's */
  reader *prev, *next;
  watch_list *list;
  napi_env env;
  napi_ref callback;
  int fd;
  bool open;     /* polling; the fd is ours */
  bool js_alive; /* the external wrapping it has not been finalized */
  bool closed;   /* libuv has let go of the handle */
};

#define READ_CHUNK 65536
static _Thread_local char read_buf[READ_CHUNK];

static void maybe_free_reader(reader *r) {
  if (r->closed && !r->js_alive) free(r);
}

static void on_reader_closed(uv_handle_t *handle) {
  reader *r = (reader *)handle;
  if (r->fd >= 0) close(r->fd);
  r->fd = -1;
  r->closed = true;
  maybe_free_reader(r);
}

/* Stop reading and close the fd; `report` tells JS (null) first. Idempotent. */
static void finish_reader(reader *r, bool report) {
  if (!r->open) return;
  r->open = false;
  if (r->prev) r->prev->next = r->next;
  else r->list->readers = r->next;
  if (r->next) r->next->prev = r->prev;
  uv_poll_stop(&r->poll);
  if (report) {
    napi_handle_scope scope;
    if (napi_open_handle_scope(r->env, &scope) == napi_ok) {
      napi_value arg;
      napi_get_null(r->env, &arg);
      call_from_loop(r->env, r->callback, r->list->async, 1, &arg);
      napi_close_handle_scope(r->env, scope);
    }
  }
  if (r->callback) napi_delete_reference(r->env, r->callback);
  r->callback = NULL;
  uv_close((uv_handle_t *)&r->poll, on_reader_closed);
}

static void close_readers(watch_list *list) {
  while (list->readers) finish_reader(list->readers, false);
  if (list->async) napi_async_destroy(list->env, list->async);
  list->async = NULL;
}

static void on_pipe_readable(uv_poll_t *handle, int status, int events) {
  (void)events;
  reader *r = (reader *)handle;
  if (status < 0) {
    finish_reader(r, true);
    return;
  }
  /* As libuv's streams: read until a short read (the poll is level-triggered), a bounded number of times. */
  for (int i = 0; i < 16 && r->open; i++) {
    ssize_t n = read(r->fd, read_buf, READ_CHUNK);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      finish_reader(r, true); /* EOF, or an error: the pipe is done either way */
      return;
    }
    napi_handle_scope scope;
    if (napi_open_handle_scope(r->env, &scope) == napi_ok) {
      napi_value chunk;
      if (napi_create_buffer_copy(r->env, (size_t)n, read_buf, NULL, &chunk) == napi_ok) {
        call_from_loop(r->env, r->callback, r->list->async, 1, &chunk);
      }
      napi_close_handle_scope(r->env, scope);
    }
    if (n < READ_CHUNK) return;
  }
}

static void finalize_reader(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  reader *r = data;
  r->js_alive = false;
  finish_reader(r, false);
  maybe_free_reader(r);
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

/* readPipe(fd, onData) -> reader: the fd is ours from now on (closed when done), even when this throws. */
static napi_value js_read_pipe(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2], out;
  napi_valuetype t;
  int32_t fd = -1;
  uv_loop_t *loop;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, args[0], &fd) != napi_ok || fd < 0 || napi_typeof(env, args[1], &t) != napi_ok ||
      t != napi_function) {
    napi_throw_type_error(env, NULL, "readPipe(fd, onData)");
    return NULL;
  }
  watch_list *list = watches_of(env);
  if (!list || napi_get_uv_event_loop(env, &loop) != napi_ok) {
    close(fd);
    throw_errno(env, ENOMEM, "cannot read");
    return NULL;
  }
  reader *r = calloc(1, sizeof *r);
  if (!r) {
    close(fd);
    throw_errno(env, ENOMEM, "out of memory");
    return NULL;
  }
  r->env = env;
  r->list = list;
  r->fd = fd;
  int err = uv_poll_init(loop, &r->poll, fd); /* also makes the fd non-blocking */
  if (err) {
    close(fd);
    free(r);
    throw_errno(env, -err, "uv_poll_init failed");
    return NULL;
  }
  r->js_alive = true;
  if (napi_create_reference(env, args[1], 1, &r->callback) != napi_ok || napi_create_external(env, r, finalize_reader, NULL, &out) != napi_ok) {
    if (r->callback) napi_delete_reference(env, r->callback);
    r->callback = NULL;
    r->js_alive = false;
    uv_close((uv_handle_t *)&r->poll, on_reader_closed); /* closes the fd, frees r */
    napi_throw_error(env, NULL, "cannot read");
    return NULL;
  }
  r->open = true;
  r->next = list->readers;
  if (list->readers) list->readers->prev = r;
  list->readers = r;
  uv_poll_start(&r->poll, UV_READABLE | UV_DISCONNECT, on_pipe_readable);
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
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  watches_of(env); /* now, while the addon loads: its async context belongs to no request */
  return exports;
}
