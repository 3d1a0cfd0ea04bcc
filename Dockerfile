# One image for every MaaS service; the compose file picks the entry point.
# Stage 1: production dependencies only (onnxruntime-node's CPU build is bundled;
# its GPU download step stays off through .npmrc).
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --no-audit --no-fund

# Stage 2: sources on top, run as the unprivileged node user.
FROM node:20-bookworm-slim AS runtime
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY package.json tsconfig.base.json tsconfig.json ./
COPY proto ./proto
COPY libs ./libs
COPY apps ./apps
RUN mkdir -p /data /cache && chown node:node /data /cache
USER node
ENTRYPOINT ["node", "--import", "tsx"]
CMD ["apps/gateway/src/main.ts"]
