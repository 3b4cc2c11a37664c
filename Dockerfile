# prescore: one image for every role; the command picks the role.
#   docker run IMAGE migrate | worker | scheduler | serve ... | run <job> ... | demo
# The base is a build argument so the image also builds on a base made locally (no registry):
#   docker build --build-arg BASE=<a Debian bookworm image with node 20 and npm> .
# Behind a TLS-inspecting proxy, pass its CA bundle as a build secret (never stored in the image):
#   --secret id=npm_ca,src=/etc/ssl/certs/ca-certificates.crt
ARG BASE=node:20-bookworm-slim

# tini as PID 1: it forwards SIGTERM/SIGINT to node (which drains, then exits) and reaps
# zombies. Debian's package ships a static build, copied alone so apt's lists stay behind.
FROM ${BASE} AS init
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends tini >/dev/null \
 && cp /usr/bin/tini-static /tini

# Production dependencies only. onnxruntime-node's install step would download GPU
# libraries: skipped, its CPU binaries ship in the package; those of other platforms go.
FROM ${BASE} AS deps
WORKDIR /app
ENV ONNXRUNTIME_NODE_INSTALL=skip
COPY package.json package-lock.json ./
RUN --mount=type=secret,id=npm_ca,required=false \
    if [ -f /run/secrets/npm_ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/npm_ca; fi; \
    npm ci --omit=dev --no-audit --no-fund --loglevel=error \
 && arch="$(node -p process.arch)" \
 && find node_modules/onnxruntime-node/bin -mindepth 3 -maxdepth 3 ! -path "*/linux/${arch}" -exec rm -rf {} + \
 && rm -rf /root/.npm

# The compiler and the type packages, for the build only.
FROM ${BASE} AS build
WORKDIR /app
ENV ONNXRUNTIME_NODE_INSTALL=skip
COPY package.json package-lock.json ./
RUN --mount=type=secret,id=npm_ca,required=false \
    if [ -f /run/secrets/npm_ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/npm_ca; fi; \
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
COPY tsconfig.json ./
COPY src ./src
# Declarations (.d.ts) are for the npm package, not the image.
RUN npx tsc -p tsconfig.json --sourceMap false --declaration false

FROM ${BASE}
# A fixed numeric uid, so Kubernetes' runAsNonRoot can check it without a runAsUser.
RUN groupadd --system --gid 10001 prescore \
 && useradd --system --uid 10001 --gid prescore --create-home --home-dir /home/prescore \
      --shell /usr/sbin/nologin prescore
# --max-old-space-size: V8 sizes its heap from the machine, not from the container's memory
# limit; 512 MiB of old generation fits a 1 GiB container with room for onnxruntime's native
# buffers and the inference threads (set NODE_OPTIONS to change it, e.g. half the limit).
ENV NODE_ENV=production \
    NODE_OPTIONS=--max-old-space-size=512 \
    ONNXRUNTIME_NODE_INSTALL=skip \
    PRESCORE_JOBS_DIR=/app/jobs \
    PRESCORE_HOME=/home/prescore/.prescore
WORKDIR /app
COPY --from=init /tini /usr/local/bin/tini
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY package.json ./
COPY bin ./bin
COPY migrations ./migrations
COPY jobs ./jobs
COPY deploy/healthcheck.mjs ./deploy/healthcheck.mjs
USER 10001:10001
# 8080: the read API; 9465: serve's ops port (/healthz, /readyz, /metrics); 9464: worker and
# scheduler metrics.
EXPOSE 8080 9464 9465
# Knows the role from the command line: serve answers /readyz, a worker or scheduler with
# --metrics-port answers /metrics, one-shot roles are healthy while they run. node, not curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["node", "/app/deploy/healthcheck.mjs"]
ENTRYPOINT ["/usr/local/bin/tini", "--", "node", "/app/bin/prescore.js"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--ops-port", "9465", "--ops-host", "0.0.0.0"]
