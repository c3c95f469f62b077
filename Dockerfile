# FedSAM: one image for the aggregation server, the site clients and the one-shot data service.
#   docker build -t fedsam .
#   docker run --rm fedsam --help
# Entry point: node --initial-old-space-size=64 bin/fedsam.mjs (TypeScript sources run through tsx; no build step;
# the V8 flag keeps gRPC transfers from triggering full garbage collections, see bin/fedsam.mjs).
#
# BASE_IMAGE: any Debian-based image with Node.js 20 and npm and a user "node" (uid 1000). The default comes from
# Docker Hub; without Docker Hub, make one from Debian's packages and the npm registry with docker/base-image.sh and
# pass it: --build-arg BASE_IMAGE=fedsam-base:node20.20.2 (docker-compose: FEDSAM_BASE_IMAGE=...).
# BUILD_TOOLS=1 installs python3/make/g++ with apt for native addons that fall back to a source build (tfjs-node-gpu
# without a prebuilt binary); the CPU image needs none (sharp and xxhash ship prebuilt binaries).
# GPU sites: see docker-compose.gpu.yml and RUNTIME_BASE below.

ARG BASE_IMAGE=node:20-bookworm-slim
ARG RUNTIME_BASE=${BASE_IMAGE}
FROM ${BASE_IMAGE} AS deps
LABEL org.fedsam.image=1
ARG BUILD_TOOLS=0
RUN if [ "$BUILD_TOOLS" = 1 ]; then \
      apt-get update && apt-get install -y --no-install-recommends ca-certificates python3 make g++ \
      && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /app
# Manifests first: the dependency layer is rebuilt only when they change.
COPY package.json package-lock.json ./
COPY shared/package.json shared/package.json
COPY server/package.json server/package.json
COPY client/package.json client/package.json
COPY cli/package.json cli/package.json
# onnxruntime-node's install script would fetch its CUDA provider from outside the npm registry: skip it (.npmrc).
ENV ONNXRUNTIME_NODE_INSTALL=skip
# Source maps are 200 of the 360 MB of node_modules (tfjs ships one per bundle); nothing here reads them.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force \
 && find node_modules -type f \( -name '*.map' -o -name '*.min.js.html' \) -delete
COPY bin ./bin
COPY proto ./proto
COPY shared ./shared
COPY server ./server
COPY client ./client
COPY cli ./cli

# tfjs-node-gpu needs the CUDA 11.x runtime and cuDNN 8 at run time, which node:20-bookworm-slim lacks: for GPU
# sites build with --build-arg RUNTIME_BASE=<an image with CUDA 11.2+/cuDNN 8, Node.js 20 and a user "node">.
# Without them the backend policy falls back to tfjs-node or wasm (CPU) and logs why.
FROM ${RUNTIME_BASE}
LABEL org.fedsam.image=1
# daemons in containers log one JSON object per line (FEDSAM_LOG_FORMAT=pretty for lines for people)
ENV NODE_ENV=production \
    FEDSAM_LOG_LEVEL=info \
    FEDSAM_LOG_FORMAT=json \
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1
WORKDIR /app
COPY --from=deps /app /app
# Mount points: models (read-only), site data (written once by the synth service, then read-only), run outputs
# (server state, site caches), site state (each site's optimizer across rounds). Owned by "node", so that new named
# volumes mounted there are too.
RUN mkdir -p /models /data /runs /sites && chown node:node /data /runs /sites
USER node
# gRPC, Prometheus /metrics
EXPOSE 8080 9464
ENTRYPOINT ["node", "--initial-old-space-size=64", "bin/fedsam.mjs"]
CMD ["--help"]
