"""Tests for runserver.py: real sockets on loopback, real subprocesses for the CLI.

Run with:  python -m unittest -v test_runserver

One TestCase per area of runserver.py, in the file's reading order.  Servers
listen on port 0; tests wait on events, banner lines and responses, never on
fixed sleeps.
"""

import ast
import base64
import collections
import contextlib
import email.utils
import errno
import gc
import hashlib
import html.parser
import importlib
import importlib.util
import inspect
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import stat
import subprocess
import sys
import tempfile
import threading
import time
import types
import unittest
import unittest.mock
import urllib.parse
import urllib.request
import wsgiref.validate
import zipfile

import runserver

HERE = os.path.dirname(os.path.abspath(__file__))
RUNSERVER = os.path.join(HERE, "runserver.py")
TIMEOUT = 10          # seconds any single wait may take before the test fails


# ---- Shared helpers ---------------------------------------------------------------

class LogCapture(logging.Handler):
    """Collects the 'runserver' logger's records; tests can wait for one."""

    def __init__(self):
        super().__init__()
        self.records = []
        self.changed = threading.Condition()

    def emit(self, record):
        with self.changed:
            self.records.append(record)
            self.changed.notify_all()

    def messages(self):
        with self.changed:
            return [record.getMessage() for record in self.records]

    def clear(self):
        with self.changed:
            self.records.clear()

    def wait_for(self, pattern, timeout=TIMEOUT):
        """Return the first message matching the regex `pattern`, waiting for it."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for record in self.records:
                    message = record.getMessage()
                    if re.search(pattern, message):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("no log line matching %r in %r"
                                         % (pattern, [r.getMessage() for r in self.records]))
                self.changed.wait(remaining)


LOG = LogCapture()


def setUpModule():
    logger = logging.getLogger("runserver")
    logger.addHandler(LOG)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False


def tearDownModule():
    logging.getLogger("runserver").removeHandler(LOG)


def hello_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
    return [b"Hello world\n"]


def echo_app(environ, start_response):
    """Answers with the request body and a few environ values as headers."""
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("X-Content-Length", environ.get("CONTENT_LENGTH", "")),
                              ("X-Path", environ["PATH_INFO"].encode("latin-1").hex()),
                              ("Content-Length", str(len(body)))])
    return [body]


class ServerThread:
    """A make_server() server on 127.0.0.1:0, serving in a daemon thread."""

    def __init__(self, app, **options):
        options.setdefault("quiet", True)
        host = options.pop("host", "127.0.0.1")
        self.server = runserver.make_server(app, host, 0, **options)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.server.serving.wait(TIMEOUT)       # its threads are started: counts are stable

    def close(self):
        self.server.shutdown()
        self.server.close_idle_and_wait(2)
        self.server.server_close()
        self.thread.join(TIMEOUT)


class Response:
    """A response read off a socket: status, headers (lower-case names), body."""

    def __init__(self, status, reason, headers, body, raw_head):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body
        self.raw_head = raw_head

    def header(self, name, default=None):
        values = [value for key, value in self.headers if key == name.lower()]
        return values[0] if values else default

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.headers, self.body[:200])


class Reader:
    """Reads HTTP responses from a socket, keeping what is left for the next."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed; had %r" % self.buffer[:200])
        self.buffer += data

    def read_until(self, marker):
        while marker not in self.buffer:
            self.fill()
        data, _, self.buffer = self.buffer.partition(marker)
        return data

    def read_exactly(self, size):
        while len(self.buffer) < size:
            self.fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_to_eof(self):
        while True:
            try:
                self.fill()
            except EOFError:
                data, self.buffer = self.buffer, b""
                return data

    def response(self, method="GET"):
        head = self.read_until(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        version, status, reason = (lines[0].decode("latin-1").split(" ", 2) + [""])[:3]
        headers = []
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip().lower(), value.strip()))
        response = Response(int(status), reason, headers, b"", head)
        if response.status == 100:
            return response
        if method == "HEAD" or response.status in (204, 304) or response.status < 200:
            return response
        if response.header("transfer-encoding") == "chunked":
            parts = []
            while True:
                size = int(self.read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self.read_until(b"\r\n")
                    break
                parts.append(self.read_exactly(size))
                assert self.read_exactly(2) == b"\r\n"
            response.body = b"".join(parts)
        elif response.header("content-length") is not None:
            response.body = self.read_exactly(int(response.header("content-length")))
        else:
            response.body = self.read_to_eof()
        return response


class ServerTestCase(unittest.TestCase):
    """Base class: start servers, connect, send raw bytes, read responses."""

    def setUp(self):
        LOG.clear()

    def start_server(self, app=hello_app, **options):
        server = ServerThread(app, **options)
        self.addCleanup(server.close)
        return server

    def connect(self, server, timeout=TIMEOUT):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
        self.addCleanup(sock.close)
        return sock

    def request(self, server, raw, method="GET"):
        """Send raw bytes on a new connection and read one response."""
        sock = self.connect(server)
        sock.sendall(raw)
        return Reader(sock).response(method)

    def exchange(self, server, raw):
        """Send raw bytes on a new connection; return all bytes until the server closes."""
        sock = self.connect(server)
        sock.sendall(raw)
        return Reader(sock).read_to_eof()

    def assertClosed(self, sock):
        """The server closed the connection (EOF or reset) within TIMEOUT."""
        sock.settimeout(TIMEOUT)
        try:
            data = sock.recv(65536)
            while data:
                data = sock.recv(65536)
        except ConnectionResetError:
            pass


def get(path="/", host="127.0.0.1", extra=b""):
    return b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path.encode(), host.encode(), extra)


class CLIProcess:
    """`python PROGRAM ARGS` (runserver.py by default) in its own process group,
    stdout and stderr read in a thread; `env` adds variables (None removes one)."""

    def __init__(self, args, cwd=None, env=None, program=RUNSERVER):
        environ = dict(os.environ, PYTHONUNBUFFERED="1", NO_COLOR="1")
        environ.update(env or {})
        environ = {name: value for name, value in environ.items() if value is not None}
        self.process = subprocess.Popen(
            [sys.executable, program] + list(args), cwd=cwd, env=environ,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.lines = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in iter(self.process.stdout.readline, b""):
            with self.changed:
                self.lines.append(line.decode("utf-8", "replace").rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.lines.append(None)             # end of output
            self.changed.notify_all()

    def output(self):
        with self.changed:
            return "\n".join(line for line in self.lines if line is not None)

    def wait_for(self, pattern, timeout=TIMEOUT, start=0):
        """Wait for an output line matching `pattern`; return the match."""
        deadline = time.monotonic() + timeout
        with self.changed:
            index = start
            while True:
                while index < len(self.lines):
                    line = self.lines[index]
                    if line is None:
                        raise AssertionError("process ended without printing %r; output:\n%s"
                                             % (pattern, self.output()))
                    match = re.search(pattern, line)
                    if match:
                        return match
                    index += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("no line matching %r within %ss; output:\n%s"
                                         % (pattern, timeout, self.output()))
                self.changed.wait(remaining)

    def wait_for_banner(self):
        """Wait for the banner; return the URL it shows."""
        return self.wait_for(r"Starting development server at (\S+)").group(1)

    def port(self):
        return int(re.search(r":(\d+)/$", self.wait_for_banner()).group(1))

    def signal(self, signum):
        os.killpg(self.process.pid, signum)

    def wait(self, timeout=TIMEOUT):
        code = self.process.wait(timeout)
        self.reader.join(timeout)
        return code

    def kill(self):
        try:            # the whole group, even if its leader is gone: no orphan worker
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait(TIMEOUT)
        self.process.stdout.close()


class CLITestCase(unittest.TestCase):
    """Base class: run the command line in subprocesses, in a scratch directory."""

    def setUp(self):
        self.directory = tempfile.mkdtemp(prefix="runserver-test-")
        self.addCleanup(shutil.rmtree, self.directory, True)

    def write(self, name, text):
        path = os.path.join(self.directory, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = path + ".tmp"
        with open(temporary, "w") as file:
            file.write(text)
        os.replace(temporary, path)        # an atomic save, as editors do
        return path

    def start(self, *args, env=None, launcher=None):
        """runserver.py ARGS, or `python LAUNCHER runserver.py ARGS`."""
        if launcher is None:
            process = CLIProcess(args, cwd=self.directory, env=env)
        else:
            process = CLIProcess((RUNSERVER,) + args, self.directory, env, program=launcher)
        self.addCleanup(process.kill)
        return process

    def assertOneLineError(self, args, status, fragment, env=None):
        """The CLI with `args` exits with `status` after one line containing `fragment`."""
        code, output = self.run_cli(*args, env=env)
        self.assertEqual(code, status, output)
        self.assertEqual(len(output.strip().splitlines()), 1, output)
        self.assertIn(fragment, output)
        self.assertNotIn("Traceback", output)

    def run_cli(self, *args, timeout=TIMEOUT, env=None):
        """Run the CLI to completion; return (exit status, combined output)."""
        result = subprocess.run([sys.executable, RUNSERVER] + list(args), cwd=self.directory,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, timeout=timeout,
                                env=dict(os.environ, NO_COLOR="1", **(env or {})))
        return result.returncode, result.stdout.decode("utf-8", "replace")


def http_get(port, path="/", headers=b"", host="127.0.0.1"):
    """One GET on a new connection to 127.0.0.1:port; return the Response."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s\r\n"
                     % (path.encode(), host.encode(), headers))
        return Reader(sock).response()


# ---- HTTP grammar and parsing, without sockets -----------------------------------

class ParseRequestHeadTests(unittest.TestCase):

    def parse(self, data):
        return runserver.parse_request_head(data)

    def test_simple_request(self):
        head = self.parse(b"GET /a?b=1 HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\nX-A: 2")
        self.assertEqual((head.method, head.target, head.version), ("GET", b"/a?b=1", "HTTP/1.1"))
        self.assertEqual(head.environ["HTTP_X_A"], "1, 2")
        self.assertTrue(head.keep_alive)

    def test_cookies_are_joined_with_semicolons(self):
        head = self.parse(b"GET / HTTP/1.1\r\nHost: localhost\r\nCookie: a=1\r\nCookie: b=2")
        self.assertEqual(head.environ["HTTP_COOKIE"], "a=1; b=2")

    def test_underscore_header_names_are_dropped(self):
        head = self.parse(b"GET / HTTP/1.1\r\nHost: localhost\r\nX_Auth: evil\r\nX-Auth: good")
        self.assertEqual(head.environ["HTTP_X_AUTH"], "good")

    def test_connection_semantics(self):
        cases = [(b"HTTP/1.1", b"", True), (b"HTTP/1.1", b"Connection: close\r\n", False),
                 (b"HTTP/1.1", b"Connection: Keep-Alive, CLOSE\r\n", False),
                 (b"HTTP/1.0", b"", False), (b"HTTP/1.0", b"Connection: keep-alive\r\n", True)]
        for version, extra, keep_alive in cases:
            with self.subTest(version=version, extra=extra):
                head = self.parse((b"GET / %s\r\nHost: localhost\r\n%s" % (version, extra))[:-2])
                self.assertEqual(head.keep_alive, keep_alive)

    def test_absolute_form_replaces_host(self):
        head = self.parse(b"GET http://example.test:8/p?q HTTP/1.1\r\nHost: other")
        self.assertEqual(head.target, b"/p?q")
        self.assertEqual(head.environ["HTTP_HOST"], "example.test:8")

    def test_chunk_headers(self):
        self.assertEqual(runserver.parse_chunk_header(b"1a"), 26)
        self.assertEqual(runserver.parse_chunk_header(b"A;name=value;x=\"q\\\"s\""), 10)
        for bad in (b"", b"-1", b"+1", b"0x1", b"g", b"1" * 17, b"1;", b"1; =x"):
            with self.subTest(line=bad), self.assertRaises(runserver.BadRequest):
                runserver.parse_chunk_header(bad)

    def test_http_date_is_imf_fixdate(self):
        self.assertEqual(runserver.http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT")

    def test_escape_control(self):
        self.assertEqual(runserver.escape_control("a\x1b[31mb\r\n"), "a\\x1b[31mb\\x0d\\x0a")



class ForwardedGrammarTests(unittest.TestCase):
    """RFC 7239's Forwarded header and the nodes of X-Forwarded-For, without sockets."""

    def test_forwarded_elements(self):
        for value, elements in [
                ("for=192.0.2.60;proto=http;by=203.0.113.43",
                 [{"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}]),
                ('for=192.0.2.43, for="[2001:db8:cafe::17]"',
                 [{"for": "192.0.2.43"}, {"for": "[2001:db8:cafe::17]"}]),
                ('For="[2001:db8::1]:4711";PROTO=https', [{"for": "[2001:db8::1]:4711",
                                                           "proto": "https"}]),
                ('host="a, b;c=d";for=_hidden', [{"host": "a, b;c=d", "for": "_hidden"}]),
                ('for="\\"q\\\\";by=x', [{"for": '"q\\', "by": "x"}]),
                (",, for=unknown ,\t,", [{"for": "unknown"}]),
                ("for=a;;by=b;", [{"for": "a", "by": "b"}]),
                ("for=a ,for=b", [{"for": "a"}, {"for": "b"}]),
                ("", [])]:
            with self.subTest(value=value):
                self.assertEqual(runserver.parse_forwarded(value), elements)

    def test_malformed_forwarded_is_a_400(self):
        for value in ["for=2001:db8::1", "for=a; by=b", "for = a", "for=a b", "for=",
                      '"for"=a', 'for="unclosed', "for=a;for=b", "FOR=a;for=b", "=a",
                      "for=a=b", "for=\xe9", "for=a,b", 'for="a"b=c', "for=a;,;=b"]:
            with self.subTest(value=value):
                with self.assertRaises(runserver.BadRequest) as caught:
                    runserver.parse_forwarded(value)
                self.assertEqual(caught.exception.status, 400)
                self.assertIn("Forwarded", caught.exception.reason)
        with self.assertRaises(runserver.BadRequest) as caught:
            runserver.parse_forwarded("for=2001:db8::1")
        self.assertIn('for="[2001:db8::1]"', caught.exception.reason)     # says how

    def test_nodes(self):
        for text, node in [("192.0.2.1", ("192.0.2.1", None)),
                           ("192.0.2.1:8080", ("192.0.2.1", "8080")),
                           ("[2001:db8::1]:4711", ("2001:db8::1", "4711")),
                           ("[2001:db8::1]", ("2001:db8::1", None)),
                           ("unknown", ("unknown", None)), ("UNKNOWN:_p1", ("UNKNOWN", "_p1")),
                           ("_hidden", ("_hidden", None)), ("_a.b-c_d:_x", ("_a.b-c_d", "_x")),
                           ("[::ffff:192.0.2.1]", ("::ffff:192.0.2.1", None))]:
            for header in ("Forwarded", "X-Forwarded-For"):
                with self.subTest(text=text, header=header):
                    self.assertEqual(runserver.parse_node(text, header), node)
        for text, node in [("2001:db8::1", ("2001:db8::1", None)), ("unix:", ("unix:", None))]:
            with self.subTest(text=text):       # X-Forwarded-For's own forms
                self.assertEqual(runserver.parse_node(text, "X-Forwarded-For"), node)
                with self.assertRaises(runserver.BadRequest):
                    runserver.parse_node(text, "Forwarded")

    def test_bad_nodes_are_a_400(self):
        for text in ["999.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4:99999", "1.2.3.4:", "[1.2.3.4]",
                     "[2001:db8::g]", "[2001:db8::1", "_", "-x", "example.test", "1.2.3.4 ",
                     "", "unknown:", "2001:db8::1:4711:x"]:
            with self.subTest(text=text):
                with self.assertRaises(runserver.BadRequest) as caught:
                    runserver.parse_node(text, "X-Forwarded-For")
                self.assertEqual(caught.exception.status, 400)

    def test_proxy_trust(self):
        default = runserver.ProxyTrust(runserver.DEFAULT_FORWARDED_ALLOW_IPS)
        networks = runserver.ProxyTrust(["10.0.0.0/8", "2001:db8::/32", "[192.0.2.7]"])
        anyone = runserver.ProxyTrust(["*"])
        for address, trusted in [("127.0.0.1", (True, False, True)),
                                 ("127.9.9.9", (True, False, True)),
                                 ("::1", (True, False, True)),
                                 ("::ffff:127.0.0.1", (True, False, True)),
                                 ("unix:", (True, False, True)),
                                 ("10.1.2.3", (False, True, True)),
                                 ("::ffff:10.1.2.3", (False, True, True)),
                                 ("2001:db8:5::1", (False, True, True)),
                                 ("192.0.2.7", (False, True, True)),
                                 ("192.0.2.8", (False, False, True)),
                                 ("unknown", (False, False, True)),
                                 ("_hidden", (False, False, True))]:
            with self.subTest(address=address):
                self.assertEqual((default.trusts(address), networks.trusts(address),
                                  anyone.trusts(address)), trusted)
        for entries in (["bogus"], ["10.0.0.0/33"], [""], ["localhost"]):
            with self.subTest(entries=entries), self.assertRaises(ValueError):
                runserver.ProxyTrust(entries)


# ---- WSGI request handler: HTTP/1.1 semantics -------------------------------------

def generator_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"one,"
    yield b""
    yield b"two"


class KeepAliveTests(ServerTestCase):

    def test_two_requests_on_one_connection(self):
        server = self.start_server()
        sock = self.connect(server)
        reader = Reader(sock)
        for _ in range(2):
            sock.sendall(get())
            response = reader.response()
            self.assertEqual((response.status, response.body), (200, b"Hello world\n"))
            self.assertIsNone(response.header("connection"))

    def test_connection_close_is_honoured(self):
        server = self.start_server()
        data = self.exchange(server, get(extra=b"Connection: close\r\n") + get())
        self.assertEqual(data.count(b"HTTP/1.1 200"), 1)
        self.assertIn(b"Connection: close", data)

    def test_http10_closes_unless_keep_alive_is_asked(self):
        server = self.start_server()
        data = self.exchange(server, b"GET / HTTP/1.0\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"))
        sock = self.connect(server)
        reader = Reader(sock)
        for _ in range(2):
            sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            response = reader.response()
            self.assertEqual(response.header("connection"), "keep-alive")

    def test_pipelined_requests_are_answered_in_order(self):
        def path_app(environ, start_response):
            body = environ["PATH_INFO"].encode()
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return [body]
        server = self.start_server(path_app)
        sock = self.connect(server)
        sock.sendall(b"".join(get("/%d" % i) for i in range(20)))
        reader = Reader(sock)
        self.assertEqual([reader.response().body for _ in range(20)],
                         [b"/%d" % i for i in range(20)])

    def test_leading_empty_lines_are_ignored(self):
        server = self.start_server()
        self.assertEqual(self.request(server, b"\r\n" + get()).status, 200)

    def test_nothreading_server_closes_after_each_response(self):
        server = self.start_server(threading=False)
        data = self.exchange(server, get())
        self.assertIn(b"Connection: close", data)


class ResponseFramingTests(ServerTestCase):

    def test_response_without_length_is_chunked_for_http11(self):
        server = self.start_server(generator_app)
        response = self.request(server, get())
        self.assertEqual(response.header("transfer-encoding"), "chunked")
        self.assertEqual(response.body, b"one,two")

    def test_response_without_length_closes_for_http10(self):
        server = self.start_server(generator_app)
        data = self.exchange(server, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertIn(b"Connection: close", head)
        self.assertNotIn(b"Transfer-Encoding", head)
        self.assertEqual(body, b"one,two")

    def test_single_chunk_list_gets_a_content_length(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            return [b"abc"]
        response = self.request(self.start_server(app), get())
        self.assertEqual(response.header("content-length"), "3")

    def test_head_keeps_content_length_but_sends_no_body(self):
        server = self.start_server()
        sock = self.connect(server)
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n" + get())
        reader = Reader(sock)
        head = reader.response("HEAD")
        self.assertEqual(head.header("content-length"), "12")
        self.assertEqual(reader.response().body, b"Hello world\n")   # nothing was in between

    def test_no_body_statuses_never_carry_a_body(self):
        for status in ("204 No Content", "304 Not Modified"):
            def app(environ, start_response, status=status):
                start_response(status, [])
                return [b"ignored"]
            with self.subTest(status=status):
                server = self.start_server(app)
                sock = self.connect(server)
                sock.sendall(get() + get())
                reader = Reader(sock)
                first = reader.response()
                self.assertEqual(first.status, int(status[:3]))
                self.assertIsNone(first.header("transfer-encoding"))
                self.assertEqual(reader.response().status, int(status[:3]))

    def test_date_and_server_headers(self):
        response = self.request(self.start_server(), get())
        self.assertRegex(response.header("date"), r"^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$")
        self.assertTrue(response.header("server").startswith("runserver.py/"))

    def test_empty_response_gets_content_length_zero(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            return []
        response = self.request(self.start_server(app), get())
        self.assertEqual((response.header("content-length"), response.body), ("0", b""))


class RequestBodyTests(ServerTestCase):

    def test_read_without_size_stops_at_the_body_end(self):
        server = self.start_server(echo_app)
        sock = self.connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello" + get())
        reader = Reader(sock)
        self.assertEqual(reader.response().body, b"hello")
        self.assertEqual(reader.response().status, 200)

    def test_readline_and_iteration(self):
        def app(environ, start_response):
            stream = environ["wsgi.input"]
            first = stream.readline()
            second = stream.readline(3)
            rest = list(stream)
            body = repr((first, second, rest)).encode()
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return [body]
        server = self.start_server(app)
        body = b"line one\nline two\nthree"
        response = self.request(server, b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s"
                                % (len(body), body))
        self.assertEqual(response.body, repr((b"line one\n", b"lin", [b"e two\n", b"three"])).encode())

    def test_chunked_body_is_decoded_with_content_length_set(self):
        seen = {}

        def app(environ, start_response):
            seen["terminated"] = environ["wsgi.input_terminated"]
            return echo_app(environ, start_response)
        server = self.start_server(app)
        response = self.request(server, b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                                        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        self.assertEqual(response.body, b"hello world")
        self.assertEqual(response.header("x-content-length"), "11")
        self.assertTrue(seen["terminated"])

    def test_large_chunked_body_spools_to_a_file(self):
        data = os.urandom(3 << 20)
        server = self.start_server(echo_app)
        sock = self.connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
        for start in range(0, len(data), 1 << 20):
            block = data[start:start + (1 << 20)]
            sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
        sock.sendall(b"0\r\n\r\n")
        self.assertEqual(Reader(sock).response().body, data)

    def test_unread_body_is_drained_before_the_next_request(self):
        server = self.start_server(hello_app)
        sock = self.connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 13\r\n\r\nGET /evil HTTP" + get())
        reader = Reader(sock)
        self.assertEqual(reader.response().status, 200)
        self.assertEqual(reader.response().status, 200)
        self.assertEqual(LOG.messages().count("x"), 0)
        self.assertNotIn(b"HTTP", reader.buffer)

    def test_expect_100_continue_is_sent_once_when_the_app_reads(self):
        server = self.start_server(echo_app)
        sock = self.connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        reader = Reader(sock)
        self.assertEqual(reader.response().status, 100)
        sock.sendall(b"body")
        response = reader.response()
        self.assertEqual((response.status, response.body), (200, b"body"))
        self.assertNotIn(b"100 Continue", reader.buffer)

    def test_no_100_continue_when_the_app_does_not_read(self):
        server = self.start_server(hello_app)
        sock = self.connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        reader = Reader(sock)
        response = reader.response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("connection"), "close")

    def test_chunked_upload_with_expect_100_continue(self):
        server = self.start_server(echo_app)
        sock = self.connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        reader = Reader(sock)
        self.assertEqual(reader.response().status, 100)
        sock.sendall(b"3\r\nabc\r\n0\r\n\r\n")
        self.assertEqual(reader.response().body, b"abc")


class EnvironTests(ServerTestCase):

    def capture(self, raw, **options):
        seen = {}

        def app(environ, start_response):
            seen.update(environ)
            return hello_app(environ, start_response)
        server = self.start_server(app, **options)
        self.request(server, raw)
        return seen, server

    def test_cgi_variables(self):
        environ, server = self.capture(
            b"GET /a%20b/%C3%A9?x=%20 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/x\r\n"
            b"X-Many: 1\r\nx-many: 2\r\n\r\n")
        self.assertEqual(environ["REQUEST_METHOD"], "GET")
        self.assertEqual(environ["SCRIPT_NAME"], "")
        self.assertEqual(environ["PATH_INFO"], "/a b/\xc3\xa9")
        self.assertEqual(environ["QUERY_STRING"], "x=%20")
        self.assertEqual(environ["CONTENT_TYPE"], "text/x")
        self.assertEqual(environ["SERVER_NAME"], "127.0.0.1")
        self.assertEqual(environ["SERVER_PORT"], str(server.port))
        self.assertEqual(environ["SERVER_PROTOCOL"], "HTTP/1.1")
        self.assertEqual(environ["REMOTE_ADDR"], "127.0.0.1")
        self.assertTrue(environ["REMOTE_PORT"].isdigit())
        self.assertEqual(environ["HTTP_X_MANY"], "1, 2")
        self.assertEqual(environ["HTTP_HOST"], "localhost")
        self.assertNotIn("HTTP_CONTENT_TYPE", environ)
        self.assertEqual(environ["wsgi.version"], (1, 0))
        self.assertEqual(environ["wsgi.url_scheme"], "http")
        self.assertIs(environ["wsgi.multithread"], True)
        self.assertIs(environ["wsgi.multiprocess"], False)
        self.assertIs(environ["wsgi.run_once"], False)
        self.assertIs(environ["wsgi.file_wrapper"], runserver.FileWrapper)

    def test_wsgiref_validator_accepts_the_server(self):
        def app(environ, start_response):
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
            return [b"ok"]
        server = self.start_server(wsgiref.validate.validator(app))
        with warnings_as_errors():
            for raw in (get("/v?q=1"), b"POST /p HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc",
                        b"POST /p HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"):
                with self.subTest(raw=raw):
                    self.assertEqual(self.request(server, raw).body, b"ok")


@contextlib.contextmanager
def warnings_as_errors():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


class StartResponseTests(ServerTestCase):

    def test_write_callable_and_headers_on_first_nonempty_chunk(self):
        def app(environ, start_response):
            write = start_response("200 OK", [("Content-Length", "6")])
            write(b"abc")
            return [b"", b"def"]
        self.assertEqual(self.request(self.start_server(app), get()).body, b"abcdef")

    def test_error_before_the_first_chunk_can_still_become_a_500(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            yield b""
            raise ValueError("late but not too late")
        response = self.request(self.start_server(app), get())
        self.assertEqual(response.status, 500)
        self.assertIn(b"late but not too late", response.body)

    def test_exc_info_replaces_headers_before_they_are_sent(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            try:
                raise KeyError("x")
            except KeyError:
                start_response("503 Service Unavailable", [("Content-Length", "4")], sys.exc_info())
            return [b"oops"]
        response = self.request(self.start_server(app), get())
        self.assertEqual((response.status, response.body), (503, b"oops"))

    def test_exc_info_after_headers_were_sent_reraises(self):
        def app(environ, start_response):
            write = start_response("200 OK", [("Content-Length", "100")])
            write(b"partial")
            try:
                raise KeyError("after")
            except KeyError:
                start_response("500 Error", [], sys.exc_info())
            return [b"never"]
        server = self.start_server(app)
        data = self.exchange(server, get())
        self.assertTrue(data.startswith(b"HTTP/1.1 200"))
        self.assertTrue(data.endswith(b"partial"))
        LOG.wait_for(r"response cut short")

    def test_close_is_always_called(self):
        closed = threading.Event()

        class Body:
            def __iter__(self):
                yield b"x"

            def close(self):
                closed.set()

        def app(environ, start_response):
            start_response("200 OK", [])
            return Body()
        self.assertEqual(self.request(self.start_server(app), get()).body, b"x")
        self.assertTrue(closed.wait(TIMEOUT))

    def test_invalid_app_output_becomes_a_500_with_a_log_line(self):
        cases = {
            "status is bytes": lambda s: s(b"200 OK", []),
            "header with newline": lambda s: s("200 OK", [("X-A", "a\r\nSet-Cookie: x")]),
            "hop-by-hop header": lambda s: s("200 OK", [("Connection", "close")]),
            "headers as a tuple": lambda s: s("200 OK", ()),
        }
        for name, call in cases.items():
            def app(environ, start_response, call=call):
                call(start_response)
                return [b"body"]
            with self.subTest(name):
                LOG.clear()
                response = self.request(self.start_server(app), get())
                self.assertEqual(response.status, 500)
                self.assertNotIn(b"Set-Cookie: x", response.raw_head)
                LOG.wait_for(r"Error in the app")

    def test_non_bytes_chunk_is_a_500(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            return ["text"]
        self.assertEqual(self.request(self.start_server(app), get()).status, 500)


class AppErrorTests(ServerTestCase):

    @staticmethod
    def failing_app(environ, start_response):
        raise RuntimeError("the app's own bug")

    def test_debug_500_shows_the_traceback_as_text_or_html(self):
        server = self.start_server(self.failing_app, debug=True)
        text = self.request(server, get())
        self.assertEqual(text.status, 500)
        self.assertTrue(text.header("content-type").startswith("text/plain"))
        self.assertIn(b"RuntimeError: the app's own bug", text.body)
        page = self.request(server, get(extra=b"Accept: text/html\r\n"))
        self.assertTrue(page.header("content-type").startswith("text/html"))
        self.assertIn(b"RuntimeError: the app&#x27;s own bug", page.body)
        LOG.wait_for(r"RuntimeError: the app's own bug")

    def test_without_debug_the_page_is_generic_but_the_log_has_it(self):
        server = self.start_server(self.failing_app, debug=False)
        response = self.request(server, get())
        self.assertEqual(response.status, 500)
        self.assertNotIn(b"RuntimeError", response.body)
        LOG.wait_for(r"RuntimeError: the app's own bug")

    def test_error_after_headers_truncates_the_response(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            yield b"first"
            raise RuntimeError("mid-stream")
        server = self.start_server(app)
        data = self.exchange(server, get())
        self.assertIn(b"5\r\nfirst\r\n", data)
        self.assertFalse(data.endswith(b"0\r\n\r\n"))
        LOG.wait_for(r"response cut short")

    def test_client_disconnect_mid_response_is_one_quiet_line(self):
        sent = threading.Event()

        def app(environ, start_response):
            start_response("200 OK", [])
            for _ in range(10000):
                yield b"x" * 65536
                sent.set()
        server = self.start_server(app)
        sock = self.connect(server)
        sock.sendall(get())
        sock.recv(100)
        self.assertTrue(sent.wait(TIMEOUT))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        sock.close()
        LOG.wait_for(r"client disconnected")
        self.assertFalse([m for m in LOG.messages() if "Traceback" in m])



# ---- The error page (--debug) -------------------------------------------------------

class Element:
    """A parsed HTML element: its tag, attributes and children (elements and text)."""

    def __init__(self, tag, attrs):
        self.tag, self.attrs, self.children = tag, dict(attrs), []

    def text(self):
        return "".join(child if isinstance(child, str) else child.text()
                       for child in self.children)

    def iter(self):
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_all(self, tag=None, cls=None, **attrs):
        return [element for element in self.iter()
                if (tag is None or element.tag == tag)
                and (cls is None or cls in element.attrs.get("class", "").split())
                and all(element.attrs.get(name) == value for name, value in attrs.items())]

    def find(self, tag=None, cls=None, **attrs):
        found = self.find_all(tag, cls, **attrs)
        if not found:
            raise AssertionError("no <%s class=%r %r>" % (tag, cls, attrs))
        return found[0]


class PageParser(html.parser.HTMLParser):
    """Parses a page into Elements; every tag must be closed where it should be."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
            "source", "track", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", [])
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        element = Element(tag, attrs)
        self.stack[-1].children.append(element)
        if tag not in self.VOID:
            self.stack.append(element)

    def handle_endtag(self, tag):
        if self.stack[-1].tag != tag:
            raise AssertionError("</%s> closes <%s>" % (tag, self.stack[-1].tag))
        self.stack.pop()

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse_page(body):
    parser = PageParser()
    parser.feed(body.decode("utf-8"))
    parser.close()
    if len(parser.stack) != 1:
        raise AssertionError("unclosed <%s>" % parser.stack[-1].tag)
    return parser.root


HTML_ACCEPT = b"Accept: text/html,application/xhtml+xml\r\n"


class Unrepresentable:
    def __repr__(self):
        raise ValueError("no repr <script>here</script>")


def hidden_helper(callback):
    __traceback_hide__ = True
    return callback()


def innermost_failure(cart):
    total = sum(item["price"] * item["qty"] for item in cart)
    return total


def frames_app(environ, start_response):
    """User code, a library (json) calling back into user code, a hidden frame."""
    markup, broken, many = ["<script>alert('local')</script>", Unrepresentable(),
                            list(range(100000))]
    return json.loads('{"a": 1}', object_hook=lambda obj: hidden_helper(
        lambda: innermost_failure([{"price": 3, "qty": 2}, {"price": 5}])))


def chained_app(environ, start_response):
    path = environ["PATH_INFO"]
    try:
        {}["missing"]
    except KeyError as exc:
        if path == "/cause":
            raise RuntimeError("explicit cause") from exc
        if path == "/suppressed":
            raise RuntimeError("context suppressed") from None
        raise RuntimeError("implicit context")


def repeat_failure():
    raise LookupError("the same failure")


def retry(depth):
    """Fails, then fails again while handling it, at every level: like a
    framework that retries an import while building its error response."""
    try:
        if depth:
            retry(depth - 1)
        else:
            repeat_failure()
    except LookupError:
        repeat_failure()


def repeating_chain_app(environ, start_response):
    retry(9)


def recursion_app(environ, start_response):
    def down(depth):
        return down(depth + 1)
    return down(0)


def heavy_recursion_app(environ, start_response):
    """Mutual recursion (not folded), with big local variables in every frame."""
    def ping(depth):
        a, b, c, d, e, f, g, h, i, j, k, m = ["<&>" * 5000] * 12
        return pong(depth + 1)

    def pong(depth):
        n, o, p, q, r, s, t, u, v, w, x, y = ["<&>" * 5000] * 12
        return ping(depth + 1)
    return ping(0)


def group_app(environ, start_response):
    first = ValueError("first <member>")
    first.add_note("a note <b>about</b> it")
    raise ExceptionGroup("two failures", [first, TypeError("second member")])


class ErrorPageTests(ServerTestCase, CLITestCase):
    """The error page: the traceback model rendered as HTML and as text."""

    def setUp(self):
        ServerTestCase.setUp(self)
        CLITestCase.setUp(self)

    def page(self, app, path="/", extra=b"", **options):
        """GET `path` from a --debug server of `app` as a browser; the parsed page."""
        options.setdefault("debug", True)
        response = self.request(self.start_server(app, **options),
                                get(path, extra=HTML_ACCEPT + extra))
        self.assertEqual(response.status, 500)
        self.assertTrue(response.header("content-type").startswith("text/html"))
        self.assertLessEqual(len(response.body), runserver.PAGE_LIMIT)
        return parse_page(response.body)

    def frames(self, page):
        """(file name, function, open, library) of the page's frames, outermost first."""
        return [(frame.find(cls="place").text().rpartition(":")[0].rpartition("/")[2],
                 frame.find(cls="function").text() if frame.find_all(cls="function") else "",
                 "open" in frame.attrs, "library" in frame.attrs["class"].split())
                for frame in page.find_all("details", cls="frame")]

    def variables(self, frame):
        return {row.find("th").text(): row.find("td") for row in frame.find_all("tr")}

    def test_sections_summary_and_the_copy_paste_text(self):
        page = self.page(frames_app)
        self.assertEqual(page.find("h1").text(), "KeyError")
        self.assertEqual(page.find("p", cls="message").text(), "'qty'")
        where = page.find("p", cls="where").text()
        self.assertRegex(where, r"^test_runserver\.py:\d+ in (innermost_failure\.<locals>\.)?"
                                r"<genexpr>$")
        facts = page.find("dl", cls="facts").text()
        for fact in ("GET http://127.0.0.1/", sys.executable, sys.version.split()[0]):
            self.assertIn(fact, facts)
        self.assertIn(runserver.SERVER_SOFTWARE, page.find("p", cls="status").text())
        for section in ("traceback", "request", "python", "text"):
            page.find("section", id=section)
        text = page.find("textarea").text()
        self.assertTrue(text.startswith("Traceback (most recent call last):"), text)
        self.assertIn("in innermost_failure", text)
        self.assertTrue(text.rstrip().endswith("KeyError: 'qty'"), text)
        self.assertNotIn("/runserver.py", page.find("section", id="traceback").text() + text)
        LOG.wait_for(r"Error in the app")
        self.assertIn(text.rstrip(), LOG.wait_for(r"Error in the app"))   # what the log got

    def test_frames_shown_collapsed_and_hidden(self):
        page = self.page(frames_app)
        frames = self.frames(page)
        names = [function for filename, function, opened, library in frames]
        self.assertNotIn("hidden_helper", names)                 # __traceback_hide__
        self.assertNotIn("run_app", names)                       # runserver.py's own
        self.assertEqual(names[0], "frames_app")
        library = [name for name, *rest in frames if rest[2]]      # json's (PyPy's has more)
        self.assertGreaterEqual(len(library), 3)
        self.assertLessEqual(set(library), {"__init__.py", "decoder.py", "scanner.py"})
        self.assertEqual([function for filename, function, opened, library in frames
                          if opened], ["innermost_failure.<locals>.<genexpr>"
                                       if sys.version_info >= (3, 11) else "<genexpr>"])
        group = page.find("details", cls="library")
        self.assertNotIn("open", group.attrs)
        self.assertRegex(group.find("summary").text(), r"^\d+ library frames? json")
        focus = page.find("details", cls="focus")
        current = focus.find("span", cls="current")
        self.assertIn('item["price"] * item["qty"]', current.text())
        numbers = [int(line.find("i").text()) for line in focus.find("pre").find_all("span")]
        line = int(current.find("i").text())
        self.assertEqual(numbers, list(range(line - 5, line + 6)))
        if sys.version_info >= (3, 11):
            self.assertEqual(current.find("mark").text(), 'item["qty"]')

    def test_local_variables_sorted_bounded_and_a_raising_repr(self):
        page = self.page(frames_app)
        outer = page.find_all("details", cls="frame")[0]
        variables = self.variables(outer)
        names = list(variables)
        self.assertEqual(names, sorted(names))
        self.assertIn("environ", names)
        self.assertLess(len(variables["many"].text()), runserver.VALUE_LIMIT + 100)
        self.assertIn("failed", variables["broken"].attrs["class"])
        self.assertEqual(variables["broken"].text(),
                         "repr() raised ValueError: no repr <script>here</script>")
        self.assertEqual(len(outer.find_all(cls="failed")), 1)

    def test_everything_is_escaped(self):
        def app(environ, start_response):
            markup = "<script>alert('local')</script>"
            raise ValueError(markup.replace("local", "message"))
        response = self.request(self.start_server(app, debug=True),
                                get("/<script>", extra=HTML_ACCEPT
                                    + b"X-Note: <script>alert('header')</script>\r\n"))
        page = parse_page(response.body)
        self.assertEqual(len(page.find_all("script")), 1)        # the page's own
        self.assertEqual(page.find("p", cls="message").text(),
                         "<script>alert('message')</script>")
        text = page.text()
        for where in ("local", "header"):
            self.assertIn("<script>alert('%s')</script>" % where, text)
        self.assertNotIn(b"<script>alert", response.body)

    def test_secrets_are_masked_in_the_request_and_in_variables(self):
        secrets = ["Bearer abcdef123456", "s3ss10nvalue", "k3y-v4lu3-xyz", "t0k3n-in-query"]
        page = self.page(frames_app, "/?token=t0k3n-in-query&q=visible",
                         extra=b"Authorization: Bearer abcdef123456\r\n"
                               b"Cookie: sessionid=s3ss10nvalue; theme=dark\r\n"
                               b"X-Api-Key: k3y-v4lu3-xyz\r\n")
        text = page.text()
        self.assertEqual([secret for secret in secrets if secret in text], [])
        request = page.find("section", id="request")
        rows = {row.find("th").text(): row.find("td") for row in request.find_all("tr")}
        for name in ("Authorization", "Cookie", "X-Api-Key", "token", "sessionid",
                     "HTTP_AUTHORIZATION", "HTTP_COOKIE"):
            self.assertEqual(rows[name].text(), "********", name)
        self.assertEqual(rows["q"].text(), "visible")
        self.assertEqual(rows["theme"].text(), "dark")
        self.assertIn("HTTP_X_API_KEY': '********'", self.variables(
            page.find_all("details", cls="frame")[0])["environ"].text())

    def test_a_short_secret_in_the_query_is_masked_in_the_url_too(self):
        page = self.page(frames_app, "/?page=2&token=abc&api_key=k1")
        text = page.text()
        self.assertNotIn("token=abc", text)
        self.assertNotIn("api_key=k1", text)
        self.assertIn("token=********", text)
        self.assertIn("page=2", text)

    def test_an_environ_value_whose_repr_changes_the_environ(self):
        class LazyRequest:          # Bottle's request object caches what it parses there
            def __init__(self, environ):
                self.environ = environ

            def __repr__(self):
                self.environ.setdefault("lazy.parsed", "yes")
                return "<LazyRequest>"

        def app(environ, start_response):
            environ["lazy.request"] = LazyRequest(environ)
            raise RuntimeError("with a lazy request")
        page = self.page(app)
        self.assertIn("<LazyRequest>", page.find("section", id="request").text())

    def test_the_request_body_is_not_read(self):
        def app(environ, start_response):
            raise RuntimeError("before reading the body")
        server = self.start_server(app, debug=True)
        body = b"field=" + b"BODY-MARKER".replace(b"-", b"")     # not in this source line
        response = self.request(server, b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + HTML_ACCEPT
                                + b"Content-Type: application/x-www-form-urlencoded\r\n"
                                + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.assertNotIn(b"BODYMARKER", response.body)
        self.assertIn("was not read", parse_page(response.body).find("section", id="request")
                      .text())

    def test_chained_exceptions(self):
        for path, messages, link in [
                ("/cause", ["KeyError", "RuntimeError"], "direct cause"),
                ("/context", ["KeyError", "RuntimeError"], "During handling"),
                ("/suppressed", ["RuntimeError"], None)]:
            with self.subTest(path=path):
                page = self.page(chained_app, path)
                blocks = page.find_all("div", cls="exception")
                self.assertEqual([block.find("span", cls="type").text() for block in blocks],
                                 messages)
                links = page.find_all("p", cls="chain")
                self.assertEqual(len(links), 1 if link else 0)
                if link:
                    self.assertIn(link, links[0].text())
                    self.assertIn("KeyError: 'missing'", page.find("header").text())
                    self.assertIn(link, page.find("textarea").text())

    def test_a_chain_repeating_the_same_failure_is_folded(self):
        page = self.page(repeating_chain_app, quiet=False)
        blocks = page.find_all("div", cls="exception")
        self.assertEqual(len(blocks), 3)            # the first, 8 folded into one, the last
        self.assertIn("raised 8 more times", blocks[1].find("p", cls="folded").text())
        log = LOG.wait_for(r"Error in the app")
        self.assertEqual(log.count("During handling of the above exception"), 2, log)
        self.assertIn("raised 8 more times, each while handling the one before", log)

    def test_recursion_is_folded_and_the_page_bounded(self):
        page = self.page(recursion_app)
        frames = self.frames(page)
        self.assertEqual([function for filename, function, *rest in frames],
                         ["recursion_app", "recursion_app.<locals>.down"
                          if sys.version_info >= (3, 11) else "down"])
        count = int(page.find("span", cls="repeat").text().split()[-1])
        self.assertGreater(count, 100)
        depth = self.variables(page.find("details", cls="focus"))["depth"].text()
        self.assertEqual(int(depth), count - 1)     # the innermost frame's variables
        self.assertIn("[Previous line repeated %d more times]" % (count - 1),
                      page.find("textarea").text())

    def test_a_huge_traceback_stays_under_the_page_limit(self):
        server = self.start_server(heavy_recursion_app, debug=True)
        response = self.request(server, get(extra=HTML_ACCEPT))
        self.assertLessEqual(len(response.body), runserver.PAGE_LIMIT)
        page = parse_page(response.body)
        self.assertIn("frames not shown", page.text())
        self.assertEqual(page.find("h1").text(), "RecursionError")
        text = self.request(server, get())
        self.assertLessEqual(len(text.body), runserver.PAGE_LIMIT)

    @unittest.skipIf(sys.version_info < (3, 11), "exception groups and notes are 3.11+")
    def test_exception_groups_and_notes(self):
        page = self.page(group_app)
        self.assertEqual(page.find("h1").text(), "ExceptionGroup")
        members = page.find_all("div", cls="member")
        self.assertEqual([member.find("span", cls="type").text() for member in members],
                         ["ValueError", "TypeError"])
        self.assertEqual(members[0].find("p", cls="note").text(), "a note <b>about</b> it")
        text = page.find("textarea").text()
        self.assertIn("  + Exception Group Traceback (most recent call last):", text)
        self.assertIn("    | ValueError: first <member>\n    | a note <b>about</b> it", text)

    def test_error_while_the_response_streams_is_cut_and_logged(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            yield b"first"
            raise RuntimeError("mid-stream failure")
        data = self.exchange(self.start_server(app, debug=True), get(extra=HTML_ACCEPT))
        self.assertIn(b"5\r\nfirst\r\n", data)
        self.assertFalse(data.endswith(b"0\r\n\r\n"))
        log = LOG.wait_for(r"Error in the app")
        self.assertRegex(log, r"line \d+, in (\S+\.)?app\n")
        self.assertIn("RuntimeError: mid-stream failure", log)
        self.assertNotIn("/runserver.py", log)
        LOG.wait_for(r"response cut short")

    def test_the_access_log_counts_the_bytes_of_a_500(self):
        for debug, accept in ((True, HTML_ACCEPT), (True, b""), (False, b"")):
            with self.subTest(debug=debug, accept=accept):
                LOG.clear()
                server = self.start_server(chained_app, debug=debug, quiet=False)
                response = self.request(server, get(extra=accept))
                line = LOG.wait_for(r'"GET / HTTP/1.1" 500')
                self.assertRegex(line, r'" 500 %d ' % len(response.body))

    def test_library_files_are_the_standard_librarys_and_installed_packages(self):
        import json
        for path in (json.__file__, "<frozen importlib._bootstrap>",
                     "/home/ada/.venv/lib/python3.12/site-packages/flask/app.py",
                     "/usr/lib/python3/dist-packages/yaml/__init__.py"):
            self.assertTrue(runserver.is_library_file(path), path)
        for path in (os.path.abspath(__file__), "/home/ada/shop/site_packages.py",
                     "/home/ada/shop/views.py"):
            self.assertFalse(runserver.is_library_file(path), path)

    def test_head_gets_the_500_head_without_the_page(self):
        LOG.clear()
        server = self.start_server(chained_app, debug=True, quiet=False)
        sock = self.connect(server)
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: localhost\r\n" + HTML_ACCEPT + b"\r\n")
        reader = Reader(sock)
        head = reader.response("HEAD")
        self.assertEqual(head.status, 500)
        self.assertGreater(int(head.header("content-length")), 1000)   # the page's length
        self.assertEqual(reader.read_to_eof(), b"")
        self.assertRegex(LOG.wait_for(r'"HEAD / HTTP/1.1" 500'), r'" 500 0 ')

    def test_editor_links(self):
        page = self.page(frames_app, editor="vscode://file/{path}:{line}")
        focus = page.find("details", cls="focus")
        link = focus.find("a")
        self.assertRegex(link.attrs["href"],
                         r"^vscode://file/.*/test_runserver\.py:\d+$")
        self.assertOneLineError(["--editor", "vscode://file/{file}"], 2, "{path}")
        self.assertOneLineError(["--editor", "vscode://file/"], 2, "{path}")

    # -- the page when the app is not running: import errors, a crashed worker --

    def cli_page(self, process, accept=HTML_ACCEPT):
        response = http_get(process.port(), headers=accept)
        self.assertEqual(response.status, 500)
        return parse_page(response.body) if accept else response.body.decode()

    def test_import_error_page(self):
        self.write("helper.py", "SETTING = 1\n\ndef load():\n    return {}['missing']\n")
        self.write("app.py", "import helper\nhelper.load()\n\ndef app(environ, start_response):\n"
                             "    pass\n")
        process = self.start("app:app", "127.0.0.1:0")
        page = self.cli_page(process)
        self.assertIn("app:app failed to import", page.find("p", cls="title").text())
        self.assertEqual(page.find("h1").text(), "KeyError")
        self.assertEqual([name for name, function, *rest in self.frames(page)],
                         ["app.py", "helper.py"])
        self.assertEqual(page.find("details", cls="focus").find("span", cls="current")
                         .text().strip(), "4    return {}['missing']")
        self.assertIn("Traceback (most recent call last):", page.find("textarea").text())
        self.assertIn("Traceback (most recent call last):", self.cli_page(process, b""))
        self.assertEqual(process.output().count("Traceback"), 1, process.output())

    def test_syntax_error_page(self):
        self.write("app.py", "import os\n\n\ndef app(environ, start_response):\n"
                             "    return [os.sep.encode(]\n\n\nvalue = 1\n")
        process = self.start("app:app", "127.0.0.1:0")
        page = self.cli_page(process)
        self.assertEqual(page.find("h1").text(), "SyntaxError")
        where = page.find("p", cls="where").text()
        self.assertEqual(where, "app.py:5: return [os.sep.encode(]")
        frame = page.find("details", cls="focus")
        self.assertEqual([int(line.find("i").text()) for line in frame.find("pre").find_all("span")],
                         [1, 2, 3, 4, 5, 6, 7, 8])       # 5 lines either side, as far as they go
        self.assertEqual(frame.find("span", cls="current").find("i").text(), "5")
        self.assertIn("^", self.cli_page(process, b""))
        self.assertEqual(frame.find("mark").text()[:1], "]")

    def test_a_crashed_worker_gets_the_page_too(self):
        self.write("app.py", "import os\n\ndef app(environ, start_response):\n    os._exit(7)\n")
        process = self.start("app:app", "127.0.0.1:0")
        with self.assertRaises((EOFError, ConnectionError)):
            http_get(process.port())
        process.wait_for(r"save a file to restart it")
        page = self.cli_page(process)
        self.assertEqual(page.find("h1").text(),
                         "The server process exited with status 7; save a file to restart it.")
        self.assertEqual(page.find_all("section", id="text"), [])      # no traceback to copy

    def test_without_debug_the_import_error_page_is_a_note(self):
        self.write("app.py", "raise RuntimeError('secret detail')\n")
        process = self.start("app:app", "127.0.0.1:0", "--no-debug")
        self.assertNotIn("secret detail", self.cli_page(process, b""))
        self.assertIn("secret detail", process.output())

    def test_flask_app_gets_propagate_exceptions(self):
        # A stand-in for Flask: its class is flask.app.Flask, and it answers a
        # view's exception with its own 500 unless PROPAGATE_EXCEPTIONS is true.
        self.write("flask/__init__.py", "from .app import Flask\n")
        self.write("flask/app.py", "class Flask:\n"
                                   "    def __init__(self, **config):\n"
                                   "        self.config = dict(PROPAGATE_EXCEPTIONS=None)\n"
                                   "        self.config.update(config)\n"
                                   "    def __call__(self, environ, start_response):\n"
                                   "        try:\n"
                                   "            raise KeyError('view failed')\n"
                                   "        except KeyError:\n"
                                   "            if self.config['PROPAGATE_EXCEPTIONS']:\n"
                                   "                raise\n"
                                   "            start_response('500 Oops', [])\n"
                                   "            return [b'generic']\n")
        self.write("site.py", "")
        self.write("hello.py", "import flask\nclass App(flask.Flask): pass\n"
                               "app = App()\nkept = App(PROPAGATE_EXCEPTIONS=False)\n")
        for spec, options, body in [("hello:app", [], "view failed"),
                                    ("hello:app", ["--no-debug"], "generic"),
                                    ("hello:kept", [], "generic")]:
            with self.subTest(spec=spec, options=options):
                process = self.start(spec, "127.0.0.1:0", "--noreload", *options)
                self.assertIn(body, http_get(process.port()).body.decode())
                process.kill()


class FileWrapperTests(ServerTestCase):

    def setUp(self):
        super().setUp()
        file = tempfile.NamedTemporaryFile(delete=False)
        file.write(bytes(range(256)) * 1024)
        file.close()
        self.path = file.name
        self.addCleanup(os.unlink, self.path)

    def wrapper_app(self, offset=0, length=None):
        def app(environ, start_response):
            file = open(self.path, "rb")
            file.seek(offset)
            headers = [] if length is None else [("Content-Length", str(length))]
            start_response("200 OK", headers)
            return environ["wsgi.file_wrapper"](file)
        return app

    def test_sendfile_from_the_current_position(self):
        response = self.request(self.start_server(self.wrapper_app(offset=1000)), get())
        self.assertEqual(response.body, (bytes(range(256)) * 1024)[1000:])
        self.assertEqual(response.header("content-length"), str(256 * 1024 - 1000))

    def test_sendfile_never_past_the_content_length(self):
        server = self.start_server(self.wrapper_app(offset=10, length=100))
        sock = self.connect(server)
        sock.sendall(get() + get())
        reader = Reader(sock)
        self.assertEqual(reader.response().body, (bytes(range(256)) * 1024)[10:110])
        self.assertEqual(reader.response().status, 200)       # the stream stayed in sync

    def test_non_file_objects_are_read_in_blocks(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            return environ["wsgi.file_wrapper"](io.BytesIO(b"y" * 700000), 4096)
        response = self.request(self.start_server(app), get())
        self.assertEqual(response.body, b"y" * 700000)


# A JSON formatter in a few lines, and a dictConfig file that gives it the
# 'runserver' logger's records: what the README shows for --log-config.
JSON_FORMATTER_SOURCE = """\
import json
import logging

FIELDS = ("method", "path", "query", "protocol", "status", "bytes", "duration_ms",
          "client", "note")


class JSONFormatter(logging.Formatter):
    def format(self, record):
        entry = {"time": self.formatTime(record), "level": record.levelname,
                 "message": record.getMessage()}
        entry.update((name, getattr(record, name, None)) for name in FIELDS)
        return json.dumps(entry)
"""
JSON_LOG_CONFIG = {
    "version": 1,
    "formatters": {"json": {"()": "jsonlog.JSONFormatter"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json",
                            "stream": "ext://sys.stdout"}},
    "loggers": {"runserver": {"handlers": ["stdout"], "level": "INFO", "propagate": False}},
}


class LoggingTests(ServerTestCase, CLITestCase):

    def setUp(self):
        ServerTestCase.setUp(self)
        CLITestCase.setUp(self)

    def last_record(self, pattern):
        LOG.wait_for(pattern)
        with LOG.changed:
            return [record for record in LOG.records if re.search(pattern, record.getMessage())][-1]

    def test_access_records_carry_fields(self):
        server = self.start_server(quiet=False)
        self.request(server, get("/path%20x?q=1&r=2"))
        record = self.last_record(r"GET /path")
        self.assertEqual({name: getattr(record, name) for name in runserver.ACCESS_FIELDS}, {
            "method": "GET", "path": "/path%20x", "query": "q=1&r=2", "protocol": "HTTP/1.1",
            "status": 200, "bytes": 12, "duration_ms": record.duration_ms,
            "client": "127.0.0.1", "note": None})
        self.assertIsInstance(record.duration_ms, float)
        self.request(server, b"GET /\x1b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        record = self.last_record(r" 400: ")
        self.assertEqual((record.method, record.path, record.status, record.bytes,
                          record.duration_ms), ("GET", "/\\x1b", 400, 0, None))
        self.assertTrue(record.note)
        # The line is cut at 200 characters in the message, never in the fields.
        self.request(server, b"GET /\x1b?%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % (b"q" * 300))
        record = self.last_record(r"GET /\\x1b\?q{190}")
        self.assertEqual((record.path, record.query, record.protocol),
                         ("/\\x1b", "q" * 300, "HTTP/1.1"))

    def test_the_client_is_in_the_line_when_others_than_this_machine_can_connect(self):
        # Bound to every interface (the socket given is loopback's, as the
        # tests bind nothing else), or behind a proxy: the client comes first.
        listener = socket.create_server(("127.0.0.1", 0))
        for options, client in ((dict(host="0.0.0.0", listen_socket=listener), "127.0.0.1"),
                                (dict(proxy_headers=True), "192.0.2.7")):
            with self.subTest(**options):
                LOG.clear()
                server = self.start_server(quiet=False, **options)
                self.request(server, get("/who", extra=b"X-Forwarded-For: 192.0.2.7\r\n"))
                line = LOG.wait_for(r"GET /who")
                self.assertRegex(line, r'^%s "GET /who HTTP/1.1" 200 ' % re.escape(client))
        self.assertFalse(self.start_server(quiet=False).server.log_clients)

    def test_a_log_config_edit_reloads_and_fixing_it_restarts_a_crashed_worker(self):
        self.write("app.py", inspect.getsource(hello_app) + "application = hello_app\n")
        good = json.dumps({"version": 1, "handlers": {"h": {"class": "logging.StreamHandler"}},
                           "loggers": {"runserver": {"handlers": ["h"], "level": "INFO"}}})
        config = self.write("log.json", good)
        process = self.start("app:application", "127.0.0.1:0", "--log-config", "log.json",
                             "--reload-interval", "0.05")
        port = process.port()
        self.assertEqual(http_get(port).status, 200)
        self.write("log.json", '{"version": 1, "handlers": {"h": {"class": "no.Handler"}}}')
        process.wait_for(r"save a file to restart it\.")
        self.assertEqual(http_get(port).status, 500)
        self.write("log.json", good)
        process.wait_for(re.escape(config) + r" changed, restarting\.")
        wait_until(lambda: http_get(port).status == 200)

    def test_log_config_json_gives_one_json_object_per_request(self):
        self.write("app.py", inspect.getsource(hello_app) + "application = hello_app\n")
        self.write("jsonlog.py", JSON_FORMATTER_SOURCE)
        self.write("log.json", json.dumps(JSON_LOG_CONFIG))
        process = self.start("app:application", "127.0.0.1:0", "--noreload",
                             "--log-config", "log.json")
        port = process.port()
        self.assertEqual(http_get(port, "/a?b=c").status, 200)
        self.assertEqual(http_get(port, "/", host="evil.example").status, 400)
        process.wait_for(r'^\{.*"status": 400')
        process.signal(signal.SIGINT)
        process.wait()
        records = [json.loads(line) for line in process.output().splitlines()
                   if line.startswith("{")]
        access = [record for record in records if record["status"]]
        self.assertEqual(len(access), 2, records)
        self.assertEqual(access[0], dict(access[0], method="GET", path="/a", query="b=c",
                                         protocol="HTTP/1.1", status=200, bytes=12,
                                         client="127.0.0.1", note=None, level="INFO"))
        self.assertIsInstance(access[0]["duration_ms"], float)
        self.assertEqual((access[1]["status"], access[1]["level"]), (400, "WARNING"))
        self.assertIn("not allowed", access[1]["note"])

    def test_a_bad_log_config_is_one_line_and_exit_2(self):
        self.write("bad.json", "{")
        self.write("bad.ini", "[loggers]\nkeys=root\n")
        for name, fragment in (("bad.json", "line 1 column 2"), ("bad.ini", "'formatters' is missing"),
                               ("missing.json", "No such file")):
            with self.subTest(name):
                self.assertOneLineError(["--noreload", "127.0.0.1:0", "--log-config", name],
                                        2, '--log-config "%s": ' % name)
                self.assertIn(fragment, self.run_cli("--log-config", name)[1])

    def test_access_log_line(self):
        server = self.start_server(quiet=False)
        self.request(server, get("/path?q=1"))
        line = LOG.wait_for(r"GET /path")
        self.assertRegex(line, r'^"GET /path\?q=1 HTTP/1.1" 200 12 \d+\.\dms$')

    def test_quiet_has_no_access_log(self):
        server = self.start_server(quiet=True)
        self.request(server, get("/quiet"))
        self.request(server, b"BAD\r\n\r\n")
        LOG.wait_for(r"request line")
        self.assertFalse([m for m in LOG.messages() if "/quiet" in m])

    def test_control_characters_are_escaped(self):
        server = self.start_server(quiet=False)
        self.request(server, b"GET /\x1b[31m HTTP/1.1\r\nHost: localhost\r\n\r\n")
        line = LOG.wait_for(r"400")
        self.assertNotIn("\x1b", line)
        self.assertIn("\\x1b", line)


# ---- Hardening: hostile input, host checks, limits, load and app faults -----------

HOST = b"Host: 127.0.0.1\r\n"
POST = b"POST / HTTP/1.1\r\n" + HOST
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"
HALF_CLOSE = b"<client half-closes>"    # a row ending with this shuts down the sending side

HOSTILE_LIMITS = dict(max_request_line=1024, max_header_size=2048, max_headers=20, max_body=1000)

# (name, raw request, expected status, regex for the reason in the log line).
# The server above uses HOSTILE_LIMITS; every row must be refused and closed.
HOSTILE_REQUESTS = [
    ("no version", b"GET /\r\n" + HOST + b"\r\n", 400, "not 'METHOD target HTTP/x.y'"),
    ("two spaces", b"GET  / HTTP/1.1\r\n" + HOST + b"\r\n", 400, "not 'METHOD target"),
    ("trailing space", b"GET / HTTP/1.1 \r\n" + HOST + b"\r\n", 400, "not 'METHOD target"),
    ("tab separator", b"GET\t/\tHTTP/1.1\r\n" + HOST + b"\r\n", 400, "control character"),
    ("space in target", b"GET /a b HTTP/1.1\r\n" + HOST + b"\r\n", 400, "not 'METHOD target"),
    ("lower-case version", b"GET / http/1.1\r\n" + HOST + b"\r\n", 400, "malformed request line"),
    ("version without minor", b"GET / HTTP/1\r\n" + HOST + b"\r\n", 400, "malformed request line"),
    ("two-digit major", b"GET / HTTP/11.1\r\n" + HOST + b"\r\n", 400, "malformed request line"),
    ("method not a token", b"G@T / HTTP/1.1\r\n" + HOST + b"\r\n", 400, "method is not a token"),
    ("method with bracket", b"GET[] / HTTP/1.1\r\n" + HOST + b"\r\n", 400, "method is not a token"),
    ("relative target", b"GET foo HTTP/1.1\r\n" + HOST + b"\r\n", 400, "must start with '/'"),
    ("bare LF everywhere", b"GET / HTTP/1.1\nHost: 127.0.0.1\n\n", 400, "bare LF"),
    ("bare LF after request line", b"GET / HTTP/1.1\n" + HOST + b"\r\n", 400, "bare CR or LF"),
    ("bare LF in header", b"GET / HTTP/1.1\r\nX: a\nY: b\r\n" + HOST + b"\r\n", 400, "bare CR or LF"),
    ("bare CR after request line", b"GET / HTTP/1.1\r" + HOST + b"\r\n", 400, "bare CR or LF"),
    ("bare CR in header", b"GET / HTTP/1.1\r\nX: a\rY: b\r\n" + HOST + b"\r\n", 400, "bare CR or LF"),
    ("NUL in target", b"GET /\x00 HTTP/1.1\r\n" + HOST + b"\r\n", 400, "control character in the request line"),
    ("ESC in target", b"GET /\x1b[31m HTTP/1.1\r\n" + HOST + b"\r\n", 400, "control character in the request line"),
    ("NUL in header value", b"GET / HTTP/1.1\r\n" + HOST + b"X: a\x00b\r\n\r\n", 400, "control character in a header value"),
    ("ESC in header value", b"GET / HTTP/1.1\r\n" + HOST + b"X: \x1b[2J\r\n\r\n", 400, "control character in a header value"),
    ("DEL in header value", b"GET / HTTP/1.1\r\n" + HOST + b"X: a\x7f\r\n\r\n", 400, "control character in a header value"),
    ("header name not a token", b"GET / HTTP/1.1\r\n" + HOST + b"X Y: z\r\n\r\n", 400, "header name is not a token"),
    ("header name with bracket", b"GET / HTTP/1.1\r\n" + HOST + b"X[1]: z\r\n\r\n", 400, "header name is not a token"),
    ("empty header name", b"GET / HTTP/1.1\r\n" + HOST + b": z\r\n\r\n", 400, "header name is not a token"),
    ("header without colon", b"GET / HTTP/1.1\r\n" + HOST + b"X-Y\r\n\r\n", 400, "without a colon"),
    ("space before colon", b"GET / HTTP/1.1\r\n" + HOST + b"X-Y : z\r\n\r\n", 400, "whitespace before the colon"),
    ("tab before colon", b"GET / HTTP/1.1\r\n" + HOST + b"X-Y\t: z\r\n\r\n", 400, "whitespace before the colon"),
    ("obs-fold with space", b"GET / HTTP/1.1\r\n" + HOST + b"X: a\r\n b\r\n\r\n", 400, "obsolete line folding"),
    ("obs-fold with tab", b"GET / HTTP/1.1\r\n" + HOST + b"X: a\r\n\tb\r\n\r\n", 400, "obsolete line folding"),
    ("fold before first header", b"GET / HTTP/1.1\r\n " + HOST + b"\r\n", 400, "obsolete line folding"),
    ("CL with plus", POST + b"Content-Length: +5\r\n\r\nhello", 400, "Content-Length is not"),
    ("CL negative", POST + b"Content-Length: -5\r\n\r\nhello", 400, "Content-Length is not"),
    ("CL hex", POST + b"Content-Length: 0x5\r\n\r\nhello", 400, "Content-Length is not"),
    ("CL underscore", POST + b"Content-Length: 5_0\r\n\r\nhello", 400, "Content-Length is not"),
    ("CL inner space", POST + b"Content-Length: 5 5\r\n\r\nhello", 400, "Content-Length is not"),
    ("CL empty", POST + b"Content-Length: \r\n\r\nhello", 400, "Content-Length is not"),
    ("CL Arabic-Indic digit", POST + "Content-Length: \u0665\r\n\r\nhello".encode(), 400, "Content-Length is not"),
    ("CL superscript two", POST + b"Content-Length: \xb2\r\n\r\nhi", 400, "Content-Length is not"),
    ("CL fullwidth digit", POST + "Content-Length: \uff15\r\n\r\nhello".encode(), 400, "Content-Length is not"),
    ("CL absurdly long", POST + b"Content-Length: " + b"9" * 40 + b"\r\n\r\n", 400, "Content-Length is not"),
    ("CL long run of zeros", POST + b"Content-Length: " + b"0" * 30 + b"5\r\n\r\nhello", 400, "Content-Length is not"),
    ("two CL", POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400, "more than one Content-Length"),
    ("CL list", POST + b"Content-Length: 5, 5\r\n\r\nhello", 400, "Content-Length is not"),
    ("CL and TE", POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "both Content-Length and Transfer-Encoding"),
    ("TE and CL", POST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400, "both Content-Length and Transfer-Encoding"),
    ("TE chunked on HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "HTTP/1.0"),
    ("TE gzip", POST + b"Transfer-Encoding: gzip\r\n\r\n", 501, "other than exactly 'chunked'"),
    ("TE identity", POST + b"Transfer-Encoding: identity\r\n\r\n", 501, "other than exactly 'chunked'"),
    ("TE gzip, chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, "other than exactly 'chunked'"),
    ("TE chunked, chunked", POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 501, "other than exactly 'chunked'"),
    ("two TE lines", POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, "other than exactly 'chunked'"),
    ("TE xchunked", POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501, "other than exactly 'chunked'"),
    ("TE with vertical tab", POST + b"Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", 400, "control character in a header value"),
    ("chunk size not hex", CHUNKED + b"zz\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk header"),
    ("chunk size signed", CHUNKED + b"-5\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk header"),
    ("chunk size with plus", CHUNKED + b"+5\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk header"),
    ("chunk size with 0x", CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk header"),
    ("chunk size empty", CHUNKED + b"\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk header"),
    ("chunk size too long", CHUNKED + b"0" * 17 + b"5\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk header"),
    ("chunk size line endless", CHUNKED + b"5" * 5000, 400, "chunk header longer than"),
    ("chunk extension without name", CHUNKED + b"5;\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk header"),
    ("chunk extension bad name", CHUNKED + b"5; =x\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk header"),
    ("chunk extension bad quote", CHUNKED + b'5;a="x\r\nhello\r\n0\r\n\r\n', 400, "invalid chunk header"),
    ("chunk size bare LF", CHUNKED + b"5\nhello\r\n0\r\n\r\n", 400, "bare CR or LF in a chunk header"),
    ("no CRLF after chunk data", CHUNKED + b"5\r\nhelloXX0\r\n\r\n", 400, "chunk data not followed by CRLF"),
    ("LF only after chunk data", CHUNKED + b"5\r\nhello\n0\r\n\r\n", 400, "chunk data not followed by CRLF"),
    ("bad trailer", CHUNKED + b"0\r\nX : y\r\n\r\n", 400, "invalid trailer"),
    ("EOF in chunk data", CHUNKED + b"10\r\nhello" + HALF_CLOSE, 400, "closed the connection in the middle of the body"),
    ("EOF before last chunk", CHUNKED + b"5\r\nhello\r\n" + HALF_CLOSE, 400, "closed the connection in the middle of the body"),
    ("EOF in Content-Length body", POST + b"Content-Length: 10\r\n\r\nhello" + HALF_CLOSE, 400, "closed the connection in the middle of the body"),
    ("EOF in the head", b"GET / HTTP/1.1\r\n" + HOST + HALF_CLOSE, 400, "in the middle of the head"),
    ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\n\r\n", 400, "without a Host header"),
    ("two Hosts", b"GET / HTTP/1.1\r\n" + HOST + HOST + b"\r\n", 400, "more than one Host"),
    ("invalid Host", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid Host"),
    ("asterisk with GET", b"GET * HTTP/1.1\r\n" + HOST + b"\r\n", 400, "only allowed with OPTIONS"),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\n" + HOST + b"\r\n", 505, "version 2.0 is not supported"),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\n" + HOST + b"\r\n", 505, "version 1.2 is not supported"),
    ("HTTP/0.9", b"GET / HTTP/0.9\r\n" + HOST + b"\r\n", 505, "version 0.9 is not supported"),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "version 2.0 is not supported"),
    ("request line too long", b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 414, "request line longer than 1024"),
    ("request line endless", b"GET /" + b"a" * 1100, 414, "request line longer than 1024"),
    ("header line too long", b"GET / HTTP/1.1\r\n" + HOST + b"X: " + b"a" * 2100 + b"\r\n\r\n", 431, "--max-header-size"),
    ("header block too large", b"GET / HTTP/1.1\r\n" + HOST + (b"X: " + b"a" * 150 + b"\r\n") * 15 + b"\r\n", 431, "--max-header-size"),
    ("header block endless", b"GET / HTTP/1.1\r\n" + HOST + b"X: a\r\n" * 600, 431, "--max-header-size"),
    ("too many headers", b"GET / HTTP/1.1\r\n" + HOST + b"X: a\r\n" * 20 + b"\r\n", 431, "more than 20 header lines"),
    ("CL over --max-body", POST + b"Content-Length: 1001\r\n\r\n", 413, "1001 bytes is over the limit of 1000 \\(--max-body\\)"),
    ("huge CL", POST + b"Content-Length: 999999999999\r\n\r\n", 413, "over the limit of 1000"),
    ("one chunk over --max-body", CHUNKED + b"10000\r\n", 413, "chunked body over the limit of 1000 bytes \\(--max-body\\)"),
    ("chunks adding up over --max-body", CHUNKED + (b"258\r\n" + b"x" * 600 + b"\r\n") * 2, 413, "chunked body over the limit"),
    ("Expect other than 100-continue", POST + b"Expect: 200-ok\r\nContent-Length: 2\r\n\r\nhi", 417, "Expect other than 100-continue"),
    ("Expect 100-continue twice", POST + b"Expect: 100-continue, 100-continue\r\nContent-Length: 2\r\n\r\nhi", 417, "Expect other"),
]


def read_body_app(environ, start_response):
    """Reads the whole body, answers 'ok'; records the paths it served."""
    environ["wsgi.input"].read()
    read_body_app.paths.append(environ["PATH_INFO"])
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


read_body_app.paths = []


def path_app(environ, start_response):
    """Answers with its path, to tell pipelined responses apart."""
    body = environ["PATH_INFO"].encode("latin-1")
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def wait_until(predicate, timeout=TIMEOUT):
    """Poll `predicate` until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within %ss" % timeout)
        time.sleep(0.01)


def rss():
    """This process's resident set size in bytes."""
    with open("/proc/self/status") as status:
        return int(re.search(r"VmRSS:\s*(\d+) kB", status.read()).group(1)) * 1024


class HostileInputTests(ServerTestCase):
    """Every row of HOSTILE_REQUESTS: its status, Connection: close, a closed
    connection, one escaped log line naming the reason, and a server that lives on."""

    def setUp(self):
        super().setUp()
        read_body_app.paths.clear()
        self.server = self.start_server(read_body_app,
                                        limits=runserver.Limits(**HOSTILE_LIMITS))
        self.idle_threads = threading.active_count()

    def refuse(self, raw):
        """Send raw bytes on a new connection; return (client port, response)."""
        sock = self.connect(self.server)
        port = sock.getsockname()[1]
        half_close = raw.endswith(HALF_CLOSE)
        sock.sendall(raw[:-len(HALF_CLOSE)] if half_close else raw)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        response = Reader(sock).response()
        self.assertClosed(sock)
        return port, response

    def test_hostile_requests(self):
        for name, raw, status, reason in HOSTILE_REQUESTS:
            with self.subTest(name):
                LOG.clear()
                port, response = self.refuse(raw)
                self.assertEqual(response.status, status, response)
                self.assertEqual(response.header("connection"), "close")
                self.assertIn(str(status).encode(), response.body)
                message = LOG.wait_for(r"^127\.0\.0\.1:%d .* %d: .*%s" % (port, status, reason))
                self.assertNotRegex(message, "[\x00-\x1f\x7f-\x9f]")
                self.assertEqual([m for m in LOG.messages()
                                  if m.startswith("127.0.0.1:%d " % port)], [message])
                self.assertEqual(http_get(self.server.port).body, b"ok")
        self.assertEqual(read_body_app.paths, ["/"] * len(HOSTILE_REQUESTS))
        self.assertFalse([r for r in LOG.records if r.exc_info or "Traceback" in r.getMessage()])
        wait_until(lambda: threading.active_count() <= self.idle_threads)

    def test_the_table_is_well_formed(self):
        names = [row[0] for row in HOSTILE_REQUESTS]
        self.assertEqual(len(names), len(set(names)))

    def test_control_characters_in_the_log_are_escaped(self):
        port, response = self.refuse(b"GET /\x1b[31mred\x07 HTTP/1.1\r\n" + HOST + b"\r\n")
        self.assertEqual(response.status, 400)
        message = LOG.wait_for(r"^127\.0\.0\.1:%d " % port)
        self.assertIn("\\x1b[31mred\\x07", message)
        self.assertNotRegex(message, "[\x00-\x1f\x7f]")

    def test_tls_on_the_http_port_is_closed_without_an_http_answer(self):
        sock = self.connect(self.server)
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32)
        self.assertEqual(Reader(sock).read_to_eof(), b"")      # a TLS client cannot read one
        LOG.wait_for(r"^127\.0\.0\.1:%d .*speaks HTTP, not HTTPS" % sock.getsockname()[1])
        self.assertEqual(http_get(self.server.port).body, b"ok")

    def test_a_flood_of_empty_lines_before_a_request_is_skipped_cheaply(self):
        # RFC 9112 2.2 lets a server skip empty lines before a request; doing
        # so two bytes at a time would take far longer than the header timeout.
        server = self.start_server(read_body_app, limits=runserver.Limits(header_timeout=3))
        response = self.request(server, b"\r\n" * (8 << 20) + get())
        self.assertEqual((response.status, response.body), (200, b"ok"))

    def test_optional_whitespace_around_content_length_is_not_part_of_it(self):
        # RFC 9110 5.5: OWS around a field value is not part of the value, so
        # "Content-Length:  5 " is the number 5 (h11 and waitress agree).
        for value in (b" 5", b"\t5", b"5 ", b"5\t"):
            with self.subTest(value=value):
                response = self.request(self.server, POST + b"Content-Length:%s\r\n\r\nhello"
                                        % value)
                self.assertEqual(response.status, 200)

    def test_well_formed_edge_cases_are_served(self):
        cases = [b"OPTIONS * HTTP/1.1\r\n" + HOST + b"\r\n",
                 b"GET / HTTP/1.0\r\n\r\n",
                 b"\r\n\r\nGET / HTTP/1.1\r\n" + HOST + b"\r\n",     # RFC 9112 2.2
                 b"GET / HTTP/1.1\r\nhOsT:127.0.0.1\r\nX-Empty:\r\n\r\n",
                 b"GET / HTTP/1.1\r\n" + HOST + b"X: caf\xe9 \x80\xff\r\n\r\n",  # obs-text
                 POST + b"Content-Length: 0000000005\r\n\r\nhello",
                 POST + b"Transfer-Encoding: Chunked\r\n\r\n5;a=b;c=\"d e\"\r\nhello\r\n0\r\n\r\n",
                 CHUNKED + b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
                 CHUNKED + b"3e8\r\n" + b"x" * 1000 + b"\r\n0\r\n\r\n",
                 POST + b"Content-Length: 1000\r\n\r\n" + b"x" * 1000,
                 POST + b"Expect: 100-Continue\r\nContent-Length: 2\r\n\r\nhi"]
        for raw in cases:
            with self.subTest(raw=raw[:60]):
                sock = self.connect(self.server)
                sock.sendall(raw)
                reader = Reader(sock)
                response = reader.response()
                if response.status == 100:
                    response = reader.response()
                self.assertEqual((response.status, response.body), (200, b"ok"))

    def test_smuggled_request_is_never_served(self):
        smuggled = b"GET /smuggled HTTP/1.1\r\n" + HOST + b"\r\n"
        body = b"0\r\n\r\n" + smuggled
        attempts = [
            POST + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(body) + body,
            POST + b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n" % len(body) + body,
            POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + body,
            POST + b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n" + body,
            POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n" + body,
            POST + b"Transfer-Encoding : chunked\r\nContent-Length: 0\r\n\r\n" + body,
            POST + b"Transfer-Encoding:\x0bchunked\r\nContent-Length: 0\r\n\r\n" + body,
            POST + b"Content-Length: 0\r\n Transfer-Encoding: chunked\r\n\r\n" + body,
            POST + b"Content-Length: 0\r\nContent-Length: %d\r\n\r\n" % len(smuggled) + smuggled,
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n" + body,
        ]
        for raw in attempts:
            with self.subTest(raw=raw[:90]):
                data = self.exchange(self.server, raw)
                self.assertEqual(data.count(b"HTTP/1.1 "), 1, data)
                self.assertRegex(data, rb"^HTTP/1\.1 (400|501) ")
        self.assertEqual(read_body_app.paths, [])    # neither the POST nor /smuggled ran


class BacktrackingTests(ServerTestCase):

    def test_whitespace_heavy_header_is_refused_without_backtracking(self):
        # A field-value pattern that could also match the whitespace before it
        # took about 14 s of CPU for this head; the answer must come at once.
        server = self.start_server()
        sock = self.connect(server)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b" " * 60000
                     + b"\x01\r\n\r\n")
        self.assertEqual(Reader(sock).response().status, 400)


    def test_long_absolute_form_target_is_refused_without_backtracking(self):
        server = self.start_server()
        sock = self.connect(server)
        sock.sendall(b"GET http://" + b"a" * 65000 + b"# HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.assertEqual(Reader(sock).response().status, 400)


def vm_size():
    """This process's virtual memory size in bytes."""
    with open("/proc/self/status") as status:
        return int(re.search(r"VmSize:\s*(\d+) kB", status.read()).group(1)) * 1024


class ReviewRegressionTests(ServerTestCase):
    """Found in review: each would have crashed, stalled or corrupted a response."""

    def test_huge_chunk_size_does_not_allocate_it(self):
        server = self.start_server(echo_app)
        before = vm_size()
        socks = []
        for _ in range(3):
            sock = self.connect(server)
            sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked"
                         b"\r\n\r\n3FFFFFF0\r\nabc")
            socks.append(sock)
        time.sleep(0.2)             # let the server threads reach their recv()
        self.assertLess(vm_size() - before, 512 << 20)

    def test_bare_lf_in_a_chunked_body_is_refused_at_once(self):
        server = self.start_server(echo_app, limits=runserver.Limits(body_timeout=60))
        response = self.request(server, b"POST / HTTP/1.1\r\nHost: localhost\r\n"
                                        b"Transfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n")
        self.assertEqual(response.status, 400)

    def test_bad_second_request_is_logged_without_the_first_request_line(self):
        server = self.start_server()
        self.exchange(server, get("/first-good") + b"XYZ\n\n")
        line = LOG.wait_for(r"bare LF")
        self.assertNotIn("first-good", line)

    def test_write_then_a_list_sends_one_response(self):
        def app(environ, start_response):
            write = start_response("200 OK", [])
            write(b"one")
            return [b"two"]
        server = self.start_server(app)
        data = self.exchange(server, get(extra=b"Connection: close\r\n"))
        self.assertEqual(data.count(b"HTTP/1.1"), 1, data)
        self.assertIn(b"3\r\ntwo\r\n", data)

    def test_non_latin1_header_or_status_is_a_500(self):
        for status, headers in (("200 OK", [("X-Name", "caf\u00e9 \u2713")]),
                                ("200 \u2713", []), ("101 Switching Protocols", [])):
            def app(environ, start_response, status=status, headers=headers):
                start_response(status, headers)
                return [b"x"]
            with self.subTest(status=status, headers=headers):
                self.assertEqual(self.request(self.start_server(app), get()).status, 500)

    def test_no_100_continue_after_the_response_started(self):
        def app(environ, start_response):
            write = start_response("200 OK", [])
            write(b"started")
            environ["wsgi.input"].read()
            return []
        server = self.start_server(app)
        sock = self.connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        reader = Reader(sock)
        reader.read_until(b"started")
        sock.sendall(b"body")
        data = reader.read_to_eof()
        self.assertNotIn(b"100 Continue", data)


def long_fields_app(environ, start_response):
    """A long status and a long header value, different at every request."""
    start_response("200 %s" % ("x" * 300 + environ["QUERY_STRING"]),
                   [("X-Long", "y" * 300 + environ["QUERY_STRING"]), ("Content-Length", "0")])
    return []


class CacheTests(ServerTestCase):
    """The module's caches of checked names, statuses and Hosts keep only short,
    valid entries: long ones would let clients or an app fill memory."""

    def test_only_short_valid_entries_are_cached(self):
        server = self.start_server(long_fields_app)
        long_name, refused = b"X-" + b"n" * 300, b"refused.example"
        for extra, host in ((long_name + b": 1\r\n", b"127.0.0.1"),
                            (b"X-Short-Name: 1\r\n", b"localhost:%d" % server.port),
                            (b"", refused), (b"", b"h" * 300 + b".localhost")):
            response = self.request(server, b"GET /?1 HTTP/1.1\r\nHost: %s\r\n%s\r\n"
                                    % (host, extra))
            self.assertEqual(response.status, 400 if host == refused else 200)
        self.assertIn(b"X-Short-Name", runserver.FIELD_NAMES)
        self.assertIn(b"localhost:%d" % server.port, runserver.HOSTS_CHECKED)
        for cache in (runserver.FIELD_NAMES, runserver.STATUS_LINES, runserver.HOSTS_CHECKED,
                      server.server._hosts_allowed):
            self.assertNotIn(refused, cache)
            self.assertEqual([key for key in cache if len(key) > runserver.CACHE_ENTRY_LENGTH],
                             [])
        self.assertEqual([item for item in runserver.RESPONSE_FIELDS
                          if len(item[0]) + len(item[1]) > runserver.CACHE_ENTRY_LENGTH], [])

    def test_a_proxys_long_forwarding_headers_are_not_cached(self):
        server = self.start_server(hello_app, proxy_headers=True)      # loopback is trusted
        hops = b", ".join(b"_hop%d" % index for index in range(60))    # 60 obfuscated nodes
        for extra in (b"X-Forwarded-For: " + hops + b"\r\n", b"X-Forwarded-For: _" + b"n" * 300
                      + b", 192.0.2.7\r\n", b"X-Forwarded-For: 192.0.2.7, 192.0.2.1\r\n"):
            self.assertEqual(self.request(server, get(extra=extra)).status, 200)
        trust = server.server.proxy_trust
        self.assertIn("192.0.2.1", trust.known)
        self.assertEqual([key for key in trust.known if len(key) > runserver.CACHE_ENTRY_LENGTH],
                         [])
        self.assertEqual(len(trust.read), 1)


class HostCheckTests(ServerTestCase):
    """The DNS-rebinding guard: which Host values a server answers."""

    def get_with_host(self, server, host, target=b"/"):
        """The response to a GET with this Host header."""
        return self.request(server, b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, host))

    def assertAnswers(self, server, hosts):
        for host in hosts:
            with self.subTest(host=host):
                self.assertEqual(self.get_with_host(server, host).status, 200)

    def assertRefuses(self, server, hosts):
        for host in hosts:
            with self.subTest(host=host):
                response = self.get_with_host(server, host)
                self.assertEqual(response.status, 400)
                self.assertEqual(response.header("connection"), "close")
                self.assertIn(b"--allowed-hosts", response.body)
                LOG.wait_for(r"400: Host .*%s.* not allowed" % re.escape(host.decode()))

    def test_loopback_server_answers_local_names_only(self):
        server = self.start_server()
        self.assertAnswers(server, [b"localhost", b"LOCALHOST:8000", b"foo.localhost",
                                    b"a.b.localhost:1", b"localhost.", b"127.0.0.1",
                                    b"127.0.0.1:123", b"[::1]", b"[::1]:8000"])
        self.assertRefuses(server, [b"evil.test", b"evil.test:8000", b"localhost.evil.test",
                                    b"127.0.0.1.evil.test", b"evillocalhost", b"127.0.0.2",
                                    b"[::2]", b"0.0.0.0", b"192.168.1.1"])

    def test_refusal_names_the_option_and_the_host(self):
        server = self.start_server()
        response = self.get_with_host(server, b"evil.test:8000")
        self.assertIn(b"--allowed-hosts evil.test", response.body)

    def test_absolute_form_target_is_checked_too(self):
        server = self.start_server()
        response = self.get_with_host(server, b"localhost", b"http://evil.test/")
        self.assertEqual(response.status, 400)
        self.assertIn(b"--allowed-hosts", response.body)

    def test_http_1_0_without_host_is_answered(self):
        server = self.start_server()
        self.assertEqual(self.request(server, b"GET / HTTP/1.0\r\n\r\n").status, 200)

    def test_any_host_with_asterisk(self):
        server = self.start_server(allowed_hosts=["*"])
        self.assertAnswers(server, [b"evil.test", b"localhost", b"1.2.3.4:5"])

    def test_domain_and_its_subdomains(self):
        server = self.start_server(allowed_hosts=[".example.test"])
        self.assertAnswers(server, [b"example.test", b"www.example.test",
                                    b"a.b.example.test:8000", b"EXAMPLE.TEST"])
        self.assertRefuses(server, [b"evil.test", b"notexample.test", b"example.test.evil",
                                    b"localhost"])

    def test_explicit_names(self):
        server = self.start_server(allowed_hosts=["dev.test", "10.0.0.1", "::1"])
        self.assertAnswers(server, [b"dev.test", b"dev.test:80", b"10.0.0.1:8000", b"[::1]"])
        self.assertRefuses(server, [b"www.dev.test", b"10.0.0.10", b"127.0.0.1"])

    def test_server_on_all_interfaces_answers_any_host(self):
        # Tests bind only to loopback: the default for 0.0.0.0 and :: is checked
        # on the address alone.
        for address in (("0.0.0.0", 8000), ("::", 8000, 0, 0), ("192.168.1.5", 80)):
            with self.subTest(address=address):
                bound = type("Bound", (), {"server_address": address})()
                self.assertEqual(runserver.default_allowed_hosts(bound), ["*"])
        bound = type("Bound", (), {"server_address": ("127.0.0.2", 8000)})()
        self.assertNotIn("*", runserver.default_allowed_hosts(bound))


class LimitsAndTimeoutsTests(ServerTestCase):
    """Slow and silent clients are cut off by the header, idle and body timeouts."""

    def short(self, **limits):
        values = dict(header_timeout=0.5, keepalive_timeout=0.5, body_timeout=0.5)
        values.update(limits)
        return self.start_server(echo_app, limits=runserver.Limits(**values))

    def test_stalled_head_gets_408(self):
        server = self.short()
        sock = self.connect(server)
        sock.sendall(b"GET / HTTP/1.1\r\n" + HOST)        # and never the blank line
        response = Reader(sock).response()
        self.assertEqual(response.status, 408)
        self.assertEqual(response.header("connection"), "close")
        self.assertClosed(sock)
        LOG.wait_for(r"^127\.0\.0\.1:%d .* 408: .*--header-timeout" % sock.getsockname()[1])
        self.assertEqual(http_get(server.port).status, 200)

    def test_trickled_head_is_cut_off(self):
        # One byte every 20 ms: each recv succeeds, but the whole head would
        # take 20 s, far more than the 0.5 s header timeout.
        server = self.short()
        sock = self.connect(server)
        stop = threading.Event()
        self.addCleanup(stop.set)

        def trickle():
            try:
                for byte in b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 1000 + b"\r\n\r\n":
                    if stop.wait(0.02):
                        return
                    sock.send(bytes([byte]))
            except OSError:
                pass

        threading.Thread(target=trickle, daemon=True).start()
        response = Reader(sock).response()
        stop.set()
        self.assertEqual(response.status, 408)
        LOG.wait_for(r"^127\.0\.0\.1:%d .* 408: .*--header-timeout" % sock.getsockname()[1])

    def test_silent_connection_is_closed(self):
        server = self.short()
        sock = self.connect(server)
        self.assertEqual(Reader(sock).read_to_eof(), b"")
        LOG.wait_for(r"^127\.0\.0\.1:%d .*--header-timeout" % sock.getsockname()[1])

    def test_idle_keep_alive_connection_is_closed(self):
        server = self.short()
        sock = self.connect(server)
        sock.sendall(get())
        self.assertEqual(Reader(sock).response().status, 200)
        self.assertEqual(Reader(sock).read_to_eof(), b"")
        LOG.wait_for(r"^127\.0\.0\.1:%d .*--keepalive-timeout" % sock.getsockname()[1])

    def test_stalled_content_length_body_gets_408(self):
        server = self.short()
        sock = self.connect(server)
        sock.sendall(POST + b"Content-Length: 10\r\n\r\nhel")
        response = Reader(sock).response()
        self.assertEqual(response.status, 408)
        self.assertClosed(sock)
        LOG.wait_for(r"^127\.0\.0\.1:%d .* 408: .*--body-timeout" % sock.getsockname()[1])
        self.assertEqual(http_get(server.port).status, 200)

    def test_stalled_chunked_body_gets_408(self):
        server = self.short()
        sock = self.connect(server)
        sock.sendall(CHUNKED + b"5\r\nhello\r\n")
        response = Reader(sock).response()
        self.assertEqual(response.status, 408)
        self.assertClosed(sock)
        LOG.wait_for(r"^127\.0\.0\.1:%d .* 408: .*--body-timeout" % sock.getsockname()[1])

    def test_slow_but_steady_body_is_accepted(self):
        # The body timeout is about silence, not about the body's total time.
        server = self.short(body_timeout=0.5)
        sock = self.connect(server)
        sock.sendall(POST + b"Content-Length: 6\r\n\r\n")
        for index in range(6):
            time.sleep(0.1)                 # pacing a slow client, not synchronisation
            sock.sendall(b"%d" % index)
        response = Reader(sock).response()
        self.assertEqual((response.status, response.body), (200, b"012345"))

    def test_slow_reader_of_a_keep_alive_response_is_not_cut(self):
        # Writing a response is bounded by the body timeout, not by what was
        # left of the keep-alive or header timeout when the request arrived.
        big = b"x" * (32 << 20)                 # more than the socket buffers hold

        def app(environ, start_response):
            body = big if environ["PATH_INFO"] == "/big" else b"small"
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return iter([body])
        server = self.start_server(app, limits=runserver.Limits(
            header_timeout=0.2, keepalive_timeout=0.2, body_timeout=TIMEOUT))
        sock = self.connect(server)
        reader = Reader(sock)
        sock.sendall(get("/small"))
        self.assertEqual(reader.response().body, b"small")
        sock.sendall(get("/big"))
        time.sleep(0.6)                         # a client slow to read, not synchronisation
        reader.read_until(b"\r\n\r\n")
        received = len(reader.buffer)
        while received < len(big):
            data = sock.recv(1 << 20)
            self.assertTrue(data, "response cut after %d bytes" % received)
            received += len(data)
        self.assertEqual(received, len(big))

    def test_defaults_are_finite(self):
        limits = runserver.Limits()
        for name in ("max_request_line", "max_header_size", "max_headers", "max_body",
                     "header_timeout", "keepalive_timeout", "body_timeout"):
            with self.subTest(name):
                self.assertGreater(getattr(limits, name), 0)
                self.assertLess(getattr(limits, name), 1 << 40)


class SmallSendBuffer(runserver.WSGIRequestHandler):
    """The server's side of each connection gets a small, fixed send buffer:
    it becomes writable again only once a third of it drained, which takes
    a client reading 1 KiB every 40 ms longer than a 0.25 s body timeout."""

    send_buffer = 16384

    def setup(self):
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        super().setup()


SLOW_READER_SIZE = 48 * 1024


def chunks_app(environ, start_response):
    """SLOW_READER_SIZE bytes (or the query's number) in 8 KiB pieces, iterated."""
    size = int(environ["QUERY_STRING"] or SLOW_READER_SIZE)
    start_response("200 OK", [("Content-Length", str(size))])
    return (b"x" * 8192 for _ in range(size // 8192))


def small_receive_buffer(port, wrap=lambda sock: sock):
    """A connection to 127.0.0.1:port with a small receive buffer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", port))
    return wrap(sock)


def read_slowly(sock, path, size=1024):
    """GET `path`, reading `size` bytes every 40 ms; return the body (None if cut short)."""
    with sock:
        sock.sendall(get(path, extra=b"Connection: close\r\n"))
        received = b""
        pause = threading.Event()
        while True:
            try:
                data = sock.recv(size)
            except ConnectionResetError:
                return None
            if not data:
                head, _, body = received.partition(b"\r\n\r\n")
                return body if head.startswith(b"HTTP/1.1 200 ") else None
            received += data
            pause.wait(0.04)


def read_slowly_in_threads(connections, size=1024):
    """read_slowly() of each (sock, path) at the same time; their bodies."""
    bodies = {}
    threads = [threading.Thread(target=lambda sock, path: bodies.update({path: read_slowly(
        sock, path, size)}), args=pair) for pair in connections]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    return bodies


class SlowReaderTests(ServerTestCase):
    """A response to a client that reads slowly goes out whole: --body-timeout
    is the time without progress; the log gives the bytes the client got."""

    def setUp(self):
        super().setUp()
        self.directory = tempfile.mkdtemp(prefix="runserver-test-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        with open(os.path.join(self.directory, "file.bin"), "wb") as file:
            file.write(os.urandom(SLOW_READER_SIZE))

    def start_slow_server(self, **options):
        """A server with small send buffers and a 0.25 s body timeout."""
        return self.start_server(chunks_app, quiet=False, handler_class=SmallSendBuffer,
                                 static=[("/static", self.directory)],
                                 limits=runserver.Limits(body_timeout=0.25), **options)

    def test_a_slow_reader_gets_all_of_a_file_and_of_an_iterated_response(self):
        server = self.start_slow_server()
        bodies = read_slowly_in_threads([(small_receive_buffer(server.port), path)
                                         for path in ("/static/file.bin", "/")])
        with open(os.path.join(self.directory, "file.bin"), "rb") as file:
            self.assertEqual(bodies, {"/static/file.bin": file.read(),
                                      "/": b"x" * SLOW_READER_SIZE})
        for path in ("/static/file.bin", "/"):
            LOG.wait_for(r'"GET %s HTTP/1.1" 200 %d [0-9.]+ms$' % (path, SLOW_READER_SIZE))

    def test_a_client_that_stops_reading_is_dropped_with_the_bytes_it_got(self):
        server = self.start_slow_server()
        readers = {}
        for path in ("/static/file.bin", "/"):
            sock = small_receive_buffer(server.port)
            self.addCleanup(sock.close)
            sock.sendall(get(path))
            readers[path] = Reader(sock)
            readers[path].read_until(b"\r\n\r\n")
        for path, reader in readers.items():
            line = LOG.wait_for(r'"GET %s HTTP/1.1" 200 \d+ .*--body-timeout' % path)
            logged = int(re.search(r" 200 (\d+) ", line).group(1))
            self.assertTrue(0 < logged < SLOW_READER_SIZE, line)
        wait_until(lambda: server.server._accepted == 0)    # then they read what they got
        for path, reader in readers.items():
            try:
                reader.read_to_eof()
            except ConnectionResetError:
                pass
            self.assertIn('"GET %s HTTP/1.1" 200 %d ' % (path, len(reader.buffer)),
                          "\n".join(LOG.messages()))


class LoadTests(ServerTestCase):
    """Many connections, slow clients, pipelining and huge uploads, with real sockets."""

    def test_500_concurrent_keep_alive_connections(self):
        server = self.start_server(path_app)
        idle = threading.active_count()
        socks = [self.connect(server) for _ in range(500)]
        for round in range(2):
            for index, sock in enumerate(socks):
                sock.sendall(get("/%d/%d" % (index, round)))
            for index, sock in enumerate(socks):
                reader = Reader(sock)
                response = reader.response()
                self.assertEqual((response.status, response.body),
                                 (200, b"/%d/%d" % (index, round)))
                self.assertEqual(reader.buffer, b"")
        for sock in socks:
            sock.close()
        wait_until(lambda: threading.active_count() <= idle)

    def test_200_slowloris_connections_do_not_block_a_normal_client(self):
        server = self.start_server()
        slow = [self.connect(server) for _ in range(200)]
        for sock in slow:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        self.assertEqual(http_get(server.port).body, b"Hello world\n")
        for sock in slow:
            sock.sendall(b"1\r\n\r\n")
        for sock in slow:
            self.assertEqual(Reader(sock).response().status, 200)

    def test_100_pipelined_requests_answered_in_order(self):
        server = self.start_server(path_app)
        sock = self.connect(server)
        sock.sendall(b"".join(get("/%d" % index) for index in range(99))
                     + get("/99", extra=b"Connection: close\r\n"))
        reader = Reader(sock)
        for index in range(100):
            self.assertEqual(reader.response().body, b"/%d" % index)
        self.assertEqual(reader.read_to_eof(), b"")

    UPLOAD_MIB = 256

    def upload_blocks(self):
        """UPLOAD_MIB blocks of 1 MiB; seven patterns, so misordering shows in the hash."""
        base = bytes(range(256)) * 4096
        patterns = [base[shift:] + base[:shift] for shift in (0, 1, 3, 7, 15, 31, 63)]
        return [patterns[index % 7] for index in range(self.UPLOAD_MIB)]

    def hashing_app(self):
        """An app hashing the body while streaming it, sampling the RSS as it goes."""
        def app(environ, start_response):
            digest = hashlib.sha256()
            body = environ["wsgi.input"]
            total = 0
            while True:
                data = body.read(65536)
                if not data:
                    break
                digest.update(data)
                total += len(data)
                if total % (16 << 20) == 0:
                    # What the server still holds, not garbage a tracing GC (PyPy's)
                    # has yet to collect: on CPython this frees nothing more.
                    gc.collect()
                    app.peak = max(app.peak, rss())
            result = ("%d %s" % (total, digest.hexdigest())).encode()
            start_response("200 OK", [("Content-Length", str(len(result)))])
            return [result]
        app.peak = 0
        return app

    def upload(self, chunked):
        blocks = self.upload_blocks()
        expected = hashlib.sha256()
        for block in blocks:
            expected.update(block)
        app = self.hashing_app()
        server = self.start_server(app)
        before = app.peak = rss()
        started = time.monotonic()
        sock = self.connect(server)
        if chunked:
            sock.sendall(CHUNKED)
            for block in blocks:
                sock.sendall(b"%x\r\n" % len(block))
                sock.sendall(block)
                sock.sendall(b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        else:
            sock.sendall(POST + b"Content-Length: %d\r\n\r\n" % (self.UPLOAD_MIB << 20))
            for block in blocks:
                sock.sendall(block)
        response = Reader(sock).response()
        elapsed = time.monotonic() - started
        self.assertEqual(response.body.decode(), "%d %s" % (self.UPLOAD_MIB << 20,
                                                             expected.hexdigest()))
        # A body held in memory would grow the RSS by UPLOAD_MIB (256 MiB). PyPy's JIT
        # and GC arenas grow by tens of MiB on their own and are not given back.
        bound = (128 if sys.implementation.name == "pypy" else 64) << 20
        self.assertLess(app.peak - before, bound, "RSS grew by %d MiB"
                        % ((app.peak - before) >> 20))
        if os.environ.get("TEST_RUNSERVER_TIMES"):
            sys.stderr.write(" [%s upload of %d MiB: %.2fs, RSS +%d MiB] "
                             % ("chunked" if chunked else "Content-Length", self.UPLOAD_MIB,
                                elapsed, (app.peak - before) >> 20))

    def test_huge_upload_with_content_length(self):
        self.upload(chunked=False)

    def test_huge_chunked_upload(self):
        self.upload(chunked=True)


class ThreadModelTests(ServerTestCase):
    """One thread serves the event loop; slow requests get threads of their own."""

    def test_a_full_poller_leaves_connections_in_the_backlog(self):
        # Windows' select() takes 512 sockets: a poller that waits on
        # SELECT_MAX_SOCKETS connections there accepts no more until one closes.
        LOG.clear()
        server = self.start_server(quiet=False)
        server.server._poller.capacity = 2
        first, second = self.connect(server), self.connect(server)
        for sock in (first, second):
            sock.sendall(get())
            self.assertEqual(Reader(sock).response().status, 200)   # then idle, waited on
        third = self.connect(server)
        third.sendall(get())
        LOG.wait_for(r"Cannot accept connections: the event loop waits on 2 connections")
        first.close()
        self.assertEqual(Reader(third).response().status, 200)
        self.assertEqual(sum("Cannot accept" in record.getMessage() for record in LOG.records), 1)

    def test_the_poller(self):
        server = self.start_server()
        self.assertEqual(server.server._poller.use_epoll, runserver.Poller.use_epoll)

    def test_quick_requests_are_all_served_by_the_loop_thread(self):
        # Not even a request slowed down by a loaded machine is handed on.
        original = runserver.PROMOTE_AFTER
        runserver.PROMOTE_AFTER = TIMEOUT
        self.addCleanup(setattr, runserver, "PROMOTE_AFTER", original)
        idents = []

        def app(environ, start_response):
            idents.append(threading.get_ident())
            return hello_app(environ, start_response)
        server = ServerThread(app)
        self.addCleanup(server.close)
        with contextlib.ExitStack() as stack:
            socks = [stack.enter_context(socket.create_connection(("127.0.0.1", server.port)))
                     for _ in range(5)]
            for _ in range(3):
                for sock in socks:
                    sock.sendall(get())
                    self.assertEqual(Reader(sock).response().status, 200)
        self.assertEqual(len(idents), 15)
        self.assertEqual(len(set(idents)), 1)
        self.assertNotEqual(idents[0], server.thread.ident)     # that one is the watchdog

    def test_slow_requests_get_threads_of_their_own_which_exit_when_unused(self):
        original = runserver.SPARE_THREAD_TIMEOUT
        runserver.SPARE_THREAD_TIMEOUT = 0.05
        self.addCleanup(setattr, runserver, "SPARE_THREAD_TIMEOUT", original)
        release = threading.Event()
        started = []

        def app(environ, start_response):
            if environ["PATH_INFO"] == "/slow":
                started.append(threading.get_ident())
                release.wait(TIMEOUT)
            return hello_app(environ, start_response)
        server = ServerThread(app)
        self.addCleanup(server.close)
        before = threading.active_count()
        with contextlib.ExitStack() as stack:
            slow = [stack.enter_context(socket.create_connection(("127.0.0.1", server.port)))
                    for _ in range(3)]
            for sock in slow:
                sock.sendall(get("/slow"))
            wait_until(lambda: len(started) == 3)
            # Three requests blocked in the app, and a fourth client still served.
            self.assertEqual(http_get(server.port).status, 200)
            self.assertEqual(len(set(started)), 3)
            release.set()
            for sock in slow:
                reader = Reader(sock)
                self.assertEqual(reader.response().status, 200)
                sock.sendall(get())         # the connection went back to the loop
                self.assertEqual(reader.response().status, 200)
        # The threads the slow requests got wait SPARE_THREAD_TIMEOUT, then exit.
        wait_until(lambda: server.server.spare_threads == 0
                   and threading.active_count() <= before)

    def test_a_burst_of_slow_requests_takes_the_loop_over_once(self):
        # Not once per slow request: each take-over costs the others a
        # watchdog's wait (PROMOTE_AFTER), so that 200 of them were a second.
        release = threading.Event()
        running = []

        def app(environ, start_response):
            if environ["PATH_INFO"] == "/slow":
                running.append(threading.get_ident())
                release.wait(TIMEOUT)
            return hello_app(environ, start_response)
        server = self.start_server(app)
        self.addCleanup(release.set)
        fast = self.connect(server)
        reader = Reader(fast)
        fast.sendall(get())
        self.assertEqual(reader.response().status, 200)
        generation = server.server._generation
        slow = [self.connect(server) for _ in range(20)]
        for sock in slow:
            sock.sendall(get("/slow"))
        wait_until(lambda: len(running) == 20)
        fast.sendall(get())                 # a keep-alive client, served meanwhile
        self.assertEqual(reader.response().status, 200)
        self.assertLessEqual(server.server._generation - generation, 3)
        self.assertEqual(len(set(running)), 20)
        release.set()
        for sock in slow:
            self.assertEqual(Reader(sock).response().status, 200)

    def test_a_request_arriving_at_shutdown_is_answered(self):
        server = runserver.make_server(hello_app, "127.0.0.1", 0, quiet=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(server.server_close)
        sock = socket.create_connection(("127.0.0.1", server.server_port), timeout=TIMEOUT)
        self.addCleanup(sock.close)
        sock.sendall(get())
        self.assertEqual(Reader(sock).response().status, 200)
        idle = socket.create_connection(("127.0.0.1", server.server_port), timeout=TIMEOUT)
        self.addCleanup(idle.close)
        idle.sendall(get())
        self.assertEqual(Reader(idle).response().status, 200)
        server.shutdown()
        thread.join(TIMEOUT)
        sock.sendall(get())                 # after the loop stopped, before the connection closed
        self.assertEqual(server.close_idle_and_wait(TIMEOUT), 0)
        response = Reader(sock).response()
        self.assertEqual((response.status, response.header("connection")), (200, "close"))
        self.assertEqual(idle.recv(10), b"")


    def test_no_thread_serves_after_serve_forever_returned(self):
        server = runserver.make_server(hello_app, "127.0.0.1", 0, quiet=True)
        self.addCleanup(server.server_close)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.assertTrue(server.serving.wait(TIMEOUT))
        self.assertEqual(http_get(server.server_port).status, 200)
        server.shutdown()
        thread.join(TIMEOUT)
        wait_until(lambda: server.spare_threads == 1)  # the loop's thread, waiting for work
        server.request_stop()
        server.serve_forever()                          # returns at once: the stop came first
        wait_until(lambda: server._leaders == 0)
        sock = socket.create_connection(("127.0.0.1", server.server_port), timeout=0.3)
        self.addCleanup(sock.close)
        sock.sendall(get())
        with self.assertRaises(socket.timeout):         # it waits in the backlog, unserved
            sock.recv(100)

    def test_a_request_still_running_at_server_close_gets_its_connection_closed(self):
        release = threading.Event()

        def app(environ, start_response):
            if environ["PATH_INFO"] == "/slow":
                release.wait(TIMEOUT)
            return hello_app(environ, start_response)
        server = runserver.make_server(app, "127.0.0.1", 0, quiet=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.assertTrue(server.serving.wait(TIMEOUT))
        sock = socket.create_connection(("127.0.0.1", server.server_port), timeout=TIMEOUT)
        self.addCleanup(sock.close)
        reader = Reader(sock)
        sock.sendall(get())
        self.assertEqual(reader.response().status, 200)
        sock.sendall(get("/slow"))
        wait_until(lambda: not all(h.idle for h in list(server._connections)))
        server.shutdown()
        self.assertEqual(server.close_idle_and_wait(0.05), 1)
        server.server_close()
        release.set()
        response = reader.response()
        self.assertEqual((response.status, response.header("connection")), (200, "close"))
        self.assertEqual(reader.read_to_eof(), b"")
        self.assertFalse([r for r in LOG.records if r.levelno >= logging.ERROR])

    def test_handler_and_server_hooks_still_apply(self):
        calls = []

        class Handler(runserver.WSGIRequestHandler):
            def handle_one_request(self):
                calls.append(self.requests)
                return super().handle_one_request()
        server = self.start_server(handler_class=Handler)
        sock = self.connect(server)
        reader = Reader(sock)
        for _ in range(2):
            sock.sendall(get())
            self.assertEqual(reader.response().status, 200)
        self.assertEqual(calls, [0, 1])
        refused = []
        server.server.verify_request = lambda request, address: refused.append(address) and False
        self.assertEqual(self.exchange(server, get()), b"")
        self.assertEqual(len(refused), 1)

    def test_a_connection_reset_while_its_request_runs_is_reported_once(self):
        # epoll reports EPOLLERR and EPOLLHUP even for a switched-off socket:
        # the loop must not be woken by it again and again (a spinning core).
        release, started = threading.Event(), threading.Event()

        def app(environ, start_response):
            if environ["PATH_INFO"] == "/slow":
                started.set()
                release.wait(TIMEOUT)
            return hello_app(environ, start_response)
        server = self.start_server(app)
        self.addCleanup(release.set)
        reported = []
        poll = server.server._poller.poll
        server.server._poller.poll = lambda timeout: reported.append(poll(timeout)) \
            or reported[-1]
        sock = self.connect(server)
        sock.sendall(get())
        self.assertEqual(Reader(sock).response().status, 200)
        generation = server.server._generation
        sock.sendall(get("/slow"))
        self.assertTrue(started.wait(TIMEOUT))
        wait_until(lambda: server.server._generation != generation)    # another thread polls
        [busy] = [handler for handler in list(server.server._connections) if not handler.idle]
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()                                    # a reset, as a closed browser tab
        since_reset = len(reported)
        other = self.connect(server)
        reader = Reader(other)
        for _ in range(20):
            other.sendall(get())
            self.assertEqual(reader.response().status, 200)
        self.assertLessEqual(sum(busy.fileno in fds for fds in reported[since_reset:]), 1)
        release.set()
        wait_until(lambda: busy not in server.server._connections)

    def test_the_loop_survives_when_no_thread_can_be_started(self):
        # The watchdog's promotion fails just as the loop's thread leaves the
        # loop after its slow request: some thread must still run the loop.
        release = threading.Event()

        def app(environ, start_response):
            if environ["PATH_INFO"] == "/slow":
                release.wait(TIMEOUT)
            return hello_app(environ, start_response)
        server = runserver.make_server(app, "127.0.0.1", 0, quiet=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(server.server_close)
        self.assertTrue(server.serving.wait(TIMEOUT))
        self.assertEqual(http_get(server.server_port).status, 200)
        wait_until(lambda: server.spare_threads == 0)
        failures = []

        def start(thread):
            if not failures:        # let the loop's thread finish and wait as a spare
                release.set()
                wait_until(lambda: server.spare_threads == 1)
            failures.append(thread)
            raise RuntimeError("can't start new thread")
        original = threading.Thread.start
        threading.Thread.start = start
        try:
            sock = socket.create_connection(("127.0.0.1", server.server_port), timeout=TIMEOUT)
            self.addCleanup(sock.close)
            sock.sendall(get("/slow"))
            self.assertEqual(Reader(sock).response().status, 200)
            wait_until(lambda: failures)
            self.assertEqual(http_get(server.server_port).status, 200)
        finally:
            threading.Thread.start = original
        LOG.wait_for("Cannot start a thread to take the event loop over")
        LOG.wait_for("Cannot start a thread for a request .* serves requests in place")
        self.assertEqual(http_get(server.server_port).status, 200)
        server.shutdown()
        thread.join(TIMEOUT)
        self.assertFalse(thread.is_alive())
        self.assertEqual(server.close_idle_and_wait(TIMEOUT), 0)
        wait_until(lambda: server._leaders == 0)

    def test_system_exit_in_the_app_closes_that_connection_only(self):
        def app(environ, start_response):
            if environ["PATH_INFO"] == "/exit":
                sys.exit(3)
            return hello_app(environ, start_response)
        server = self.start_server(app)
        self.assertEqual(self.exchange(server, get("/exit")), b"")
        self.assertEqual(http_get(server.port).status, 200)
        wait_until(lambda: server.server._accepted == 0)


class SelectorPoller:
    """Mixed into a test class: the same tests with the portable selector
    poller (macOS, BSD) instead of Linux's epoll."""

    def setUp(self):
        original = runserver.Poller.use_epoll
        runserver.Poller.use_epoll = False
        self.addCleanup(setattr, runserver.Poller, "use_epoll", original)
        super().setUp()


class SelectorThreadModelTests(SelectorPoller, ThreadModelTests):
    pass


class SelectorKeepAliveTests(SelectorPoller, KeepAliveTests):
    pass


class SelectorLimitsAndTimeoutsTests(SelectorPoller, LimitsAndTimeoutsTests):
    pass


class AppFaultTests(ServerTestCase):
    """Apps that raise, misuse start_response or misframe their body; clients
    that leave.  The server answers or cuts the response, calls close(), and
    the next connection is served."""

    def setUp(self):
        super().setUp()
        self.closed = threading.Event()

    def closing(self, iterable):
        """Wrap an iterable so that its close() sets self.closed."""
        test = self

        class Result:
            def __iter__(self):
                return iter(iterable)

            def close(self):
                test.closed.set()
        return Result()

    def serve(self, app):
        server = self.start_server(app)
        self.addCleanup(lambda: self.assertEqual(http_get(server.port).status, 200))
        return server

    def fault_app(self, fault):
        """An app that misbehaves as `fault` says, except for http_get()'s
        requests (GET / with Connection: close), which it answers normally."""
        def app(environ, start_response):
            if environ["PATH_INFO"] == "/" and environ.get("HTTP_CONNECTION") == "close":
                return hello_app(environ, start_response)
            return fault(environ, start_response)
        return app

    def test_exception_before_start_response(self):
        def fault(environ, start_response):
            raise ValueError("boom before")
        server = self.serve(self.fault_app(fault))
        data = self.exchange(server, get("/x"))
        self.assertRegex(data, rb"^HTTP/1\.1 500 ")
        self.assertIn(b"Connection: close", data)
        LOG.wait_for(r"(?s)Error in the app while serving GET /x.*ValueError: boom before")

    def test_exception_after_start_response(self):
        def fault(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            raise ValueError("boom after")
        server = self.serve(self.fault_app(fault))
        data = self.exchange(server, get("/x"))
        self.assertRegex(data, rb"^HTTP/1\.1 500 ")
        self.assertNotIn(b"200 OK", data)
        LOG.wait_for(r"ValueError: boom after")

    def test_exception_in_iterator_before_first_chunk(self):
        def body():
            raise ValueError("boom in iterator")
            yield b""
        server = self.serve(self.fault_app(lambda environ, start_response: (
            start_response("200 OK", []), self.closing(body()))[1]))
        data = self.exchange(server, get("/x"))
        self.assertRegex(data, rb"^HTTP/1\.1 500 ")
        self.assertTrue(self.closed.wait(TIMEOUT))

    def test_exception_in_iterator_after_first_chunk(self):
        def body():
            yield b"first part"
            raise ValueError("boom mid-body")
        server = self.serve(self.fault_app(lambda environ, start_response: (
            start_response("200 OK", []), self.closing(body()))[1]))
        data = self.exchange(server, get("/x"))
        self.assertRegex(data, rb"^HTTP/1\.1 200 ")
        self.assertIn(b"Transfer-Encoding: chunked", data)
        self.assertTrue(data.endswith(b"a\r\nfirst part\r\n"), data)   # no last chunk
        self.assertTrue(self.closed.wait(TIMEOUT))
        LOG.wait_for(r"response cut short by an app error")

    def test_exception_in_iterator_with_content_length(self):
        def body():
            yield b"12345"
            raise ValueError("boom mid-body")
        server = self.serve(self.fault_app(lambda environ, start_response: (
            start_response("200 OK", [("Content-Length", "10")]), self.closing(body()))[1]))
        data = self.exchange(server, get("/x"))
        self.assertTrue(data.endswith(b"\r\n\r\n12345"), data)
        self.assertTrue(self.closed.wait(TIMEOUT))

    def test_exception_in_close(self):
        class Result:
            def __iter__(self):
                return iter([b"ok", b"!"])

            def close(self):
                raise ValueError("boom in close")
        server = self.serve(self.fault_app(lambda environ, start_response: (
            start_response("200 OK", []), Result())[1]))
        sock = self.connect(server)
        sock.sendall(get("/x") + get("/y"))      # the second is never answered
        reader = Reader(sock)
        self.assertEqual(reader.response().body, b"ok!")
        self.assertEqual(reader.read_to_eof(), b"")
        LOG.wait_for(r"Error in close\(\) of the app's response")
        self.assertIn("boom in close", str([r.exc_info[1] for r in LOG.records if r.exc_info]))

    def test_start_response_twice(self):
        def fault(environ, start_response):
            start_response("200 OK", [])
            start_response("404 Not Found", [])
            return self.closing([b"x"])
        server = self.serve(self.fault_app(fault))
        data = self.exchange(server, get("/x"))
        self.assertRegex(data, rb"^HTTP/1\.1 500 ")
        LOG.wait_for(r"start_response\(\) called a second time")

    def test_start_response_with_exc_info_after_headers_sent(self):
        def fault(environ, start_response):
            write = start_response("200 OK", [])
            write(b"partial")
            try:
                raise ValueError("late error")
            except ValueError:
                start_response("500 Internal Server Error", [], sys.exc_info())
            return [b"never"]
        server = self.serve(self.fault_app(fault))
        data = self.exchange(server, get("/x"))
        self.assertRegex(data, rb"^HTTP/1\.1 200 ")
        self.assertNotIn(b"never", data)
        self.assertNotIn(b"HTTP/1.1 500", data)
        LOG.wait_for(r"ValueError: late error")

    def test_start_response_with_exc_info_before_headers_sent(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            try:
                raise ValueError("early error")
            except ValueError:
                start_response("503 Service Unavailable", [("Content-Length", "4")],
                               sys.exc_info())
            return [b"busy"]
        server = self.serve(self.fault_app(app))
        response = self.request(server, get("/x"))
        self.assertEqual((response.status, response.body), (503, b"busy"))

    def test_body_shorter_than_content_length(self):
        server = self.serve(self.fault_app(lambda environ, start_response: (
            start_response("200 OK", [("Content-Length", "10")]),
            self.closing([b"abc", b"de"]))[1]))
        sock = self.connect(server)
        sock.sendall(get("/x") + get("/y"))
        data = Reader(sock).read_to_eof()
        self.assertTrue(data.endswith(b"\r\n\r\nabcde"), data)
        self.assertEqual(data.count(b"HTTP/1.1"), 1)
        self.assertTrue(self.closed.wait(TIMEOUT))
        LOG.wait_for(r"5 bytes less than its Content-Length")

    def test_body_longer_than_content_length(self):
        for body in ([b"abcdef"], [b"ab", b"cd", b"ef"], iter([b"abc", b"def"])):
            with self.subTest(body=body):
                server = self.serve(self.fault_app(lambda environ, start_response: (
                    start_response("200 OK", [("Content-Length", "3")]), body)[1]))
                sock = self.connect(server)
                sock.sendall(get("/x") + get("/y"))
                data = Reader(sock).read_to_eof()
                self.assertTrue(data.endswith(b"\r\n\r\nabc"), data)
                self.assertEqual(data.count(b"HTTP/1.1"), 1)
                LOG.wait_for(r"more bytes than its Content-Length")

    def test_head_response_never_has_a_body(self):
        server = self.serve(self.fault_app(lambda environ, start_response: (
            start_response("200 OK", [("Content-Length", "3")]), [b"abc", b"def"])[1]))
        data = self.exchange(server, b"HEAD /x HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n")
        self.assertTrue(data.endswith(b"Content-Length: 3\r\nConnection: close\r\n\r\n"), data)

    def test_non_bytes_body(self):
        for body, before in ((["text"], True), ([""], True), ([b"a", "text"], False), ([b"a", None], False)):
            with self.subTest(body=body):
                self.closed.clear()
                server = self.serve(self.fault_app(lambda environ, start_response: (
                    start_response("200 OK", []), self.closing(body))[1]))
                data = self.exchange(server, get("/x"))
                if before:
                    self.assertRegex(data, rb"^HTTP/1\.1 500 ")
                else:
                    self.assertTrue(data.endswith(b"1\r\na\r\n"), data)   # cut, no last chunk
                self.assertTrue(self.closed.wait(TIMEOUT))
                LOG.wait_for(r"not bytes, as body data")

    def test_invalid_response_headers(self):
        cases = [("X-Injected", "a\r\nSet-Cookie: evil=1"), ("X-Injected", "a\nb"),
                 ("X-Injected", "a\x00"), ("X Bad", "a"), ("X-Bytes", b"a"),
                 ("Connection", "keep-alive"), ("Transfer-Encoding", "chunked"),
                 ("Keep-Alive", "timeout=5"), ("Upgrade", "websocket"),
                 ("Content-Length", "+3"), ("Content-Length", "\u0663")]
        for name, value in cases:
            with self.subTest(header=(name, value)):
                self.closed.clear()
                server = self.serve(self.fault_app(lambda environ, start_response: (
                    start_response("200 OK", [(name, value)]), self.closing([b"abc"]))[1]))
                data = self.exchange(server, get("/x"))
                self.assertRegex(data, rb"^HTTP/1\.1 500 ")
                self.assertNotIn(b"evil=1\r\n", data)
                self.assertNotIn(b"X-Injected", data.partition(b"\r\n\r\n")[0])

    def test_header_checks_do_not_depend_on_the_cache(self):
        # A checked ("X-A", "1") is cached; an equal namedtuple is still not a tuple.
        Header = collections.namedtuple("Header", "name value")
        for headers in ([("X-Cached", "1")], [Header("X-Cached", "1")]):
            with self.subTest(headers=headers):
                server = self.serve(self.fault_app(lambda environ, start_response: (
                    start_response("200 OK", headers), [b"abc"])[1]))
                data = self.exchange(server, get("/x", extra=b"Connection: close\r\n"))
                status = b"200" if type(headers[0]) is tuple else b"500"
                self.assertTrue(data.startswith(b"HTTP/1.1 %s " % status), data)

    def test_headers_are_sent_as_checked_by_start_response(self):
        # PEP 3333 lets the server send the headers later; it sends what it
        # checked, not what the app put in the list afterwards.
        def late(environ, start_response):
            headers = [("Content-Type", "text/plain")]
            start_response("200 OK", headers)
            headers.append(("X-Late", "a\r\nSet-Cookie: evil=1"))
            yield b"abc"
        server = self.serve(self.fault_app(late))
        data = self.exchange(server, get("/x", extra=b"Connection: close\r\n"))
        self.assertRegex(data, rb"^HTTP/1\.1 200 ")
        self.assertNotIn(b"X-Late", data)
        self.assertNotIn(b"evil", data)

    def test_two_content_lengths_are_refused(self):
        server = self.serve(self.fault_app(lambda environ, start_response: (
            start_response("200 OK", [("Content-Length", "3"), ("Content-Length", "3")]),
            [b"abc"])[1]))
        self.assertRegex(self.exchange(server, get("/x")), rb"^HTTP/1\.1 500 ")

    def test_client_disconnects_mid_upload(self):
        finished = threading.Event()

        def fault(environ, start_response):
            try:
                environ["wsgi.input"].read()
            finally:
                finished.set()
            start_response("200 OK", [])
            return [b"never"]
        server = self.serve(self.fault_app(fault))
        sock = self.connect(server)
        sock.sendall(POST + b"Content-Length: 1000000\r\n\r\n" + b"x" * 100000)
        sock.close()
        self.assertTrue(finished.wait(TIMEOUT))
        LOG.wait_for(r"400: client closed the connection in the middle of the body")
        self.assertFalse([r for r in LOG.records if r.exc_info])

    def test_client_disconnects_mid_chunked_upload(self):
        server = self.serve(self.fault_app(echo_app))
        sock = self.connect(server)
        sock.sendall(CHUNKED + b"100000\r\n" + b"x" * 100000)
        sock.close()
        LOG.wait_for(r"400: client closed the connection in the middle of the body")

    def test_client_disconnects_mid_download(self):
        def body():
            block = b"x" * 65536
            for _ in range(4096):           # 256 MiB, far more than socket buffers
                yield block
        server = self.serve(self.fault_app(lambda environ, start_response: (
            start_response("200 OK", []), self.closing(body()))[1]))
        sock = self.connect(server)
        sock.sendall(get("/x"))
        Reader(sock).read_exactly(100000)
        sock.close()
        self.assertTrue(self.closed.wait(TIMEOUT))
        LOG.wait_for(r"GET /x HTTP/1\.1\" 200 \d+ .*\(client disconnected\)")
        self.assertFalse([r for r in LOG.records if r.exc_info])

    def test_client_disconnects_before_the_app_answers(self):
        answered = threading.Event()
        release = threading.Event()

        def fault(environ, start_response):
            release.wait(TIMEOUT)
            start_response("200 OK", [])
            try:
                return self.closing([b"x" * 65536] * 64)
            finally:
                answered.set()
        server = self.serve(self.fault_app(fault))
        sock = self.connect(server)
        sock.sendall(get("/x"))
        sock.close()
        release.set()
        self.assertTrue(answered.wait(TIMEOUT))
        self.assertTrue(self.closed.wait(TIMEOUT))


def prefix_app(environ, start_response):
    """Answers 'app:' and the path, so a test sees which requests reach the app."""
    body = ("app:" + environ["PATH_INFO"]).encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def environ_app(environ, start_response):
    """Answers with a few environ values, one `KEY=value` a line."""
    body = "".join("%s=%s\n" % (key, environ.get(key)) for key in (
        "wsgi.url_scheme", "REMOTE_ADDR", "PATH_INFO", "HTTP_HOST")).encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def environ_lines(body):
    return dict(line.split("=", 1) for line in body.decode("latin-1").splitlines())


def client_hello():
    """The first bytes a TLS client sends (its ClientHello)."""
    outgoing = ssl.MemoryBIO()
    client = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), outgoing,
                                                  server_hostname="localhost")
    try:
        client.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


DATA = bytes(range(256)) * 4            # 1024 distinct-enough bytes for range checks
SECRET = b"TOP SECRET: never served"


# -- Connection take-over: WebSockets ---------------------------------------------
# A WebSocket in a few lines of the standard library (RFC 6455): the
# handshake's accept key, and final frames with a 7- or 16-bit length, masked
# from the client.  The echo app below is also written into CLI tests' app files.

WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT_FRAME, CLOSE_FRAME = 0x1, 0x8


def websocket_accept(key):
    return base64.b64encode(hashlib.sha1(key + WEBSOCKET_GUID).digest())


def websocket_frame(opcode, payload, mask=None):
    """One final frame; masked with `mask` (4 bytes) if given, as a client's must be."""
    bit = 0x80 if mask else 0
    head = bytes([0x80 | opcode])
    if len(payload) < 126:
        head += bytes([bit | len(payload)])
    else:
        head += bytes([bit | 126]) + struct.pack("!H", len(payload))
    if mask:
        head += mask
        payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return head + payload


def read_websocket_frame(read_exactly):
    """(opcode, unmasked payload) of the next frame; read_exactly(n) returns n bytes."""
    first, second = read_exactly(2)
    length = second & 0x7f
    if length == 126:
        length, = struct.unpack("!H", read_exactly(2))
    mask = read_exactly(4) if second & 0x80 else None
    payload = read_exactly(length)
    if mask:
        payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return first & 0x0f, payload


def websocket_echo_app(environ, start_response):
    """Takes the connection over from environ[?key=] (werkzeug.socket by
    default) and echoes each frame until the client's close or the socket's
    end; then ends as ?end= says: return, ConnectionError (as apps do under
    Werkzeug) or StopIteration (under gunicorn).  Other requests: hello."""
    if environ.get("HTTP_UPGRADE", "").lower() != "websocket":
        return hello_app(environ, start_response)
    query = dict(urllib.parse.parse_qsl(environ["QUERY_STRING"]))
    sock = environ[query.get("key", "werkzeug.socket")]
    key = environ["HTTP_SEC_WEBSOCKET_KEY"].encode("latin-1")
    sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % websocket_accept(key))

    def read_exactly(size):
        data = b""
        while len(data) < size:
            more = sock.recv(size - len(data))
            if not more:
                raise EOFError("the socket was shut down")
            data += more
        return data
    try:
        while True:
            opcode, payload = read_websocket_frame(read_exactly)
            sock.sendall(websocket_frame(opcode, payload))
            if opcode == CLOSE_FRAME:
                break
    except EOFError:
        pass
    if query.get("end") == "ConnectionError":
        raise ConnectionError("the WebSocket ended")
    if query.get("end") == "StopIteration":
        raise StopIteration
    return []


WEBSOCKET_APP_SOURCE = "\n\n".join(
    ["import base64, hashlib, struct, urllib.parse",
     "WEBSOCKET_GUID, CLOSE_FRAME = %r, %r" % (WEBSOCKET_GUID, CLOSE_FRAME)]
    + [inspect.getsource(function) for function in (
        hello_app, websocket_accept, websocket_frame, read_websocket_frame, websocket_echo_app)]
    + ["application = websocket_echo_app\n"])


def open_websocket(sock, path="/ws"):
    """The client's handshake on `sock`; return a Reader of its frames."""
    key = base64.b64encode(os.urandom(16))
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n" % (path.encode(), key))
    reader = Reader(sock)
    response = reader.response()
    assert response.status == 101, response
    assert response.header("sec-websocket-accept") == websocket_accept(key).decode(), response
    return reader


def websocket_echo(sock, reader, text):
    """Send one text frame, return the text of the frame that comes back."""
    sock.sendall(websocket_frame(TEXT_FRAME, text.encode(), os.urandom(4)))
    opcode, payload = read_websocket_frame(reader.read_exactly)
    assert opcode == TEXT_FRAME, (opcode, payload)
    return payload.decode()


class TakeOverTests(ServerTestCase, CLITestCase):
    """An app takes its connection over through environ["werkzeug.socket"]
    (or "gunicorn.socket"): a WebSocket, plain and over TLS."""

    def setUp(self):
        ServerTestCase.setUp(self)
        CLITestCase.setUp(self)

    def close_websocket(self, sock, reader):
        """The client's close, its echo, then the connection's end: nothing
        from the server after the app's last frame."""
        sock.sendall(websocket_frame(CLOSE_FRAME, b"\x03\xe8", os.urandom(4)))
        self.assertEqual(read_websocket_frame(reader.read_exactly), (CLOSE_FRAME, b"\x03\xe8"))
        self.assertEqual(reader.read_to_eof(), b"")

    def test_websocket_echo_with_each_key_and_each_ending(self):
        server = self.start_server(websocket_echo_app, quiet=False)
        for key in ("werkzeug.socket", "gunicorn.socket"):
            for end in ("return", "ConnectionError", "StopIteration"):
                with self.subTest(key=key, end=end):
                    LOG.clear()
                    sock = self.connect(server)
                    path = "/ws?key=%s&end=%s" % (key, end)
                    reader = open_websocket(sock, path)
                    self.assertEqual(websocket_echo(sock, reader, "hello"), "hello")
                    # The WebSocket holds a thread; other clients are served meanwhile.
                    self.assertEqual(http_get(server.port).status, 200)
                    self.assertEqual(websocket_echo(sock, reader, "again"), "again")
                    self.close_websocket(sock, reader)
                    # The server counts what the app sent after its head: two
                    # 7-byte text frames and a 4-byte close.
                    LOG.wait_for(r'^"GET %s HTTP/1.1" 101 18 [0-9.]+ms$' % re.escape(path))
                    self.assertFalse([record.getMessage() for record in LOG.records
                                      if record.levelno >= logging.WARNING])

    def test_the_socket_handed_over_is_blocking_without_timeout(self):
        seen = []

        def app(environ, start_response):
            sock = environ["werkzeug.socket"]
            sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            seen.append(sock.gettimeout())
            if hasattr(socket, "SO_RCVTIMEO"):      # what the server set for its reads
                seen.append(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16))
            return []
        server = self.start_server(app)
        sock = self.connect(server)
        sock.sendall(get("/"))
        self.assertEqual(Reader(sock).read_to_eof(), b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        self.assertIsNone(seen[0])
        if len(seen) > 1:
            self.assertEqual(seen[1].strip(b"\0"), b"")

    def test_the_apps_head_may_be_any_bytes_like_object(self):
        head = b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
        for kind in (memoryview, bytearray):
            def app(environ, start_response, kind=kind):
                environ["werkzeug.socket"].send(kind(head + b"frame"))
                return []
            with self.subTest(kind=kind):
                LOG.clear()
                server = self.start_server(app, quiet=False)
                sock = self.connect(server)
                sock.sendall(get("/ws"))
                self.assertEqual(Reader(sock).read_to_eof(), head + b"frame")
                LOG.wait_for(r'^"GET /ws HTTP/1.1" 101 5 [0-9.]+ms$')

    def test_not_handed_over_when_bytes_after_the_head_came_first(self):
        # A frame sent with the handshake, before the 101: the server read
        # it already, the app would never see it.
        server = self.start_server(websocket_echo_app, quiet=False)
        key = base64.b64encode(os.urandom(16))
        response = self.request(server, b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13"
                                        b"\r\n\r\n%s" % (key, websocket_frame(
                                            TEXT_FRAME, b"early", os.urandom(4))))
        self.assertEqual(response.status, 400)
        self.assertIn(b"11 byte(s) after the request head", response.body)
        line = LOG.wait_for(r'"GET /ws HTTP/1.1" 400: ')
        self.assertIn("not handed over", line)
        self.assertEqual(http_get(server.port).status, 200)

    def test_websocket_over_tls(self):
        cert, key, client_context = make_test_certificate(self.directory)
        server = self.start_server(websocket_echo_app, quiet=False,
                                   ssl_context=runserver.make_ssl_context(cert, key))
        sock = client_context.wrap_socket(self.connect(server), server_hostname="localhost")
        self.addCleanup(sock.close)
        reader = open_websocket(sock, "/tls")
        self.assertEqual(websocket_echo(sock, reader, "over TLS"), "over TLS")
        self.close_websocket(sock, reader)
        LOG.wait_for(r'^"GET /tls HTTP/1.1" 101 14 [0-9.]+ms$')

    def test_ctrl_c_and_a_reload_close_open_websockets(self):
        # --shutdown-timeout 30: a stop that waited for the WebSockets' apps
        # to end by themselves would outlast the test's waits.
        self.write("app.py", WEBSOCKET_APP_SOURCE)
        process = self.start("app:application", "127.0.0.1:0", "--shutdown-timeout", "30",
                             "--reload-interval", "0.05")
        port = process.port()
        for stop in ("reload", "Ctrl-C"):
            sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            self.addCleanup(sock.close)
            reader = open_websocket(sock)
            self.assertEqual(websocket_echo(sock, reader, stop), stop)
            if stop == "reload":
                self.write("app.py", WEBSOCKET_APP_SOURCE + "# edited\n")
            else:
                process.signal(signal.SIGINT)
            self.assertEqual(reader.read_to_eof(), b"")
        self.assertEqual(process.wait(), 0)
        self.assertEqual(len(re.findall(r'"GET /ws HTTP/1.1" 101 ', process.output())), 2,
                         process.output())


def make_test_certificate(directory):
    """A self-signed certificate for localhost made by the openssl command, in
    `directory`: (certificate file, key file, a client context that trusts it)."""
    if shutil.which("openssl") is None:
        raise unittest.SkipTest("the openssl command is not installed: "
                                "cannot make a test certificate")
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=localhost"],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True, timeout=60)
    client_context = ssl.create_default_context(cafile=cert)
    client_context.check_hostname = False       # CN only, no subjectAltName
    return cert, key, client_context


# ---- File serving: --static ------------------------------------------------------

class StaticFilesTests(ServerTestCase):
    """StaticFiles through a real server: safe paths, validators, ranges, listings."""

    @classmethod
    def setUpClass(cls):
        cls.base = tempfile.mkdtemp(prefix="runserver-static-")
        base, root = cls.base, os.path.join(cls.base, "root")
        cls.root = root
        files = {
            "secret.txt": SECRET,                           # beside the root, never served
            "root-sibling/secret.txt": SECRET,              # shares the root's name prefix
            "root/hello.txt": b"hello, static\n",
            "root/data.bin": DATA,
            "root/style.css": b"body{}\n",
            "root/image.png": b"\x89PNG\r\n\x1a\n",
            "root/a b.txt": b"with a space\n",
            "root/caf\u00e9.txt": b"utf-8 name\n",
            "root/sub/index.html": b"<p>index of sub</p>\n",
            "root/list/<b>&x.txt": b"escaped name\n",
            "root/list/plain.txt": b"plain\n",
            "root/inside/target.txt": b"inside target\n",
        }
        for name, data in files.items():
            path = os.path.join(base, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as file:
                file.write(data)
        os.makedirs(os.path.join(root, "list", "d"))
        os.makedirs(os.path.join(root, "trap"))
        os.makedirs(os.path.join(root, "d\u00e9"))
        # A FIFO beside the root: opening it would block, so a test hangs if it is read.
        os.mkfifo(os.path.join(base, "secret.fifo"))
        links = {"root/escape.txt": "../secret.txt", "root/escape-dir": "..",
                 "root/escape-abs": os.path.join(base, "secret.txt"),
                 "root/escape-sibling": "../root-sibling/secret.txt",
                 "root/escape-fifo": "../secret.fifo",
                 "root/trap/index.html": "../../secret.txt",
                 "root/link-inside.txt": "inside/target.txt"}
        for name, target in links.items():
            os.symlink(target, os.path.join(base, name))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.base, ignore_errors=True)

    def setUp(self):
        super().setUp()
        self.server = self.start_server(prefix_app, static=[("/static", self.root)])

    def test_redirect_never_leaves_the_server(self):
        server = self.start_server(prefix_app, static=[("/", self.root)])
        response = self.request(server, b"GET //list HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.assertEqual(response.status, 301)
        self.assertEqual(response.header("location"), "/list/")

    def get(self, path, extra=b"", method="GET"):
        """One request on a new connection; the Response."""
        return self.request(self.server, b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n"
                            % (method.encode(), path.encode("latin-1"), extra), method)

    def exchange_on_one_connection(self, requests):
        """Send (method, path, extra) requests one after the other on one
        keep-alive connection; return the responses.  A response with a byte
        too many or too few puts the next one out of step."""
        sock = self.connect(self.server)
        reader = Reader(sock)
        responses = []
        for method, path, extra in requests:
            sock.sendall(b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n"
                         % (method.encode(), path.encode(), extra))
            responses.append(reader.response(method))
        sock.sendall(get("/static/hello.txt"))
        self.assertEqual(reader.response().body, b"hello, static\n")      # still in step
        return responses

    def etag(self, path):
        return self.get(path).header("etag")

    def test_traversal_attempts_are_404_and_never_read_outside(self):
        for path in ["/static/../secret.txt", "/static/%2e%2e/secret.txt",
                     "/static/%2E%2E/secret.txt", "/static/.%2e/secret.txt",
                     "/static/sub/../../secret.txt", "/static/./../secret.txt",
                     "/static/..%2fsecret.txt", "/static/..%2Fsecret.txt",
                     "/static/%2e%2e%2fsecret.txt", "/static/sub%2f..%2f..%2fsecret.txt",
                     "/static/%2fetc%2fpasswd", "/static/..%5csecret.txt",
                     "/static/..%5Csecret.txt", "/static/..\\secret.txt",
                     "/static/hello.txt%00", "/static/hello.txt%00.png", "/static/%00",
                     "/static//etc/passwd", "/static///etc/passwd", "/static/%2F%2Fetc/passwd",
                     "/static/%c0%ae%c0%ae/secret.txt", "/static/..%00/secret.txt",
                     "/static/escape.txt", "/static/escape-abs", "/static/escape-sibling",
                     "/static/escape-dir/secret.txt", "/static/escape-dir/", "/static/escape-dir",
                     "/static/escape-fifo", "/static/trap/", "/static/trap/index.html",
                     "/static/../root-sibling/secret.txt",
                     # encoded separators are refused even where they would stay inside
                     "/static/list%2fplain.txt", "/static/list%2Fplain.txt",
                     "/static/list%5cplain.txt", "/static/sub%2f"]:
            with self.subTest(path=path):
                response = self.get(path)
                self.assertEqual(response.status, 404, response)
                self.assertNotIn(SECRET, response.body)
                self.assertNotIn(b"root:", response.body)

    def test_a_symlink_that_stays_inside_is_served(self):
        self.assertEqual(self.get("/static/link-inside.txt").body, b"inside target\n")

    def test_only_get_and_head_others_405_with_allow(self):
        for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
            for path in ("/static/hello.txt", "/static/missing.txt", "/static/sub/"):
                with self.subTest(method=method, path=path):
                    response = self.get(path, b"Content-Length: 0\r\n", method)
                    self.assertEqual(response.status, 405)
                    self.assertEqual(response.header("allow"), "GET, HEAD")
        self.assertEqual(self.get("/static/hello.txt", method="HEAD").status, 200)

    def test_file_headers(self):
        path = os.path.join(self.root, "hello.txt")
        info = os.stat(path)
        response = self.get("/static/hello.txt")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"hello, static\n")
        self.assertEqual(response.header("content-type"), "text/plain; charset=utf-8")
        self.assertEqual(response.header("content-length"), "14")
        self.assertEqual(response.header("last-modified"), runserver.http_date(info.st_mtime))
        self.assertEqual(response.header("cache-control"), "no-cache")
        self.assertEqual(response.header("accept-ranges"), "bytes")
        etag = response.header("etag")
        self.assertRegex(etag, r'^"[^"]+"$')                          # strong: no W/
        for name, expected in [("style.css", "text/css; charset=utf-8"),
                               ("sub/index.html", "text/html; charset=utf-8"),
                               ("image.png", "image/png"),
                               ("data.bin", "application/octet-stream")]:
            with self.subTest(name=name):
                self.assertEqual(self.get("/static/" + name).header("content-type"), expected)

    def test_etag_changes_with_the_file(self):
        path = os.path.join(self.root, "changing.txt")
        self.addCleanup(os.unlink, path)
        with open(path, "wb") as file:
            file.write(b"one")
        os.utime(path, ns=(10 ** 18, 10 ** 18))
        first = self.etag("/static/changing.txt")
        self.assertEqual(self.etag("/static/changing.txt"), first)       # stable
        os.utime(path, ns=(10 ** 18 + 1, 10 ** 18 + 1))                  # 1 ns later
        second = self.etag("/static/changing.txt")
        self.assertNotEqual(second, first)
        with open(path, "ab") as file:
            file.write(b"two")
        os.utime(path, ns=(10 ** 18 + 1, 10 ** 18 + 1))                  # same time, new size
        self.assertNotIn(self.etag("/static/changing.txt"), (first, second))

    def test_head_has_content_length_but_no_body(self):
        head, get_response = self.exchange_on_one_connection(
            [("HEAD", "/static/data.bin", b""), ("GET", "/static/data.bin", b"")])
        self.assertEqual(head.status, 200)
        self.assertEqual(head.header("content-length"), str(len(DATA)))
        self.assertEqual(get_response.body, DATA)

    def test_if_none_match_gives_304_and_takes_precedence(self):
        etag = self.etag("/static/hello.txt")
        last_modified = self.get("/static/hello.txt").header("last-modified")
        future = email.utils.formatdate(time.time() + 86400, usegmt=True)
        cases = [
            (b"If-None-Match: %s\r\n" % etag.encode(), 304),
            (b"If-None-Match: \"other\", %s\r\n" % etag.encode(), 304),
            (b"If-None-Match: W/%s\r\n" % etag.encode(), 304),       # weak comparison
            (b"If-None-Match: *\r\n", 304),
            (b"If-None-Match: \"other\"\r\n", 200),
            # If-None-Match wins over If-Modified-Since, both ways round:
            (b"If-None-Match: \"other\"\r\nIf-Modified-Since: %s\r\n" % future.encode(), 200),
            (b"If-None-Match: %s\r\nIf-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
             % etag.encode(), 304),
            (b"If-Modified-Since: %s\r\n" % last_modified.encode(), 304),
            (b"If-Modified-Since: %s\r\n" % future.encode(), 304),
            (b"If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n", 200),
            (b"If-Modified-Since: not a date\r\n", 200),
        ]
        responses = self.exchange_on_one_connection(
            [("GET", "/static/hello.txt", extra) for extra, _ in cases])
        for (extra, status), response in zip(cases, responses):
            with self.subTest(extra=extra):
                self.assertEqual(response.status, status)
                if status == 304:
                    self.assertEqual(response.header("etag"), etag)
                    self.assertEqual(response.header("cache-control"), "no-cache")
                else:
                    self.assertEqual(response.body, b"hello, static\n")

    def test_ranges(self):
        size = len(DATA)
        cases = [("bytes=0-99", 206, 0, 100), ("bytes=100-", 206, 100, size),
                 ("bytes=-50", 206, size - 50, size), ("bytes=1000-5000", 206, 1000, size),
                 ("bytes=-5000", 206, 0, size), ("bytes=0-0", 206, 0, 1),
                 ("bytes=1023-", 206, 1023, size),
                 ("bytes=0-1,5-6", 200, 0, size), ("bytes=5-1", 200, 0, size),
                 ("items=0-1", 200, 0, size), ("bytes=0-" + "9" * 5000, None, 0, size)]
        responses = self.exchange_on_one_connection(
            [("GET", "/static/data.bin", b"Range: %s\r\n" % value.encode())
             for value, _, _, _ in cases])
        for (value, status, start, end), response in zip(cases, responses):
            with self.subTest(range=value[:40]):
                self.assertEqual(response.body, DATA[start:end])
                self.assertEqual(response.header("content-length"), str(end - start))
                if status is None:                  # out of range numbers: ignored or clamped
                    self.assertIn(response.status, (200, 206))
                    continue
                self.assertEqual(response.status, status)
                if status == 206:
                    self.assertEqual(response.header("content-range"),
                                     "bytes %d-%d/%d" % (start, end - 1, size))
                else:
                    self.assertIsNone(response.header("content-range"))

    def test_unsatisfiable_range_is_416(self):
        for value in ("bytes=1024-", "bytes=5000-6000", "bytes=-0"):
            with self.subTest(range=value):
                response = self.get("/static/data.bin", b"Range: %s\r\n" % value.encode())
                self.assertEqual(response.status, 416)
                self.assertEqual(response.header("content-range"), "bytes */1024")
                self.assertNotIn(DATA[:100], response.body)

    def test_if_range(self):
        response = self.get("/static/data.bin")
        etag, last_modified = response.header("etag"), response.header("last-modified")
        cases = [(etag, 206), ('"not-it"', 200), ("W/" + etag, 200), (last_modified, 206),
                 ("Thu, 01 Jan 1970 00:00:00 GMT", 200), ("garbage", 200)]
        responses = self.exchange_on_one_connection(
            [("GET", "/static/data.bin", b"Range: bytes=10-19\r\nIf-Range: %s\r\n"
              % condition.encode()) for condition, _ in cases])
        for (condition, status), response in zip(cases, responses):
            with self.subTest(if_range=condition):
                self.assertEqual(response.status, status)
                self.assertEqual(response.body, DATA[10:20] if status == 206 else DATA)

    def test_directory_with_index_html(self):
        response = self.get("/static/sub/")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"<p>index of sub</p>\n")
        self.assertEqual(response.header("content-type"), "text/html; charset=utf-8")

    def test_directory_without_slash_redirects(self):
        for path, location in [("/static/sub", "/static/sub/"),
                               ("/static/sub?x=1&y=%2F", "/static/sub/?x=1&y=%2F"),
                               ("/static", "/static/"), ("/static/list/d", "/static/list/d/"),
                               ("/static/d%C3%A9", "/static/d%C3%A9/")]:
            with self.subTest(path=path):
                response = self.get(path)
                self.assertEqual(response.status, 301)
                self.assertEqual(response.header("location"), location)

    def test_directory_listing_escapes_names(self):
        response = self.get("/static/list/")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("content-type"), "text/html; charset=utf-8")
        page = response.body.decode("utf-8")
        self.assertIn("&lt;b&gt;&amp;x.txt", page)
        self.assertNotIn("<b>", page)
        self.assertIn('href="%3Cb%3E%26x.txt"', page)
        self.assertIn('href="d/"', page)
        self.assertIn('href="plain.txt"', page)
        self.assertEqual(self.get("/static/list/%3Cb%3E%26x.txt").body, b"escaped name\n")

    def test_encoded_names(self):
        self.assertEqual(self.get("/static/a%20b.txt").body, b"with a space\n")
        self.assertEqual(self.get("/static/caf%C3%A9.txt").body, b"utf-8 name\n")
        self.assertEqual(self.get("/static/missing.txt").status, 404)

    def test_requests_outside_the_prefix_go_to_the_app(self):
        for path in ("/", "/staticx", "/static-x/y", "/other/static/hello.txt",
                     "/STATIC/hello.txt"):
            with self.subTest(path=path):
                response = self.get(path)
                self.assertEqual((response.status, response.body),
                                 (200, ("app:" + path).encode()))
        response = self.get("/", b"Content-Length: 0\r\n", "POST")
        self.assertEqual(response.body, b"app:/")

    def test_range_through_sendfile_sends_exactly_the_range(self):
        path = os.path.join(self.root, "marked.bin")
        self.addCleanup(os.unlink, path)
        content = os.urandom(3 << 20)
        with open(path, "wb") as file:
            file.write(content)
        ranges = [(0, 1 << 20), ((1 << 20) + 7, (2 << 20) + 13), (len(content) - 9, len(content))]
        responses = self.exchange_on_one_connection(
            [("GET", "/static/marked.bin", b"Range: bytes=%d-%d\r\n" % (start, end - 1))
             for start, end in ranges])
        for (start, end), response in zip(ranges, responses):
            self.assertEqual(response.status, 206)
            self.assertTrue(response.body == content[start:end], "range %d-%d differs"
                            % (start, end - 1))

    def test_sparse_gigabyte_file_is_streamed_with_flat_memory(self):
        # 1 GiB through sendfile takes about a second on loopback.  On tmpfs the
        # holes read as the zero page; on a disk the page cache fills (~3 s).
        size = 1 << 30
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        directory = tempfile.mkdtemp(prefix="runserver-sparse-", dir=shm)
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "sparse.bin")
        marker = b"a marker in the middle of the holes"
        with open(path, "wb") as file:
            file.truncate(size)
            file.seek(size // 2)
            file.write(marker)
        self.server = self.start_server(prefix_app, static=[("/static", directory)])
        before = rss()
        if before is None:
            self.skipTest("no /proc/self/status to measure memory with")
        sock = self.connect(self.server)
        sock.sendall(get("/static/sparse.bin"))
        reader = Reader(sock)
        head = reader.read_until(b"\r\n\r\n")
        self.assertIn(b"\r\nContent-Length: %d\r\n" % size, head + b"\r\n")
        received = len(reader.buffer)
        buffer = bytearray(1 << 20)
        while received < size:
            count = sock.recv_into(buffer)
            if not count:
                break
            received += count
        growth = rss() - before
        self.assertEqual(received, size)
        self.assertLess(growth, 64 << 20, "RSS grew by %d MiB" % (growth >> 20))
        sock.sendall(get("/static/sparse.bin", extra=b"Range: bytes=%d-%d\r\n"
                         % (size // 2, size // 2 + len(marker) - 1)))
        self.assertEqual(reader.response().body, marker)


# ---- Live reload -------------------------------------------------------------------

PAGE = b"<!doctype html><html><head><title>t</title></head><body><p>page</p></body></html>"
DOCUMENT = b"Sec-Fetch-Dest: document\r\n"
TAG = re.compile(rb'<script src="/__runserver__/livereload\.js" data-worker="\d+-\d+" defer>'
                 rb'</script>')


def page_app(environ, start_response):
    """Answers what the query asks: status, content type, encoding, body, and
    whether to stream it (chunks split inside </head>) or give a length."""
    query = dict(item.split("=", 1) for item in environ["QUERY_STRING"].split("&") if item)
    body = {"page": PAGE, "body-only": b"<p>x</p></BODY>", "bare": b"<p>no end tags"}[
        query.get("body", "page")]
    headers = [("Content-Type", query.get("type", "text/html; charset=utf-8"))]
    if "encoding" in query:
        headers.append(("Content-Encoding", query["encoding"]))
    if "download" in query:
        headers.append(("Content-Disposition", 'attachment; filename="page.html"'))
    if "validators" in query:
        headers += [("ETag", '"v1"'), ("Last-Modified", "Thu, 03 Dec 2026 08:00:00 GMT")]
    status = query.get("status", "200 OK").replace("+", " ")
    if query.get("stream"):
        start_response(status, headers)
        cut = body.find(b"</head>") + 4
        return iter([body[:cut], body[cut:]])
    start_response(status, headers + [("Content-Length", str(len(body)))])
    return [body]


class LiveReloadTests(ServerTestCase, CLITestCase):
    """The live-reload script in pages, its event stream, and the reserved paths."""

    def setUp(self):
        ServerTestCase.setUp(self)
        CLITestCase.setUp(self)

    def start_live(self, app=page_app):
        return self.start_server(app, livereload=True)

    def open_stream(self, port):
        """Connect to the event stream; return the socket's Reader and the hello's worker id."""
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.addCleanup(sock.close)
        sock.sendall(b"GET /__runserver__/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Accept: text/event-stream\r\n\r\n")
        reader = Reader(sock)
        head = reader.read_until(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"), head)
        self.assertIn(b"Content-Type: text/event-stream", head)
        kind, data = self.next_event(reader)
        self.assertEqual(kind, "hello")
        return reader, data

    def next_event(self, reader):
        """The next event's (kind, data), comments skipped."""
        while True:
            fields = dict(line.split(": ", 1) for line in reader.read_until(b"\n\n")
                          .decode().split("\n") if not line.startswith(":"))
            if "event" in fields:
                return fields["event"], fields.get("data", "")

    def test_the_injection_rules(self):
        server = self.start_live()
        tag = server.server.livereload.tag
        self.assertRegex(tag, TAG)
        injected = PAGE.replace(b"</head>", tag + b"</head>")
        cases = [
            ("?", DOCUMENT, injected),
            ("?body=body-only", DOCUMENT, b"<p>x</p>" + tag + b"</BODY>"),
            ("?body=bare", DOCUMENT, b"<p>no end tags" + tag),
            ("?stream=1", DOCUMENT, injected),
            ("?status=404+Not+Found", DOCUMENT, injected),
            ("?status=500+Oops&stream=1", DOCUMENT, injected),
            ("?type=TEXT/HTML", DOCUMENT, injected),
            ("?", b"", PAGE),                                   # curl, requests, test clients
            ("?", b"Sec-Fetch-Dest: iframe\r\n", PAGE),
            ("?type=text/plain", DOCUMENT, PAGE),
            ("?type=application/xhtml%2Bxml", DOCUMENT, PAGE),
            ("?encoding=identity", DOCUMENT, PAGE),
            ("?encoding=gzip&stream=1", DOCUMENT, PAGE),
            ("?download=1", DOCUMENT, PAGE),                    # saved to a file, not shown
            ("?status=206+Partial+Content", DOCUMENT, PAGE),
            ("?status=302+Found", DOCUMENT, PAGE),
        ]
        for query, headers, body in cases:
            with self.subTest(query=query, headers=headers):
                sock = self.connect(server)
                sock.sendall(get("/" + query, extra=headers) * 2)    # keep-alive: framing holds
                reader = Reader(sock)
                for _ in range(2):
                    response = reader.response()
                    self.assertEqual(response.body, body)
                    if not query.count("stream"):
                        self.assertEqual(int(response.header("content-length")), len(body))
                    else:
                        self.assertEqual(response.header("transfer-encoding"), "chunked")
        for status in ("304 Not Modified", "204 No Content"):
            with self.subTest(status=status):
                response = self.request(server, get("/?stream=1&body=bare&status="
                                                    + status.replace(" ", "+"), extra=DOCUMENT))
                self.assertEqual((response.status, response.body), (int(status[:3]), b""))
        response = self.request(server, b"HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + DOCUMENT + b"\r\n",
                                "HEAD")
        self.assertEqual(int(response.header("content-length")), len(PAGE))

    def test_a_page_with_the_script_loses_its_validators(self):
        # They name the app's bytes; a 304 would bring back a page whose tag
        # names a worker gone, and it would reload for ever.
        server = self.start_live()
        page = self.request(server, get("/?validators=1", extra=DOCUMENT))
        self.assertRegex(page.body, TAG)
        self.assertEqual((page.header("etag"), page.header("last-modified")), (None, None))
        plain = self.request(server, get("/?validators=1"))
        self.assertEqual(plain.header("etag"), '"v1"')
        self.assertIsNotNone(plain.header("last-modified"))

    def test_curl_gets_the_exact_bytes(self):
        server = self.start_live()
        sock = self.connect(server)
        sock.sendall(b"GET /?stream=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8.5.0\r\n"
                     b"Accept: */*\r\nConnection: close\r\n\r\n")
        raw = Reader(sock).read_to_eof()
        self.assertTrue(raw.endswith(b"\r\n\r\n%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (
            PAGE.find(b"</head>") + 4, PAGE[:PAGE.find(b"</head>") + 4],
            len(PAGE) - PAGE.find(b"</head>") - 4, PAGE[PAGE.find(b"</head>") + 4:])), raw)

    def test_a_streamed_page_keeps_streaming(self):
        release = threading.Event()

        def slow_app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/html")])
            yield b"<html><head><title>slow</title></he"
            release.wait(TIMEOUT)
            yield b"ad><body>done</body></html>"
        server = self.start_live(slow_app)
        sock = self.connect(server)
        sock.sendall(get(extra=DOCUMENT))
        reader = Reader(sock)
        reader.read_until(b"\r\n\r\n")
        self.assertEqual(reader.read_until(b"\r\n"), b"1f")       # sent before the rest exists
        self.assertEqual(reader.read_exactly(33), b"<html><head><title>slow</title>\r\n")
        release.set()
        rest = b"</head><body>done</body></html>"
        tag = server.server.livereload.tag
        self.assertEqual(int(reader.read_until(b"\r\n"), 16), len(tag + rest))
        self.assertEqual(reader.read_exactly(len(tag + rest)), tag + rest)

    def test_the_reserved_paths_are_not_the_apps(self):
        calls = []

        def app(environ, start_response):
            calls.append(environ["PATH_INFO"])
            return page_app(environ, start_response)
        server = self.start_live(app)
        script = self.request(server, get("/__runserver__/livereload.js"))
        self.assertEqual(script.status, 200)
        self.assertEqual(script.header("content-type"), "text/javascript; charset=utf-8")
        self.assertIn(b"EventSource", script.body)
        for raw, status in [(get("/__runserver__/other"), 404), (get("/__runserver__/"), 404),
                            (b"POST /__runserver__/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Content-Length: 2\r\n\r\nab", 405),
                            (b"DELETE /__runserver__/livereload.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                             405)]:
            with self.subTest(raw=raw):
                self.assertEqual(self.request(server, raw).status, status)
        self.open_stream(server.port)
        self.assertEqual(calls, [])
        self.assertEqual(self.request(server, get("/__runserver")).status, 200)
        self.assertEqual(calls, ["/__runserver"])

    def test_without_livereload_the_paths_are_the_apps(self):
        server = self.start_server(page_app)
        self.assertEqual(self.request(server, get("/__runserver__/events")).status, 200)
        self.assertEqual(self.request(server, get("/", extra=DOCUMENT)).body, PAGE)

    def test_a_connection_whose_last_request_was_the_script_is_idle(self):
        server = self.start_live()
        sock = self.connect(server)
        sock.sendall(get("/__runserver__/livereload.js"))
        self.assertEqual(Reader(sock).response().status, 200)
        announced = []
        server.server.shutdown()
        self.assertEqual(server.server.close_idle_and_wait(TIMEOUT * 3, announced.append), 0)
        self.assertEqual(announced, [])             # a stop does not wait for it
        self.assertEqual(Reader(sock).read_to_eof(), b"")

    def test_events_reach_every_stream_and_a_stop_ends_them_at_once(self):
        server = self.start_live()
        first, worker = self.open_stream(server.port)
        second, same = self.open_stream(server.port)
        self.assertEqual(worker, same)
        server.server.livereload.broadcast("css", "/static/site.css")
        for reader in (first, second):
            self.assertEqual(self.next_event(reader), ("css", "/static/site.css"))
        announced = []
        server.server.shutdown()
        # With a long timeout: streams still counted busy would hold it up.
        self.assertEqual(server.server.close_idle_and_wait(TIMEOUT * 3, announced.append), 0)
        self.assertEqual(announced, [])
        for reader in (first, second):
            self.assertEqual(reader.read_to_eof(), b"")

    def test_a_closed_stream_frees_its_thread(self):
        server = self.start_live()
        reader, _ = self.open_stream(server.port)
        self.assertEqual(len(server.server.livereload.streams), 1)
        reader.sock.close()
        wait_until(lambda: not server.server.livereload.streams)

    def test_the_error_page_carries_the_script(self):
        def failing_app(environ, start_response):
            raise KeyError("broken")
        server = self.start_live(failing_app)
        page = self.request(server, get(extra=DOCUMENT + HTML_ACCEPT))
        self.assertEqual(page.status, 500)
        tag = server.server.livereload.tag
        self.assertIn(tag + b"</head>", page.body)
        self.assertEqual(page.body.count(tag), 1)
        self.assertNotIn(tag, self.request(server, get(extra=HTML_ACCEPT)).body)

    # -- with the reloader, from the command line --

    def start_cli(self, *extra):
        self.write("app.py", "VERSION = 'v1'\n\ndef app(environ, start_response):\n"
                             "    start_response('200 OK', [('Content-Type', 'text/html')])\n"
                             "    return [('<html><head></head>%s</html>' % VERSION).encode()]\n")
        process = self.start("app:app", "127.0.0.1:0", "--reload-interval", "0.05", *extra)
        return process, process.port()

    def test_a_save_ends_the_stream_and_the_next_worker_says_hello(self):
        process, port = self.start_cli()
        self.assertIn("live reload: on", process.output())
        reader, first = self.open_stream(port)
        self.write("app.py", "VERSION = 'v2'\n\ndef app(environ, start_response):\n"
                             "    start_response('200 OK', [('Content-Type', 'text/html')])\n"
                             "    return [('<html><head></head>%s</html>' % VERSION).encode()]\n")
        self.assertEqual(reader.read_to_eof(), b"")
        _, second = self.open_stream(port)             # it waited in the backlog
        self.assertNotEqual(first, second)
        self.assertEqual(http_get(port).body, b"<html><head></head>v2</html>")
        page = http_get(port, headers=DOCUMENT).body    # the tag names the worker serving it
        self.assertRegex(page, TAG)
        self.assertIn(b'data-worker="%s"' % second.encode(), page)

    def test_a_css_save_sends_its_path_and_another_static_save_a_reload(self):
        self.write("public/css/site.css", "p { color: red }\n")
        self.write("public/logo.svg", "<svg/>\n")
        process, port = self.start_cli("--static", "/assets=public")
        reader, _ = self.open_stream(port)
        self.write("public/css/site.css", "p { color: blue }\n")
        self.assertEqual(self.next_event(reader), ("css", "/assets/css/site.css"))
        self.write("public/logo.svg", "<svg></svg>\n")
        self.assertEqual(self.next_event(reader), ("reload", ""))

    def test_off_with_no_livereload_and_with_noreload(self):
        for option in ("--no-livereload", "--noreload"):
            with self.subTest(option=option):
                process, port = self.start_cli(option)
                self.assertEqual(http_get(port, headers=DOCUMENT).body,
                                 b"<html><head></head>v1</html>")
                self.assertNotIn("live reload", process.output())
                process.kill()

    def test_the_import_error_and_crash_pages_carry_the_script(self):
        self.write("app.py", "def app(environ, start_response):\n    return [b'x'(]\n")
        process = self.start("app:app", "127.0.0.1:0", "--reload-interval", "0.05")
        page = http_get(process.port(), headers=DOCUMENT + HTML_ACCEPT)
        self.assertEqual(page.status, 500)
        self.assertRegex(page.body, TAG)
        self.write("app.py", "import os\n\ndef app(environ, start_response):\n    os._exit(7)\n")

        def crashed():
            """A request ended the new worker (the old one may answer a last one)."""
            try:
                http_get(process.port())
            except (EOFError, ConnectionError):
                return True
            return False
        wait_until(crashed)
        process.wait_for(r"save a file to restart it")
        page = http_get(process.port(), headers=DOCUMENT + HTML_ACCEPT)
        self.assertRegex(page.body, TAG)
        reader, supervisor = self.open_stream(process.port())      # the supervisor's stream
        self.write("app.py", "def app(environ, start_response):\n"
                             "    start_response('200 OK', [])\n    return [b'fixed']\n")
        self.assertEqual(reader.read_to_eof(), b"")
        _, worker = self.open_stream(process.port())
        self.assertNotEqual(worker, supervisor)


# ---- HTTPS: --cert and --key -----------------------------------------------------

class TLSTests(ServerTestCase, CLITestCase):
    """TLS with a self-signed certificate made by the openssl command."""

    @classmethod
    def setUpClass(cls):
        if shutil.which("openssl") is None:
            raise unittest.SkipTest("the openssl command is not installed: "
                                    "cannot make a test certificate")
        cls.keys = tempfile.mkdtemp(prefix="runserver-tls-")
        cls.cert, cls.key = os.path.join(cls.keys, "c.pem"), os.path.join(cls.keys, "k.pem")
        cls.other_key = os.path.join(cls.keys, "other-k.pem")
        for key, cert in ((cls.key, cls.cert), (cls.other_key, os.path.join(cls.keys, "o.pem"))):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=True, timeout=60)
        cls.client_context = ssl.create_default_context(cafile=cls.cert)
        cls.client_context.check_hostname = False       # CN only, no subjectAltName

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.keys, ignore_errors=True)

    def setUp(self):
        ServerTestCase.setUp(self)
        CLITestCase.setUp(self)

    def start_tls_server(self, app=environ_app, **options):
        return self.start_server(app, ssl_context=runserver.make_ssl_context(self.cert, self.key),
                                 **options)

    def tls_connect(self, port):
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.addCleanup(sock.close)
        tls = self.client_context.wrap_socket(sock, server_hostname="localhost")
        self.addCleanup(tls.close)
        return tls

    def test_slow_and_stalled_readers_over_tls(self):
        # Under TLS a file goes in block reads, a record at a time: a slow
        # reader gets it all, a reader that stops is dropped --body-timeout
        # later with what it got (about: the send buffer holds TLS records).
        # The client's TLS layer takes 16 KiB records at once: it reads 4 KiB
        # every 40 ms to stay under the timeout.
        size = SLOW_READER_SIZE * 2
        data = os.urandom(size)
        with open(os.path.join(self.directory, "file.bin"), "wb") as file:
            file.write(data)
        handler = type("LargerSendBuffer", (SmallSendBuffer,), {"send_buffer": 32768})
        server = self.start_tls_server(chunks_app, quiet=False, handler_class=handler,
                                       static=[("/static", self.directory)],
                                       limits=runserver.Limits(body_timeout=0.25))

        def wrap(sock):
            return self.client_context.wrap_socket(sock, server_hostname="localhost")
        paths = ("/static/file.bin", "/?%d" % size)
        bodies = read_slowly_in_threads([(small_receive_buffer(server.port, wrap), path)
                                         for path in paths], 4096)
        self.assertEqual(bodies, {paths[0]: data, paths[1]: b"x" * size})
        for path in paths:
            LOG.wait_for(r'"GET %s HTTP/1.1" 200 %d [0-9.]+ms$' % (re.escape(path), size))
            stalled = small_receive_buffer(server.port, wrap)
            self.addCleanup(stalled.close)
            stalled.sendall(get(path))
            line = LOG.wait_for(r'"GET %s HTTP/1.1" 200 \d+ .*--body-timeout' % re.escape(path))
            self.assertTrue(0 < int(re.search(r" 200 (\d+) ", line).group(1)) < size, line)

    def test_https_request_keep_alive_and_close(self):
        server = self.start_tls_server()
        sock = self.tls_connect(server.port)
        reader = Reader(sock)
        for _ in range(2):
            sock.sendall(get("/x"))
            response = reader.response()
            self.assertEqual(response.status, 200)
            values = environ_lines(response.body)
            self.assertEqual(values["wsgi.url_scheme"], "https")
            self.assertEqual(values["PATH_INFO"], "/x")
        sock.sendall(get("/y", extra=b"Connection: close\r\n"))
        self.assertEqual(reader.response().status, 200)
        self.assertEqual(reader.read_to_eof(), b"")          # the server closes the TLS socket

    def test_a_bad_tls_record_is_one_log_line(self):
        server = self.start_tls_server()
        tls = self.tls_connect(server.port)
        socket.socket.sendall(tls, b"\x17\x03\x03\x00\x10" + b"A" * 16)   # under the TLS layer
        LOG.wait_for(r"connection failed: .*(DECRYPTION|BAD_RECORD_MAC|record)")
        self.assertFalse([m for m in LOG.messages() if "Internal error" in m])
        self.assertEqual(self.request_tls(server), 200)

    def request_tls(self, server):
        sock = self.tls_connect(server.port)
        sock.sendall(get("/again"))
        return Reader(sock).response().status

    def test_silent_client_does_not_block_others(self):
        # A handshake in the accept loop would hold the second client for 60 s.
        server = self.start_tls_server(limits=runserver.Limits(header_timeout=60))
        silent = self.connect(server)                        # connects and sends nothing
        sock = self.tls_connect(server.port)
        sock.sendall(get())
        self.assertEqual(Reader(sock).response().status, 200)
        silent.close()

    def test_idle_and_silent_connections_are_closed_on_shutdown(self):
        limits = runserver.Limits(keepalive_timeout=60, header_timeout=60)
        server = self.start_tls_server(limits=limits)
        silent = self.connect(server)
        idle = self.tls_connect(server.port)
        idle.sendall(get())
        self.assertEqual(Reader(idle).response().status, 200)
        server.server.shutdown()
        self.assertEqual(server.server.close_idle_and_wait(TIMEOUT), 0)
        self.assertClosed(idle)
        self.assertClosed(silent)
        self.assertFalse([r.getMessage() for r in LOG.records if r.levelno >= logging.WARNING])

    def test_file_serving_under_tls(self):
        directory = tempfile.mkdtemp(prefix="runserver-tls-static-")
        self.addCleanup(shutil.rmtree, directory, True)
        content = os.urandom(700000)
        with open(os.path.join(directory, "blob.bin"), "wb") as file:
            file.write(content)
        server = self.start_tls_server(prefix_app, static=[("/static", directory)])
        sock = self.tls_connect(server.port)
        reader = Reader(sock)
        for extra, expected in [(b"", content), (b"Range: bytes=1000-300999\r\n", content[1000:301000]),
                                (b"Range: bytes=-10\r\n", content[-10:]), (b"", content)]:
            sock.sendall(get("/static/blob.bin", extra=extra))
            response = reader.response()
            self.assertEqual(response.header("content-length"), str(len(expected)))
            self.assertTrue(response.body == expected, "the body differs")
        sock.sendall(b"HEAD /static/blob.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.assertEqual(reader.response("HEAD").header("content-length"), str(len(content)))
        sock.sendall(get("/after"))
        self.assertEqual(reader.response().body, b"app:/after")      # still in step
        self.assertFalse([r.getMessage() for r in LOG.records if r.levelno >= logging.WARNING])

    def test_plain_server_receiving_tls_logs_one_clear_line(self):
        server = self.start_server(hello_app)
        sock = self.connect(server)
        sock.sendall(client_hello())
        LOG.wait_for(r"this server speaks HTTP, not HTTPS")
        self.assertClosed(sock)
        self.assertEqual(len([m for m in LOG.messages() if "HTTPS" in m]), 1, LOG.messages())
        self.assertEqual(self.request(server, get()).status, 200)     # the server is fine

    def test_plain_http_to_the_tls_port_gets_a_400_saying_https(self):
        server = self.start_tls_server()
        own = "https://127.0.0.1:%d/" % server.port
        for raw, url in [
                (get("/path?q=1", host="localhost:%d" % server.port),
                 "https://localhost:%d/path?q=1" % server.port),
                (b"GET /x HTTP/1.0\r\n\r\n", own),                # no Host: the server's own
                (get("/", host="evil.test"), own),              # a Host it does not answer
                (b"\x00\x01 not http\r\n\r\n", own),
                (b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n", "https://localhost/")]:
            with self.subTest(raw=raw):
                LOG.clear()
                sock = self.connect(server)
                sock.sendall(raw)
                reader = Reader(sock)
                response = reader.response()
                self.assertEqual(response.status, 400)
                self.assertEqual(response.header("connection"), "close")
                self.assertIn(b"use " + url.encode(), response.body)
                self.assertEqual(reader.read_to_eof(), b"")
                LOG.wait_for(r"400: plain HTTP sent to an HTTPS port: use %s$" % re.escape(url))
                self.assertEqual([m for m in LOG.messages() if "HTTP" in m], [
                    m for m in LOG.messages() if "plain HTTP" in m])
                self.assertEqual(len([m for m in LOG.messages() if "plain HTTP" in m]), 1)
        self.assertFalse([m for m in LOG.messages() if "handshake" in m])
        self.assertEqual(self.request_tls(server), 200)                 # TLS still works

    def test_curl_plain_http_to_the_tls_port(self):
        if shutil.which("curl") is None:
            raise unittest.SkipTest("curl is not installed")
        server = self.start_tls_server()
        result = subprocess.run(
            ["curl", "--silent", "--show-error", "--max-time", str(TIMEOUT),
             "--write-out", "\n%{http_code}", "http://127.0.0.1:%d/x?y=1" % server.port],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT * 2)
        body, _, status = result.stdout.decode().rpartition("\n")
        self.assertEqual(status, "400", result.stderr)
        self.assertIn("use https://127.0.0.1:%d/x?y=1" % server.port, body)
        LOG.wait_for(r"plain HTTP sent to an HTTPS port")

    def test_cli_certificate_errors_are_one_line(self):
        missing = os.path.join(self.directory, "missing.pem")
        for args, status, fragment in [
                (["--cert", missing, "--key", self.key], 2, "missing.pem"),
                (["--cert", self.cert, "--key", missing], 2, "missing.pem"),
                (["--cert", self.cert, "--key", self.other_key], 2, "other-k.pem"),
                (["--cert", self.key, "--key", self.key], 2, "k.pem"),
                (["--cert", self.directory, "--key", self.key], 2, self.directory),
                (["--cert", self.cert], 2, "--cert and --key"),
                (["--key", self.key], 2, "--cert and --key")]:
            for reload in ([], ["--noreload"]):
                with self.subTest(args=args, reload=reload):
                    self.assertOneLineError(["0"] + reload + args, status, fragment)

    def test_cli_banner_shows_https(self):
        process = self.start("127.0.0.1:0", "--noreload", "--cert", self.cert, "--key", self.key)
        url = process.wait_for_banner()
        self.assertRegex(url, r"^https://127\.0\.0\.1:\d+/$")
        sock = self.tls_connect(process.port())
        sock.sendall(get("/tls-check", extra=b"Connection: close\r\n"))
        response = Reader(sock).response()
        self.assertEqual(response.status, 200)
        self.assertIn(b"/tls-check", response.body)
        process.signal(signal.SIGINT)
        self.assertEqual(process.wait(), 0)


def fingerprint_of(der):
    """A certificate's SHA-256 fingerprint written as browsers show it."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[index:index + 2] for index in range(0, 64, 2))


class AdhocCertificateTests(CLITestCase):
    """--cert adhoc: a self-signed certificate made by openssl and kept in the
    user's cache directory (here a scratch one)."""

    def setUp(self):
        super().setUp()
        cache = os.path.join(self.directory, "cache")
        self.env = {"XDG_CACHE_HOME": cache, "HOME": cache, "LOCALAPPDATA": cache}
        with unittest.mock.patch.dict(os.environ, self.env):
            self.pem = os.path.join(runserver.user_cache_directory(), runserver.ADHOC_CERT_FILE)

    def need_openssl(self):
        if shutil.which("openssl") is None:
            raise unittest.SkipTest("the openssl command is not installed")

    def serve(self, *args):
        """runserver.py --cert adhoc: (process, port, the banner's fingerprint)."""
        self.need_openssl()
        process = self.start("127.0.0.1:0", "--cert", "adhoc", *args, env=self.env)
        port = process.port()
        fingerprint = process.wait_for(r"^  SHA-256 fingerprint: ([0-9A-F:]{95})$").group(1)
        return process, port, fingerprint

    def stop(self, process):
        process.signal(signal.SIGINT)
        self.assertEqual(process.wait(), 0)

    def peer(self, port, hostname):
        """A request over TLS that verifies the certificate against the cached
        file and `hostname`: (its certificate, as a dict and as DER; the response)."""
        context = ssl.create_default_context(cafile=self.pem)
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            with context.wrap_socket(sock, server_hostname=hostname) as tls:
                certificate, der = tls.getpeercert(), tls.getpeercert(binary_form=True)
                tls.sendall(get("/", extra=b"Connection: close\r\n"))
                return certificate, der, Reader(tls).response()

    def test_a_certificate_for_localhost_with_its_fingerprint_in_the_banner(self):
        process, port, fingerprint = self.serve()        # with the reloader: the worker's
        process.wait_for(r"^  certificate: %s, self-signed for localhost, 127\.0\.0\.1 and ::1$"
                         % re.escape(self.pem))
        for hostname in ("localhost", "127.0.0.1", "::1"):
            with self.subTest(hostname=hostname):
                certificate, der, response = self.peer(port, hostname)
                self.assertEqual(response.status, 200)
                self.assertEqual(certificate["subjectAltName"], (
                    ("DNS", "localhost"), ("IP Address", "127.0.0.1"),
                    ("IP Address", "0:0:0:0:0:0:0:1")))
                self.assertEqual(fingerprint_of(der), fingerprint)
        with self.assertRaises(ssl.SSLCertVerificationError):
            self.peer(port, "example.test")                 # names outside it are refused
        if hasattr(os, "getuid"):
            self.assertEqual(stat.S_IMODE(os.stat(self.pem).st_mode), 0o600)
            self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(self.pem)).st_mode), 0o700)
        self.assertEqual(os.listdir(os.path.dirname(self.pem)), [runserver.ADHOC_CERT_FILE])

    def test_the_cache_is_used_again_then_renewed_near_its_end(self):
        process, port, first = self.serve("--noreload")
        made = os.stat(self.pem)
        self.stop(process)
        process, port, again = self.serve("--noreload")
        self.assertEqual(again, first)
        self.assertEqual((os.stat(self.pem).st_ino, os.stat(self.pem).st_mtime_ns),
                         (made.st_ino, made.st_mtime_ns))
        self.assertEqual(fingerprint_of(self.peer(port, "localhost")[1]), first)
        self.stop(process)
        short = self.write_certificate(days=2)              # under a month left
        process, port, renewed = self.serve("--noreload")
        self.assertNotIn(renewed, (short, first))
        self.assertEqual(fingerprint_of(self.peer(port, "localhost")[1]), renewed)
        result = subprocess.run(["openssl", "x509", "-checkend", str(300 * 86400), "-noout",
                                 "-in", self.pem], capture_output=True, timeout=TIMEOUT)
        self.assertEqual(result.returncode, 0, result.stdout)

    def write_certificate(self, days):
        """Put a certificate for localhost valid `days` days in the cache; its fingerprint."""
        scratch = tempfile.mkdtemp(dir=self.directory)
        key, cert = os.path.join(scratch, "k.pem"), os.path.join(scratch, "c.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                        "-out", cert, "-days", str(days), "-subj", "/CN=localhost"],
                       stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=60)
        with open(key) as key_file, open(cert) as cert_file, open(self.pem, "w") as pem:
            certificate = cert_file.read()
            pem.write(key_file.read() + certificate)
        return fingerprint_of(ssl.PEM_cert_to_DER_cert(certificate))

    def test_two_first_starts_at_once_share_one_certificate(self):
        self.need_openssl()
        processes = [self.start("127.0.0.1:0", "--noreload", "--cert", "adhoc", env=self.env)
                     for _ in range(2)]
        banners = [process.wait_for(r"SHA-256 fingerprint: (\S+)").group(1)
                   for process in processes]
        served = [fingerprint_of(self.peer(process.port(), "localhost")[1])
                  for process in processes]
        self.assertEqual(banners, [banners[0]] * 2)
        self.assertEqual(served, banners)
        self.assertEqual(os.listdir(os.path.dirname(self.pem)), [runserver.ADHOC_CERT_FILE])

    def test_a_cache_directory_others_may_enter_is_made_private(self):
        if not hasattr(os, "getuid"):
            raise unittest.SkipTest("POSIX permissions")
        os.makedirs(os.path.dirname(self.pem))
        os.chmod(os.path.dirname(self.pem), 0o777)
        self.serve("--noreload")
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(self.pem)).st_mode), 0o700)

    def test_curl_trusts_it_with_the_cached_file(self):
        if shutil.which("curl") is None:
            raise unittest.SkipTest("curl is not installed")
        process, port, fingerprint = self.serve("--noreload")
        for url in ("https://localhost:%d/" % port, "https://127.0.0.1:%d/" % port):
            with self.subTest(url=url):
                result = subprocess.run(["curl", "--silent", "--show-error", "--fail",
                                         "--max-time", str(TIMEOUT), "--cacert", self.pem, url],
                                        stdin=subprocess.DEVNULL, capture_output=True,
                                        timeout=TIMEOUT * 2)
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertIn(b"runserver.py", result.stdout)

    def test_without_openssl_one_line_says_how_to_make_a_certificate(self):
        empty = os.path.join(self.directory, "bin")
        os.mkdir(empty)
        for reload in ([], ["--noreload"]):
            with self.subTest(reload=reload):
                code, output = self.run_cli("0", "--cert", "adhoc", *reload,
                                            env=dict(self.env, PATH=empty))
                self.assertEqual(code, 2, output)
                self.assertEqual(len(output.strip().splitlines()), 1, output)
                self.assertRegex(output, r"^Error: --cert adhoc .*openssl.* not on PATH.*"
                                         r"mkcert localhost 127\.0\.0\.1 ::1.*--cert .*--key ")
        self.assertFalse(os.path.exists(self.pem))

    def test_an_openssl_that_fails_is_one_line(self):
        if os.name != "posix":
            raise unittest.SkipTest("a shell script stands in for openssl")
        fake = os.path.join(self.directory, "bin")
        self.write("bin/openssl", "#!/bin/sh\necho 'req: Error: no entropy' >&2\nexit 1\n")
        os.chmod(os.path.join(fake, "openssl"), 0o755)
        self.assertOneLineError(["0", "--cert", "adhoc"], 2, "openssl failed: req: Error: no "
                                "entropy", env=dict(self.env, PATH=fake))
        self.assertEqual(os.listdir(os.path.dirname(self.pem)), [])      # no scratch left

    def test_a_key_with_adhoc_is_one_line(self):
        self.assertOneLineError(["0", "--cert", "adhoc", "--key", "k.pem"], 2,
                                "--cert adhoc makes its own key", env=self.env)

    def test_make_ssl_context_adhoc(self):
        self.need_openssl()
        with unittest.mock.patch.dict(os.environ, self.env):
            context = runserver.make_ssl_context("adhoc")
        self.assertEqual(context.certificate_file, self.pem)
        with open(self.pem) as file:
            pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n",
                            file.read(), re.S).group()
        self.assertEqual(context.certificate_fingerprint,
                         fingerprint_of(ssl.PEM_cert_to_DER_cert(pem)))


# ---- Unix domain sockets: unix:/path -----------------------------------------------

class UnixSocketTests(ServerTestCase, CLITestCase):
    """make_server(unix_socket=...) and the CLI's unix:/path ADDRPORT."""

    def setUp(self):
        ServerTestCase.setUp(self)
        CLITestCase.setUp(self)
        self.path = os.path.join(self.directory, "s.sock")

    def unix_request(self, raw, path=None):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(path or self.path)
            sock.sendall(raw)
            return Reader(sock).response()

    def test_round_trip_with_keep_alive(self):
        server = self.start_server(environ_app, unix_socket=self.path)
        self.assertTrue(stat.S_ISSOCK(os.lstat(self.path).st_mode))
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(self.path)
            reader = Reader(sock)
            for path in ("/a", "/b"):
                sock.sendall(get(path, host="localhost"))
                values = environ_lines(reader.response().body)
                self.assertEqual(values["PATH_INFO"], path)
                self.assertEqual(values["REMOTE_ADDR"], "127.0.0.1")
                self.assertEqual(values["wsgi.url_scheme"], "http")
        self.assertIsNone(server.port)

    def test_socket_file_is_removed_on_server_close(self):
        server = ServerThread(hello_app, unix_socket=self.path)
        self.assertEqual(self.unix_request(get()).body, b"Hello world\n")
        server.close()
        self.assertFalse(os.path.lexists(self.path))

    def test_stale_socket_file_is_replaced(self):
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(self.path)
        stale.close()                                    # a dead server's leftover
        self.assertTrue(stat.S_ISSOCK(os.lstat(self.path).st_mode))
        self.start_server(hello_app, unix_socket=self.path)
        self.assertEqual(self.unix_request(get()).body, b"Hello world\n")

    def test_regular_file_is_refused_and_kept(self):
        with open(self.path, "w") as file:
            file.write("precious")
        with self.assertRaises(OSError) as caught:
            runserver.make_server(hello_app, unix_socket=self.path, quiet=True)
        self.assertIn("not a socket", str(caught.exception))
        with open(self.path) as file:
            self.assertEqual(file.read(), "precious")

    def test_live_server_on_the_path_is_refused(self):
        self.start_server(hello_app, unix_socket=self.path)
        with self.assertRaises(OSError) as caught:
            runserver.make_server(hello_app, unix_socket=self.path, quiet=True)
        self.assertEqual(caught.exception.errno, errno.EADDRINUSE)
        self.assertEqual(self.unix_request(get()).body, b"Hello world\n")   # untouched

    def test_cli_errors_are_one_line(self):
        with open(self.path, "w") as file:
            file.write("precious")
        code, output = self.run_cli("unix:" + self.path, "--noreload")
        self.assertEqual(code, 1, output)
        self.assertEqual(len(output.strip().splitlines()), 1, output)
        self.assertIn("not a socket", output)
        self.assertTrue(os.path.isfile(self.path))
        missing = os.path.join(self.directory, "no-such-dir", "s.sock")
        code, output = self.run_cli("unix:" + missing, "--noreload")
        self.assertEqual(code, 1, output)
        self.assertEqual(len(output.strip().splitlines()), 1, output)
        self.assertIn("does not exist", output)

    def test_cli_banner_and_removal_on_exit(self):
        path = os.path.join(self.directory, "with space", "s.sock")
        os.mkdir(os.path.dirname(path))
        process = self.start("unix:" + path, "--noreload")
        process.wait_for(r"^Starting development server at unix:%s$" % re.escape(path))
        process.wait_for(r"^  try: curl --unix-socket '%s' http://localhost/$" % re.escape(path))
        response = self.unix_request(get(host="localhost"), path)
        self.assertEqual(response.status, 200)
        process.signal(signal.SIGINT)
        self.assertEqual(process.wait(), 0)
        self.assertFalse(os.path.lexists(path))

    def test_cli_with_the_reloader(self):
        app = ("def app(environ, start_response):\n"
               "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
               "    return [b%r]\n")
        self.write("unixapp.py", app % "one")
        process = self.start("unixapp:app", "unix:" + self.path, "--reload-interval", "0.05")
        self.assertEqual(process.wait_for_banner(), "unix:" + self.path)
        self.assertEqual(self.unix_request(get(host="localhost")).body, b"one")
        for attempt in range(5):
            # The worker's watcher takes its first look just after the banner;
            # a save before that look is its starting point, so save again.
            self.write("unixapp.py", app % "two")
            try:
                process.wait_for(r"unixapp\.py changed, reloading", timeout=2)
                break
            except AssertionError:
                if attempt == 4 or process.process.poll() is not None:
                    raise
        deadline = time.monotonic() + TIMEOUT
        while True:        # the old worker may answer once more before it stops accepting
            body = self.unix_request(get(host="localhost", extra=b"Connection: close\r\n")).body
            if body == b"two" or time.monotonic() > deadline:
                break
        self.assertEqual(body, b"two")
        process.signal(signal.SIGINT)
        self.assertEqual(process.wait(), 0)
        self.assertFalse(os.path.lexists(self.path))


# ---- Behind a proxy or a tunnel: --proxy-headers ---------------------------------

PROXY_KEYS = ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME",
              "SERVER_PORT")


def proxy_app(environ, start_response):
    """Answers with the environ keys --proxy-headers sets, the originals and the
    forwarding headers, as JSON."""
    body = json.dumps({key: value for key, value in environ.items()
                       if key in PROXY_KEYS or key.startswith(("runserver.", "HTTP_X_FORWARDED",
                                                               "HTTP_FORWARDED"))}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


class ProxyHeadersTests(ServerTestCase):
    """--proxy-headers: what a trusted proxy forwards, and what nobody else can."""

    def forwarded(self, server, headers, host="127.0.0.1"):
        """The response to a GET with these header lines, and its JSON if a 200."""
        response = self.request(server, get("/", host=host, extra=headers))
        return response, json.loads(response.body) if response.status == 200 else None

    def assertForwards(self, server, cases, host="127.0.0.1"):
        """Each (header lines, expected values) gives those environ values; a
        value None is a key the environ must not have."""
        for headers, expected in cases:
            with self.subTest(headers=headers):
                response, values = self.forwarded(server, headers, host)
                self.assertEqual(response.status, 200, response)
                self.assertEqual({key: values.get(key) for key in expected}, expected)

    def test_an_untrusted_peer_changes_nothing(self):
        spoofs = [b"X-Forwarded-For: 203.0.113.9\r\n", b"X-Forwarded-For: 127.0.0.2, 10.0.0.1\r\n",
                  b"X-Forwarded-Proto: https\r\n", b"X-Forwarded-Host: evil.test:8443\r\n",
                  b"X-Forwarded-Port: 443\r\n", b"Forwarded: for=203.0.113.9\r\n",
                  b'Forwarded: for="[2001:db8::1]:4711"\r\n', b"Forwarded: proto=https\r\n",
                  b"Forwarded: host=evil.test\r\n", b"Forwarded: for=_hidden;by=_me\r\n",
                  b"Forwarded: for=unknown\r\n",
                  b'Forwarded: for=198.51.100.1;proto=https;host="evil.test:443", for=10.0.0.1\r\n',
                  b"X-Forwarded-For: not an address\r\nForwarded: for=2001:db8::1\r\n",
                  b"X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n"
                  b"X-Forwarded-Host: evil.test\r\nX-Forwarded-Port: 443\r\n"
                  b"Forwarded: for=203.0.113.9;proto=https;host=evil.test\r\n"]
        for options in ({"proxy_headers": True, "forwarded_allow_ips": ["192.0.2.1", "10.0.0.0/8"]},
                        {}):                  # trusting another proxy, and off (the default)
            server = self.start_server(proxy_app, **options)
            own = {"REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "HTTP_HOST": "127.0.0.1",
                   "SERVER_NAME": "127.0.0.1", "SERVER_PORT": str(server.port)}
            for headers in spoofs:
                with self.subTest(options=options, headers=headers):
                    response, values = self.forwarded(server, headers)
                    self.assertEqual(response.status, 200, response)
                    self.assertEqual({key: values[key] for key in own}, own)
                    self.assertFalse([key for key in values if key.startswith("runserver.")])
                    self.assertTrue([key for key in values if "FORWARDED" in key])  # the app sees them

    def test_a_trusted_proxy_gives_the_client(self):
        server = self.start_server(proxy_app, proxy_headers=True)      # loopback is trusted
        port = str(server.port)
        self.assertForwards(server, [
            (b"X-Forwarded-For: 203.0.113.9\r\n",
             {"REMOTE_ADDR": "203.0.113.9", "REMOTE_PORT": "0", "wsgi.url_scheme": "http",
              "SERVER_PORT": port, "runserver.original.REMOTE_ADDR": "127.0.0.1",
              "runserver.original.wsgi.url_scheme": None}),
            (b"X-Forwarded-Proto: https\r\n",
             {"REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "https", "HTTP_HOST": "127.0.0.1",
              "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "443",
              "runserver.original.wsgi.url_scheme": "http", "runserver.original.SERVER_PORT": port,
              "runserver.original.REMOTE_ADDR": None, "runserver.original.HTTP_HOST": None}),
            (b"X-Forwarded-Host: localhost:9000\r\n",
             {"HTTP_HOST": "localhost:9000", "SERVER_NAME": "localhost", "SERVER_PORT": "9000",
              "wsgi.url_scheme": "http", "runserver.original.HTTP_HOST": "127.0.0.1",
              "runserver.original.SERVER_NAME": "127.0.0.1",
              "runserver.original.wsgi.url_scheme": None}),
            (b"X-Forwarded-Host: localhost\r\nX-Forwarded-Proto: https\r\n"
             b"X-Forwarded-Port: 8443\r\n",
             {"HTTP_HOST": "localhost:8443", "SERVER_PORT": "8443", "wsgi.url_scheme": "https"}),
            (b"X-Forwarded-Host: localhost:8000\r\nX-Forwarded-Proto: HTTPS\r\n"
             b"X-Forwarded-Port: 443\r\n",
             {"HTTP_HOST": "localhost", "SERVER_PORT": "443", "wsgi.url_scheme": "https"}),
            (b"X-Forwarded-Port: 8080\r\n", {"HTTP_HOST": "127.0.0.1:8080", "SERVER_PORT": "8080"}),
            (b"X-Forwarded-Proto: wss\r\n", {"wsgi.url_scheme": "https"}),
            (b"X-Forwarded-Proto: http, https\r\n", {"wsgi.url_scheme": "https"}),
            (b"Forwarded: for=203.0.113.9;proto=https;host=localhost\r\n",
             {"REMOTE_ADDR": "203.0.113.9", "wsgi.url_scheme": "https", "HTTP_HOST": "localhost",
              "SERVER_PORT": "443"}),
            (b'Forwarded: for="203.0.113.9:1234";host="localhost:8443"\r\n',
             {"REMOTE_ADDR": "203.0.113.9", "REMOTE_PORT": "1234", "HTTP_HOST": "localhost:8443",
              "SERVER_PORT": "8443", "wsgi.url_scheme": "http"}),
            (b'Forwarded: for="[2001:db8::1]:4711"\r\n',
             {"REMOTE_ADDR": "2001:db8::1", "REMOTE_PORT": "4711"}),
            (b'Forwarded: for="[2001:db8::1]"\r\n', {"REMOTE_ADDR": "2001:db8::1", "REMOTE_PORT": "0"}),
            (b"X-Forwarded-For: 2001:db8::1\r\n", {"REMOTE_ADDR": "2001:db8::1"}),
            (b"X-Forwarded-For: [2001:db8::1]:4711\r\n",
             {"REMOTE_ADDR": "2001:db8::1", "REMOTE_PORT": "4711"}),
            (b"X-Forwarded-For: 203.0.113.9:5555\r\n",
             {"REMOTE_ADDR": "203.0.113.9", "REMOTE_PORT": "5555"}),
            (b"Forwarded: for=_hidden\r\n", {"REMOTE_ADDR": "_hidden", "REMOTE_PORT": "0"}),
            (b'Forwarded: for="_hidden:_port";proto=https\r\n',
             {"REMOTE_ADDR": "_hidden", "REMOTE_PORT": "_port", "wsgi.url_scheme": "https"}),
            (b"Forwarded: for=unknown\r\n", {"REMOTE_ADDR": "unknown"}),
            (b"X-Forwarded-For: unknown\r\n", {"REMOTE_ADDR": "unknown"}),
            (b"Forwarded: proto=https;by=_edge\r\n",         # no for=: the address stays
             {"REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "https",
              "runserver.original.REMOTE_ADDR": None}),
            (b"Forwarded: for=203.0.113.9;proto=https\r\nX-Forwarded-For: 203.0.113.9\r\n"
             b"X-Forwarded-Proto: https\r\n",                 # both, agreeing
             {"REMOTE_ADDR": "203.0.113.9", "wsgi.url_scheme": "https"}),
            (b"Forwarded: for=203.0.113.9\r\nForwarded: for=127.0.0.1\r\n",   # lines joined
             {"REMOTE_ADDR": "203.0.113.9"}),
            (b"X-Forwarded-For:\r\nX-Forwarded-Proto:\r\n",        # empty: nothing said
             {"REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http"})])

    def test_chains_with_several_hops(self):
        server = self.start_server(proxy_app, proxy_headers=True,
                                   forwarded_allow_ips=["127.0.0.1", "10.0.0.0/8"])
        self.assertForwards(server, [
            (b"X-Forwarded-For: 198.51.100.7, 203.0.113.9, 10.0.0.2\r\n",
             {"REMOTE_ADDR": "203.0.113.9"}),
            (b"X-Forwarded-For: 10.0.0.3, 10.0.0.2\r\n", {"REMOTE_ADDR": "10.0.0.3"}),
            (b"X-Forwarded-For: 10.0.0.3,10.0.0.2,,127.0.0.1\r\n", {"REMOTE_ADDR": "10.0.0.3"}),
            (b"X-Forwarded-For: not an address!, 203.0.113.9, 10.0.0.2\r\n",  # never read
             {"REMOTE_ADDR": "203.0.113.9"}),
            (b"X-Forwarded-For: 198.51.100.7\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.2\r\n",
             {"REMOTE_ADDR": "203.0.113.9"}),
            (b"X-Forwarded-For: 203.0.113.9, 10.0.0.2, 10.0.0.1\r\n"
             b"X-Forwarded-Proto: https, http, http\r\n",    # each hop added its own
             {"REMOTE_ADDR": "203.0.113.9", "wsgi.url_scheme": "https"}),
            (b"X-Forwarded-For: 198.51.100.7, 203.0.113.9, 10.0.0.2\r\n"
             b"X-Forwarded-Proto: http, https, http\r\n"     # the client's own first
             b"X-Forwarded-Host: evil.test, localhost, 10.0.0.2\r\n",
             {"REMOTE_ADDR": "203.0.113.9", "wsgi.url_scheme": "https", "HTTP_HOST": "localhost"}),
            (b"X-Forwarded-For: 203.0.113.9, 10.0.0.2\r\nX-Forwarded-Proto: https\r\n",
             {"wsgi.url_scheme": "https"}),                    # set once, not added to
            (b"Forwarded: for=198.51.100.7;proto=http;host=evil.test, "
             b"for=203.0.113.9;proto=https;host=localhost, for=10.0.0.2;proto=http\r\n",
             {"REMOTE_ADDR": "203.0.113.9", "wsgi.url_scheme": "https", "HTTP_HOST": "localhost"}),
            (b"Forwarded: for=10.0.0.3, for=10.0.0.2\r\n", {"REMOTE_ADDR": "10.0.0.3"}),
            (b"Forwarded: for=198.51.100.7, for=_hidden, for=10.0.0.2\r\n",   # stops there
             {"REMOTE_ADDR": "_hidden"}),
            (b"X-Forwarded-For: 198.51.100.7, unknown, 10.0.0.2\r\n", {"REMOTE_ADDR": "unknown"}),
            (b"Forwarded: for=198.51.100.7, proto=https, for=10.0.0.2\r\n",   # a hop without for=
             {"REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "https"})])
        anyone = self.start_server(proxy_app, proxy_headers=True, forwarded_allow_ips=["*"])
        self.assertForwards(anyone, [
            (b"X-Forwarded-For: 203.0.113.9, 198.51.100.7\r\n", {"REMOTE_ADDR": "203.0.113.9"}),
            (b"Forwarded: for=203.0.113.9;proto=https, for=198.51.100.7\r\n",
             {"REMOTE_ADDR": "203.0.113.9", "wsgi.url_scheme": "https"})])

    def test_bad_values_are_a_400_and_a_log_line(self):
        server = self.start_server(proxy_app, proxy_headers=True,
                                   forwarded_allow_ips=["127.0.0.1", "10.0.0.0/8"])
        for headers, fragment in [
                (b"X-Forwarded-For: not-an-address\r\n", "X-Forwarded-For"),
                (b"X-Forwarded-For: 999.1.1.1\r\n", "X-Forwarded-For"),
                (b"X-Forwarded-For: 1.2.3.4:99999\r\n", "X-Forwarded-For"),
                (b"X-Forwarded-For: [1.2.3.4]\r\n", "X-Forwarded-For"),
                (b"X-Forwarded-For: 203.0.113.9 10.0.0.2\r\n", "X-Forwarded-For"),
                (b"X-Forwarded-For: junk, 10.0.0.2\r\n", "X-Forwarded-For"),  # reached: read
                (b"X-Forwarded-Proto: ftp\r\n", "X-Forwarded-Proto"),
                (b"X-Forwarded-Proto: https;\r\n", "X-Forwarded-Proto"),
                (b"X-Forwarded-Host: a@b\r\n", "X-Forwarded-Host"),
                (b"X-Forwarded-Host: :8000\r\n", "X-Forwarded-Host"),
                (b"X-Forwarded-Host: bad host\r\n", "X-Forwarded-Host"),
                (b"X-Forwarded-Port: http\r\n", "X-Forwarded-Port"),
                (b"X-Forwarded-Port: 70000\r\n", "X-Forwarded-Port"),
                (b"Forwarded: for=2001:db8::1\r\n", 'for=\\"[2001:db8::1]\\"'),
                (b"Forwarded: for=203.0.113.9; proto=https\r\n", "Forwarded"),
                (b'Forwarded: for="unclosed\r\n', "Forwarded"),
                (b"Forwarded: for=1.2.3.4;for=5.6.7.8\r\n", "twice"),
                (b"Forwarded: for=203.0.113.9;proto=ftp\r\n", "Forwarded"),
                (b'Forwarded: host="a b"\r\n', "Forwarded"),
                (b'Forwarded: for="1.2.3.4.5"\r\n', "Forwarded"),
                (b'Forwarded: for="oops, for=203.0.113.9, for=10.0.0.2\r\n',    # a client's
                 "Forwarded"),                                 # part too: it must parse whole
                (b"Forwarded: for=203.0.113.9\r\nX-Forwarded-For: 198.51.100.7\r\n", "disagree"),
                (b"Forwarded: proto=https\r\nX-Forwarded-Proto: http\r\n", "disagree"),
                (b"Forwarded: host=localhost\r\nX-Forwarded-Host: 127.0.0.1\r\n", "disagree")]:
            with self.subTest(headers=headers):
                LOG.clear()
                response, _ = self.forwarded(server, headers)
                self.assertEqual(response.status, 400, response)
                self.assertEqual(response.header("connection"), "close")
                self.assertIn(fragment.replace("\\", ""), response.body.decode())
                LOG.wait_for(r'"GET / HTTP/1\.1" 400: .*%s' % re.escape(fragment.replace("\\", "")))
        self.assertEqual(self.forwarded(server, b"")[0].status, 200)     # the server is fine

    def test_whitespace_heavy_forwarded_is_refused_without_backtracking(self):
        # A list pattern whose spaces after a comma the next element's could
        # match as well tries every split: a minute for n=18 of the first value.
        server = self.start_server(proxy_app, proxy_headers=True)
        for value in (b"for=a" + b"  ," * 40 + b"  x", b"for=a" + b"  ," * 20000 + b"  x",
                      b"for=a," + b" " * 60000 + b"x", b", " + b" ,\t" * 15000 + b"=",
                      b"for=a" + b";" * 60000 + b" "):
            with self.subTest(value=value[:12]):
                response, _ = self.forwarded(server, b"Forwarded: " + value + b"\r\n")
                self.assertEqual(response.status, 400)

    def test_the_host_check_applies_to_the_forwarded_host(self):
        server = self.start_server(proxy_app, proxy_headers=True)      # local names only
        for headers in (b"X-Forwarded-Host: evil.test\r\n", b"Forwarded: host=evil.test\r\n",
                        b"X-Forwarded-Host: localhost, evil.test:8443\r\n"):
            with self.subTest(headers=headers):
                response, _ = self.forwarded(server, headers)
                self.assertEqual(response.status, 400)
                self.assertIn(b"--allowed-hosts evil.test", response.body)
                self.assertIn(b"forwarded", response.body)
                LOG.wait_for(r"400: Host 'evil\.test.*forwarded.* not allowed")
        self.assertForwards(server, [(b"X-Forwarded-Host: localhost:9000\r\n",
                                      {"HTTP_HOST": "localhost:9000"})], host="evil.test")
        tunnel = self.start_server(proxy_app, proxy_headers=True,
                                   allowed_hosts=[".ngrok-free.app"])
        self.assertForwards(tunnel, [(b"X-Forwarded-Host: abc.ngrok-free.app\r\n",
                                      {"HTTP_HOST": "abc.ngrok-free.app"}),
                                     (b"Forwarded: host=abc.ngrok-free.app;proto=https\r\n",
                                      {"HTTP_HOST": "abc.ngrok-free.app"})], host="127.0.0.1")
        self.assertEqual(self.forwarded(tunnel, b"")[0].status, 400)       # its own Host: no
        untrusted = self.start_server(proxy_app, proxy_headers=True, forwarded_allow_ips=["10.0.0.1"],
                                      allowed_hosts=[".ngrok-free.app"])
        response, _ = self.forwarded(untrusted, b"X-Forwarded-Host: abc.ngrok-free.app\r\n")
        self.assertEqual(response.status, 400)                             # not forwarded: Host
        self.assertIn(b"Host '127.0.0.1' is not allowed", response.body)

    def test_ipv6_loopback_peer_is_trusted_by_default(self):
        try:
            server = self.start_server(proxy_app, host="::1", proxy_headers=True)
        except OSError as exc:
            raise unittest.SkipTest("no IPv6 loopback: %s" % exc)
        with socket.create_connection(("::1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(get("/", host="[::1]", extra=b"X-Forwarded-For: 203.0.113.9\r\n"))
            values = json.loads(Reader(sock).response().body)
        self.assertEqual((values["REMOTE_ADDR"], values["runserver.original.REMOTE_ADDR"]),
                         ("203.0.113.9", "::1"))
        with socket.create_connection(("::1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\nX-Forwarded-Port: 8080\r\n\r\n")    # no Host
            values = json.loads(Reader(sock).response().body)
        self.assertEqual((values["HTTP_HOST"], values["SERVER_NAME"], values["SERVER_PORT"]),
                         ("[::1]:8080", "[::1]", "8080"))

    def test_unix_socket_peer_is_trusted_by_default(self):
        directory = tempfile.mkdtemp(prefix="runserver-proxy-")
        self.addCleanup(shutil.rmtree, directory, True)
        for name, allowed, expected in (("a.sock", None, "203.0.113.9"),
                                        ("b.sock", ["127.0.0.1"], "127.0.0.1")):
            path = os.path.join(directory, name)
            self.start_server(proxy_app, unix_socket=path, proxy_headers=True,
                              forwarded_allow_ips=allowed)
            with self.subTest(allowed=allowed), socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(TIMEOUT)
                sock.connect(path)
                sock.sendall(get("/", host="localhost", extra=b"X-Forwarded-For: 203.0.113.9\r\n"))
                self.assertEqual(json.loads(Reader(sock).response().body)["REMOTE_ADDR"], expected)

    def test_forwarded_values_hold_for_every_request_of_a_connection(self):
        server = self.start_server(proxy_app, proxy_headers=True)
        sock = self.connect(server)
        reader = Reader(sock)
        for extra, address in ((b"X-Forwarded-For: 203.0.113.9\r\n", "203.0.113.9"),
                               (b"", "127.0.0.1"), (b"X-Forwarded-For: 198.51.100.7\r\n",
                                                     "198.51.100.7")):
            sock.sendall(get("/", extra=extra))
            self.assertEqual(json.loads(reader.response().body)["REMOTE_ADDR"], address)


PROXY_APP_SOURCE = """\
def application(environ, start_response):
    body = ("%s %s %s" % (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"],
                          environ.get("HTTP_HOST"))).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""


class ProxyHeadersCLITests(CLITestCase):
    """--proxy-headers and --forwarded-allow-ips on the command line."""

    def test_a_proxy_on_loopback_is_believed(self):
        self.write("app.py", PROXY_APP_SOURCE)
        process = self.start("app:application", "127.0.0.1:0", "--noreload", "--proxy-headers")
        process.wait_for(r"^  forwarding headers trusted from: 127\.0\.0\.0/8, ::1, unix$")
        response = http_get(process.port(), headers=b"X-Forwarded-For: 203.0.113.9\r\n"
                                                    b"X-Forwarded-Proto: https\r\n"
                                                    b"X-Forwarded-Host: localhost\r\n")
        self.assertEqual(response.body, b"203.0.113.9 https localhost")

    def test_forwarded_allow_ips_from_a_variable(self):
        self.write("app.py", PROXY_APP_SOURCE)
        process = self.start("app:application", "127.0.0.1:0", "--noreload",
                             env={"RUNSERVER_PROXY_HEADERS": "1",
                                  "RUNSERVER_FORWARDED_ALLOW_IPS": "10.0.0.0/8, 192.0.2.1"})
        process.wait_for(r"^  forwarding headers trusted from: 10\.0\.0\.0/8, 192\.0\.2\.1$")
        response = http_get(process.port(), headers=b"X-Forwarded-For: 203.0.113.9\r\n")
        self.assertEqual(response.body, b"127.0.0.1 http 127.0.0.1")      # loopback not trusted

    def test_mistakes_are_one_line(self):
        for args, env, fragment in [
                (["--forwarded-allow-ips", "10.0.0.0/8"], None, "add --proxy-headers"),
                (["--proxy-headers", "--forwarded-allow-ips", "10.0.0.0/33"], None, '"10.0.0.0/33"'),
                (["--proxy-headers", "--forwarded-allow-ips", "localhost"], None, '"localhost"'),
                (["--proxy-headers", "--forwarded-allow-ips", ","], None, "--forwarded-allow-ips"),
                (["--proxy-headers"], {"RUNSERVER_FORWARDED_ALLOW_IPS": "bogus"},
                 "RUNSERVER_FORWARDED_ALLOW_IPS in the environment"),
                ([], {"RUNSERVER_FORWARDED_ALLOW_IPS": "10.0.0.1"},
                 "RUNSERVER_FORWARDED_ALLOW_IPS in the environment")]:
            with self.subTest(args=args, env=env):
                self.assertOneLineError(["0"] + args, 2, fragment, env=env)

    def test_check_shows_the_settings(self):
        code, output = self.run_cli("--check", "--proxy-headers", "--forwarded-allow-ips", "10.0.0.1")
        self.assertEqual(code, 0, output)
        self.assertRegex(output, r"--proxy-headers\s+on\s+command line")
        self.assertRegex(output, r"--forwarded-allow-ips\s+10\.0\.0\.1\s+command line")


# ---- Mounted under a URL path: --root-path ---------------------------------------

def script_app(environ, start_response):
    """Answers with SCRIPT_NAME and PATH_INFO, one a line."""
    body = ("SCRIPT_NAME=%s\nPATH_INFO=%s\n" % (environ["SCRIPT_NAME"], environ["PATH_INFO"])
            ).encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class RootPathTests(ServerTestCase, CLITestCase):
    """An app mounted under a prefix, as behind a proxy that forwards /app/ to it."""

    def setUp(self):
        ServerTestCase.setUp(self)
        CLITestCase.setUp(self)

    def test_requests_below_the_prefix_are_split_into_script_name_and_path_info(self):
        server = self.start_server(script_app, root_path="/app")
        for path, expected in [("/app/x/y?q=1", {"SCRIPT_NAME": "/app", "PATH_INFO": "/x/y"}),
                               ("/app/", {"SCRIPT_NAME": "/app", "PATH_INFO": "/"}),
                               ("/app", {"SCRIPT_NAME": "/app", "PATH_INFO": ""}),
                               ("/app/caf%C3%A9", {"SCRIPT_NAME": "/app",
                                                   "PATH_INFO": "/caf\u00c3\u00a9"})]:
            with self.subTest(path=path):
                response = self.request(server, get(path))
                self.assertEqual(response.status, 200)
                self.assertEqual(environ_lines(response.body), expected)

    def test_other_paths_get_a_404_that_says_where_the_app_is(self):
        server = self.start_server(script_app, root_path="/app")
        for path in ("/", "/application", "/ap", "/other/app/x"):
            with self.subTest(path=path):
                response = self.request(server, get(path))
                self.assertEqual(response.status, 404)
                self.assertIn(b"under /app/ (--root-path)", response.body)

    def test_static_prefixes_stay_absolute(self):
        self.write("public/hello.txt", "static hello\n")
        server = self.start_server(script_app, root_path="/app",
                                   static=[("/static", os.path.join(self.directory, "public"))])
        self.assertEqual(self.request(server, get("/static/hello.txt")).body, b"static hello\n")
        self.assertEqual(environ_lines(self.request(server, get("/app/static/hello.txt")).body),
                         {"SCRIPT_NAME": "/app", "PATH_INFO": "/static/hello.txt"})

    def test_a_prefix_beyond_ascii(self):
        server = self.start_server(script_app, root_path="/caf\u00e9")
        response = self.request(server, get("/caf%C3%A9/menu"))
        self.assertEqual(environ_lines(response.body)["SCRIPT_NAME"].encode("latin-1"),
                         "/caf\u00e9".encode("utf-8"))
        self.assertEqual(self.request(server, get("/cafe/menu")).status, 404)

    def test_command_line_banner_and_mistakes(self):
        process = self.start("127.0.0.1:0", "--noreload", "--root-path", "/app/")
        url = process.wait_for_banner()
        self.assertRegex(url, r"^http://127\.0\.0\.1:\d+/app/$")
        port = int(re.search(r":(\d+)/", url).group(1))
        self.assertIn(b"You sent: GET /hello", http_get(port, "/app/hello").body)
        self.assertEqual(http_get(port, "/hello").status, 404)
        self.assertOneLineError(["0", "--root-path", "app"], 2,
                                'Error: --root-path "app": expected a URL path like /app')


# ---- Server classes and the Python API --------------------------------------------

def open_descriptors():
    """How many file descriptors this process has open (None where it cannot tell)."""
    try:
        return len(os.listdir("/dev/fd"))
    except OSError:
        return None


class ServingTests(unittest.TestCase):
    """runserver.serving(): a server in a thread for a `with` block."""

    def setUp(self):
        LOG.clear()

    def test_up_and_down_100_times_without_leaking_a_thread_or_a_descriptor(self):
        with runserver.serving(hello_app, quiet=True) as url:      # imports done
            urllib.request.urlopen(url, timeout=TIMEOUT).close()
        threads, descriptors = threading.active_count(), open_descriptors()
        for _ in range(100):
            with runserver.serving(hello_app, quiet=True) as url:
                self.assertRegex(url, r"^http://127\.0\.0\.1:\d+$")
                self.assertEqual(http_get(url.server.server_port).body, b"Hello world\n")
            self.assertNotIn("runserver.serving", [t.name for t in threading.enumerate()])
        # Spare pool threads end SPARE_THREAD_TIMEOUT after their last task.
        wait_until(lambda: threading.active_count() <= threads)
        gc.collect()
        if descriptors is not None:
            self.assertLessEqual(open_descriptors(), descriptors)

    def test_exit_closes_open_connections_and_websockets(self):
        with runserver.serving(websocket_echo_app, quiet=True) as url:
            port = url.server.server_port
            idle = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            self.addCleanup(idle.close)
            idle.sendall(get("/"))
            reader = Reader(idle)
            self.assertEqual(reader.response().status, 200)
            websocket = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            self.addCleanup(websocket.close)
            frames = open_websocket(websocket)
            self.assertEqual(websocket_echo(websocket, frames, "open"), "open")
        self.assertEqual(reader.read_to_eof(), b"")
        self.assertEqual(frames.read_to_eof(), b"")
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()

    def test_the_url_says_https_and_the_root_path(self):
        directory = tempfile.mkdtemp(prefix="runserver-test-")
        self.addCleanup(shutil.rmtree, directory, True)
        cert, key, client_context = make_test_certificate(directory)
        with runserver.serving(script_app, ssl_context=runserver.make_ssl_context(cert, key),
                               root_path="/app") as url:
            self.assertRegex(url, r"^https://127\.0\.0\.1:\d+/app$")
            with urllib.request.urlopen(url + "/x", timeout=TIMEOUT,
                                        context=client_context) as response:
                self.assertEqual(response.status, 200)


class APITests(unittest.TestCase):

    def test_import_has_no_side_effects(self):
        code = ("import logging, signal, sys; path = list(sys.path); "
                "handlers = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)); "
                "import runserver; "
                "assert sys.path == path, 'sys.path changed'; "
                "assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers; "
                "assert not logging.getLogger('runserver').handlers; "
                "assert not logging.getLogger().handlers; print('clean')")
        result = subprocess.run([sys.executable, "-c", code], cwd=HERE, capture_output=True,
                                timeout=TIMEOUT)
        self.assertEqual(result.stdout.strip(), b"clean", result.stderr)

    def test_rarely_needed_modules_are_not_imported_at_start_up(self):
        # Every reload starts a worker process: its imports are reload latency.
        code = ("import sys, runserver; print(sorted(m for m in %r if m in sys.modules))"
                % (("ast", "hashlib", "http", "ipaddress", "shutil", "ssl", "subprocess",
                    "tempfile", "urllib.parse"),))
        result = subprocess.run([sys.executable, "-S", "-c", code], cwd=HERE,
                                capture_output=True, timeout=TIMEOUT)    # -S: not site's imports
        self.assertEqual(result.stdout.strip(), b"[]", result.stderr)

    def test_public_names(self):
        self.assertRegex(runserver.__version__, r"^\d+\.\d+\.\d+$")
        for name in runserver.__all__:
            self.assertTrue(hasattr(runserver, name), name)

    def test_server_class_is_composed_with_the_mixin_first(self):
        server = runserver.make_server(hello_app, "127.0.0.1", 0)
        self.addCleanup(server.server_close)
        mro = type(server).__mro__
        self.assertIs(mro[1], runserver.LoopThreadingMixIn)
        self.assertTrue(issubclass(mro[1], socketserver_mixin()))
        self.assertTrue(server.daemon_threads)
        self.assertGreaterEqual(server.request_queue_size, 128)
        plain = runserver.make_server(hello_app, "127.0.0.1", 0, threading=False)
        self.addCleanup(plain.server_close)
        self.assertIs(type(plain), runserver.WSGIServer)

    def test_no_connection_is_accepted_once_a_stop_has_begun(self):
        # A loop thread could accept one just after close_idle_and_wait() had
        # counted none; the worker then exited with it: a reset during a reload.
        server = runserver.make_server(hello_app, "127.0.0.1", 0)
        self.addCleanup(server.server_close)
        self.assertEqual(server.close_idle_and_wait(0), 0)
        client = socket.create_connection(("127.0.0.1", server.server_port), timeout=TIMEOUT)
        self.addCleanup(client.close)
        client.sendall(get())
        with self.assertRaises(BlockingIOError):
            server.get_request()
        # It waits in the backlog for the next serve_forever(), as for the next worker.
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(thread.join, TIMEOUT)
        self.addCleanup(server.shutdown)
        self.assertEqual(Reader(client).response().status, 200)

    def test_tcp_nodelay_on_accepted_sockets(self):
        seen = {}

        class Handler(runserver.WSGIRequestHandler):
            def setup(self):
                super().setup()
                seen["nodelay"] = self.request.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        server = ServerThread(hello_app, handler_class=Handler)
        self.addCleanup(server.close)
        http_get(server.port)
        self.assertTrue(seen["nodelay"])

    def test_shutdown_returns_promptly(self):
        server = ServerThread(hello_app)
        started = time.monotonic()
        server.close()
        self.assertFalse(server.thread.is_alive())
        self.assertLess(time.monotonic() - started, TIMEOUT)

    def test_ipv6_loopback(self):
        if not socket.has_ipv6:
            self.skipTest("no IPv6 support")
        try:
            server = ServerThread(hello_app, host="::1")
        except OSError as exc:
            self.skipTest("cannot bind ::1: %s" % exc)
        self.addCleanup(server.close)
        with socket.create_connection(("::1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(get(host="[::1]"))
            self.assertEqual(Reader(sock).response().status, 200)


def socketserver_mixin():
    import socketserver
    return socketserver.ThreadingMixIn


# ---- Reloader ------------------------------------------------------------------------

# ---- Reloader: the file watcher, without processes ---------------------------------

class FileWatcherTests(unittest.TestCase):
    """runserver.FileWatcher on a scratch directory, driven poll by poll."""

    def setUp(self):
        self.directory = tempfile.mkdtemp(prefix="runserver-watch-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.base_ns = time.time_ns() - 3600 * 10**9     # an hour ago: older than any watcher
        self.path = self.write("app.py", "VERSION = 1\n")

    def write(self, name, text, mtime_ns=None, atomic=False):
        """Write a file, then give it a distinct mtime (default: base_ns)."""
        path = os.path.join(self.directory, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        target = path + ".tmp" if atomic else path
        with open(target, "w") as file:
            file.write(text)
        if atomic:
            os.replace(target, path)
        self.set_mtime(path, self.base_ns if mtime_ns is None else mtime_ns)
        return path

    def set_mtime(self, path, mtime_ns):
        os.utime(path, ns=(mtime_ns, mtime_ns))

    def watcher(self, *paths, **options):
        watcher = runserver.FileWatcher(extra_files=paths or [self.path], watch_modules=False,
                                        **options)
        self.assertEqual(watcher.poll(), [])             # the first poll: the baseline
        return watcher

    def test_in_place_edit_is_a_change_once(self):
        watcher = self.watcher()
        self.write("app.py", "VERSION = 2\n", self.base_ns + 10**9)      # same size
        self.assertEqual(watcher.poll(), [self.path])
        self.assertEqual(watcher.poll(), [])

    def test_size_alone_is_a_change(self):
        watcher = self.watcher()
        self.write("app.py", "VERSION = 22\n")                         # same mtime
        self.assertEqual(watcher.poll(), [self.path])

    def test_atomic_rename_save_is_a_change(self):
        watcher = self.watcher()
        inode = os.stat(self.path).st_ino
        self.write("app.py", "VERSION = 3\n", atomic=True)             # same mtime and size
        self.assertNotEqual(os.stat(self.path).st_ino, inode)
        self.assertEqual(watcher.poll(), [self.path])
        self.assertEqual(watcher.poll(), [])

    def test_touch_without_writing_is_a_change(self):
        watcher = self.watcher()
        self.set_mtime(self.path, self.base_ns + 5 * 10**9)
        self.assertEqual(watcher.poll(), [self.path])

    def test_restoring_an_older_file_is_a_change(self):
        watcher = self.watcher()
        self.set_mtime(self.path, self.base_ns - 86400 * 10**9)       # a day older
        self.assertEqual(watcher.poll(), [self.path])

    def test_a_file_that_disappears_and_comes_back(self):
        watcher = self.watcher()
        os.remove(self.path)
        self.assertEqual(watcher.poll(), [self.path])
        self.assertEqual(watcher.poll(), [])
        self.write("app.py", "VERSION = 1\n", self.base_ns + 10**9)
        self.assertEqual(watcher.poll(), [self.path])

    def test_a_file_missing_at_the_start_that_appears(self):
        missing = os.path.join(self.directory, "later.txt")
        watcher = runserver.FileWatcher(extra_files=[missing], watch_modules=False)
        self.assertEqual(watcher.poll(), [])
        self.write("later.txt", "now\n")
        self.assertEqual(watcher.poll(), [missing])

    def test_new_py_file_in_a_watched_directory(self):
        watcher = self.watcher()
        self.write("notes.txt", "not python\n")
        self.set_mtime(self.directory, self.base_ns + 10**9)
        self.assertEqual(watcher.poll(), [])
        new = self.write("views.py", "X = 1\n")
        self.set_mtime(self.directory, self.base_ns + 2 * 10**9)
        self.assertEqual(watcher.poll(), [new])
        self.assertEqual(watcher.poll(), [])

    def poll_slow_turn(self, watcher):
        """Poll until the include globs are looked at again; return all changes."""
        changed = []
        for _ in range(runserver.SLOW_POLL_EVERY):
            changed += watcher.poll()
        return changed

    def test_reload_include_directory_and_glob(self):
        template = self.write("templates/page.html", "<p>1</p>")
        data = self.write("data.json", "{}")
        watcher = self.watcher(include=[os.path.join(self.directory, "templates"),
                                        os.path.join(self.directory, "*.json")])
        self.assertIn(template, watcher.watched())
        self.assertIn(data, watcher.watched())
        self.write("templates/page.html", "<p>2</p>", self.base_ns + 10**9)
        self.write("data.json", "{}", self.base_ns + 10**9)
        self.assertEqual(sorted(watcher.poll()), sorted([template, data]))
        added = self.write("templates/sub/new.html", "<p>new</p>")
        more = self.write("more.json", "[]")
        self.assertEqual(sorted(self.poll_slow_turn(watcher)), sorted([added, more]))
        self.assertEqual(self.poll_slow_turn(watcher), [])

    def test_reload_exclude(self):
        skipped = self.write("local_settings.py", "DEBUG = True\n")
        self.write("templates/cache.tmp", "")
        watcher = self.watcher(self.path, skipped,
                               include=[os.path.join(self.directory, "templates")],
                               exclude=["local_*.py", "*.tmp"])
        self.assertEqual(watcher.watched(), {self.path})
        self.write("local_settings.py", "DEBUG = False\n", self.base_ns + 10**9)
        self.write("templates/cache.tmp", "x", self.base_ns + 10**9)
        self.write("local_new.py", "")
        self.set_mtime(self.directory, self.base_ns + 10**9)
        self.assertEqual(self.poll_slow_turn(watcher), [])
        self.write("app.py", "VERSION = 2\n", self.base_ns + 10**9)
        self.assertEqual(watcher.poll(), [self.path])

    def test_templates_directories_beside_the_project_modules(self):
        page = self.write("templates/shop/page.html", "<p>1</p>")
        installed = self.write("site/package/module.py", "")
        self.write("site/package/templates/base.html", "")
        watcher = runserver.FileWatcher(extra_files=[self.path, installed], watch_modules=False)
        watcher.site_dirs = (os.path.join(self.directory, "site", ""),)   # as if site-packages
        self.assertEqual(watcher.poll(), [])
        self.assertEqual(watcher.watched(), {self.path, installed, page})
        self.write("templates/shop/page.html", "<p>2</p>", self.base_ns + 10**9)
        self.assertEqual(watcher.poll(), [page])
        added = self.write("templates/new.html", "")
        self.assertEqual(self.poll_slow_turn(watcher), [added])

    def test_reload_exclude_wins_over_templates_directories(self):
        page = self.write("templates/page.html", "")
        self.write("templates/page.draft", "")         # not ignored by default
        watcher = self.watcher(exclude=["*.draft"])
        self.assertEqual(watcher.watched(), {self.path, page})
        self.write("templates/page.draft", "x", self.base_ns + 10**9)
        self.write("templates/new.draft", "")
        self.assertEqual(self.poll_slow_turn(watcher), [])
        self.write("templates/page.html", "x", self.base_ns + 10**9)
        self.assertEqual(watcher.poll(), [page])

    def test_template_dirs_found_later_count_only_files_modified_since(self):
        # A directory found after the first look (a module imported late, or the
        # directory made since): its files are changes only if modified since.
        views, more = os.path.join(self.directory, "views"), os.path.join(self.directory, "more")
        watcher = self.watcher(template_dirs=[views, more])
        old = self.write("elsewhere/old.html", "")
        os.rename(os.path.dirname(old), views)
        old = os.path.join(views, "old.html")
        self.assertEqual(self.poll_slow_turn(watcher), [])
        self.assertIn(old, watcher.watched())
        made = self.write("more/made.html", "", watcher.looked_ns + 1)   # since the last
        self.assertEqual(watcher.poll(), [])            # look, but before the last poll
        self.assertEqual(self.poll_slow_turn(watcher), [made])
        self.write("views/old.html", "x", self.base_ns + 10**9)
        self.assertEqual(watcher.poll(), [old])

    LITTER = [  # what editors, VCS, tools and the app leave in a project, never watched
        "templates/.page.html.swp", "templates/.page.html.swx", "templates/page.html.swo",
        "templates/page.html~", "templates/#page.html#", "templates/.#page.html",
        "templates/4913", "templates/debug.log", ".git/index", ".git/objects/ab/cdef",
        ".hg/dirstate", ".svn/wc.db", "CVS/Entries", "_darcs/index", "__pycache__/app.cpython-311.pyc",
        "app.pyc", "app.pyo", "node_modules/pkg/index.js", ".tox/py311/log.txt",
        ".nox/x.txt", ".mypy_cache/3.11/app.json", ".pytest_cache/v/cache/lastfailed",
        ".ruff_cache/0.1/x", "db.sqlite3", "data.db", "db.sqlite3-journal", "db.sqlite3-wal", "db.sqlite3-shm",
        "env/pyvenv.cfg", "env/lib/site.py", "env/templates/x.html", ".env.swp"]

    def test_directory_walks_and_globs_leave_out_litter(self):
        kept = [self.path] + [self.write(name, "x") for name in (
            "templates/page.html", "templates/sub/part.html", "static/app.js")]
        for name in self.LITTER:
            self.write(name, "x")
        for include in ([self.directory], [os.path.join(self.directory, "**")],
                        [os.path.join(self.directory, "**", "*")]):
            with self.subTest(include=include):
                watcher = self.watcher(include=include)
                self.assertEqual(sorted(watcher.watched()), sorted(kept))

    def test_a_file_named_by_reload_include_is_always_watched(self):
        named = [self.write(name, "x") for name in ("debug.log", ".git/index", "page.html~")]
        watcher = self.watcher(include=named)
        self.assertEqual(watcher.watched(), set(named + [self.path]))
        self.write("debug.log", "y", self.base_ns + 10**9)
        self.assertEqual(watcher.poll(), [named[0]])

    def test_reload_exclude_adds_names_and_keeps_walks_out_of_directories(self):
        page = self.write("templates/page.html", "x")
        self.write("templates/media/photo.html", "x")
        self.write("templates/page.bak", "x")
        watcher = self.watcher(include=[self.directory], exclude=["media", "*.bak"])
        self.assertEqual(watcher.watched(), {self.path, page})

    def test_new_py_files_leave_out_editor_litter(self):
        watcher = self.watcher()
        self.write(".#app.py", "lock")                  # Emacs's lock file while editing app.py
        self.write("app.py~", "backup")
        self.set_mtime(self.directory, self.base_ns + 10**9)
        self.assertEqual(watcher.poll(), [])

    def test_the_files_stdout_and_stderr_write_to_are_not_watched(self):
        log = self.write("server-output.txt", "")
        page = self.write("page.html", "x")
        saved = os.dup(2)
        try:
            with open(log, "a") as output:
                os.dup2(output.fileno(), 2)
                watcher = self.watcher(include=[self.directory, os.path.join(self.directory, "*")])
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        self.assertEqual(watcher.watched(), {self.path, page})

    def test_first_seen_files_modified_since_loading_began_are_changes(self):
        # A module imported while the app loaded, then saved before the first poll.
        since = time.time_ns() - 10**9
        self.set_mtime(self.path, since - 5 * 10**6)   # the coarse file clock lags: 5 ms early
        other = self.write("other.py", "", since - runserver.MTIME_SLACK_NS - 1)
        watcher = runserver.FileWatcher(extra_files=[self.path, other], watch_modules=False,
                                        since_ns=since)
        self.assertEqual(watcher.poll(), [self.path])
        self.assertEqual(watcher.poll(), [])

    def test_py_files_made_while_the_app_loaded_are_new_files(self):
        since = time.time_ns() - 10**9
        made = self.write("views.py", "X = 1\n", since + 1)
        self.write("old.py", "X = 1\n", since - runserver.MTIME_SLACK_NS - 1)
        watcher = runserver.FileWatcher(extra_files=[self.path], watch_modules=False,
                                        since_ns=since)
        self.assertEqual(watcher.poll(), [made])

    def test_a_file_saved_during_the_first_poll_is_debounced_from_its_own_time(self):
        # check() sees the old version, the new-file scan the saved one: settle()
        # must wait from the save, or a worker forked at once sees it again.
        since = time.time_ns() - 10**9
        watcher = runserver.FileWatcher(extra_files=[self.path], watch_modules=False,
                                        since_ns=since)
        check = watcher.check

        def check_then_save(paths, since_ns, changed):
            check(paths, since_ns, changed)
            self.write("app.py", "VERSION = 2\n", time.time_ns(), atomic=True)
        watcher.check = check_then_save
        self.assertEqual(watcher.poll(), [self.path])
        self.assertEqual(watcher.snapshot[self.path], runserver.stat_key(self.path))

    def test_first_seen_files_from_the_future_are_not_changes(self):
        # Clock skew (a network file system): counting it would reload forever.
        self.set_mtime(self.path, time.time_ns() + 3600 * 10**9)
        watcher = runserver.FileWatcher(extra_files=[self.path], watch_modules=False,
                                        since_ns=time.time_ns() - 10**9)
        self.assertEqual(watcher.poll(), [])

    def test_several_saves_between_two_polls_are_one_change(self):
        watcher = self.watcher()
        for version in range(3):
            self.write("app.py", "VERSION = %d\n" % (version + 10), self.base_ns + version,
                       atomic=version % 2 == 1)
        self.assertEqual(watcher.poll(), [self.path])
        self.assertEqual(watcher.poll(), [])

    def test_wait_for_change_lists_every_path_that_changed(self):
        other = self.write("other.py", "VALUE = 1\n")
        watcher = self.watcher(self.path, other)
        result = []
        thread = threading.Thread(target=lambda: result.append(watcher.wait_for_change(0.005)))
        thread.start()
        for path in (self.path, other):     # within RELOAD_DEBOUNCE of each other
            with open(path, "w") as file:
                file.write("VALUE = 2\n")
        thread.join(TIMEOUT)
        self.assertIn(result[0], (self.path, other))
        self.assertEqual(set(watcher.changed), {self.path, other})     # truncated, then written

    def test_remove_stale_bytecode_removes_the_changed_sources_cache_only(self):
        import py_compile
        other = self.write("other.py", "VALUE = 1\n")
        cached = [py_compile.compile(path, doraise=True) for path in (self.path, other)]
        runserver.remove_stale_bytecode([self.path, os.path.join(self.directory, "gone.py"),
                                         os.path.join(self.directory, "page.html")])
        self.assertEqual([os.path.exists(path) for path in cached], [False, True])

    def test_saves_within_the_debounce_window_are_one_change(self):
        watcher = self.watcher()
        result = []
        thread = threading.Thread(target=lambda: result.append(watcher.wait_for_change(0.005)))
        thread.start()
        for version in range(4):            # 10 ms apart: well within RELOAD_DEBOUNCE
            if version:
                time.sleep(0.01)
            with open(self.path, "w") as file:
                file.write("VERSION = %d\n" % (100 + version))
        thread.join(TIMEOUT)
        self.assertEqual(result, [self.path])
        self.assertEqual(watcher.poll(), [])            # the last save was part of it

    def test_wait_for_change_returns_none_when_stopped(self):
        watcher = runserver.FileWatcher(extra_files=[self.path], watch_modules=False)
        stop = threading.Event()
        stop.set()
        self.assertIsNone(watcher.wait_for_change(0.01, stop))

    def test_hot_files_are_the_most_recently_modified(self):
        paths = [self.write("m%02d.py" % index, "", self.base_ns + index * 10**9)
                 for index in range(runserver.HOT_FILES + 4)]
        watcher = self.watcher(*paths)
        self.assertEqual(sorted(watcher.hot), sorted(paths[-runserver.HOT_FILES:]))
        self.write("m11.py", "X = 1\n", self.base_ns + 99 * 10**9)
        self.write("m00.py", "X = 1\n", self.base_ns + 99 * 10**9)     # not hot: seen later
        self.assertEqual(watcher.poll_hot(), [paths[-1]])
        self.assertEqual(watcher.poll(), [paths[0]])

    def test_imported_project_modules_are_watched_but_not_the_stdlib(self):
        name = "watched_module_%d" % os.getpid()
        path = self.write(name + ".py", "VALUE = 1\n")
        sys.path.insert(0, self.directory)
        self.addCleanup(sys.path.remove, self.directory)
        self.addCleanup(sys.modules.pop, name, None)
        importlib.import_module(name)
        watcher = runserver.FileWatcher()
        watcher.poll()
        self.assertIn(path, watcher.watched())
        self.assertIn(os.path.abspath(runserver.__file__), watcher.watched())
        self.assertNotIn(os.path.abspath(os.__file__), watcher.watched())
        self.write(name + ".py", "VALUE = 2\n", atomic=True)
        self.assertIn(path, watcher.poll())

    def test_module_source_maps_pyc_and_zip_imports(self):
        pyc = importlib.util.cache_from_source(self.path)
        module = type(sys)("compiled")
        module.__file__ = pyc
        self.assertEqual(runserver.module_source(module), self.path)
        archive = os.path.join(self.directory, "bundle.zip")
        name = "zipped_module_%d" % os.getpid()
        with zipfile.ZipFile(archive, "w") as bundle:
            bundle.writestr(name + ".py", "VALUE = 1\n")
        sys.path.insert(0, archive)
        self.addCleanup(sys.path.remove, archive)
        self.addCleanup(sys.modules.pop, name, None)
        self.assertEqual(runserver.module_source(importlib.import_module(name)), archive)


# ---- Reloader: supervisor and worker, as real processes --------------------------

APP_SOURCE = '''\
import os, time
import helper
try:
    import extra
    EXTRA = extra.VALUE
except ImportError:
    EXTRA = "no-extra"

VERSION = %r

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/exit":
        os._exit(7)
    if path == "/slow":
        open("entered", "w").close()
        while not os.path.exists("release"):
            time.sleep(0.01)
    body = ("%%s %%s %%s pid=%%d\\n" %% (VERSION, helper.VALUE, EXTRA, os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def process_gone(pid):
    """True once `pid` has exited: a zombie counts, once its other threads (which
    share its descriptors) are gone too."""
    try:
        with open("/proc/%d/status" % pid) as file:
            status = dict(line.split(":", 1) for line in file.read().splitlines() if ":" in line)
        return status["State"].split()[0] == "Z" and int(status["Threads"]) <= 1
    except FileNotFoundError:
        return True
    except OSError:                                 # no /proc
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


def parent_pid(pid):
    """The parent of process `pid`, from /proc."""
    with open("/proc/%d/stat" % pid) as file:
        return int(file.read().rpartition(")")[2].split()[1])


def kill_if_alive(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def nothing_listens(port):
    """True if no socket listens on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            # With nothing listening, a connection to a local port may meet itself.
            return sock.getsockname() == sock.getpeername()
    except ConnectionRefusedError:
        return True
    except OSError:                                 # accepted, then reset as a listener closed
        return False


class ReloaderTests(CLITestCase):
    """The supervisor and its workers: reloads, errors, crashes and signals."""

    def setUp(self):
        super().setUp()
        self.write("helper.py", "VALUE = 'helper-1'\n")
        self.write("app.py", APP_SOURCE % "v1")

    def start_reloader(self, *extra, launcher=None, env=None):
        process = self.start("app:application", "127.0.0.1:0", "--reload-interval", "0.05",
                             *extra, launcher=launcher, env=env)
        return process, process.port()

    def wait_for_body(self, port, text, path="/"):
        """GET until the body contains `text` (a reload takes a moment); return it."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            body = http_get(port, path).body.decode()
            if text in body:
                return body
            if time.monotonic() > deadline:
                self.fail("no response containing %r; the last was %r" % (text, body))
            time.sleep(0.01)

    def worker_pid(self, port):
        return int(re.search(r"pid=(\d+)", self.wait_for_body(port, "pid=")).group(1))

    def edit_in_place(self, name, text):
        with open(os.path.join(self.directory, name), "r+") as file:
            file.truncate()
            file.write(text)

    def reload_lines(self, process):
        return [line for line in process.output().splitlines() if "reloading" in line
                and "reloading on changes" not in line]

    def test_edit_in_place_and_atomic_save_of_the_app_and_of_a_module_it_imports(self):
        process, port = self.start_reloader()
        self.assertIn("v1 helper-1", self.wait_for_body(port, "v1"))
        self.edit_in_place("app.py", APP_SOURCE % "v2-in-place")
        self.wait_for_body(port, "v2-in-place helper-1")
        self.write("app.py", APP_SOURCE % "v3-atomic")
        self.wait_for_body(port, "v3-atomic helper-1")
        self.write("helper.py", "VALUE = 'helper-2'\n")
        self.wait_for_body(port, "v3-atomic helper-2")
        lines = self.reload_lines(process)
        self.assertEqual(len(lines), 3, lines)
        self.assertIn(os.path.join(self.directory, "helper.py") + " changed, reloading.",
                      lines[-1])

    def test_saves_within_one_second_that_keep_the_size_are_not_served_stale(self):
        # Python trusts a .pyc whose source has the same size and the same
        # modification time in whole seconds: two saves within a second.
        second = (int(time.time()) - 100) * 10**9
        for name in ("app.py", "helper.py"):
            os.utime(os.path.join(self.directory, name), ns=(second, second + 10**8))
        process, port = self.start_reloader(env={"PYTHONDONTWRITEBYTECODE": ""})
        self.assertIn("v1 helper-1", self.wait_for_body(port, "v1"))
        for name in ("app.py", "helper.py"):
            cached = importlib.util.cache_from_source(os.path.join(self.directory, name))
            self.assertTrue(os.path.exists(cached))
        saves = []

        def save_again():
            """Save both files, same sizes, in that second; True once the new code
            is served.  (Saved again meanwhile: a watcher's first look does not
            count a file modified before the worker began, as these seem to be.)"""
            saves.append(second + 5 * 10**8 + len(saves))
            for name, text in (("app.py", APP_SOURCE % "v2"), ("helper.py", "VALUE = 'helper-2'\n")):
                path = os.path.join(self.directory, name)
                with open(path + ".tmp", "w") as file:
                    file.write(text)
                os.utime(path + ".tmp", ns=(second, saves[-1]))
                os.replace(path + ".tmp", path)
            return "v2 helper-2" in http_get(port).body.decode()
        wait_until(save_again)

    def test_a_fix_saved_within_the_second_of_a_crash_is_not_served_stale(self):
        # The crashed worker cached the bytecode of the crashing helper.py; the
        # fix has its size and its mtime's second, so Python would trust that cache.
        second = (int(time.time()) - 100) * 10**9
        crashing = "import os; os._exit(3)\n"
        fixed = "VALUE = 'helper-2'".ljust(len(crashing) - 1) + "\n"     # the same size
        helper = os.path.join(self.directory, "helper.py")
        for name in ("app.py", "helper.py"):
            os.utime(os.path.join(self.directory, name), ns=(second, second + 10**8))
        process, port = self.start_reloader(env={"PYTHONDONTWRITEBYTECODE": ""})
        self.wait_for_body(port, "v1 helper-1")
        saves = []

        def save(text):
            saves.append(second + 2 * 10**8 + len(saves))
            with open(helper + ".tmp", "w") as file:
                file.write(text)
            os.utime(helper + ".tmp", ns=(second, saves[-1]))
            os.replace(helper + ".tmp", helper)
        # Saved again meanwhile, as in the test above: a watcher's first look.
        wait_until(lambda: save(crashing) or "save a file to restart it." in process.output())
        self.assertTrue(os.path.exists(importlib.util.cache_from_source(helper)))
        wait_until(lambda: save(fixed) or "helper-2" in http_get(port).body.decode())

    def test_a_new_py_file_next_to_the_app(self):
        process, port = self.start_reloader()
        self.wait_for_body(port, "v1 helper-1 no-extra")
        self.write("extra.py", "VALUE = 'extra-1'\n")
        self.wait_for_body(port, "v1 helper-1 extra-1")
        process.wait_for(r"extra\.py changed, reloading\.")

    def test_fixing_a_module_the_app_failed_to_import_reloads(self):
        # As Django imports views.py at the first request, and answers its own
        # 500 page when that fails: the module never reaches sys.modules.  The
        # fix is written in place with an old time (the directory does not
        # change, and no first look takes it for a new file), until it reloads.
        views = self.write("views.py", "def index(:\n")
        past = (int(time.time()) - 100) * 10**9
        os.utime(views, ns=(past, past))
        self.write("lazy.py", "def application(environ, start_response):\n"
                              "    try:\n        import views\n        body = views.TEXT\n"
                              "    except SyntaxError as exc:\n        body = 'broken'\n"
                              "    start_response('200 OK', [])\n"
                              "    return [body.encode()]\n")
        process = self.start("lazy:application", "127.0.0.1:0", "--reload-interval", "0.05")
        port = process.port()
        self.wait_for_body(port, "broken")
        saves = []

        def fix():
            saves.append(past + (len(saves) + 1) * 10**6)
            with open(views, "w") as file:
                file.write("TEXT = 'fixed'\n")
            os.utime(views, ns=(past, saves[-1]))
            return "views.py changed, reloading." in process.output()
        wait_until(fix)
        self.wait_for_body(port, "fixed")

    def test_syntax_error_shows_a_traceback_page_until_fixed(self):
        process, port = self.start_reloader()
        self.wait_for_body(port, "v1")
        self.write("app.py", APP_SOURCE % "v2" + "\ndef broken(:\n")
        deadline = time.monotonic() + TIMEOUT
        while http_get(port).status != 500:
            self.assertLess(time.monotonic(), deadline, "no 500 page:\n" + process.output())
            time.sleep(0.01)
        page = http_get(port)
        self.assertIn(b"SyntaxError", page.body)
        self.assertIn(b"app.py", page.body)
        self.assertEqual(http_get(port).status, 500)        # still serving: no restart loop
        self.write("app.py", APP_SOURCE % "v3-fixed")
        self.wait_for_body(port, "v3-fixed")
        self.assertEqual(process.output().count("SyntaxError"), 1, process.output())

    def test_exception_at_import_in_a_module_the_app_imports(self):
        process, port = self.start_reloader()
        self.wait_for_body(port, "v1")
        self.write("helper.py", "raise RuntimeError('broken helper')\n")
        body = self.wait_for_body(port, "broken helper")
        self.assertIn("Traceback (most recent call last)", body)
        self.assertIn("helper.py", body)
        self.write("helper.py", "VALUE = 'helper-fixed'\n")
        self.wait_for_body(port, "v1 helper-fixed")
        self.assertNotIn("save a file to restart", process.output())

    def assert_restarts_after_a_save(self, process, port, pid):
        self.assertIsNone(process.process.poll())          # the supervisor waits,
        response = http_get(port)                           # and answers meanwhile
        self.assertEqual(response.status, 500)
        self.assertIn(b"save a file to restart it", response.body)
        self.write("app.py", APP_SOURCE % "v2-after-crash")
        process.wait_for(r"app\.py changed, restarting\.")
        self.wait_for_body(port, "v2-after-crash")
        self.assertNotEqual(self.worker_pid(port), pid)
        self.assertEqual(process.output().count("save a file to restart"), 1, process.output())

    def test_worker_killed_then_a_save_restarts_it(self):
        process, port = self.start_reloader()
        pid = self.worker_pid(port)
        os.kill(pid, signal.SIGKILL)
        line = process.wait_for(r"The server process (.*); save a file to restart it\.$")
        self.assertEqual(line.group(1), "was killed by SIGKILL")
        self.assert_restarts_after_a_save(process, port, pid)

    def test_worker_os_exit_then_a_save_restarts_it(self):
        process, port = self.start_reloader()
        pid = self.worker_pid(port)
        with self.assertRaises((EOFError, ConnectionError)):
            http_get(port, "/exit")
        line = process.wait_for(r"The server process (.*); save a file to restart it\.$")
        self.assertEqual(line.group(1), "exited with status 7")
        self.assert_restarts_after_a_save(process, port, pid)

    def test_an_exit_at_import_is_one_line_and_a_save_recovers(self):
        # The app's exit status is its own: status 3 once meant "reload me",
        # and os._exit(3) at import restarted workers in a loop, silently.
        process, port = self.start_reloader()
        self.wait_for_body(port, "v1")
        for exit_call in ("os._exit(3)", "sys.exit(3)"):
            self.write("app.py", "import os, sys\nwith open('imported', 'a') as log:\n"
                                 "    log.write('x')\n%s\n" % exit_call)
            deadline = time.monotonic() + TIMEOUT
            while b"save a file to restart it" not in http_get(port).body:
                self.assertLess(time.monotonic(), deadline, "no error page:\n" + process.output())
                time.sleep(0.01)
            self.assertEqual(http_get(port).status, 500)
            with open(os.path.join(self.directory, "imported")) as file:
                self.assertEqual(file.read(), "x", "imported again: a restart loop")
            os.remove(os.path.join(self.directory, "imported"))
            self.write("app.py", APP_SOURCE % ("fixed-" + exit_call))
            self.wait_for_body(port, "fixed-" + exit_call)
        lines = [line for line in process.output().splitlines() if "exited" in line]
        self.assertEqual(lines, ["The server process exited with status 3; save a file to "
                                 "restart it."] * 2, process.output())
        self.assertNotIn("Traceback", process.output())

    def test_sigkill_of_the_supervisor_leaves_nothing_listening(self):
        process, port = self.start_reloader()
        pid = self.worker_pid(port)
        self.addCleanup(kill_if_alive, pid)         # if this test fails: no orphan
        process.process.kill()                      # the supervisor alone
        process.process.wait(TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while not (process_gone(pid) and nothing_listens(port)):
            self.assertLess(time.monotonic(), deadline, "the worker outlived its supervisor")
            time.sleep(0.01)

    def test_ctrl_c_stops_everything_with_status_0(self):
        process, port = self.start_reloader()
        pid = self.worker_pid(port)
        process.signal(signal.SIGINT)               # the whole process group, as a terminal does
        self.assertEqual(process.wait(), 0)
        self.assertTrue(process_gone(pid))
        self.assertEqual(process.output().count("Server stopped."), 1, process.output())
        self.assertNotIn("Traceback", process.output())

    def test_sigterm_to_the_supervisor_is_forwarded(self):
        process, port = self.start_reloader()
        pid = self.worker_pid(port)
        process.process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(), 0)
        self.assertTrue(process_gone(pid))
        self.assertEqual(process.output().count("Server stopped."), 1, process.output())

    def test_no_connection_error_while_a_client_polls_through_reloads(self):
        process, port = self.start_reloader("--quiet")
        self.wait_for_body(port, "v1")
        errors, bodies, stop = [], [], threading.Event()

        def poll():
            while not stop.is_set():
                try:
                    response = http_get(port)       # a new connection for every request
                    bodies.append(response.body.decode())
                    if response.status != 200:
                        errors.append(response.status)
                except (OSError, EOFError) as exc:
                    errors.append(exc)

        client = threading.Thread(target=poll)
        client.start()
        try:
            for version in range(2, 5):
                self.write("app.py", APP_SOURCE % ("v%d" % version))
                deadline = time.monotonic() + TIMEOUT
                while not any(body.startswith("v%d " % version) for body in bodies[-3:]):
                    self.assertLess(time.monotonic(), deadline, "v%d never served" % version)
                    time.sleep(0.005)
        finally:
            stop.set()
            client.join(TIMEOUT)
        self.assertEqual(errors, [])
        self.assertEqual(len(self.reload_lines(process)), 3, process.output())

    def test_a_request_in_flight_during_a_reload_completes(self):
        process, port = self.start_reloader()
        self.wait_for_body(port, "v1")
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.addCleanup(sock.close)
        sock.sendall(get("/slow"))
        deadline = time.monotonic() + TIMEOUT
        while not os.path.exists(os.path.join(self.directory, "entered")):
            self.assertLess(time.monotonic(), deadline, "the slow request never started")
            time.sleep(0.01)
        self.write("app.py", APP_SOURCE % "v2")
        process.wait_for(r"app\.py changed, reloading\.")
        self.write("release", "")
        response = Reader(sock).response()
        self.assertEqual(response.status, 200)
        self.assertTrue(response.body.startswith(b"v1 "), response.body)
        self.wait_for_body(port, "v2")

    def test_python_dash_m_runserver_survives_a_reload(self):
        process = CLIProcess(["runserver", "app:application", "127.0.0.1:0",
                              "--reload-interval", "0.05"], cwd=self.directory,
                             env={"PYTHONPATH": HERE}, program="-m")
        self.addCleanup(process.kill)
        port = process.port()
        pid = self.worker_pid(port)
        self.write("app.py", APP_SOURCE % "v2-module")
        self.wait_for_body(port, "v2-module")
        self.assertNotEqual(self.worker_pid(port), pid)
        process.signal(signal.SIGINT)
        self.assertEqual(process.wait(), 0)

    @unittest.skipUnless(os.path.isdir("/proc/self/fd"), "lists descriptors in /proc")
    def test_every_kind_of_worker_looks_the_same_to_the_app(self):
        # The first worker is forked from the supervisor, the next one forked
        # from the template, or started afresh with --no-warm: the app must
        # not tell them apart.
        source = ("import os, sys, runserver\n"
                  "VERSION = %r\n"
                  "def descriptors():\n"         # what each is, but for sockets
                  "    kinds = []\n"
                  "    for fd in os.listdir('/proc/self/fd'):\n"
                  "        try:\n"
                  "            kind = os.readlink('/proc/self/fd/' + fd).split('[')[0]\n"
                  "            if not os.path.isdir(kind):\n"    # the file watcher's scans
                  "                kinds.append(kind)\n"
                  "        except OSError:\n"       # the listing's own descriptor
                  "            pass\n"
                  "    return sorted(kind for kind in kinds if kind != 'socket:')\n"
                  "def application(environ, start_response):\n"
                  "    kinds = descriptors()\n"
                  "    body = repr((VERSION, runserver.is_reloader_worker(), os.getppid(),\n"
                  "                 sorted(name for name in os.environ if 'RUNSERVER' in name),\n"
                  "                 sys.modules['runserver'].__file__, kinds)).encode()\n"
                  "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                  "    return [body]\n")
        launcher = self.write("launch.py", (   # as a shell's `exec 7>marker.txt` would
            "import os, sys\n"
            "os.set_inheritable(os.open('marker.txt', os.O_WRONLY | os.O_CREAT), True)\n"
            "os.execv(sys.executable, [sys.executable] + sys.argv[1:])\n"))
        seen = []
        for options in ((), ("--no-warm",)):    # forked from the template, or started
            self.write("app.py", source % "v1")
            process, port = self.start_reloader(*options, launcher=launcher)
            first = ast.literal_eval(self.wait_for_body(port, "v1"))
            self.write("app.py", source % "v2")
            second = ast.literal_eval(self.wait_for_body(port, "v2"))
            self.assertEqual(first[1:3], (True, process.process.pid))
            if not options:                     # the template is the supervisor's child
                self.assertEqual(parent_pid(second[2]), process.process.pid)
                self.assertNotEqual(second[2], process.process.pid)
            else:
                self.assertEqual(second[2], process.process.pid)
            seen += [first[1:2] + first[3:], second[1:2] + second[3:]]
            process.signal(signal.SIGINT)
            self.assertEqual(process.wait(), 0)
        self.assertEqual(len(set(repr(item) for item in seen)), 1, seen)

    def test_under_a_launcher_the_first_worker_is_started_not_forked(self):
        # Under a launcher (runpy here; a profiler, a debugger) a forked worker
        # would resume in the middle of the launcher's code and run its end.
        launcher = self.write("launcher.py", (
            "import atexit, os, runpy, sys\n"
            "print('the launcher starts in', os.getpid(), flush=True)\n"
            "atexit.register(lambda: print('the launcher ends in', os.getpid(), flush=True))\n"
            "sys.argv = sys.argv[1:]\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')\n"))
        process, port = self.start_reloader(launcher=launcher)
        self.wait_for_body(port, "v1")
        process.signal(signal.SIGINT)
        self.assertEqual(process.wait(), 0)
        started = re.findall(r"the launcher starts in (\d+)", process.output())
        ended = re.findall(r"the launcher ends in (\d+)", process.output())
        self.assertIn(str(process.process.pid), ended)
        self.assertLessEqual(set(ended), set(started), process.output())

    def test_an_editing_session_reloads_only_for_the_template_edit(self):
        # Watched: the whole project.  The launcher writes the log (stderr) to a
        # file in it, and prints a line each time the watcher has looked at
        # every file, so that the test knows the litter has been seen.
        launcher = self.write("launch.py", (
            "import os, sys\n"
            "sys.path.insert(0, os.path.dirname(sys.argv[1]))\n"
            "import runserver\n"
            "poll = runserver.FileWatcher.poll\n"
            "def poll_and_tell(self):\n"
            "    changed = poll(self)\n"
            "    if self.polls % runserver.SLOW_POLL_EVERY == 1:\n"
            "        print('looked at every file', flush=True)\n"
            "    return changed\n"
            "runserver.FileWatcher.poll = poll_and_tell\n"
            "os.dup2(os.open('server-output.txt', os.O_WRONLY | os.O_CREAT | os.O_APPEND), 2)\n"
            "sys.exit(runserver.main(sys.argv[2:]))\n"))
        template = self.write("templates/page.html", "<p>1</p>")
        for name in (".git/index", "templates/page.html~", "venv/pyvenv.cfg", "debug.log"):
            self.write(name, "before")
        process, port = self.start_reloader("--reload-include", ".", launcher=launcher)
        pid = self.worker_pid(port)
        process.wait_for("looked at every file")

        def path(name):
            os.makedirs(os.path.dirname(os.path.join(self.directory, name)), exist_ok=True)
            return os.path.join(self.directory, name)
        # vim: swap file, write probe, backup, then the swap file goes
        with open(path("templates/.page.html.swp"), "wb") as swap:
            swap.write(b"b0VIM 9.0")
            swap.flush()
            open(path("templates/4913"), "w").close()
            os.remove(path("templates/4913"))
            self.write("templates/page.html~", "<p>1</p>")
        os.remove(path("templates/.page.html.swp"))
        # Emacs: autosave and lock; git: a commit rewrites the index
        self.write("templates/#page.html#", "<p>autosave</p>")
        os.remove(path("templates/#page.html#"))
        os.symlink("user@host.1234:1", path("templates/.#page.html"))
        os.remove(path("templates/.#page.html"))
        self.write(".git/index.lock", "DIRC")
        os.replace(path(".git/index.lock"), path(".git/index"))
        # the app: its log, its SQLite database, bytecode; tools: caches, packages
        with open(path("debug.log"), "a") as log:
            log.write("a log line\n")
        import sqlite3
        database = sqlite3.connect(path("db.sqlite3"))
        with database:
            database.execute("CREATE TABLE notes (text)")
            database.execute("INSERT INTO notes VALUES ('saved')")
        database.close()
        for name in ("__pycache__/app.cpython-311.pyc", "node_modules/pkg/index.js",
                     ".mypy_cache/3.11/app.json", "venv/lib/site-packages/pkg.py"):
            self.write(name, "junk")
        self.assertEqual(http_get(port).status, 200)         # a log line in server-output.txt
        # Two complete looks at every file after the last of it, then the real edit.
        seen = len(process.lines)
        process.wait_for("looked at every file", start=seen)
        process.wait_for("looked at every file", start=seen + 1)
        self.assertEqual(self.worker_pid(port), pid)
        self.write("templates/page.html", "<p>2</p>")
        self.wait_for_new_worker(port, pid)
        seen = len(process.lines)
        process.wait_for("looked at every file", start=seen)
        with open(path("server-output.txt")) as output:
            log = output.read()
        self.assertIn('"GET / HTTP/1.1" 200', log)
        reloads = [line for line in log.splitlines() if "changed, reloading" in line]
        self.assertEqual(len(reloads), 1, log)
        self.assertIn(template, reloads[0])

    def wait_for_new_worker(self, port, pid):
        deadline = time.monotonic() + TIMEOUT
        while self.worker_pid(port) == pid:
            self.assertLess(time.monotonic(), deadline, "no reload")
            time.sleep(0.01)

    def test_usage_error_in_the_app_spec_with_the_reloader_on(self):
        code, output = self.run_cli("app:missing", "127.0.0.1:0", "--reload-interval", "0.05")
        self.assertEqual(code, 2, output)
        self.assertEqual(len(output.strip().splitlines()), 1, output)
        self.assertIn('no attribute "missing"', output)
        self.assertNotIn("Traceback", output)


class WarmReloadTests(CLITestCase):
    """Workers forked from the template: what it preloads, when it is replaced,
    when it is refused, and that it never outlives the supervisor."""

    WARM_APP = ("import os, %s\n"
                "VERSION = %r\n"
                "def application(environ, start_response):\n"
                "    body = ('%%s %%s pid=%%d ppid=%%d\\n' %% (VERSION, %s, os.getpid(),\n"
                "                                          os.getppid())).encode()\n"
                "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                "    return [body]\n")
    LIBRARY = ("import os\n"
               "with open(os.path.join(os.environ['WARM_TEST_LOG'], '%s.log'), 'a') as log:\n"
               "    log.write('%%d\\n' %% os.getpid())\n"
               "VALUE = %r\n")

    def setUp(self):
        super().setUp()
        import site
        import sysconfig
        if not site.ENABLE_USER_SITE:
            self.skipTest("no user site-packages here (a virtualenv?): the test's libraries go there")
        userbase = tempfile.mkdtemp(prefix="runserver-site-")
        self.addCleanup(shutil.rmtree, userbase, True)
        self.site = sysconfig.get_path("purelib", "%s_user" % os.name, vars={"userbase": userbase})
        self.env = {"PYTHONUSERBASE": userbase, "WARM_TEST_LOG": self.directory,
                    "PYTHONDONTWRITEBYTECODE": None}

    def library(self, name, text):
        """Write a module into the user site-packages: a library, not the project's."""
        path = os.path.join(self.site, name + ".py")
        os.makedirs(self.site, exist_ok=True)
        with open(path + ".tmp", "w") as file:
            file.write(text)
        os.replace(path + ".tmp", path)
        return path

    def app(self, version, library="lib"):
        self.write("app.py", self.WARM_APP % (library, version, library + ".VALUE"))

    def importers(self, name):
        """The pids of the processes that imported library `name`."""
        try:
            with open(os.path.join(self.directory, name + ".log")) as file:
                return [int(line) for line in file.read().split()]
        except FileNotFoundError:
            return []

    def start_warm(self, *extra):
        process = self.start("app:application", "127.0.0.1:0", "--reload-interval", "0.05",
                             *extra, env=self.env)
        return process, process.port()

    def serving(self, port, text):
        """Wait for a response containing `text`; return (body, worker pid, its parent)."""
        body = ReloaderTests.wait_for_body(self, port, text)
        pid, ppid = re.search(r"pid=(\d+) ppid=(\d+)", body).groups()
        return body, int(pid), int(ppid)

    def test_a_reloaded_worker_comes_from_the_template_with_the_libraries_imported(self):
        self.library("lib", self.LIBRARY % ("lib", "lib-1"))
        self.app("v1")
        process, port = self.start_warm()
        self.assertIn("reloading on changes (warm)", process.output())
        _, first, parent = self.serving(port, "v1 lib-1")
        self.assertEqual(parent, process.process.pid)       # forked from the supervisor
        templates = set()
        for version in ("v2", "v3"):
            self.app(version)
            _, worker, template = self.serving(port, version + " lib-1")
            self.assertNotEqual(template, process.process.pid)
            self.assertEqual(parent_pid(template), process.process.pid)
            templates.add(template)
        self.assertEqual(len(templates), 1)
        self.assertEqual(self.importers("lib"), [first] + list(templates))   # never again

    def test_with_no_warm_every_worker_imports_the_libraries(self):
        self.library("lib", self.LIBRARY % ("lib", "lib-1"))
        self.app("v1")
        process, port = self.start_warm("--no-warm")
        self.assertIn("reloading on changes\n", process.output() + "\n")
        self.serving(port, "v1 lib-1")
        self.app("v2")
        _, worker, parent = self.serving(port, "v2 lib-1")
        self.assertEqual(parent, process.process.pid)
        self.assertEqual(len(self.importers("lib")), 2, self.importers("lib"))

    def test_a_change_to_a_preloaded_file_replaces_the_template(self):
        self.library("lib", self.LIBRARY % ("lib", "lib-1"))
        self.app("v1")
        process, port = self.start_warm()
        self.serving(port, "v1 lib-1")
        self.app("v2")
        _, _, template = self.serving(port, "v2 lib-1")
        self.library("lib", self.LIBRARY % ("lib", "lib-2"))     # as pip install would
        self.serving(port, "v2 lib-2")
        self.app("v3")
        _, _, new_template = self.serving(port, "v3 lib-2")
        self.assertNotIn(new_template, (template, process.process.pid))
        self.assertEqual(parent_pid(new_template), process.process.pid)
        self.assertIn(new_template, self.importers("lib"))
        self.assertTrue(process_gone(template))

    def test_a_new_library_imported_by_an_edit_is_preloaded_too(self):
        self.library("lib", self.LIBRARY % ("lib", "lib-1"))
        self.library("newlib", self.LIBRARY % ("newlib", "newlib-1"))
        self.app("v1")
        process, port = self.start_warm()
        self.serving(port, "v1 lib-1")
        self.app("v2", library="newlib")
        _, worker, template = self.serving(port, "v2 newlib-1")
        self.assertEqual(self.importers("newlib")[0], worker)
        wait_until(lambda: self.importers("newlib") == [worker, template])
        self.app("v3", library="newlib")
        _, _, parent = self.serving(port, "v3 newlib-1")
        self.assertEqual(parent, template)
        self.assertEqual(self.importers("newlib"), [worker, template])

    def test_a_library_that_fails_in_the_template_is_left_to_the_worker(self):
        # As a Django library that reads the settings on import: the template
        # has none, and what its failed import left must not reach a worker.
        package = os.path.join(self.site, "configured")
        os.makedirs(os.path.join(package, "mid"))
        with open(os.path.join(package, "__init__.py"), "w"):
            pass
        with open(os.path.join(package, "mid", "__init__.py"), "w") as file:
            file.write("import os\nfrom . import leaf\n"
                       "if os.environ.get('APP_CONFIGURED') != '1':\n"
                       "    raise RuntimeError('not configured')\n")
        self.library(os.path.join("configured", "mid", "leaf"), "VALUE = 'leaf-1'\n")
        source = self.WARM_APP.replace("import os, %s\n", (
            "import os\nos.environ['APP_CONFIGURED'] = '1'\nimport %s as library\n"))
        self.write("app.py", source % ("configured.mid.leaf", "v1", "library.VALUE"))
        process, port = self.start_warm()
        self.serving(port, "v1 leaf-1")
        self.write("app.py", source % ("configured.mid.leaf", "v2", "library.VALUE"))
        _, _, template = self.serving(port, "v2 leaf-1")
        self.assertNotEqual(template, process.process.pid)
        self.assertNotIn("Traceback", process.output())

    def test_a_library_that_starts_a_thread_turns_warm_reloads_off(self):
        self.library("lib", "import threading\n"
                            "threading.Thread(target=threading.Event().wait, name='lib-thread',\n"
                            "                 daemon=True).start()\n"
                            "VALUE = 'lib-1'\n")
        self.app("v1")
        process, port = self.start_warm()
        self.serving(port, "v1 lib-1")
        process.wait_for(r"Warm reloads are off: importing lib starts a thread \(lib-thread\)")
        self.app("v2")
        _, _, parent = self.serving(port, "v2 lib-1")
        self.assertEqual(parent, process.process.pid)       # started afresh
        self.assertEqual(process.output().count("Warm reloads are off"), 1, process.output())

    def test_a_library_never_imports_a_project_module_in_the_template(self):
        # The template's import of it fails there: it is left to each worker.
        self.library("lib", "import projectmod\nVALUE = projectmod.VALUE\n")
        self.write("projectmod.py", "VALUE = 'project-1'\n")
        self.app("v1")
        process, port = self.start_warm()
        self.serving(port, "v1 project-1")
        self.app("v2")
        _, _, template = self.serving(port, "v2 project-1")
        self.assertNotEqual(template, process.process.pid)
        self.write("projectmod.py", "VALUE = 'project-2'\n")
        _, _, parent = self.serving(port, "v2 project-2")
        self.assertEqual(parent, template)
        self.assertNotIn("Warm reloads are off", process.output())

    def test_a_library_that_goes_on_without_a_project_module_is_refused(self):
        self.library("lib", "try:\n"
                            "    import projectmod\n"
                            "    VALUE = projectmod.VALUE\n"
                            "except ImportError:\n"
                            "    VALUE = 'no-project'\n")
        self.write("projectmod.py", "VALUE = 'project-1'\n")
        self.app("v1")
        process, port = self.start_warm()
        self.serving(port, "v1 project-1")
        process.wait_for(r"Warm reloads are off: importing lib imports projectmod, a module "
                         r"of this project")
        self.app("v2")
        _, _, parent = self.serving(port, "v2 project-1")
        self.assertEqual(parent, process.process.pid)

    def warm_processes(self):
        """Start, reload once; return (process, port, worker pid, template pid)."""
        self.library("lib", self.LIBRARY % ("lib", "lib-1"))
        self.app("v1")
        process, port = self.start_warm()
        self.serving(port, "v1")
        self.app("v2")
        _, worker, template = self.serving(port, "v2")
        self.assertNotEqual(template, process.process.pid)
        for pid in (worker, template):
            self.addCleanup(kill_if_alive, pid)     # if this test fails: no orphan
        return process, port, worker, template

    def test_sigkill_of_the_supervisor_leaves_neither_worker_nor_template(self):
        process, port, worker, template = self.warm_processes()
        process.process.kill()                      # the supervisor alone
        process.process.wait(TIMEOUT)
        wait_until(lambda: process_gone(worker) and process_gone(template)
                   and nothing_listens(port))

    def test_ctrl_c_stops_all_three_processes(self):
        process, port, worker, template = self.warm_processes()
        process.signal(signal.SIGINT)               # the whole process group, as a terminal does
        self.assertEqual(process.wait(), 0)
        self.assertTrue(process_gone(worker) and process_gone(template))
        self.assertEqual(process.output().count("Server stopped."), 1, process.output())
        self.assertNotIn("Traceback", process.output())


# ---- Platforms: Windows and macOS, simulated on Linux ----------------------------------

# A sitecustomize.py for the server's processes (through PYTHONPATH): before
# runserver.py is imported, it takes away what Windows does not have, says
# sys.platform is win32, and gives sockets Windows' share() and fromshare(),
# made here with a unix socket and SCM_RIGHTS; share(pid) gives the socket to
# that process only, as Windows does.  runserver.py itself has no test hook.
WINDOWS_SIMULATION = r"""
import os, select, signal, socket, struct, sys, threading, uuid

_AF_UNIX, _SIGKILL = socket.AF_UNIX, signal.SIGKILL
_send_fds, _recv_fds = socket.send_fds, socket.recv_fds
for name in ("epoll", "poll", "devpoll", "kqueue"):
    if hasattr(select, name):
        delattr(select, name)
import selectors, subprocess                # as Windows has them: select() only
# PyPy's waitstatus_to_exitcode() looks at sys.platform: keep Linux's, in
# subprocess too (a default argument of Popen._handle_exitstatus()).
_waitstatus_to_exitcode = os.waitstatus_to_exitcode
os.waitstatus_to_exitcode = lambda status: (
    -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
subprocess.Popen._handle_exitstatus.__defaults__ = tuple(
    os.waitstatus_to_exitcode if value is _waitstatus_to_exitcode else value
    for value in subprocess.Popen._handle_exitstatus.__defaults__ or ())
selectors.DefaultSelector = selectors.SelectSelector
HIDDEN = {os: ("fork", "forkpty", "killpg", "getpgid", "setsid", "memfd_create", "pwrite",
               "getuid", "sendfile", "register_at_fork", "WNOHANG"),
          signal: ("SIGKILL", "SIGCHLD", "SIGHUP", "SIGQUIT", "SIGUSR2", "pthread_sigmask",
                   "pthread_kill", "SIG_BLOCK", "SIG_SETMASK", "siginterrupt", "setitimer"),
          socket: ("AF_UNIX", "send_fds", "recv_fds", "MSG_DONTWAIT", "SO_REUSEPORT")}
signal.SIGBREAK = signal.SIGUSR1            # the tests' Ctrl-Break
del signal.SIGUSR1
for module, names in HIDDEN.items():
    for name in names:
        if hasattr(module, name):
            delattr(module, name)
for name in ("termios", "fcntl", "resource", "pwd", "grp", "pty", "tty"):
    sys.modules[name] = None                # import fails
import secrets, sysconfig, tempfile         # imported as on Linux (3.13's shutil would
sysconfig.get_config_vars()                 # import _winapi); sysconfig's names a file
sys.platform = "win32"                      # after sys.platform

_popen_init = subprocess.Popen.__init__

def popen_init(self, *args, pass_fds=(), preexec_fn=None, start_new_session=False, **kwargs):
    if pass_fds or preexec_fn or start_new_session:
        raise ValueError("pass_fds, preexec_fn and start_new_session do not exist on Windows")
    _popen_init(self, *args, **kwargs)

subprocess.Popen.__init__ = popen_init
subprocess.Popen.kill = lambda self: self.send_signal(_SIGKILL)     # TerminateProcess

def socketpair(family=socket.AF_INET, type=socket.SOCK_STREAM, proto=0):
    with socket.socket(family, type, proto) as listener:    # Windows': over loopback
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        one = socket.socket(family, type, proto)
        one.connect(listener.getsockname())
        return one, listener.accept()[0]

def share(self, pid):
    name = "\0runserver-share-" + uuid.uuid4().hex
    listener = socket.socket(_AF_UNIX)
    listener.bind(name)
    listener.listen()
    copy = self.dup()                       # this socket may be closed now, as on Windows

    def give():
        with listener, copy:
            while True:
                connection = listener.accept()[0]
                with connection:
                    peer = struct.unpack("3i", connection.getsockopt(     # Linux's SO_PEERCRED
                        socket.SOL_SOCKET, 17, struct.calcsize("3i")))[0]  # (not in PyPy's socket)
                    if peer == pid:
                        _send_fds(connection, [b"s"], [copy.fileno()])
                        return
    threading.Thread(target=give, daemon=True).start()
    return name.encode()

def fromshare(data):
    with socket.socket(_AF_UNIX) as connection:
        connection.connect(data.decode())
        fds = _recv_fds(connection, 1, 1)[1]
    if not fds:
        raise OSError("the socket was shared with another process")
    return socket.socket(fileno=fds[0])

socket.socketpair = socketpair
socket.socket.share = share
socket.fromshare = fromshare
"""


# macOS, as far as runserver.py can tell: no epoll (a selector, kqueue's
# there, poll's here) and sys.platform darwin, where fork without exec is
# forbidden: every worker is started afresh (spawn_worker()), no template.
MACOS_SIMULATION = r"""
import select, sys, sysconfig, tempfile
del select.epoll
import selectors
selectors.DefaultSelector = selectors.PollSelector
sysconfig.get_config_vars()                 # cached: it names a file after sys.platform
sys.platform = "darwin"
"""


class PlatformSimulation:
    """Mixin for CLITestCase: the server's processes run as on Windows (see
    WINDOWS_SIMULATION), or as `simulation_source` says, through a sitecustomize."""

    simulation_source = WINDOWS_SIMULATION

    def setUp(self):
        super().setUp()
        self.simulation = tempfile.mkdtemp(prefix="runserver-simulation-")
        self.addCleanup(shutil.rmtree, self.simulation, True)
        with open(os.path.join(self.simulation, "sitecustomize.py"), "w") as file:
            file.write(self.simulation_source)

    def windows_environment(self, env=None):
        return dict(env or {}, PYTHONPATH=self.simulation)

    def start(self, *args, env=None, launcher=None):
        return super().start(*args, env=self.windows_environment(env), launcher=launcher)

    def run_cli(self, *args, timeout=TIMEOUT, env=None):
        return super().run_cli(*args, timeout=timeout, env=self.windows_environment(env))


class WindowsTests(PlatformSimulation, CLITestCase):
    """Without the POSIX-only names, runserver.py imports and serves (--noreload)."""

    def test_the_simulation_hides_what_windows_lacks(self):
        code, output = self.run_cli("--check")      # the demo app, imported without fork
        self.assertEqual(code, 0, output)
        self.assertIn("Check passed.", output)
        script = ("import os, select, signal, socket, subprocess, sys\n"
                  "print(sys.platform, hasattr(os, 'fork'), hasattr(socket, 'AF_UNIX'),\n"
                  "      hasattr(select, 'epoll'), hasattr(signal, 'SIGKILL'),\n"
                  "      hasattr(socket.socket, 'share'))\n"
                  "try:\n    import termios\nexcept ImportError:\n    print('no termios')\n")
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                env=dict(os.environ, **self.windows_environment()),
                                timeout=TIMEOUT)
        self.assertEqual(result.stdout.split(), ["win32", "False", "False", "False", "False",
                                                 "True", "no", "termios"], result.stderr)

    def test_noreload_serves_and_ctrl_c_and_ctrl_break_stop_it(self):
        self.write("hello.py", "import os\ndef app(environ, start_response):\n"
                               "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                               "    return [b'hello from %d' % os.getpid()]\n")
        for signum in (signal.SIGINT, signal.SIGUSR1):          # SIGUSR1: Ctrl-Break
            with self.subTest(signal=signum):
                process = self.start("hello:app", "127.0.0.1:0", "--noreload",
                                     "--keepalive-timeout", "60")
                port = process.port()
                process.wait_for(r"^Quit the server with CTRL-BREAK\.$")
                for _ in range(3):              # new connections, then keep-alive
                    self.assertEqual(http_get(port).body, b"hello from %d" % process.process.pid)
                with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
                    reader = Reader(sock)
                    for _ in range(2):
                        sock.sendall(get())
                        self.assertEqual(reader.response().status, 200)
                    process.signal(signum)      # an idle keep-alive connection does not wait
                    self.assertEqual(process.wait(), 0, process.output())
                self.assertEqual(process.output().count("Server stopped."), 1, process.output())
                self.assertNotIn("Traceback", process.output())

    def test_a_unix_address_is_one_line(self):
        self.write("hello.py", "def app(environ, start_response):\n    return []\n")
        self.assertOneLineError(["hello:app", "unix:" + os.path.join(self.directory, "s.sock"),
                                 "--noreload"], 2, "this system has no unix domain sockets")


class WindowsReloaderTests(PlatformSimulation, ReloaderTests):
    """The reloader tests, through the reloader of Windows: each worker started
    afresh (no fork, no pass_fds), its socket shared by socket.share(pid) over
    its connection to the supervisor, "stop" on that connection for a SIGTERM."""

    def test_ctrl_break_stops_everything_with_status_0(self):
        process, port = self.start_reloader()
        pid = self.worker_pid(port)
        process.wait_for(r"^Quit the server with CTRL-BREAK\.$")
        process.signal(signal.SIGUSR1)              # the simulation's Ctrl-Break, to all
        self.assertEqual(process.wait(), 0)
        self.assertTrue(process_gone(pid))
        self.assertEqual(process.output().count("Server stopped."), 1, process.output())
        self.assertNotIn("Traceback", process.output())

    # Forked workers and templates: Windows has neither.
    test_every_kind_of_worker_looks_the_same_to_the_app = None


class MacOSReloaderTests(PlatformSimulation, ReloaderTests):
    """The reloader tests as on macOS (MACOS_SIMULATION): workers started
    afresh with pass_fds, the event loop on a selector."""

    simulation_source = MACOS_SIMULATION

    def test_workers_are_started_and_the_loop_has_no_epoll(self):
        self.write("app.py", "import os, runserver\n"
                             "def application(environ, start_response):\n"
                             "    start_response('200 OK', [])\n"
                             "    return [b'%d %d %r' % (os.getpid(), os.getppid(),\n"
                             "                           runserver.Poller.use_epoll)]\n")
        process, port = self.start_reloader()
        pid, parent, epoll = http_get(port).body.split()
        self.assertEqual((int(parent), epoll), (process.process.pid, b"False"))
        with open("/proc/%d/cmdline" % int(pid), "rb") as file:
            self.assertIn(b"import runserver", file.read())     # worker_command(): not forked
        self.assertNotIn("(warm)", process.output())


# The reloader tests MacOSReloaderTests runs (the others take the paths that
# --no-warm and a launcher take on Linux, tested there).
MACOS_RELOADER_TESTS = (
    "test_edit_in_place_and_atomic_save_of_the_app_and_of_a_module_it_imports",
    "test_syntax_error_shows_a_traceback_page_until_fixed",
    "test_worker_killed_then_a_save_restarts_it",
    "test_sigkill_of_the_supervisor_leaves_nothing_listening",
    "test_ctrl_c_stops_everything_with_status_0",
    "test_python_dash_m_runserver_survives_a_reload",
)
for _name in dir(ReloaderTests):
    if _name.startswith("test_") and _name not in MACOS_RELOADER_TESTS:
        setattr(MacOSReloaderTests, _name, None)


# ---- App loading --------------------------------------------------------------------

class LoadAppTests(CLITestCase):

    def setUp(self):
        super().setUp()
        sys.path.insert(0, self.directory)
        self.addCleanup(sys.path.remove, self.directory)

    def module(self, name, text):
        self.write(name + ".py", text)
        self.addCleanup(sys.modules.pop, name, None)

    def test_spec_forms(self):
        self.module("specs_a", "def application(e, s): pass\ndef app(e, s): pass\n"
                               "def make(name, debug=False):\n    def wsgi(e, s): pass\n"
                               "    wsgi.args = (name, debug)\n    return wsgi\n"
                               "class K:\n    inner = staticmethod(app)\n")
        module = __import__("specs_a")
        self.assertIs(runserver.load_app("specs_a"), module.application)
        self.assertIs(runserver.load_app("specs_a:app"), module.app)
        self.assertIs(runserver.load_app("specs_a:K.inner"), module.app)
        self.assertEqual(runserver.load_app("specs_a:make('dev', debug=True)").args, ("dev", True))
        self.assertEqual(runserver.load_app("specs_a:make()" if False else "specs_a:make('x')").args,
                         ("x", False))
        path = os.path.join(self.directory, "specs_a.py")
        self.assertTrue(callable(runserver.load_app(path + ":app")))

    def test_app_is_the_fallback_name(self):
        self.module("specs_b", "def app(e, s): pass\n")
        self.assertIs(runserver.load_app("specs_b"), sys.modules["specs_b"].app)

    def test_then_a_create_app_factory_as_flask_finds_it(self):
        self.module("specs_f", "def wsgi(e, s): pass\ndef create_app(): return wsgi\n")
        self.assertIs(runserver.load_app("specs_f"), sys.modules["specs_f"].wsgi)
        self.module("specs_g", "def make_app(config): pass\n")
        with self.assertRaisesRegex(runserver.AppSpecError, 'cannot call "make_app\\(\\)"'):
            runserver.load_app("specs_g")

    def test_user_mistakes_are_app_spec_errors(self):
        self.module("specs_c", "value = 3\ndef factory(x): return 5\n")
        for spec, fragment in [("no_such_module_x", "no module named"),
                               ("specs_c:missing", "no attribute"),
                               ("specs_c:value", "not a WSGI application"),
                               ("specs_c:factory(open('x'))", "must be literals"),
                               ("specs_c:factory(1", "factory call"),
                               ("specs_c:__import__('os').system('x')", "factory call"),
                               ("specs_c:factory(1)", "not a WSGI application"),
                               ("specs_c", "no callable .* nor a create_app"),
                               ("no/such/file.py:app", "no file")]:
            with self.subTest(spec=spec):
                with self.assertRaisesRegex(runserver.AppSpecError, fragment):
                    runserver.load_app(spec)

    def test_import_error_inside_the_module_is_not_a_spec_error(self):
        self.module("specs_d", "import no_such_dependency_y\n")
        with self.assertRaises(ModuleNotFoundError):
            runserver.load_app("specs_d")


# ---- Frameworks ---------------------------------------------------------------------

# A stand-in for Flask, recognised as runserver.py recognises Flask (the class
# flask.Flask): template folders relative to a root path, blueprints with theirs.
FLASK_STUB = '''\
import os, sys

class Flask:
    def __init__(self, import_name, template_folder="templates"):
        self.root_path = os.path.dirname(os.path.abspath(sys.modules[import_name].__file__))
        self.template_folder = template_folder
        self.blueprints = {}

    def register_blueprint(self, blueprint):
        self.blueprints[blueprint.name] = blueprint

    def __call__(self, environ, start_response):
        body = b"pid=%d" % os.getpid()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

class Blueprint(Flask):
    def __init__(self, name, import_name, template_folder=None):
        super().__init__(import_name, template_folder)
        self.name = name
'''

FLASK_SHAPED_APP = '''\
import flask
import shop.views

app = flask.Flask(__name__, template_folder="pages")
app.register_blueprint(flask.Blueprint("admin", "shop.views", template_folder="admin_pages"))
'''


class FrameworkTemplateTests(CLITestCase):
    """Template folders a framework names, and templates directories, reload the app."""

    def test_template_directories_of_a_flask_shaped_app(self):
        flask_class = type("Flask", (), {"__module__": "flask.app", "template_folder": "pages",
                                          "root_path": "/project"})
        blueprint = type("Blueprint", (), {"template_folder": "/elsewhere/admin",
                                           "root_path": "/project/admin"})()
        app = flask_class()
        app.blueprints = {"admin": blueprint, "api": type("Blueprint", (), {})()}
        self.assertEqual(runserver.template_directories(app), ["/project/pages", "/elsewhere/admin"])
        self.assertEqual(runserver.template_directories(hello_app), [])

    def test_a_template_edit_reloads_the_worker_and_exclude_wins(self):
        self.write("flask/__init__.py", FLASK_STUB)
        self.write("shop/__init__.py", "")
        self.write("shop/views.py", "")
        self.write("app.py", FLASK_SHAPED_APP)
        edits = [self.write(name, "v1") for name in (
            "pages/index.html", "shop/admin_pages/users.html", "shop/templates/shop/item.html")]
        draft = self.write("pages/index.draft", "v1")         # not ignored by default
        process = self.start("app:app", "127.0.0.1:0", "--reload-interval", "0.05",
                             "--reload-exclude", "*.draft", env={"PYTHONDONTWRITEBYTECODE": ""})
        port = process.port()
        pid = http_get(port).body
        for index, path in enumerate(edits):
            with self.subTest(path=path):
                if index == 1:
                    self.write(draft, "v2")
                self.write(path, "v2")
                process.wait_for(re.escape(path) + r" changed, reloading\.$")
                deadline = time.monotonic() + TIMEOUT
                while http_get(port).body == pid:       # the new worker answers
                    self.assertLess(time.monotonic(), deadline, process.output())
                    time.sleep(0.01)
                pid = http_get(port).body
        reloads = [line for line in process.output().splitlines() if "changed, reloading" in line]
        self.assertEqual(len(reloads), len(edits), process.output())


DJANGO_SETTINGS = '''\
import os

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET_KEY = "only-for-tests"
DEBUG = os.environ.get("SITE_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS = ["django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
                  "django.contrib.sessions", "django.contrib.messages",
                  "django.contrib.staticfiles"]
MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware",
              "django.contrib.auth.middleware.AuthenticationMiddleware",
              "django.contrib.messages.middleware.MessageMiddleware"]
ROOT_URLCONF = "mysite.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [os.path.join(BASE_DIR, "pages")],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                       "django.contrib.auth.context_processors.auth",
                                       "django.contrib.messages.context_processors.messages"]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.path.join(BASE_DIR, "db.sqlite3")}}
STATIC_URL = "static/"
MEDIA_URL = os.environ.get("SITE_MEDIA_URL", "media/")
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
'''

DJANGO_URLS = '''\
from django.contrib import admin
from django.urls import path
from django.views.generic import TemplateView

urlpatterns = [path("admin/", admin.site.urls),
               path("", TemplateView.as_view(template_name="home.html"))]
'''

DJANGO_WSGI = '''\
import os
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
application = get_wsgi_application()
'''


@unittest.skipUnless(importlib.util.find_spec("django"),
                     "Django is not installed for this Python (.ci/run runs these tests in a "
                     "virtualenv with Django)")
class DjangoTests(CLITestCase):
    """A minimal Django project, made here, served as `manage.py runserver` serves it."""

    def setUp(self):
        super().setUp()
        self.write("mysite/__init__.py", "")
        self.write("mysite/settings.py", DJANGO_SETTINGS)
        self.write("mysite/urls.py", DJANGO_URLS)
        self.write("mysite/wsgi.py", DJANGO_WSGI)
        self.write("pages/home.html", "<h1>home v1</h1>")

    def test_static_files_are_served_when_debug_is_on_unless_nostatic(self):
        for debug, options, status in [("1", [], 200), ("1", ["--nostatic"], 404),
                                       ("0", [], 404), ("0", ["--noreload"], 404),
                                       ("1", ["--noreload"], 200)]:
            with self.subTest(debug=debug, options=options):
                process = self.start("mysite.wsgi", "127.0.0.1:0", *options,
                                     env={"SITE_DEBUG": debug})
                response = http_get(process.port(), "/static/admin/css/base.css")
                self.assertEqual(response.status, status, process.output())
                if status == 200:
                    self.assertTrue(response.header("Content-Type").startswith("text/css"))
                self.assertEqual(http_get(process.port()).status, 200)     # the app itself
                process.kill()

    def test_static_settings_django_refuses_are_one_line_and_the_app_runs(self):
        process = self.start("mysite.wsgi", "127.0.0.1:0", "--noreload",
                             env={"SITE_DEBUG": "1", "SITE_MEDIA_URL": "static/"})
        self.assertEqual(http_get(process.port()).status, 200)
        process.wait_for(r"Not serving static files: The MEDIA_URL and STATIC_URL settings "
                         r"must have different values\.?$")
        self.assertNotIn("Traceback", process.output())

    def test_a_template_edit_in_templates_dirs_reloads(self):
        process = self.start("mysite.wsgi", "127.0.0.1:0", "--reload-interval", "0.05",
                             env={"SITE_DEBUG": "1", "PYTHONDONTWRITEBYTECODE": ""})
        port = process.port()
        self.assertIn(b"home v1", http_get(port).body)
        path = self.write("pages/home.html", "<h1>home v2</h1>")
        process.wait_for(re.escape(path) + r" changed, reloading\.$")
        deadline = time.monotonic() + TIMEOUT
        while b"home v2" not in http_get(port).body:
            self.assertLess(time.monotonic(), deadline, process.output())
            time.sleep(0.01)


DJANGO_CHECKS_PROJECT = {
    "mysite/__init__.py": "",
    "mysite/settings.py": """\
import os
BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET_KEY = "only-for-tests"
DEBUG = True
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "demo"]
MIDDLEWARE = []
ROOT_URLCONF = "mysite.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.path.join(BASE_DIR, "db.sqlite3")}}
USE_TZ = True
""",
    "mysite/urls.py": """\
from django.http import HttpResponse
from django.urls import path

VERSION = "v1"
urlpatterns = [path("", lambda request: HttpResponse("django " + VERSION))]
""",
    "mysite/wsgi.py": """\
import os
from django.core.wsgi import get_wsgi_application
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
application = get_wsgi_application()
""",
    # A check of the project's own, which DEMO_CHECK makes a warning or an error.
    "demo/__init__.py": """\
import os
from django.core import checks

@checks.register
def demo_check(app_configs, **kwargs):
    kind = os.environ.get("DEMO_CHECK")
    if kind == "warning":
        return [checks.Warning("the demo warning", id="demo.W001")]
    if kind == "error":
        return [checks.Error("the demo error", id="demo.E001")]
    return []
""",
}


@unittest.skipIf(importlib.util.find_spec("django") is None,
                 "Django is not installed for this Python (.ci/run runs these tests in a "
                 "virtualenv with Django)")
class DjangoCheckTests(CLITestCase):
    """Django's system checks and unapplied migrations, on a generated project."""

    def setUp(self):
        super().setUp()
        for name, text in DJANGO_CHECKS_PROJECT.items():
            self.write(name, text)

    def test_check_runs_the_system_checks_and_tells_of_unapplied_migrations(self):
        code, output = self.run_cli("mysite.wsgi", "--check", env={"DEMO_CHECK": "warning"})
        self.assertEqual(code, 0, output)
        self.assertIn("demo.W001", output)
        self.assertIn("System check identified 1 issue (0 silenced).", output)
        self.assertRegex(output, r"Warning: \d+ migrations are not applied yet \(auth, "
                                 r"contenttypes\): the project may fail until you run "
                                 r"python manage\.py migrate\.")
        self.assertEqual(output.splitlines()[-1], "Check passed.")

    def test_check_fails_on_a_system_check_error_unless_skipped(self):
        code, output = self.run_cli("mysite.wsgi", "--check", env={"DEMO_CHECK": "error"})
        self.assertEqual(code, 1, output)
        self.assertIn("demo.E001", output)
        self.assertEqual(output.splitlines()[-1], "Check failed: Django's system checks found "
                                                  "errors.")
        code, output = self.run_cli("mysite.wsgi", "--check", "--skip-checks",
                                    env={"DEMO_CHECK": "error"})
        self.assertEqual(code, 0, output)
        self.assertNotIn("demo.E001", output)
        self.assertNotIn("migrations", output)

    def test_each_worker_prints_the_checks_at_start(self):
        process = self.start("mysite.wsgi", "127.0.0.1:0", "--reload-interval", "0.05",
                             env={"DEMO_CHECK": "warning"})
        port = process.port()
        self.assertEqual(http_get(port).body, b"django v1")
        process.wait_for(r"demo\.W001")
        process.wait_for(r"migrations are not applied yet")
        self.write("mysite/urls.py", DJANGO_CHECKS_PROJECT["mysite/urls.py"].replace("v1", "v2"))
        wait_until(lambda: http_get(port).body == b"django v2")
        wait_until(lambda: process.output().count("demo.W001") == 2
                   and process.output().count("migrations are not applied yet") == 2)


# ---- Settings: .env files, RUNSERVER_* variables, FLASK_APP ----------------------

def parse_env(text, **known):
    """parse_dotenv() of `text` as a list, ${NAME} looked up in `known`."""
    return list(runserver.parse_dotenv(text, known.get))


class DotenvSyntaxTests(unittest.TestCase):
    """The .env syntax, without files: table-driven."""

    def test_values(self):
        for text, expected in [
                ("KEY=value", "value"),
                ("export KEY=value", "value"),
                ("  KEY = spaced out  ", "spaced out"),
                ("KEY=", ""),
                ("KEY=value # a comment", "value"),
                ("KEY=a#b", "a#b"),
                ("KEY=#hash", "#hash"),
                ("KEY= # only a comment", ""),
                ("KEY='single ${X} \\n \"kept\"'", 'single ${X} \\n "kept"'),
                ('KEY="tab\\tnew\\nline \\"quoted\\" back\\\\slash \\$"',
                 'tab\tnew\nline "quoted" back\\slash $'),
                ('KEY="${X} and ${MISSING} and ${MISSING:-fallback} and ${EMPTY:-empty}"',
                 "x-value and  and fallback and empty"),
                ("KEY=${X}/unquoted\\n", "x-value/unquoted\\n"),
                ("KEY='a # not a comment'  # a comment", "a # not a comment"),
                ('KEY="first\nsecond"', "first\nsecond"),
                ("KEY='first\n\nthird'", "first\n\nthird"),
                ("KEY=crlf\r\n", "crlf")]:
            with self.subTest(text=text):
                self.assertEqual(parse_env(text, X="x-value", EMPTY=""), [(1, "KEY", expected)])

    def test_comments_blank_lines_and_line_numbers(self):
        text = ('# a comment\n\nA=1\n  # indented comment\nB="two\nlines"\nC=3\n'
                "export D='four'\n")
        self.assertEqual(parse_env(text), [(3, "A", "1"), (5, "B", "two\nlines"), (7, "C", "3"),
                                           (8, "D", "four")])

    def test_a_bad_line_is_reported_and_the_rest_is_read(self):
        text = ('A=1\njust words\nB="never closed\nC=3\nD="closed" trailing\n'
                "1BAD=x\nexport\nE=5\n")
        found = parse_env(text)
        self.assertEqual([item for item in found if item[1]],
                         [(1, "A", "1"), (4, "C", "3"), (8, "E", "5")])
        problems = {number: problem for number, name, problem in found if name is None}
        self.assertEqual(sorted(problems), [2, 3, 5, 6, 7])
        self.assertIn('expected NAME=value, not "just words"', problems[2])
        self.assertIn('unexpected "closed" trailing" after the closing quote (on line 5)',
                      problems[3])
        self.assertIn('unexpected "trailing" after the closing quote', problems[5])
        self.assertEqual(parse_env('A="never closed\nB=2\n'),
                         [(1, None, 'the " quote is never closed'), (2, "B", "2")])


class SettingsTests(CLITestCase):
    """resolve_settings(): where each option comes from, in process."""

    def resolve(self, *argv, environ=None):
        cwd = os.getcwd()
        os.chdir(self.directory)
        try:
            return runserver.resolve_settings(runserver.make_parser(), list(argv), environ or {})
        finally:
            os.chdir(cwd)

    def test_defaults(self):
        settings = self.resolve()
        self.assertEqual((settings.app, settings.addrport, settings.reload_interval),
                         (None, None, runserver.DEFAULT_RELOAD_INTERVAL))
        self.assertEqual(settings.max_body, runserver.Limits.max_body)
        self.assertEqual(set(settings.sources.values()), {"default"})
        self.assertEqual(settings.env_files, list(runserver.ENV_FILES))

    def test_command_line_then_environment_then_env_files_then_default(self):
        self.write(".env", "RUNSERVER_RELOAD_INTERVAL=3\nRUNSERVER_ADDRPORT=9003\n"
                           "RUNSERVER_QUIET=yes\nRUNSERVER_MAX_BODY=1K\n")
        self.write(".flaskenv", "RUNSERVER_MAX_BODY=2K\nRUNSERVER_NOTHREADING=on\n")
        settings = self.resolve("--reload-interval", "1", environ={
            "RUNSERVER_RELOAD_INTERVAL": "2", "RUNSERVER_ADDRPORT": "9002"})
        self.assertEqual(settings.reload_interval, 1.0)
        self.assertEqual(settings.sources["reload_interval"], "command line")
        self.assertEqual(settings.addrport, "9002")
        self.assertEqual(settings.sources["addrport"], "RUNSERVER_ADDRPORT in the environment")
        self.assertEqual((settings.quiet, settings.sources["quiet"]),
                         (True, "RUNSERVER_QUIET in .env:3"))
        self.assertEqual((settings.max_body, settings.sources["max_body"]),
                         (1024, "RUNSERVER_MAX_BODY in .env:4"))
        self.assertEqual((settings.nothreading, settings.sources["nothreading"]),
                         (True, "RUNSERVER_NOTHREADING in .flaskenv:2"))
        self.assertEqual(settings.sources["debug"], "default")

    def test_value_forms(self):
        environ = {"RUNSERVER_APP": "hello:app", "RUNSERVER_DEBUG": "false",
                   "RUNSERVER_NORELOAD": "1", "RUNSERVER_STATIC": "/s=static /m=media",
                   "RUNSERVER_RELOAD_INCLUDE": "templates", "RUNSERVER_OPEN": "on",
                   "RUNSERVER_ROOT_PATH": "/app", "RUNSERVER_NO_COLOR": "0"}
        settings = self.resolve(environ=environ)
        self.assertEqual((settings.app, settings.debug, settings.noreload, settings.no_color),
                         ("hello:app", False, True, False))
        self.assertEqual(settings.static, ["/s=static", "/m=media"])
        self.assertEqual(settings.reload_include, ["templates"])
        self.assertEqual((settings.open, settings.root_path), ("/", "/app"))
        self.assertEqual(self.resolve(environ={"RUNSERVER_OPEN": "/admin/"}).open, "/admin/")
        self.assertIsNone(self.resolve(environ={"RUNSERVER_OPEN": "off"}).open)
        self.assertTrue(self.resolve("--debug", environ={"RUNSERVER_DEBUG": "0"}).debug)

    def test_a_bad_value_is_the_flags_error_naming_the_variable(self):
        self.write(".env", "\nRUNSERVER_MAX_BODY=lots\n")
        for environ, fragment in [
                ({"RUNSERVER_RELOAD_INTERVAL": "soon"},
                 "RUNSERVER_RELOAD_INTERVAL in the environment: 'soon' is not a positive number"),
                ({"RUNSERVER_NORELOAD": "maybe"}, 'RUNSERVER_NORELOAD in the environment: "maybe"'),
                ({"RUNSERVER_MAX_HEADERS": "many"},
                 "RUNSERVER_MAX_HEADERS in the environment: invalid int value: 'many'"),
                ({}, "RUNSERVER_MAX_BODY in .env:2: 'lots' is not a size")]:
            with self.subTest(environ=environ):
                with self.assertRaises(runserver.UsageError) as caught:
                    self.resolve(environ=environ)
                self.assertIn(fragment, str(caught.exception))

    def test_the_env_files_and_their_order(self):
        self.write("first.env", "A=first\n")
        self.write("second.env", "A=second\nB=second\n")
        self.write(".env", "A=dotenv\nB=dotenv\nC=dotenv\n")
        self.write(".flaskenv", "C=flaskenv\nD=flaskenv\n")
        settings = self.resolve("--env-file", "first.env", "--env-file", "second.env")
        self.assertEqual(settings.env_files, ["second.env", "first.env", ".env", ".flaskenv"])
        cwd = os.getcwd()
        os.chdir(self.directory)
        try:
            variables, counts, warnings = runserver.read_env_files(settings.env_files, {"D": "env"})
        finally:
            os.chdir(cwd)
        self.assertEqual({name: value for name, (value, _) in variables.items()},
                         {"A": "second", "B": "second", "C": "dotenv"})
        self.assertEqual(variables["C"][1], ".env:3")
        self.assertEqual(counts, [("second.env", 2), ("first.env", 0), (".env", 1),
                                  (".flaskenv", 0)])
        self.assertEqual(self.resolve("--no-env-file").env_files, [])
        with self.assertRaises(runserver.UsageError) as caught:
            self.resolve("--env-file", "missing.env")
        self.assertIn('--env-file "missing.env": no such file', str(caught.exception))

    def test_expansion_sees_the_environment_and_files_read_before(self):
        self.write(".env", 'HOST=db.test\nURL="postgres://${USER}@${HOST}/x"\n')
        self.write(".flaskenv", "HOST=ignored\nCOPY=${URL}\n")
        cwd = os.getcwd()
        os.chdir(self.directory)
        try:
            variables = runserver.read_env_files([".env", ".flaskenv"], {"USER": "me"})[0]
        finally:
            os.chdir(cwd)
        self.assertEqual(variables["URL"][0], "postgres://me@db.test/x")
        self.assertEqual(variables["COPY"][0], "postgres://me@db.test/x")

    def test_flask_app_names_the_app_when_nothing_else_does(self):
        self.write(".flaskenv", "FLASK_APP=hello:app\n")
        settings = self.resolve()
        self.assertEqual((settings.app, settings.sources["app"]),
                         ("hello:app", "FLASK_APP in .flaskenv:1"))
        self.assertEqual(self.resolve(environ={"FLASK_APP": "env:app"}).app, "env:app")
        self.assertEqual(self.resolve(environ={"RUNSERVER_APP": "mine:app"}).app, "mine:app")
        self.assertEqual(self.resolve("given:app").app, "given:app")
        self.assertEqual(self.resolve("8001").app, "hello:app")          # 8001 is ADDRPORT

    def test_env_files_cannot_choose_env_files_and_unknown_variables_are_told(self):
        self.write(".env", "RUNSERVER_NO_ENV_FILE=1\nRUNSERVER_RELOAD_INTERVALL=1\n")
        settings = self.resolve(environ={"RUNSERVER_PORT": "8001", "RUNSERVER_TEST_X": "1",
                                         "_RUNSERVER_RESTARTS": "x", "RUNSERVERX": "1"})
        self.assertFalse(settings.no_env_file)
        self.assertEqual(len(settings.warnings), 4, settings.warnings)
        warnings = "\n".join(settings.warnings)
        self.assertIn("RUNSERVER_NO_ENV_FILE in .env:1 has no effect", warnings)
        self.assertIn("RUNSERVER_PORT in the environment is not an option's variable; "
                      "did you mean RUNSERVER_ADDRPORT?", warnings)
        self.assertIn("RUNSERVER_RELOAD_INTERVALL in .env:2 is not an option's variable; "
                      "did you mean RUNSERVER_RELOAD_INTERVAL?", warnings)
        self.assertIn("RUNSERVER_TEST_X in the environment is not an option's variable; "
                      "see --help", warnings)

    def test_option_variables_and_the_workers_variables_cannot_be_confused(self):
        actions = runserver.option_actions(runserver.make_parser())
        variables = {runserver.option_variable(action): action.dest for action in actions}
        self.assertEqual(len(variables), len(actions))
        for name, dest in [("RUNSERVER_APP", "app"), ("RUNSERVER_ADDRPORT", "addrport"),
                           ("RUNSERVER_RELOAD_INTERVAL", "reload_interval"),
                           ("RUNSERVER_IPV6", "ipv6"), ("RUNSERVER_DEBUG", "debug"),
                           ("RUNSERVER_NO_COLOR", "no_color"), ("RUNSERVER_ENV_FILE", "env_file")]:
            self.assertEqual(variables[name], dest)
        self.assertTrue(all(re.fullmatch(r"RUNSERVER_[A-Z0-9]+(_[A-Z0-9]+)*", name)
                            for name in variables), variables)
        internal = {value for name, value in vars(runserver).items()
                    if name.startswith("ENV_") and isinstance(value, str) and "RUNSERVER" in value}
        self.assertGreaterEqual(len(internal), 4)
        self.assertTrue(all(name.startswith("_RUNSERVER_") for name in internal), internal)

    def test_positionals_in_the_wrong_order(self):
        with self.assertRaises(runserver.UsageError) as caught:
            self.resolve("8000", "hello:app")
        self.assertEqual(str(caught.exception),
                         "APP comes before ADDRPORT; did you mean: hello:app 8000")
        settings = self.resolve("0:8000")
        self.assertEqual((settings.app, settings.addrport), (None, "0:8000"))


ENV_APP_SOURCE = '''\
import json, os
VERSION = %r

def application(environ, start_response):
    names = ("FOO", "BAR", "BAZ", "GONE", "QUOTED", "LATER")
    body = json.dumps(dict(version=VERSION, pid=os.getpid(),
                           env={name: os.environ.get(name) for name in names})).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
'''


class SettingsCLITests(CLITestCase):
    """Settings as a user meets them: .env files, RUNSERVER_* variables and
    --check, in real processes."""

    def setUp(self):
        super().setUp()
        self.write("app.py", ENV_APP_SOURCE % "v1")

    def answer(self, port, path="/"):
        return json.loads(http_get(port, path).body)

    def wait_for_answer(self, port, predicate):
        deadline = time.monotonic() + TIMEOUT
        while True:
            answer = self.answer(port)
            if predicate(answer):
                return answer
            self.assertLess(time.monotonic(), deadline, "the last answer: %r" % answer)
            time.sleep(0.01)

    def test_env_files_reach_the_app_and_the_environment_wins(self):
        self.write(".env", 'FOO=dotenv\nBAR=dotenv\nQUOTED="two\\nlines ${FOO}"\n')
        self.write(".flaskenv", "FOO=flaskenv\nBAZ=flaskenv\nGONE=flaskenv\n")
        process = self.start("app:application", "127.0.0.1:0", "--noreload", env={"BAR": "env"})
        process.wait_for(r"^Loaded \.env \(2 variables\), \.flaskenv \(2 variables\)\.$")
        self.assertEqual(self.answer(process.port())["env"], {
            "FOO": "dotenv", "BAR": "env", "BAZ": "flaskenv", "GONE": "flaskenv",
            "QUOTED": "two\nlines dotenv", "LATER": None})
        self.assertNotIn("Warning", process.output())

    def test_an_env_file_edit_reloads_with_the_new_values(self):
        self.write(".env", "FOO=1\nGONE=soon\n")
        process = self.start("app:application", "127.0.0.1:0", "--reload-interval", "0.05")
        port = process.port()
        first = self.answer(port)
        self.assertEqual((first["env"]["FOO"], first["env"]["GONE"]), ("1", "soon"))
        # The supervisor never holds the old values: the next worker must not take
        # them for the environment's, which would win over the edited file.
        self.write(".env", "FOO=2\n")
        second = self.wait_for_answer(port, lambda answer: answer["pid"] != first["pid"])
        self.assertEqual((second["env"]["FOO"], second["env"]["GONE"]), ("2", None))
        self.write(".flaskenv", "LATER=new file\n")
        third = self.wait_for_answer(port, lambda answer: answer["pid"] != second["pid"])
        self.assertEqual(third["env"]["LATER"], "new file")
        process.wait_for(r"\.env changed, reloading\.")
        process.wait_for(r"\.flaskenv changed, reloading\.")

    def test_flask_app_names_the_app_when_no_app_is_given(self):
        self.write(".flaskenv", "FLASK_APP=app:application\n")
        process = self.start("127.0.0.1:0", "--noreload")
        process.wait_for(r"serving app:application$")
        self.assertEqual(self.answer(process.port())["version"], "v1")

    def test_runserver_variables_and_the_command_line_winning(self):
        self.write(".env", "RUNSERVER_APP=app:application\nRUNSERVER_QUIET=1\n")
        process = self.start(env={"RUNSERVER_ADDRPORT": "127.0.0.1:0", "RUNSERVER_NORELOAD": "true"})
        process.wait_for(r"serving app:application$")          # not ", reloading on changes"
        port = process.port()
        self.assertEqual(self.answer(port)["version"], "v1")
        process.signal(signal.SIGINT)
        self.assertEqual(process.wait(), 0)
        self.assertNotIn('"GET / HTTP/1.1" 200', process.output())     # quiet
        process = self.start("app:application", "127.0.0.1:0", "--noreload",
                             env={"RUNSERVER_ADDRPORT": "8o00", "RUNSERVER_APP": "app:missing"})
        process.wait_for(r"serving app:application$")
        self.assertEqual(self.answer(process.port())["version"], "v1")

    def test_a_bad_value_is_one_line_that_names_the_variable(self):
        self.write(".env", "RUNSERVER_ADDRPORT=8o00\n")
        for args, env, fragment in [
                ([], {}, 'Error: RUNSERVER_ADDRPORT in .env:1: "8o00" is not a valid port number'),
                (["0"], {"RUNSERVER_RELOAD_INTERVAL": "soon"},
                 "Error: RUNSERVER_RELOAD_INTERVAL in the environment: 'soon' is not a "
                 "positive number"),
                (["0"], {"RUNSERVER_STATIC": "static"},
                 'Error: RUNSERVER_STATIC in the environment: --static "static": expected '
                 "URL_PREFIX=DIRECTORY"),
                (["0", "--env-file", "missing.env"], {}, 'Error: --env-file "missing.env": no such'),
                (["0"], {"RUNSERVER_ENV_FILE": "missing.env"},
                 'Error: RUNSERVER_ENV_FILE in the environment: --env-file "missing.env": no such')]:
            with self.subTest(args=args, env=env):
                self.assertOneLineError(args, 2, fragment, env=env)

    def test_a_bad_line_is_one_warning_and_the_rest_loads(self):
        self.write(".env", "FOO=1\nthis is not a variable\nBAR=2\n")
        process = self.start("app:application", "127.0.0.1:0", "--noreload")
        port = process.port()
        self.assertEqual(self.answer(port)["env"]["BAR"], "2")
        warnings = [line for line in process.output().splitlines() if "Warning" in line]
        self.assertEqual(warnings, ['Warning: .env:2: expected NAME=value, not "this is not a '
                                    'variable"; the line is ignored'])

    def test_check_prints_the_settings_and_their_sources_and_serves_nothing(self):
        self.write(".env", "RUNSERVER_RELOAD_INTERVAL=0.5\nFOO=1\n")
        with socket.socket() as taken:        # --check never binds: a taken port is no error
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            address = "127.0.0.1:%d" % taken.getsockname()[1]
            code, output = self.run_cli("app:application", address, "--check",
                                        env={"RUNSERVER_MAX_BODY": "10M"})
        self.assertEqual(code, 0, output)
        rows = {line.split()[0]: line.split()[1:] for line in output.splitlines()
                if line.startswith("  ")}
        self.assertEqual(rows["APP"], ["app:application", "command", "line"])
        self.assertEqual(rows["ADDRPORT"], [address, "command", "line"])
        self.assertEqual(rows["--reload-interval"],
                         ["0.5", "RUNSERVER_RELOAD_INTERVAL", "in", ".env:1"])
        self.assertEqual(rows["--max-body"], [str(10 << 20), "RUNSERVER_MAX_BODY", "in", "the",
                                              "environment"])
        self.assertEqual(rows["--nothreading"], ["off", "default"])
        self.assertIn("Loaded .env (2 variables).", output)
        self.assertIn("Would serve app:application at http://%s/" % address, output)
        self.assertEqual(output.splitlines()[-1], "Check passed.")
        self.assertNotIn("Starting development server", output)

    def test_check_exit_status_1_with_the_trimmed_traceback(self):
        self.write("broken.py", "import os\n\ndef helper():\n    raise RuntimeError('no config')\n"
                                "\nhelper()\napp = None\n")
        code, output = self.run_cli("broken:app", "--check")
        self.assertEqual(code, 1, output)
        self.assertIn("Traceback (most recent call last):", output)
        self.assertIn("RuntimeError: no config", output)
        self.assertIn('broken.py", line 6', output)
        self.assertNotIn("importlib", output)
        self.assertNotIn("runserver.py", output.split("Traceback")[1])
        self.assertEqual(output.splitlines()[-1], "Check failed: broken:app cannot be imported.")

    def test_check_fails_when_the_app_ends_the_process_at_import(self):
        for code in (0, 3):
            with self.subTest(code=code):
                self.write("quits.py", "import os\nos._exit(%d)\n" % code)
                status, output = self.run_cli("quits:app", "--check")
                self.assertEqual(status, 1, output)
                self.assertEqual(output.splitlines()[-1], "Check failed: the app's import "
                                 "ended the process (it exited with status %d)." % code)

    def test_check_exit_status_2_for_a_usage_error(self):
        for args, fragment in [(["app:missing", "--check"], 'no attribute "missing"'),
                               (["no_such_module_q", "--check"], 'no module named'),
                               (["app:application", "8o00", "--check"], "not a valid port"),
                               (["app:application", "--check", "--open", "x"], '--open "x"'),
                               (["app:application", "--check", "--log-config", "none.json"],
                                '--log-config "none.json": No such file')]:
            with self.subTest(args=args):
                code, output = self.run_cli(*args)
                self.assertEqual(code, 2, output)
                self.assertEqual(output.splitlines()[-1][:7], "Error: ", output)
                self.assertIn(fragment, output)
                self.assertNotIn("Traceback", output)

    def test_help_tells_of_the_variables_and_the_env_files(self):
        code, output = self.run_cli("--help")
        self.assertEqual(code, 0)
        for fragment in ("RUNSERVER_RELOAD_INTERVAL", "RUNSERVER_APP", "RUNSERVER_ADDRPORT",
                         ".env", ".flaskenv", "FLASK_APP", "--env-file", "--check",
                         "--skip-checks", "--root-path", "--open"):
            self.assertIn(fragment, output)

    def test_usage_errors_have_one_prefix_and_the_wrong_order_is_told(self):
        self.assertOneLineError(["8000", "app:application"], 2,
                                "Error: APP comes before ADDRPORT; did you mean: "
                                "app:application 8000")
        for args in (["--no-such-option"], ["app:missing", "0", "--noreload"], ["8o00"],
                     ["app:application", "--static", "x"], ["--reload-interval", "-1"]):
            with self.subTest(args=args):
                code, output = self.run_cli(*args)
                self.assertEqual(code, 2, output)
                self.assertTrue(output.startswith("Error: "), output)


# ---- Command line -----------------------------------------------------------------

class AddrportTests(unittest.TestCase):

    def test_valid_forms(self):
        parse = runserver.parse_addrport
        self.assertEqual(parse(None, False), ("127.0.0.1", 8000, None, False))
        self.assertEqual(parse(None, True), ("::1", 8000, None, True))
        self.assertEqual(parse("8080", False), ("127.0.0.1", 8080, None, False))
        self.assertEqual(parse("0:8000", False), ("0.0.0.0", 8000, None, False))
        self.assertEqual(parse("10.1.2.3:80", False), ("10.1.2.3", 80, None, False))
        self.assertEqual(parse("[::1]:9000", False), ("::1", 9000, None, True))
        self.assertEqual(parse("localhost:0", False), ("localhost", 0, None, False))
        self.assertEqual(parse("unix:/tmp/x.sock", False), (None, None, "/tmp/x.sock", False))
        self.assertEqual(parse("65535", False)[1], 65535)

    def test_invalid_forms(self):
        for addrport, ipv6 in [("8o00", False), ("65536", False), ("999999", False),
                               ("256.1.1.1:80", False), ("1.2.3:80", False), ("[zz]:80", False),
                               ("[::1]", False), ("127.0.0.1:80", True), ("localhost:80", True),
                               ("unix:", False), ("unix:/x.sock", True), (":80", False),
                               ("host:", False), ("-1", False), ("8000\n", False),
                               ("\u0661\u0662\u0663\u0664\u0665", False)]:
            with self.subTest(addrport=addrport, ipv6=ipv6):
                with self.assertRaises(runserver.UsageError):
                    runserver.parse_addrport(addrport, ipv6)


class CLITests(CLITestCase):

    def test_help_and_version(self):
        code, output = self.run_cli("--help")
        self.assertEqual(code, 0)
        for option in ("--ipv6", "--nothreading", "--noreload", "--no-color", "--quiet",
                       "--debug", "--static", "--cert", "--reload-interval", "--max-body"):
            self.assertIn(option, output)
        code, output = self.run_cli("--version")
        self.assertEqual((code, output.strip()), (0, "runserver.py " + runserver.__version__))

    @unittest.skipUnless(hasattr(os, "fork"), "sets RLIMIT_NOFILE")
    def test_out_of_file_descriptors_is_said_once_then_serving_resumes(self):
        # accept() fails with EMFILE while the listening socket stays readable.
        launcher = self.write("launch.py", (
            "import os, resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
            "os.execv(sys.executable, [sys.executable] + sys.argv[1:])\n"))
        process = self.start("127.0.0.1:0", "--noreload", launcher=launcher)
        port = process.port()
        clients = []
        try:
            for _ in range(80):
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT))
            process.wait_for(r"Cannot accept connections: Too many open files; they wait")
        finally:
            for client in clients:
                client.close()
        self.assertEqual(http_get(port).status, 200)
        self.assertEqual(process.output().count("Cannot accept connections"), 1,
                         process.output())

    def test_usage_errors_are_one_line_with_status_2(self):
        self.write("good.py", "def app(e, s): pass\nvalue = 1\ndef make(x): return app\n")
        for args, fragment in [
                (["8o00"], '"8o00" is not a valid port number'),
                (["good:app", "99999"], "0 to 65535"),
                (["good:app", "127.0.0.1:80", "-6"], "-6/--ipv6"),
                (["no_such_module_z:app", "0", "--noreload"], "no module named"),
                (["no_such_module_z:app", "0"], "no module named"),
                (["good:missing", "0", "--noreload"], "no attribute"),
                (["good:value", "0", "--noreload"], "not a WSGI application"),
                (["good:make(1+", "0", "--noreload"], "factory call"),
                (["good:app", "--no-such-option"], "unrecognized arguments"),
                (["good:app", "--cert", "c.pem"], "--cert and --key"),
                (["good:app", "--static", "static"], "URL_PREFIX=DIRECTORY")]:
            with self.subTest(args=args):
                self.assertOneLineError(args, 2, fragment)

    def test_import_error_inside_the_app_shows_its_traceback(self):
        self.write("broken.py", "import no_such_dependency_q\napp = None\n")
        code, output = self.run_cli("broken:app", "0", "--noreload")
        self.assertEqual(code, 1, output)
        self.assertIn("Traceback", output)
        self.assertIn("no_such_dependency_q", output)

    def test_address_in_use_is_one_line_with_status_1(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            self.assertOneLineError(["127.0.0.1:%d" % port, "--noreload"], 1,
                                    "That port is already in use.")

    def test_demo_app_banner_and_graceful_sigterm(self):
        process = self.start("0", "--noreload")
        url = process.wait_for_banner()
        self.assertRegex(url, r"^http://127\.0\.0\.1:\d+/$")
        process.wait_for(r"Quit the server with CONTROL-C\.")
        response = http_get(process.port(), "/hello?x=1")
        self.assertEqual(response.status, 200)
        self.assertIn(b"runserver.py", response.body)
        self.assertIn(b"GET /hello?x=1", response.body)
        page = http_get(process.port(), headers=b"Accept: text/html\r\n")
        self.assertTrue(page.header("content-type").startswith("text/html"))
        process.wait_for(r'"GET /hello\?x=1 HTTP/1.1" 200')
        process.process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(), 0)
        self.assertIn("Server stopped.", process.output())

    def test_factory_spec_and_file_path_from_the_command_line(self):
        self.write("pkg/factory.py",
                   "def create_app(name, excited=False):\n"
                   "    def app(environ, start_response):\n"
                   "        start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                   "        return [(name + ('!' if excited else '')).encode()]\n"
                   "    return app\n")
        process = self.start("pkg/factory.py:create_app('hi', excited=True)", "0", "--noreload")
        self.assertEqual(http_get(process.port()).body, b"hi!")

    def test_second_ctrl_c_quits_without_waiting_for_requests(self):
        self.write("slow.py", "import time\n"
                              "def app(environ, start_response):\n"
                              "    print('request started', flush=True)\n"
                              "    time.sleep(60)\n")
        for options in (["--noreload"], []):
            with self.subTest(options=options):
                process = self.start("slow:app", "0", *options)
                sock = socket.create_connection(("127.0.0.1", process.port()), timeout=TIMEOUT)
                self.addCleanup(sock.close)
                sock.sendall(get())
                process.wait_for(r"request started")
                process.signal(signal.SIGINT)
                process.wait_for(r"Waiting up to 5s for 1 request\(s\) to finish; CONTROL-C again")
                process.signal(signal.SIGINT)
                self.assertEqual(process.wait(), 0)

    def test_nothreading_stops_on_sigterm_while_a_request_runs(self):
        # The app runs in the main thread, which the signal handler cannot
        # wait for: a CI script's `kill` must still end the server in time.
        self.write("slow.py", "import time\n"
                              "def app(environ, start_response):\n"
                              "    print('request started', flush=True)\n"
                              "    time.sleep(60)\n")
        for options in (["--noreload"], []):
            with self.subTest(options=options):
                process = self.start("slow:app", "0", "--nothreading", "--shutdown-timeout",
                                     "0.5", *options)
                port = process.port()
                sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
                self.addCleanup(sock.close)
                sock.sendall(get())
                process.wait_for(r"request started")
                process.process.send_signal(signal.SIGTERM)
                self.assertEqual(process.wait(), 0)
                for line in ("Waiting up to 0.5s for 1 request(s) to finish; CONTROL-C again",
                             "1 request(s) still running after 0.5s; leaving them.",
                             "Server stopped."):
                    self.assertEqual(process.output().count(line), 1, process.output())
                self.assertTrue(nothing_listens(port))

    def test_sigint_in_noreload_mode_exits_zero(self):
        process = self.start("0", "--noreload")
        process.port()
        process.signal(signal.SIGINT)
        self.assertEqual(process.wait(), 0)
        self.assertNotIn("Traceback", process.output())
        self.assertIn("Server stopped.", process.output())


class OpenBrowserTests(CLITestCase):
    """--open: the browser that BROWSER names opens once, whatever the reloads."""

    def browser(self):
        """A BROWSER command that notes each URL it is asked to open."""
        path = self.write("browser.py", "#!%s\nimport sys\nwith open(%r, 'a') as file:\n"
                          "    file.write(sys.argv[1] + '\\n')\n"
                          % (sys.executable, os.path.join(self.directory, "opened.txt")))
        os.chmod(path, 0o755)
        return path

    def opened(self):
        try:
            with open(os.path.join(self.directory, "opened.txt")) as file:
                return file.read().splitlines()
        except FileNotFoundError:
            return []

    def test_the_browser_opens_once_across_two_reloads(self):
        self.write("app.py", ENV_APP_SOURCE % "v1")
        empty = os.path.join(self.directory, "empty")
        os.mkdir(empty)
        process = self.start("app:application", "127.0.0.1:0", "--reload-interval", "0.05",
                             "--open", "/welcome?x=1",
                             env={"BROWSER": self.browser(), "PATH": empty})
        port = process.port()
        url = "http://127.0.0.1:%d/welcome?x=1" % port
        process.wait_for(r"^Opening %s in the web browser\.$" % re.escape(url))
        wait_until(lambda: self.opened())
        pid = json.loads(http_get(port).body)["pid"]
        for version in ("v2", "v3"):
            self.write("app.py", ENV_APP_SOURCE % version)
            wait_until(lambda: json.loads(http_get(port).body)["version"] == version)
        self.assertNotEqual(json.loads(http_get(port).body)["pid"], pid)
        process.signal(signal.SIGINT)
        self.assertEqual(process.wait(), 0)
        self.assertEqual(process.output().count("in the web browser"), 1, process.output())
        self.assertEqual(self.opened(), [url])

    def test_no_browser_is_one_warning_and_the_server_carries_on(self):
        empty = os.path.join(self.directory, "empty")
        os.mkdir(empty)
        process = self.start("127.0.0.1:0", "--noreload", "--open",
                             env={"BROWSER": os.path.join(empty, "no-such-browser"),
                                  "PATH": empty, "DISPLAY": "", "WAYLAND_DISPLAY": ""})
        port = process.port()
        process.wait_for(r"^Warning: no web browser to open http://127\.0\.0\.1:%d/ with; "
                         r"open it yourself\.$" % port)
        self.assertEqual(http_get(port).status, 200)

    def test_a_unix_socket_cannot_be_opened(self):
        self.assertOneLineError([os.path.join("unix:" + self.directory, "s.sock"), "--open"], 2,
                                "Error: --open needs a TCP address")


class NetworkAddressTests(unittest.TestCase):
    """The banner's "on your network" lines when bound to every interface."""

    def setUp(self):
        if shutil.which("ip") is None:
            self.skipTest("the ip command is not installed: cannot list the interfaces")
        listing = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True,
                                 text=True, timeout=TIMEOUT).stdout
        self.interfaces = {address for address in re.findall(r"\binet ([0-9.]+)/", listing)
                           if not address.startswith("127.")}
        if not self.interfaces:
            self.skipTest("this machine has no non-loopback IPv4 interface")

    def test_found_when_the_host_name_resolves_to_loopback(self):
        with unittest.mock.patch("socket.gethostname", return_value="localhost"):
            self.assertEqual(socket.gethostbyname(socket.gethostname()), "127.0.0.1")
            addresses = runserver.lan_addresses(socket.AF_INET)
        self.assertTrue(addresses, "no address found")
        self.assertLessEqual(set(addresses), self.interfaces)

    def test_the_banner_lists_them_for_a_server_on_every_interface(self):
        server = types.SimpleNamespace(server_address=("0.0.0.0", 8765), socket=None,
                                       address_family=socket.AF_INET)
        output = io.StringIO()
        with unittest.mock.patch("socket.gethostname", return_value="localhost"), \
                contextlib.redirect_stdout(output):
            runserver.print_banner(server, "hello:app", False, {"ssl_context": None,
                                                                "root_path": ""})
        shown = re.findall(r"^  on your network: http://([0-9.]+):8765/$", output.getvalue(), re.M)
        self.assertTrue(shown, output.getvalue())
        self.assertLessEqual(set(shown), self.interfaces)


class PortTests(CLITestCase):
    """A taken port: what holds it, the next free one, and nothing of the app run."""

    def setUp(self):
        super().setUp()
        self.write("app.py", "open('imported', 'w').close()\n" + ENV_APP_SOURCE % "v1")

    def hold(self, port=0):
        sock = socket.socket()
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return sock.getsockname()[1]

    def test_a_taken_port_names_its_holder_and_a_free_port(self):
        port = self.hold()
        code, output = self.run_cli("app:application", "127.0.0.1:%d" % port, "--noreload")
        self.assertEqual(code, 1, output)
        self.assertEqual(len(output.strip().splitlines()), 1, output)
        self.assertIn("Error: That port is already in use. (127.0.0.1:%d)" % port, output)
        if sys.platform.startswith("linux"):
            self.assertIn("It is held by pid %d (" % os.getpid(), output)
        else:
            self.assertIn("`lsof -i :%d` shows what holds it" % port, output)
        free = int(re.search(r"; port (\d+) is free\.$", output.strip()).group(1))
        self.assertGreater(free, port)

    def test_with_noreload_a_taken_port_fails_before_the_app_is_imported(self):
        port = self.hold()
        for extra in (["--noreload"], []):
            with self.subTest(extra=extra):
                code, output = self.run_cli("app:application", "127.0.0.1:%d" % port, *extra)
                self.assertEqual(code, 1, output)
                self.assertFalse(os.path.exists(os.path.join(self.directory, "imported")))

    def test_without_addrport_a_taken_8000_gives_way_to_the_next_free_port(self):
        try:
            self.hold(runserver.DEFAULT_PORT)
        except OSError:
            pass                                # someone else holds it: as good
        if runserver.free_port_after("127.0.0.1", runserver.DEFAULT_PORT, False) is None \
                or runserver.free_port_after("127.0.0.1", runserver.DEFAULT_PORT, False) > \
                runserver.DEFAULT_PORT + runserver.NEXT_FREE_PORTS:
            self.skipTest("ports 8000 to 8010 are all taken on this machine")
        process = self.start("app:application", "--reload-interval", "0.05")
        port = process.port()
        self.assertIn(port, range(runserver.DEFAULT_PORT + 1,
                                  runserver.DEFAULT_PORT + runserver.NEXT_FREE_PORTS + 1))
        process.wait_for(r"^Warning: port 8000 is in use( by pid \d+ \(.*\))?; serving on port "
                         r"%d instead\.$" % port)
        self.assertEqual(json.loads(http_get(port).body)["version"], "v1")


SYS_PATH_APP = """\
import json, sys
VERSION = %r

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps([VERSION, sys.path]).encode()]
"""


class SysPathTests(CLITestCase):
    """runserver.py's own directory is not on the app's sys.path (its neighbours
    could shadow the app's modules), unless it is the working directory."""

    def test_the_servers_directory_is_not_on_the_apps_sys_path(self):
        for extra in (["--noreload"], ["--reload-interval", "0.05"]):
            with self.subTest(extra=extra):
                self.write("app.py", SYS_PATH_APP % "v1")
                process = self.start("app:application", "127.0.0.1:0", *extra)
                port = process.port()
                version, path = json.loads(http_get(port).body)
                self.assertNotIn(HERE, path)
                self.assertEqual(path[0], self.directory)
                if "--noreload" not in extra:           # and in a started worker
                    self.write("app.py", SYS_PATH_APP % "v2")
                    wait_until(lambda: json.loads(http_get(port).body)[0] == "v2")
                    self.assertNotIn(HERE, json.loads(http_get(port).body)[1])
                process.kill()


class NewcomerRegressionTests(CLITestCase):
    """What a first-time user runs into: argument order, APP typos, vendoring, pipes."""

    def test_options_may_come_between_app_and_addrport(self):
        # `runserver.py hello:app --noreload 8000` was "unrecognized arguments: 8000".
        self.write("hello.py", "def app(environ, start_response):\n"
                               "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                               "    return [b'hello']\n")
        process = self.start("hello:app", "--noreload", "-q", "0")
        self.assertEqual(http_get(process.port()).body, b"hello")
        self.assertOneLineError(["hello:missing", "--noreload", "0"], 2, 'no attribute "missing"')

    def test_factory_called_with_wrong_arguments_is_one_line(self):
        self.write("fac.py", "def create_app(name):\n    return None\n"
                             "def app(environ, start_response):\n    return []\n"
                             "def broken():\n    return len(3)\n")
        for args, fragment in [
                (["fac:create_app()", "--noreload"],
                 'cannot call "create_app()": create_app() missing 1 required positional'),
                (["fac:create_app(nme=1)", "--noreload"], "unexpected keyword argument 'nme'"),
                (["fac:app()", "0"], 'cannot call "app()"')]:
            with self.subTest(args=args):
                self.assertOneLineError(args, 2, fragment)
        code, output = self.run_cli("fac:broken()", "--noreload")   # the user's own TypeError
        self.assertEqual(code, 1, output)
        self.assertIn("Traceback", output)
        self.assertIn("in broken", output)

    def test_module_dot_attribute_suggests_the_colon(self):
        self.write("hello.py", "def app(environ, start_response):\n    return []\n")
        self.assertOneLineError(["hello.app", "--noreload"], 2,
                                'no module named "hello.app"; for the attribute "app" of '
                                '"hello", write hello:app')
        self.assertOneLineError(["hello.nope", "--noreload"], 2,
                                'no module named "hello.nope" (looked in')

    def test_banner_names_an_app_given_to_run_as_an_object(self):
        self.write("myproject.py", "def app(environ, start_response):\n"
                                   "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                                   "    return [b'mine']\n")
        script = self.write("serve.py", "import runserver\nfrom myproject import app\n"
                                        "if __name__ == '__main__':\n"
                                        "    runserver.run(app, '127.0.0.1', 0)\n")
        process = CLIProcess([], self.directory, {"PYTHONPATH": HERE}, program=script)
        self.addCleanup(process.kill)
        process.wait_for(r"serving myproject:app, reloading on changes")
        self.assertEqual(http_get(process.port()).body, b"mine")
        process.signal(signal.SIGINT)
        self.assertEqual(process.wait(), 0)
        self.assertNotIn("demo app", process.output())
        self.assertIn("Server stopped.", process.output())

    def test_describe_app(self):
        class Handler:
            def __call__(self, environ, start_response):
                return []
        self.assertIsNone(runserver.describe_app(runserver.demo_app))
        self.assertEqual(runserver.describe_app(hello_app), hello_app.__module__ + ":hello_app")
        self.assertEqual(runserver.describe_app(Handler()), "a Handler object")

    def test_help_explains_the_limits(self):
        code, output = self.run_cli("--help")
        self.assertEqual(code, 0)
        output = " ".join(output.split())           # whatever the terminal's width
        self.assertIn("sizes take K, M or G", output)
        self.assertRegex(output, r"--max-body BYTES a larger request body is answered 413 "
                                 r"\(default 1G\)")
        self.assertRegex(output, r"a longer request line is answered 414 \(default 64K\)")
        self.write("hello.py", "def app(environ, start_response):\n    return []\n")
        self.assertOneLineError(["hello:missing", "--max-request-line", "8K", "--noreload"], 2,
                                'no attribute "missing"')

    def test_ctrl_c_after_stdout_reader_is_gone_is_not_a_traceback(self):
        # `runserver.py | tee log`, then Ctrl-C: tee dies first, "Server stopped." hit EPIPE.
        for args in (["0", "--noreload"], ["0"]):
            with self.subTest(args=args):
                process = subprocess.Popen(
                    [sys.executable, RUNSERVER] + args, cwd=self.directory,
                    env=dict(os.environ, NO_COLOR="1"), stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
                self.addCleanup(process.wait, TIMEOUT)
                self.addCleanup(process.stderr.close)
                for line in iter(process.stdout.readline, b""):
                    if line.startswith(b"Quit the server"):
                        break
                process.stdout.close()              # the reader of stdout goes away
                os.killpg(process.pid, signal.SIGINT)
                self.assertEqual(process.wait(TIMEOUT), 0)
                errors = process.stderr.read().decode("utf-8", "replace")
                self.assertNotIn("Traceback", errors)
                self.assertNotIn("BrokenPipeError", errors)


if __name__ == "__main__":
    unittest.main()
