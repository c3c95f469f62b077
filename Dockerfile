# FedSAM: one image for the aggregation server and the site clients.
#   docker build -t fedsam .
#   docker run --rm fedsam --help
# Entry point: node --initial-old-space-size=64 bin/fedsam.mjs (TypeScript sources run through tsx; no build step;
# the V8 flag keeps gRPC transfers from triggering full garbage collections, see bin/fedsam.mjs).
# GPU sites run with FEDSAM_BACKEND=gpu (tfjs-node-gpu) and an NVIDIA device reservation (see docker-compose.yml).

ARG RUNTIME_BASE=node:20-bookworm-slim
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
COPY cli/package.json cli/package.json
RUN npm ci --omit=dev --no-audit --no-fund
COPY bin ./bin
COPY proto ./proto
COPY shared ./shared
COPY server ./server
COPY client ./client
COPY cli ./cli

# tfjs-node-gpu needs the CUDA 11.x runtime and cuDNN 8 at run time, which node:20-bookworm-slim lacks: for GPU
# sites build with --build-arg RUNTIME_BASE=<an image with CUDA 11.2+/cuDNN 8 and Node.js 20>. Without them the
# backend policy falls back to tfjs-node (CPU) and logs why.
FROM ${RUNTIME_BASE}
ENV NODE_ENV=production \
    FEDSAM_LOG_LEVEL=info
ENV GLIBC_TUNABLES=glibc.malloc.hugetlb=1
WORKDIR /app
COPY --from=deps /app /app
# Mount points: models (read-only), site data (read-only), run outputs (server state, site caches).
RUN mkdir -p /models /data /runs && chown node:node /runs
USER node
# gRPC, Prometheus /metrics
EXPOSE 8080 9464
ENTRYPOINT ["node", "--initial-old-space-size=64", "bin/fedsam.mjs"]
CMD ["--help"]
