# syntax=docker/dockerfile:1
#
# execd in a container (docs/operations.md#docker):
#
#   docker build -t execd .
#   docker run -d --name execd -p 8080:8080 -e EXECD_TOKEN="$(openssl rand -hex 24)" execd
#
# It listens on 0.0.0.0, which execd refuses without a token: give EXECD_TOKEN
# (or mount a tokens file and set EXECD_TOKENS_FILE). tini is PID 1: it passes
# SIGTERM to execd only (execd stops the jobs itself) and reaps the
# grandchildren that jobs leave behind, which Node as PID 1 never would.

# Node 24 ("Krypton"), the newest LTS line (Node 26 is Current, not LTS: its binaries report no LTS name); execd supports Node 22 and later.
ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: dev dependencies, TypeScript -> dist/, the native spawn helper ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# node-gyp's toolchain for native/ (the posix_spawn-style helper and its addon).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# the linter's package (a dev dependency, file:tools/lint): npm ci needs its package.json
COPY tools/lint/package.json ./tools/lint/
COPY native ./native
# npm ci runs the package's install script (node native/build.mjs): here the addon must build.
RUN EXECD_NATIVE_BUILD=required npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# npm run build bundles the server into dist/main.js and its chunks (scripts/bundle-server.mjs), and the dashboard
# (docs/ui.md) ui/ into dist/ui, both with esbuild
COPY ui ./ui
COPY scripts/build-ui.mjs scripts/bundle-server.mjs ./scripts/
RUN npm run build \
 && rm -rf native/build/Release/obj.target native/build/Release/.deps

# ---- runtime: production dependencies only, a non-root user, tini as PID 1 ----
FROM ${NODE_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --create-home --home-dir /home/execd --shell /usr/sbin/nologin execd \
 && install -d -m 0700 -o execd -g execd /var/lib/execd
WORKDIR /app
# MALLOC_ARENA_MAX=2: glibc's malloc keeps two arenas instead of one per thread (8 per core), which V8's and
# libuv's threads fragmented: RSS after 20,000 jobs 87.6 → 82.0 MiB, the same CPU per run (docs/benchmarks.md).
ENV NODE_ENV=production \
    MALLOC_ARENA_MAX=2
COPY package.json package-lock.json ./
# --ignore-scripts: the native helper comes built from the build stage (no compiler here).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY --from=build /app/native/build/Release ./native/build/Release

# Reachable from outside the container: execd then requires a token (EXECD_TOKEN or EXECD_TOKENS_FILE).
# The shutdown fits `docker stop`'s default 10 s: SIGTERM to jobs at 5 s, SIGKILL at 7 s, hard exit at 9 s.
# EXECD_DATA_DIR: execd's own 0700 directory (a volume mounted there keeps this owner and mode when the
# volume is new); each instance's output files in /var/lib/execd/<instance id>/, the recovery records in
# /var/lib/execd/instances, so a restarted container removes what a crashed run left there.
ENV EXECD_HOST=0.0.0.0 \
    EXECD_PORT=8080 \
    EXECD_DATA_DIR=/var/lib/execd \
    EXECD_SHUTDOWN_GRACE_MS=7000 \
    EXECD_SHUTDOWN_TIMEOUT_MS=9000
EXPOSE 8080
USER execd
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.EXECD_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/main.js"]
