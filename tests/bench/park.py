#!/usr/bin/python3
"""Park N blocking queries on N TCP connections to a Herald agent, measure the agent's memory,
then wake them all with one PUT and time the wake-up.

    park.py --addr 127.0.0.50 --port 8500 --pid AGENT_PID [-n 5000] [--key park]

Steps (every wait is bounded; any failure exits 1 with one line on stderr):
 1. PUT /v1/kv/KEY, read its X-Consul-Index I; read the agent's VmRSS/RssAnon/RssFile.
 2. Open N connections (non-blocking, at most --connect-batch connects in flight), each sending
    GET /v1/kv/KEY?index=I&wait=5m (HTTP/1.1 keep-alive).
 3. Parked means, checked on both sides: ss shows N established connections on the agent's
    port with an empty receive queue (the agent has read every request), and the client has
    received no byte on any of them, still after a settle time.
 4. Read the agent's RSS again: total and (after - before) / N per parked query.
 5. With --release-file, keep them parked until that file exists (the driving script runs
    another load meanwhile: none may be answered), then read the RSS again.
 6. PUT /v1/kv/KEY on one more connection and time until every parked query has its full
    response (status 200 with an X-Consul-Index above I); also the PUT's own latency.
Prints one JSON object on stdout. Standard library only (Debian's /usr/bin/python3).
"""
import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import time


def die(msg):
    print("park.py: " + msg, file=sys.stderr)
    sys.exit(1)


def proc_mem(pid):
    """VmRSS, RssAnon, RssFile, VmHWM in kB, and the agent's open fd count."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
                out[k] = int(v.split()[0])
    out["fds"] = len(os.listdir("/proc/%d/fd" % pid))
    return out


def ss_server_side(addr, port):
    """(established connections whose local end is addr:port, sum of their Recv-Q)."""
    out = subprocess.run(["ss", "-Htn", "state", "established", "( sport = :%d )" % port],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    n = recvq = 0
    local = "%s:%d" % (addr, port)
    for line in out.splitlines():
        f = line.split()
        # With a state filter ss omits the State column: Recv-Q Send-Q Local Peer.
        if len(f) >= 4 and f[2] == local:
            n += 1
            recvq += int(f[0])
    return n, recvq


def listen_drops():
    """TcpExt ListenDrops (SYNs dropped, e.g. at a full accept queue), host-wide."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            d = dict(zip(names.split()[1:], map(int, values.split()[1:])))
            return d.get("ListenDrops", 0)  # includes ListenOverflows
    return 0


class Resp:
    """Accumulates one HTTP/1.1 response (Content-Length framed; Herald always sends it)."""

    def __init__(self):
        self.buf = b""
        self.status = None
        self.headers = {}
        self.need = None  # total bytes once the head is parsed
        self.done_at = None

    def feed(self, data):
        self.buf += data
        if self.need is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            head = self.buf[:end].decode("latin-1").split("\r\n")
            self.status = int(head[0].split()[1])
            for h in head[1:]:
                k, _, v = h.partition(":")
                self.headers[k.strip().lower()] = v.strip()
            self.need = end + 4 + int(self.headers.get("content-length", "0"))
        return len(self.buf) >= self.need

    @property
    def body(self):
        return self.buf[self.buf.find(b"\r\n\r\n") + 4:]


def request(method, host, port, path, body=b""):
    return ("%s %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: herald-bench-park\r\n"
            "Content-Length: %d\r\n\r\n" % (method, path, host, port, len(body))).encode() + body


