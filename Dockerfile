# syntax=docker/dockerfile:1.7
# One image for both parts: `agent start` (default) or `integration-proxy start`.
# Build:  docker build --build-arg VERSION=$(node -p "require('./package.json').version") -t outpost:dev .
ARG NODE_VERSION=26

# ---- build: full toolchain (better-sqlite3 compiles from source when no prebuilt binary fits)
FROM node:${NODE_VERSION}-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.image.json ./
COPY types ./types
COPY lib ./lib
COPY bin ./bin
COPY scripts/bundle-agent.mjs ./scripts/
# Only lib/ and bin/ (tsconfig.image.json); benchmarks and test fixtures stay out of the image.
# bin/agent runs the bundled agent (dist/agent/, scripts/bundle-agent.mjs; esbuild is a dev dependency).
RUN npx tsc -p tsconfig.image.json \
 && node scripts/bundle-agent.mjs \
 && npm prune --omit=dev --no-audit --no-fund

# ---- runtime: slim, production dependencies only, non-root
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="outpost" \
      org.opencontainers.image.description="Outpost on-premise integration agent and reference integration-proxy" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://example.invalid/outpost" \
      org.opencontainers.image.licenses="UNLICENSED"
# tini is PID 1: it forwards SIGTERM to node and reaps children, so drain runs on `docker stop`/pod deletion.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    AGENT_HEALTH_PORT=8080 \
    PROXY_HOST=0.0.0.0 \
    PROXY_STORE=sqlite:/data/proxy.db
WORKDIR /app
COPY --from=build --chown=root:root /src/package.json ./
COPY --from=build --chown=root:root /src/node_modules ./node_modules
COPY --from=build --chown=root:root /src/dist ./dist
COPY --from=build --chown=root:root /src/bin/agent /src/bin/integration-proxy ./bin/
COPY --chown=root:root config ./config
# The code is root-owned and read-only to the runtime user; only /data (proxy's SQLite) is writable.
RUN mkdir -p /data && chown node:node /data && chmod 0555 bin/agent bin/integration-proxy \
 && ln -s /app/bin/agent /usr/local/bin/agent \
 && ln -s /app/bin/integration-proxy /usr/local/bin/integration-proxy
USER node
VOLUME ["/data"]
EXPOSE 8080 8443
# Checks the agent's /healthz by default; a proxy container sets HEALTHCHECK_URL=https://127.0.0.1:8443/healthz.
# (Kubernetes ignores HEALTHCHECK and uses the probes in deploy/kubernetes.)
ENV HEALTHCHECK_URL=http://127.0.0.1:8080/healthz
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD node -e "const u=new URL(process.env.HEALTHCHECK_URL);require(u.protocol.slice(0,-1)).get(u,{rejectUnauthorized:false,timeout:4000},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["agent", "start"]
