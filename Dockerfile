# Herald in a container: built on Debian bookworm, run as a single server.
#
#   docker build -t herald .
#   docker run -d --name herald -p 8500:8500 -p 8600:8600/udp -p 8600:8600/tcp \
#       -v herald-data:/var/lib/herald herald
#
# Arguments after the image name replace the default command (see CMD), e.g.
#   docker run ... herald agent -server -bootstrap-expect 1 -data-dir /var/lib/herald \
#       -client 0.0.0.0 -recursor 10.0.0.2

FROM debian:bookworm AS build
WORKDIR /src
# The build packages only; libraft >= 0.17 comes from bookworm-backports (see scripts/deps.sh).
COPY scripts/deps.sh scripts/deps.sh
RUN HERALD_DEPS=build bash scripts/deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN make clean && make -j"$(nproc)" build/herald

FROM debian:bookworm-slim
COPY --from=build /etc/apt/sources.list.d/ /etc/apt/sources.list.d/
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libuv1 liblmdb0 libjansson4 libldns3 libunbound8 libnettle8 libmsgpackc2 dns-root-data ca-certificates \
    && apt-get install -y --no-install-recommends -t bookworm-backports libraft0 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/herald --shell /usr/sbin/nologin herald \
    && install -d -o herald -g herald -m 700 /var/lib/herald
COPY --from=build /src/build/herald /usr/local/bin/herald
USER herald
VOLUME /var/lib/herald
# HTTP API, DNS (UDP and TCP), Raft and server RPC
EXPOSE 8500 8600/udp 8600/tcp 8300 8301/udp 8301/tcp
# SIGTERM stops the agent gracefully (docker stop).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/herald"]
CMD ["agent", "-server", "-bootstrap-expect", "1", "-data-dir", "/var/lib/herald", \
     "-client", "0.0.0.0", "-node", "herald"]
