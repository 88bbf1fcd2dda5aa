# Production image: compiled JavaScript, production dependencies only, non-root.
#   docker build -t ticks .
#   docker run -p 8080:8080 -e TICKS_AUTH_HS256_SECRET=$(openssl rand -hex 32) ticks
# glibc (Debian) base on purpose: uWebSockets.js and lmdb ship prebuilt binaries for glibc, and the
# node refuses to start if uWebSockets.js fell back to its slow pure-JS implementation.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    TICKS_CONFIG=/app/config/production.json
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY config ./config
RUN mkdir -p /var/lib/ticks && chown node:node /var/lib/ticks
USER node
VOLUME /var/lib/ticks
EXPOSE 8080
# SIGTERM drains (stop accepting, finish commits, close sockets with 4000); give it time.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
  CMD node -e "fetch('http://127.0.0.1:8080/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "dist/main.js"]
