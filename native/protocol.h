/* What execd-spawn-helper and the execd_spawn addon say to each other (see helper.c). */
#ifndef EXECD_SPAWN_PROTOCOL_H
#define EXECD_SPAWN_PROTOCOL_H
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
#define REQ_HEADER_WORDS 6u

/* Replies (helper -> server), one `struct reply` per SOCK_SEQPACKET packet. */
#define REPLY_SPAWNED 1u /* id, pid; SCM_RIGHTS: [stdin writer], stdout reader, [stderr reader] */
#define REPLY_FAILED 2u  /* id, err; pid > 0 when a child was created and died before exec (the server reaps it) */

struct reply {
  uint32_t type;
  uint32_t id;
  int32_t pid;
  int32_t err;
  uint32_t nfds;
  uint32_t reserved;
};

#endif
