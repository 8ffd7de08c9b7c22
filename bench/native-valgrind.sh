#!/usr/bin/env bash
# The native spawner's C code under memory checkers: no definite/indirect leak, no invalid access.
#   bench/native-valgrind.sh [spawns=300]
# 1. execd-spawn-helper (native/helper.c) under valgrind memcheck --leak-check=full, driven by a
#    spawn loop of every kind of request: plain, stdin pipe, merged stderr, failures (ENOENT,
#    ENOEXEC, E2BIG, bad cwd), run-as (when root), a pseudo-terminal (also run-as). valgrind runs a CLONE_VM|CLONE_VFORK clone as
#    a fork, so under it a failed exec looks like a child exiting 127 (and valgrind's copy of the
#    child says "EXEC FAILED"): this loop checks memory, the tests check errnos.
# 2. The execd_spawn addon (native/channel.c: reply channel, SCM_RIGHTS, the epoll set, pidfd watchers, wait4, spawnHelper,
#    output pipe readers) inside node, running the same loop. valgrind 3.19 has no pidfd_open (ENOSYS), so the addon
#    is rebuilt with AddressSanitizer + LeakSanitizer + UBSan and node runs with libasan
#    preloaded; only reports with a frame in the addon count (Node's own exit-time
#    allocations are not ours to judge). With a valgrind that knows pidfd_open, set
#    ADDON_CHECK=valgrind to run node under valgrind instead.
# Exit status 0 when both are clean; the summaries are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${1:-300}
BUILD=native/build/Release
command -v valgrind >/dev/null || { echo "valgrind is not installed"; exit 2; }
[ -x "$BUILD/execd-spawn-helper" ] && [ -f "$BUILD/execd_spawn.node" ] || { echo "native spawner not built: npm run native:build"; exit 2; }

