#!/usr/bin/env bash
# The native spawner under valgrind memcheck: no definite/indirect leak, no invalid access.
#   bench/native-valgrind.sh [spawns=300]
# 1. execd-spawn-helper (native/helper.c) under valgrind, driven by a spawn loop of every kind
#    of request: plain, stdin pipe, merged stderr, failures (ENOENT, ENOEXEC, E2BIG, bad cwd),
#    run-as (when root). valgrind runs a CLONE_VM|CLONE_VFORK clone as a fork, so under it a
#    failed exec looks like a child exiting 127: the loop checks memory, not errnos.
# 2. node itself under valgrind running the same loop through the execd_spawn addon
#    (native/channel.c: reply channel, SCM_RIGHTS, pidfd watchers, wait4); only records with
#    a frame in the addon count (V8 and Node have their own, not ours to judge).
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
import { createRequire } from 'node:module';
const require = createRequire('$ROOT/');
const addon = require('$ROOT/$BUILD/execd_spawn.node');
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
];
const pending = new Map();
let ending = false;
const [helperFd, channel] = addon.openChannel((type, id, pid, err, f0, f1, f2) => {
  for (const fd of [f0, f1, f2]) if (fd >= 0) closeSync(fd); // the child sees EOF / EPIPE
  const done = pending.get(id);
  pending.delete(id);
  if (type === 1) addon.watch(pid, () => done('spawned'));
  else if (type === 2) {
    if (pid > 0) addon.watch(pid, () => {});
    done('failed');
  } else if (!ending) {
    console.error('helper channel closed early', err);
    process.exit(1);
  }
});
const [cmd, ...args] = JSON.parse(process.env.HELPER_CMD);
const helper = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'inherit', helperFd], env: {}, detached: true });
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
console.log(\`  \${N} requests: \${counts.spawned} spawned, \${counts.failed} refused; helper exit \${code}; watched left \${addon.watching()}\`);
EOF

# encodeRequest is TypeScript: compile that one module to plain JS with the esbuild that tsx ships.
node -e "
  const { buildSync } = require('$ROOT/node_modules/esbuild');
  buildSync({ entryPoints: ['$ROOT/src/services/runner/native-helper.ts'], outfile: '$WORK/native-helper.mjs', format: 'esm', platform: 'node', bundle: true, define: { 'import.meta.url': JSON.stringify('file://$ROOT/src/services/runner/native-helper.ts') } });
"
export ENCODER="$WORK/native-helper.mjs"

VG=(valgrind --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --track-origins=yes)
status=0

echo "== 1. execd-spawn-helper under valgrind, $N spawns"
HELPER_CMD=$(printf '["valgrind","--leak-check=full","--show-leak-kinds=definite,indirect","--errors-for-leak-kinds=definite,indirect","--track-origins=yes","--error-exitcode=99","--log-file=%s","%s"]' "$WORK/helper.log" "$ROOT/$BUILD/execd-spawn-helper")
HELPER_CMD=$HELPER_CMD node "$WORK/loop.mjs" "$N"
grep -E "ERROR SUMMARY|definitely lost|indirectly lost|in use at exit|All heap blocks" "$WORK/helper.log" | sed 's/^==[0-9]*== /  /'
if ! grep -q "ERROR SUMMARY: 0 errors" "$WORK/helper.log"; then status=1; sed 's/^/    /' "$WORK/helper.log" | tail -60; fi

M=$(( N / 3 > 50 ? N / 3 : 50 ))
echo "== 2. node under valgrind running the addon, $M spawns"
HELPER_CMD=$(printf '["%s"]' "$ROOT/$BUILD/execd-spawn-helper") \
  "${VG[@]}" --log-file="$WORK/addon.log" node "$WORK/loop.mjs" "$M" || true
# Records (blocks separated by blank lines) that name the addon.
ours=$(awk -v RS= '/execd_spawn|channel\.c/' "$WORK/addon.log")
grep -E "ERROR SUMMARY|definitely lost|indirectly lost" "$WORK/addon.log" | sed 's/^==[0-9]*== /  node total: /'
if [ -n "$ours" ]; then
  status=1
  echo "  records in the addon:"
  printf '%s\n' "$ours" | sed 's/^/    /'
else
  echo "  records with a frame in the addon (execd_spawn.node / channel.c): 0"
fi
exit $status