def simple(method, host, port, path, body=b"", timeout=10):
    """One request on a fresh blocking connection; returns the Resp."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(request(method, host, port, path, body))
        r = Resp()
        while True:
            d = s.recv(65536)
            if not d:
                die("%s %s: connection closed early" % (method, path))
            if r.feed(d):
                return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", default="127.0.0.50")
    ap.add_argument("--port", type=int, default=8500)
    ap.add_argument("--pid", type=int, required=True, help="the agent's pid (for /proc)")
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--key", default="park")
    ap.add_argument("--wait", default="5m")
    ap.add_argument("--connect-batch", type=int, default=256)
    ap.add_argument("--settle", type=float, default=2.0, help="seconds parked before RSS")
    ap.add_argument("--timeout", type=float, default=60.0, help="bound of each phase")
    ap.add_argument("--ready-file", help="created once all are parked and measured")
    ap.add_argument("--release-file",
                    help="with --ready-file: keep them parked until this file exists (another "
                         "load runs meanwhile; none may be answered), then wake them up")
    ap.add_argument("--max-hold", type=float, default=600.0, help="bound of that wait")
    a = ap.parse_args()

    host, port, n = a.addr, a.port, a.n
    r = simple("PUT", host, port, "/v1/kv/" + a.key, b"parked")
    if r.status != 200:
        die("initial PUT: status %s" % r.status)
    r = simple("GET", host, port, "/v1/kv/" + a.key)
    index = int(r.headers.get("x-consul-index", "0"))
    if r.status != 200 or index <= 0:
        die("initial GET: status %s index %s" % (r.status, index))
    n0, _ = ss_server_side(host, port)
    time.sleep(0.5)
    before = proc_mem(a.pid)

    # Phase 2: connect and send, bounded in-flight connects.
    req = request("GET", host, port, "/v1/kv/%s?index=%d&wait=%s" % (a.key, index, a.wait))
    sel = selectors.DefaultSelector()
    socks = []           # every parked socket
    resp = {}            # fd -> Resp
    connecting = 0
    opened = 0
    deadline = time.monotonic() + a.timeout
    drops0 = listen_drops()
    t_connect = time.monotonic()
    while len(socks) < n or connecting:
        while opened < n and connecting < a.connect_batch:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = s.connect_ex((host, port))
            if err not in (0, 115):  # EINPROGRESS
                die("connect #%d: %s" % (opened, os.strerror(err)))
            sel.register(s, selectors.EVENT_WRITE, "connect")
            connecting += 1
            opened += 1
        if time.monotonic() > deadline:
            die("connect phase: %d of %d connected after %.0fs" % (len(socks), n, a.timeout))
        for key, ev in sel.select(timeout=1.0):
            s = key.fileobj
            if key.data == "connect":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    die("connect: %s (after %d connected)" % (os.strerror(err), len(socks)))
                s.send(req)  # ~100 bytes into an empty send buffer: never partial
                connecting -= 1
                socks.append(s)
                resp[s.fileno()] = Resp()
                sel.modify(s, selectors.EVENT_READ, "parked")
            else:
                try:
                    d = s.recv(65536)
                except OSError as e:
                    d = ("%s" % e).encode()
                die("a parked query got %r before the wake-up PUT (%d connected; the agent's "
                    "limits.http_max_conns and http_max_conns_per_client must be above -n)"
                    % (d[:200], len(socks)))
    t_connect = time.monotonic() - t_connect
    drops = listen_drops() - drops0

    # Phase 3: parked on both sides.
    while True:
        ss_n, ss_q = ss_server_side(host, port)
        if ss_n - n0 >= n and ss_q == 0:
            break
        if time.monotonic() > deadline:
            die("not parked after %.0fs: ss established %d (expected %d), Recv-Q %d"
                % (a.timeout, ss_n - n0, n, ss_q))
        for key, ev in sel.select(timeout=0.2):
            die("a parked query was answered early: %r" % key.fileobj.recv(200))
    for key, ev in sel.select(timeout=a.settle):
        die("a parked query was answered early: %r" % key.fileobj.recv(200))
    ss_n, ss_q = ss_server_side(host, port)
    after = proc_mem(a.pid)
    if a.ready_file:
        open(a.ready_file, "w").close()
    t_hold = time.monotonic()
    if a.release_file:
        while not os.path.exists(a.release_file):
            if time.monotonic() - t_hold > a.max_hold:
                die("no %s after %.0fs" % (a.release_file, a.max_hold))
            for key, ev in sel.select(timeout=0.2):
                die("a parked query was answered during the hold: %r" % key.fileobj.recv(300))
    t_hold = time.monotonic() - t_hold
    held = proc_mem(a.pid)

    # Phase 5: wake-up.
    put = socket.create_connection((host, port), timeout=10)
    put.setblocking(False)
    put_resp = Resp()
    sel.register(put, selectors.EVENT_READ, "put")
    pending = n
    t0 = time.monotonic()
    put.send(request("PUT", host, port, "/v1/kv/" + a.key, b"woken"))
    put_ms = None
    first_ms = None
    done_times = []
    deadline = t0 + a.timeout
    while pending or put_ms is None:
        if time.monotonic() > deadline:
            die("wake-up: %d of %d still waiting after %.0fs" % (pending, n, a.timeout))
        for key, ev in sel.select(timeout=1.0):
            s = key.fileobj
            d = s.recv(65536)
            now = (time.monotonic() - t0) * 1e3
            if key.data == "put":
                if not d:
                    die("wake-up PUT: connection closed")
                if put_resp.feed(d):
                    put_ms = now
                    sel.unregister(s)
                continue
            if not d:
                die("a parked query's connection closed without a full response")
            rr = resp[s.fileno()]
            if first_ms is None:
                first_ms = now
            if rr.feed(d):
                rr.done_at = now
                done_times.append(now)
                pending -= 1
                sel.unregister(s)
    put.close()
    statuses = {}
    bad_index = 0
    bad_body = 0
    for rr in resp.values():
        statuses[rr.status] = statuses.get(rr.status, 0) + 1
        if int(rr.headers.get("x-consul-index", "0")) <= index:
            bad_index += 1
        if b'"Value":"d29rZW4="' not in rr.body:  # base64("woken")
            bad_body += 1
    done_times.sort()
    woken = proc_mem(a.pid)
    for s in socks:
        s.close()

    out = {
        "n": n,
        "parked_index": index,
        "connect_s": round(t_connect, 3),
        "listen_drops": drops,
        "ss_established": ss_n - n0,
        "ss_recvq": ss_q,
        "rss_before_kb": before["VmRSS"],
        "rss_parked_kb": after["VmRSS"],
        "rss_anon_before_kb": before["RssAnon"],
        "rss_anon_parked_kb": after["RssAnon"],
        "rss_file_parked_kb": after["RssFile"],
        "fds_before": before["fds"],
        "fds_parked": after["fds"],
        "delta_per_query_bytes": round((after["VmRSS"] - before["VmRSS"]) * 1024 / n, 1),
        "hold_s": round(t_hold, 1),
        "rss_held_kb": held["VmRSS"],
        "rss_after_wake_kb": woken["VmRSS"],
        "hwm_kb": woken["VmHWM"],
        "put_status": put_resp.status,
        "put_ms": round(put_ms, 2),
        "wake_first_ms": round(first_ms, 2),
        "wake_p50_ms": round(done_times[len(done_times) // 2], 2),
        "wake_all_ms": round(done_times[-1], 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "bad_index": bad_index,
        "bad_body": bad_body,
    }
    print(json.dumps(out))
    ok = (statuses == {200: n} and not bad_index and not bad_body and put_resp.status == 200)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
