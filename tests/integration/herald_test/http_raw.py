"""Raw HTTP: bytes in, bytes out, for requests urllib would refuse to send."""
import socket
import time


def raw_http(addr, data, timeout=5, port=8500, total=60):
    """Sends raw bytes and returns everything the server answers until it closes (or until
    `timeout` seconds pass without a byte). A server still sending after `total` seconds
    fails the test."""
    s = socket.create_connection((addr, port), timeout=timeout)
    deadline = time.time() + total
    try:
        s.sendall(data)
        out = b""
        while True:
            if time.time() > deadline:
                raise AssertionError("%s:%d still sending after %ss (%d bytes)"
                                     % (addr, port, total, len(out)))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()
