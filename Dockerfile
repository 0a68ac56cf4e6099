# docker-exporter container image.
#
#   docker build -t docker-exporter .
#   docker build --build-arg NODE_IMAGE=node:20-bookworm-slim -t docker-exporter .
#
# NODE_IMAGE is any image with node >= 20 and npm in PATH and a /bin/sh (the official node images,
# alpine or Debian based). Where no registry can be reached, scripts/node-base-image.sh makes a
# local one from this machine's Node.js.
#
# No `# syntax=` line on purpose: it would make BuildKit fetch a frontend image from a registry.
ARG NODE_IMAGE=node:20-alpine

# Compiles TypeScript with the dev dependencies, then drops them: only dist/ and the production
# node_modules leave this stage. One `npm ci` instead of a second one for production: the registry
# is asked once.
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: neither compiling nor running needs an install script (ssh2's and
# cpu-features' optional native add-ons, esbuild's binary check), and skipping them keeps
# compilers out of the picture.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/write-revision.mjs ./scripts/
COPY src ./src
# The build context has no .git: pass the commit with --build-arg REVISION=$(git rev-parse --short=12 HEAD).
ARG REVISION=""
RUN REVISION="$REVISION" npm run build && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${NODE_IMAGE}
LABEL org.opencontainers.image.title="docker-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Docker hosts" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /app
ENV NODE_ENV=production
# Owned by root, readable by all: the exporter can read its code but not change it, and the
# container runs with --read-only.
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
COPY deploy/container/healthcheck.mjs ./
# nobody:nogroup, present in every base image; numeric so that Kubernetes' runAsNonRoot can check
# it. Reading the engine's socket takes its group: `docker run --group-add <gid of the socket>`.
USER 65534:65534
EXPOSE 9764
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
  CMD ["node", "/app/healthcheck.mjs"]
# A young generation of at most 2 MB per semi-space: V8 grows it to 16 MB under a scrape's
# allocations and keeps it, ~30 MB of resident memory for no gain (see the README, "Memory").
ENTRYPOINT ["node", "--max-semi-space-size=2", "dist/cli.js"]
