# roomcast: one image with the broker, the gateway, the CLI and the demo page.
#
#   docker build -t roomcast .
#   docker run -p 8080:8080 roomcast                     # a gateway (the default command)
#   docker run roomcast roomcast-broker                  # the broker
#   docker-compose up                                    # the whole system (docker-compose.yml)
#
# It builds from debian:bookworm and Debian's packages alone (the lb service's
# nginx too: deploy/Dockerfile.lb), so a machine that reaches only Debian's
# mirrors builds it.
#
# The HEALTHCHECK below is the gateway's (GET /healthz on 127.0.0.1:8080, the
# image's ROOMCAST_LISTEN). Other commands override it: the broker service in
# docker-compose.yml checks the broker with `roomcast stats`, and the demo
# publisher disables it.

# --- build: the normal CMake build, with the packages scripts/install-deps names;
# ROOMCAST_TESTS=OFF: the tests and the benchmark are not configured (they need
# Python 3 and cmocka, and .dockerignore leaves tests/ and bench/ out)
FROM debian:bookworm AS build
COPY scripts/install-deps /src/scripts/install-deps
RUN /src/scripts/install-deps build && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN cmake -S /src -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DROOMCAST_WERROR=ON -DROOMCAST_TESTS=OFF \
 && cmake --build /build -j "$(nproc)" --target roomcast-broker roomcast-gateway roomcast \
 && strip /build/broker/roomcast-broker /build/gateway/roomcast-gateway /build/tools/roomcast

# --- runtime: the shared libraries, curl for the health check, the binaries
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        libuv1 libnng1 libjson-c5 libhttp-parser2.9 liburing2 libcjose0 libnats3.4 curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --user-group --uid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin roomcast \
 && install -d -o roomcast -g roomcast /var/lib/roomcast
COPY --from=build /build/broker/roomcast-broker /build/gateway/roomcast-gateway /build/tools/roomcast /usr/local/bin/
COPY scripts/demo-publisher /usr/local/bin/roomcast-demo-publisher
COPY web/ /usr/share/roomcast/web/

# a gateway by default: every interface (inside the container) and the demo page;
# the broker reads none of these (its addresses are ROOMCAST_BUS / ROOMCAST_API)
ENV ROOMCAST_LISTEN=0.0.0.0:8080 \
    ROOMCAST_STATIC_DIR=/usr/share/roomcast/web
USER roomcast:roomcast
EXPOSE 8080 7410 7411 7412
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8080/healthz || exit 1
CMD ["roomcast-gateway"]