WORK=$(mktemp -d /tmp/execd-valgrind.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
printf 'echo hi\n' > "$WORK/no-shebang"
chmod +x "$WORK/no-shebang"

# The loop: N requests through the real protocol (encodeRequest from native-helper.ts),
# at most 8 in flight; `HELPER_CMD` (JSON argv) says how to start the helper.
cat > "$WORK/loop.mjs" <<EOF
import { spawn } from 'node:child_process';
import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import { createRequire } from 'node:module';
const require = createRequire('$ROOT/');
const addon = require(process.env.ADDON);
const { encodeRequest } = await import(process.env.ENCODER);
const N = Number(process.argv[2]);
const root = process.getuid() === 0;
const kinds = [
  { file: '/bin/true', argv: ['true'] },
  { file: '/bin/cat', argv: ['cat'], stdinPipe: true },
  { file: '/bin/sh', argv: ['sh', '-c', 'echo out; echo err >&2'], mergeStderr: true },
  { file: '/bin/sh', argv: ['sh', '-c', 'echo out; echo err >&2'] },
  { file: '/nonexistent/program', argv: ['x'] },
  { file: '$WORK/no-shebang', argv: ['x'] },
  { file: '/bin/echo', argv: ['echo', 'x'.repeat(200 * 1024)] },
  { file: '/bin/true', argv: ['true'], cwd: '/nonexistent-dir' },
  ...(root ? [{ file: '/usr/bin/id', argv: ['id'], uid: 65534, gid: 65534 }] : []),
  // a pseudo-terminal (REQ_TTY): SPAWNED carries the master's writer (closed here, as a stdin pipe) and reader (read to EIO)
  { file: '/bin/sh', argv: ['sh', '-c', 'stty size; test -t 0 && echo tty'], tty: { cols: 100, rows: 30 }, stdinPipe: true },
  ...(root ? [{ file: '/usr/bin/tty', argv: ['tty'], tty: { cols: 80, rows: 24 }, stdinPipe: true, uid: 65534, gid: 65534 }] : []),
];
const pending = new Map();
let ending = false;
let bytes = 0;
const readers = new Set();
// The protocol (native/protocol.h): the child reports SPAWNED and waits for our go (SIGUSR1) before its exec;
// the helper then says EXECED or EXEC_FAILED. Under valgrind the clone is a fork, so the helper cannot see
// its child's report and answers FAILED for it too: a FAILED after a SPAWNED is ignored (and a SPAWNED
// after a FAILED is killed): this loop checks memory, the tests check the protocol.
const spawnedIds = new Set();
let [helperFd, channel] = addon.openChannel((type, id, pid, err, f0, f1, f2) => {
  const done = pending.get(id);
  if (type === 1) {
    // [stdin writer], stdout reader, [stderr reader]: stdin is closed (the child sees EOF), the
    // output is read with readPipe; every 4th run stops its readers at once (closePipe, twice).
    // A reader is held until it reports null: one that JS drops may be finished by its finalizer.
    const fds = [f0, f1, f2].filter((fd) => fd >= 0);
    if (!done) {
      for (const fd of fds) closeSync(fd);
      addon.kill(pid, 9);
      return;
    }
    pending.delete(id);
    spawnedIds.add(id);
    const k = kinds[(id - 1) % kinds.length];
    if (k.stdinPipe) closeSync(fds.shift());
    let left = fds.length + 1;
    const end = () => { if (--left === 0) done('spawned'); };
    for (const fd of fds) {
      const reader = addon.readPipe(fd, (chunk) => {
        if (chunk !== null) bytes += chunk.length;
        else { readers.delete(reader); end(); }
      });
      readers.add(reader);
      if (id % 4 === 0) { addon.closePipe(reader); addon.closePipe(reader); readers.delete(reader); end(); }
    }
    addon.watch(pid, end);
    addon.kill(pid, 10); // go
    return;
  }
  for (const fd of [f0, f1, f2]) if (fd >= 0) closeSync(fd);
  if (type === 2) {
    if (spawnedIds.has(id) || !done) return;
    pending.delete(id);
    if (pid > 0) addon.watch(pid, () => {});
    done('failed');
  } else if (type === 3 || type === 4) {
    // the exec's outcome; the exit watcher settles the run
  } else if (!ending) {
    console.error('helper channel closed early', err);
    process.exit(1);
  }
});
const [cmd, ...args] = JSON.parse(process.env.HELPER_CMD);
// Under valgrind (1.) the helper is started by child_process; else (2.) by the addon, as execd does.
let helper;
if (args.length > 0) helper = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'inherit', helperFd], env: {}, detached: true });
else {
  const [pid, requestFd] = addon.spawnHelper(cmd, helperFd);
  const exit = new Promise((r) => addon.watch(pid, (code) => r([code]), false));
  helper = { stdin: new Socket({ fd: requestFd, readable: false, writable: true }), once: (_e, cb) => exit.then((a) => cb(...a)) };
}
closeSync(helperFd);
const counts = { spawned: 0, failed: 0 };
let next = 0;
const one = (i) =>
  new Promise((resolve) => {
    const k = kinds[i % kinds.length];
    pending.set(i + 1, (what) => { counts[what]++; resolve(); });
    helper.stdin.write(encodeRequest(i + 1, { cwd: '/', env: { PATH: '/usr/bin:/bin' }, stdinPipe: false, mergeStderr: false, ...k }));
  });
