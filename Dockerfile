# One image for every MaaS service; compose and the Kubernetes manifests pick the entry point
# (dist/registry/main.js, dist/inference/main.js, dist/gateway/main.js; the CLI is dist/cli/main.js).
# Stage 1: compile the TypeScript ahead of time (tools/build.cjs, esbuild: a dev dependency).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.base.json tsconfig.json ./
COPY tools ./tools
COPY proto ./proto
COPY libs ./libs
COPY apps ./apps
RUN node tools/build.cjs

# Stage 2: production dependencies only (.npmrc runs no install script, so onnxruntime-node's GPU
# download never starts), without onnxruntime's macOS, Windows and other-architecture builds.
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
COPY tools/slim-node-modules.cjs ./tools/
RUN npm ci --omit=dev --no-audit --no-fund && node tools/slim-node-modules.cjs node_modules

# Stage 3: compiled code and production dependencies, run as plain node by the unprivileged node user.
FROM node:20-bookworm-slim AS runtime
WORKDIR /app
# jemalloc for the relaying gateway (compose and the manifests preload it there), linked at one path on every architecture.
RUN apt-get update && apt-get install -y --no-install-recommends libjemalloc2 && rm -rf /var/lib/apt/lists/* \
  && ln -s "$(ls /usr/lib/*-linux-gnu/libjemalloc.so.2)" /usr/local/lib/libjemalloc.so.2
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
RUN mkdir -p /data /cache && chown node:node /data /cache
USER node
ENTRYPOINT ["node"]
CMD ["dist/gateway/main.js"]
