"""Bare-socket "ceiling" server: the fastest a Python-threads server can go.

One thread per connection, ``recv`` whatever arrives and answer with a canned
HTTP/1.1 response.  There is no request parsing at all; the only look at the
bytes is a substring test for ``Connection: close`` so that the
Connection-close benchmark measures the same thing for every server.

Usage: python ceiling.py PORT
"""

import socket
import sys
import threading

BODY = b"Hello, World!\n"
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" % len(BODY)
KEEP_ALIVE = HEAD + b"\r\n" + BODY
CLOSE = HEAD + b"Connection: close\r\n\r\n" + BODY


def handle(conn):
    with conn:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            if b"Connection: close" in data:
                conn.sendall(CLOSE)
                return
            conn.sendall(KEEP_ALIVE)


def main():
    port = int(sys.argv[1])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