await Promise.all(Array.from({ length: 8 }, async () => { while (next < N) await one(next++); }));
ending = true;
helper.stdin.end();
const [code] = await new Promise((r) => helper.once('exit', (...a) => r(a)));
while (addon.watching() > 0) await new Promise((r) => setTimeout(r, 20));
addon.closeChannel(channel);
// Let the channel's external be collected so its finalizer runs (and Node frees its bookkeeping).
channel = null;
for (let i = 0; i < 3; i++) {
  globalThis.gc?.();
  await new Promise((r) => setTimeout(r, 20));
}
console.log(\`  \${N} requests: \${counts.spawned} spawned, \${counts.failed} refused, \${bytes} bytes of output read; helper exit \${code}; watched left \${addon.watching()}\`);
EOF

# encodeRequest is TypeScript: compile that one module to plain JS with the esbuild that tsx ships.
node -e "
  const { buildSync } = require('$ROOT/node_modules/esbuild');
  buildSync({ entryPoints: ['$ROOT/src/runner/native-helper.ts'], outfile: '$WORK/native-helper.mjs', format: 'esm', platform: 'node', bundle: true, define: { 'import.meta.url': JSON.stringify('file://$ROOT/src/runner/native-helper.ts') } });
"
export ENCODER="$WORK/native-helper.mjs"

VG=(valgrind --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --track-origins=yes --error-exitcode=99)
status=0

echo "== 1. execd-spawn-helper under valgrind, $N spawns"
HELPER_CMD=$(printf '["valgrind","--child-silent-after-fork=yes","--leak-check=full","--show-leak-kinds=definite,indirect","--errors-for-leak-kinds=definite,indirect","--track-origins=yes","--error-exitcode=99","--log-file=%s","%s"]' "$WORK/helper.log" "$ROOT/$BUILD/execd-spawn-helper")
HELPER_CMD=$HELPER_CMD ADDON="$ROOT/$BUILD/execd_spawn.node" node "$WORK/loop.mjs" "$N"
grep -E "ERROR SUMMARY|definitely lost|indirectly lost|in use at exit|All heap blocks" "$WORK/helper.log" | sed 's/^==[0-9]*== /  /'
if ! grep -q "ERROR SUMMARY: 0 errors" "$WORK/helper.log"; then status=1; sed 's/^/    /' "$WORK/helper.log" | tail -60; fi

echo "== 2. the addon inside node, $N spawns (${ADDON_CHECK:-asan})"
HELPER_CMD=$(printf '["%s"]' "$ROOT/$BUILD/execd-spawn-helper")
export HELPER_CMD
if [ "${ADDON_CHECK:-asan}" = valgrind ]; then
  ADDON="$ROOT/$BUILD/execd_spawn.node" "${VG[@]}" --log-file="$WORK/addon.log" node --expose-gc "$WORK/loop.mjs" "$N" || status=1
  grep -E "ERROR SUMMARY|definitely lost|indirectly lost" "$WORK/addon.log" | sed 's/^==[0-9]*== /  node total: /'
  ours=$(awk -v RS= '/execd_spawn|channel\.c/' "$WORK/addon.log")
else
  NODEDIR=$(dirname "$(dirname "$(command -v node)")")
  gcc -std=gnu11 -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
    -shared -fPIC -I"$NODEDIR/include/node" native/channel.c -o "$WORK/execd_spawn.node"
  LIBASAN=$(gcc -print-file-name=libasan.so)
  ADDON="$WORK/execd_spawn.node" LD_PRELOAD="$LIBASAN" \
    ASAN_OPTIONS="detect_leaks=1:log_path=$WORK/asan:exitcode=0" UBSAN_OPTIONS="print_stacktrace=1:log_path=$WORK/asan" \
    node --expose-gc "$WORK/loop.mjs" "$N" || status=1
  cat "$WORK"/asan.* > "$WORK/addon.log" 2>/dev/null || : > "$WORK/addon.log"
  echo "  sanitizer reports in total: $(grep -c '^==[0-9]*==ERROR\|runtime error' "$WORK/addon.log" || true) (leaks reported: $(grep -c '^Direct leak\|^Indirect leak' "$WORK/addon.log" || true))"
  # A report is ours when one of its frames is in the addon.
  ours=$(awk -v RS= '/channel\.c|execd_spawn/' "$WORK/addon.log")
fi
if [ -n "$ours" ]; then
  status=1
  echo "  reports in the addon:"
  printf '%s\n' "$ours" | sed 's/^/    /' | head -80
else
  echo "  reports with a frame in the addon (channel.c): 0"
fi
exit $status
