# FedSAM: one image for the aggregation server and the site clients.
#   docker build -t fedsam .
#   docker run --rm fedsam --help
# Entry point: node bin/fedsam.mjs (TypeScript sources run through tsx; no build step).
# GPU sites run with FEDSAM_BACKEND=gpu (tfjs-node-gpu) and an NVIDIA device reservation (see docker-compose.yml).

FROM node:20-bookworm-slim AS deps
# Native addons (tfjs-node, tfjs-node-gpu) fall back to a source build when no prebuilt binary fits.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Manifests first: the dependency layer is rebuilt only when they change.
COPY package.json package-lock.json ./
COPY shared/package.json shared/package.json
COPY server/package.json server/package.json
COPY client/package.json client/package.json
RUN npm ci --omit=dev --no-audit --no-fund
COPY bin ./bin
COPY proto ./proto
COPY shared ./shared
COPY server ./server
COPY client ./client

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    FEDSAM_LOG_LEVEL=info
WORKDIR /app
COPY --from=deps /app /app
# Mount points: models (read-only), site data (read-only), run outputs (server state, site caches).
RUN mkdir -p /models /data /runs && chown node:node /runs
USER node
# gRPC, Prometheus /metrics
EXPOSE 8080 9464
ENTRYPOINT ["node", "bin/fedsam.mjs"]
CMD ["--help"]
