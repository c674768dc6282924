#!/usr/bin/env python3
"""Benchmark runserver.py against the WSGI servers people would otherwise use.

    python3 bench/run.py            # full run, about 14 minutes
    python3 bench/run.py --quick    # shorter runs, about 4 minutes

Creates bench/.venv with the peers (Werkzeug, Django, gunicorn, waitress,
cheroot), drives every server with wrk on 127.0.0.1, and writes
bench/results.md, bench/results.svg and bench/results.json.  The Markdown
report also goes to stdout; progress goes to stderr.  See bench/README.md.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import apps  # noqa: E402
import loadgen  # noqa: E402
import report  # noqa: E402
from servers import (  # noqa: E402
    ALL_SERVERS,
    CLK_TCK,
    DESCRIPTIONS,
    RELOADERS,
    Context,
    ServerError,
    cpu_ticks,
    free_port,
    http_get,
    launch,
    launch_nginx,
    nginx_binary,
    rss_bytes,
    stop_all,
)

PEERS = ["werkzeug", "django", "gunicorn", "waitress", "cheroot"]
PEER_DISTRIBUTIONS = ["Werkzeug", "Django", "gunicorn", "waitress", "cheroot"]
SECTIONS = ["hello", "file", "reload", "memory"]
FILE_SIZE = 256 * 1024 * 1024
MIB = 1024 * 1024


class Plan:
    """How many runs and how long; --quick shrinks everything."""

    def __init__(self, quick):
        # Many short runs rather than a few long ones: on a shared 2-core
        # machine single runs of the same server can differ by 2-3x.
        self.hello_reps = 2 if quick else 5
        self.hello_duration = 1 if quick else 3  # wrk takes whole seconds
        self.hello_warmup = 0 if quick else 1  # 0: 200 plain requests instead
        self.file_reps = 2 if quick else 3
        self.file_duration = 2 if quick else 5
        self.file_conns = 2
        self.reloads = 5
        # Pause before each save: long enough for the new process to have
        # finished its first scan of the files, plus a random 0-1 s so the
        # saves do not fall at the same phase of a polling reloader's cycle.
        self.reload_settle = 1.5 if quick else 2.0
        self.reload_jitter = 1.0
        self.launch_reps = 3 if quick else 5
        self.idle_seconds = 5 if quick else 10
        self.idle_settle = 2.0 if quick else 3.0
        self.idle_modules = 2000
        self.memory_requests = 10000
        self.memory_conns = 10

    def as_dict(self):
        return dict(vars(self))


def log(message):
    print(message, file=sys.stderr, flush=True)


def rotated(names, rep):
    """Round-robin order: each repetition starts with a different server."""
    if not names:
        return []
    k = rep % len(names)
    return names[k:] + names[:k]


# ----------------------------------------------------------- setup ---


def ensure_venv(venv):
    """Create bench/.venv and install the peers into it (once)."""
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        log(f"creating virtualenv {venv}")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    check = subprocess.run(
        [python, "-c", "import werkzeug, django, gunicorn, waitress, cheroot"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if check.returncode != 0:
        log("installing the peers into the virtualenv: " + " ".join(PEERS))
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PEERS],
            check=True,
        )
    out = subprocess.run(
        [
            python,
            "-c",
            "import json, importlib.metadata as m; "
            f"print(json.dumps({{d: m.version(d) for d in {PEER_DISTRIBUTIONS!r}}}))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def runserver_status(ctx):
    """(available, reason) for runserver.py."""
    if not os.path.exists(ctx.runserver):
        return False, f"{ctx.runserver} does not exist"
    try:
        proc = subprocess.run(
            [ctx.python, ctx.runserver, "--help"],
            capture_output=True,
            text=True,
            timeout=20,
            env=ctx.env(),
        )
    except subprocess.TimeoutExpired:
        return False, "--help did not finish within 20 s"
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        return False, f"--help exited with {proc.returncode}: {last[0]}"
    return True, ""


def runserver_fingerprint(path):
    """Which runserver.py was measured: git commit (+ "dirty") and a hash."""
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:12]
    except OSError:
        return None
    folder = os.path.dirname(path)
    git = ["git", "-C", folder]
    try:
        head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(git + ["status", "--porcelain", "--", os.path.basename(path)],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        head, dirty = "", ""
    label = f"sha256 {digest}"
    if head:
        label = f"commit {head}{' + uncommitted changes' if dirty else ''}, {label}"
    return label


def machine_info():
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = os.cpu_count()
    return f"{model}, {cores} cores, Linux {platform.release()}", cores


def tool_version(argv):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout + proc.stderr).strip().splitlines()
    return text[0] if text else None


# ------------------------------------------------------------ sections ---


def section_hello(ctx, servers, plan, results, workdir, with_memory):
    """Hello-world req/s at 1, 10, 100 keep-alive connections and with close.

    With ``with_memory`` the first repetition warms each server up with the
    memory measurement (10,000 requests) instead of a plain wrk run.
    """
    modes = [
        ("ka1", 1, ()),
        ("ka10", 10, ()),
        ("ka100", 100, ()),
        ("close10", 10, ("Connection: close",)),
    ]
    data = results.setdefault("hello", {})
    for rep in range(plan.hello_reps):
        for name in rotated(servers, rep):
            log(f"[hello {rep + 1}/{plan.hello_reps}] {name}")
            try:
                process, port = launch(ctx, name, "apps:hello")
            except ServerError as exc:
                fail(results, f"hello: {name} did not start: {exc}")
                continue
            try:
                url = f"http://127.0.0.1:{port}/"
                wrk_log = os.path.join(ctx.logdir, "wrk.log")
                try:
                    if with_memory and rep == 0:
                        measure_memory(ctx, name, process, port, plan, results, workdir)
                    elif plan.hello_warmup:
                        loadgen.wrk(url, 10, plan.hello_warmup, log_path=wrk_log)
                    else:
                        for _ in range(200):
                            http_get(port)
                except RuntimeError as exc:
                    fail(results, f"hello: {name} warm-up: {exc}")
                for mode, conns, headers in modes:
                    if not process.alive():
                        fail(results, f"hello: {name} died during the {mode} run")
                        break
                    pids = process.tree()
                    ticks = cpu_ticks(pids)
                    t0 = time.monotonic()
                    try:
                        r = loadgen.wrk(url, conns, plan.hello_duration, headers=headers,
                                        log_path=wrk_log)
                    except RuntimeError as exc:
                        fail(results, f"hello: {name} {mode}: {exc}")
                        continue
                    used = sum(t - ticks.get(p, 0) for p, t in cpu_ticks(pids).items())
                    cpu = 100.0 * used / CLK_TCK / (time.monotonic() - t0)
                    data.setdefault(name, {}).setdefault(mode, []).append(
                        {"rps": r["rps"], "requests": r["requests"],
                         "errors": r["errors"], "non_2xx": r["non_2xx"],
                         "server_cpu_percent": round(cpu, 1)}
                    )
                    log(f"    {mode:8s} {r['rps']:>10,.0f} req/s  server CPU {cpu:4.0f} %"
                        + (f"  errors {r['errors']}" if any(r["errors"].values()) else ""))
            finally:
                process.stop()


class PeakRSS(threading.Thread):
    """Samples the RSS of a process tree every 50 ms; keeps the maximum."""

    def __init__(self, process):
        super().__init__(daemon=True)
        self.process = process
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self):
        pids = self.process.tree()
        ticks = 0
        while not self._stop_event.is_set():
            if ticks % 10 == 0:  # children may come and go
                pids = self.process.tree()
            self.peak = max(self.peak, rss_bytes(pids))
            ticks += 1
            self._stop_event.wait(0.05)

    def stop(self):
        self._stop_event.set()
        self.join()
        return self.peak


def section_file(ctx, servers, plan, results, workdir, with_nginx):
    """Throughput of a 256 MiB file through wsgi.file_wrapper vs nginx."""
    docroot = os.path.join(workdir, "www")
    os.makedirs(docroot, exist_ok=True)
    os.chmod(workdir, 0o755)
    os.chmod(docroot, 0o755)
    path = os.path.join(docroot, "big.bin")
    log("writing the 256 MiB file")
    block = os.urandom(MIB)
    with open(path, "wb") as f:
        for _ in range(FILE_SIZE // MIB):
            f.write(block)
    os.chmod(path, 0o644)

    try:
        _file_runs(ctx, servers, plan, results, workdir, with_nginx, docroot, path)
    finally:
        os.unlink(path)


def _file_runs(ctx, servers, plan, results, workdir, with_nginx, docroot, path):
    names = [n for n in servers if n not in ("ceiling", "runserver-pypy")]   # hello only
    if with_nginx:
        names.append("nginx")
    data = results.setdefault("file", {})
    for rep in range(plan.file_reps):
        for name in rotated(names, rep):
            log(f"[file {rep + 1}/{plan.file_reps}] {name}")
            try:
                if name == "nginx":
                    process, port = launch_nginx(ctx, docroot, os.path.join(workdir, "nginx"))
                else:
                    process, port = launch(ctx, name, "apps:file_app",
                                           extra_env={"BENCH_FILE": path},
                                           check_path="/big.bin")
            except ServerError as exc:
                fail(results, f"file: {name} did not start: {exc}")
                continue
            try:
                rss_before = rss_bytes(process.tree())
                sampler = PeakRSS(process)
                sampler.start()
                try:
                    r = loadgen.download(port, "/big.bin", plan.file_conns, plan.file_duration)
                finally:
                    peak = sampler.stop()
                sample = {
                    "mbps": r["bytes_per_s"] / 1e6,
                    "responses": r["responses"],
                    "rss_before": rss_before,
                    "peak_rss": peak,
                    "errors": r["errors"],
                    "statuses": r["statuses"],
                }
                data.setdefault(name, []).append(sample)
                log(f"    {sample['mbps']:>8,.0f} MB/s, {r['responses']} full responses, "
                    f"peak RSS {peak / MIB:.1f} MiB"
                    + (f", errors {r['errors']}" if r["errors"] else ""))
                if r["errors"] or set(r["statuses"]) - {"200"}:
                    fail(results, f"file: {name}: errors {r['errors']}, statuses {r['statuses']}")
            finally:
                process.stop()


def write_atomically(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def section_reload(ctx, servers, plan, results, workdir):
    """Launch time, reload latency/errors and idle CPU of the reloaders."""
    names = [n for n in servers if n in RELOADERS]
    data = results.setdefault("reload", {})
    if not names:
        fail(results, "reload: none of the selected servers has a reloader")
        return
    # No bytecode cache: a stale .pyc can never answer for a new source.
    no_pyc = {"PYTHONDONTWRITEBYTECODE": "1"}
    # Except runserver.py's own, which its reloader worker imports: a user has
    # it from the second start on.  Written here, so that no leftover decides.
    if "runserver" in names:
        subprocess.run([ctx.python, "-m", "py_compile", ctx.runserver], check=True)

    # 1. Launch -> first response, reloader on, interleaved.
    launch_dir = os.path.join(workdir, "launch")
    os.makedirs(launch_dir, exist_ok=True)
    write_atomically(os.path.join(launch_dir, apps.RELOAD_MODULE + ".py"),
                     apps.reload_module_source(0))
    app = apps.RELOAD_MODULE + ":app"
    for rep in range(plan.launch_reps):
        for name in rotated(names, rep):
            try:
                process, port = launch(ctx, name, app, app_dirs=[launch_dir], reload=True,
                                       port=free_port(), extra_env=no_pyc)
            except ServerError as exc:
                fail(results, f"reload/launch: {name} did not start: {exc}")
                continue
            elapsed = process.ready_at - process.started
            process.stop()
            data.setdefault("launch", {}).setdefault(name, []).append(elapsed)
            log(f"[launch {rep + 1}/{plan.launch_reps}] {name}: {elapsed:.3f} s")

    # 2. Save -> first new response, with a client polling every 10 ms.
    for name in names:
        app_dir = os.path.join(workdir, f"reload-{name}")
        os.makedirs(app_dir, exist_ok=True)
        module = os.path.join(app_dir, apps.RELOAD_MODULE + ".py")
        write_atomically(module, apps.reload_module_source(0))
        try:
            process, port = launch(ctx, name, app, app_dirs=[app_dir], reload=True,
                                   extra_env=no_pyc)
        except ServerError as exc:
            fail(results, f"reload: {name} did not start: {exc}")
            continue
        poller = loadgen.Poller(port)
        latencies = []
        pauses = random.Random(20240601)  # the same pauses for every server
        try:
            poller.start()
            first_save = None
            for version in range(1, plan.reloads + 1):
                time.sleep(plan.reload_settle + plan.reload_jitter * pauses.random())
                saved = time.monotonic()
                if first_save is None:
                    first_save = saved
                write_atomically(module, apps.reload_module_source(version))
                seen = poller.wait_for(f"version-{version}\n".encode(), saved, timeout=15)
                latency = None if seen is None else seen - saved
                latencies.append(latency)
                log(f"[reload {version}/{plan.reloads}] {name}: "
                    + ("no new response within 15 s" if latency is None else f"{latency:.3f} s"))
            time.sleep(plan.reload_settle)
            end = time.monotonic()
        finally:
            poller.stop()
            alive = process.alive()
            process.stop()
        errors = poller.errors_between(first_save, end)
        entry = {
            "latencies": latencies,
            "errors": errors,
            "bad_status": poller.bad_status_between(first_save, end),
            "requests": sum(1 for t, _, _ in poller.responses if first_save <= t <= end),
            "alive_at_end": alive,
        }
        data.setdefault("latency", {})[name] = entry
        log(f"    {name}: {len(errors)} connection errors, {entry['requests']} responses")

    # 3. Idle CPU watching a 2,000-module project and its 200 templates.
    big_dir = os.path.join(workdir, "bigproject")
    files = apps.write_big_project(big_dir, modules=plan.idle_modules)
    data["idle_files"] = files
    for name in names:
        try:
            process, port = launch(ctx, name, apps.BIG_APP_MODULE + ":app",
                                   app_dirs=[big_dir], reload=True, timeout=120)
        except ServerError as exc:
            fail(results, f"reload/idle: {name} did not start: {exc}")
            continue
        try:
            time.sleep(plan.idle_settle)
            pids = process.tree()
            before = cpu_ticks(pids)
            t0 = time.monotonic()
            time.sleep(plan.idle_seconds)
            pids = sorted(set(pids) | set(process.tree()))
            after = cpu_ticks(pids)
            elapsed = time.monotonic() - t0
            used = sum(after[p] - before.get(p, 0) for p in after)
            cpu = 100.0 * used / CLK_TCK / elapsed
            data.setdefault("idle", {})[name] = {
                "cpu_percent": cpu,
                "seconds": elapsed,
                "processes": len(after),
                "rss": rss_bytes(pids),
            }
            log(f"[idle] {name}: {cpu:.2f} % of one core ({len(after)} processes)")
        finally:
            process.stop()


def measure_memory(ctx, name, process, port, plan, results, workdir):
    """RSS of the process tree before and after 10,000 hello requests."""
    before = rss_bytes(process.tree())
    r = loadgen.wrk_count(
        f"http://127.0.0.1:{port}/",
        plan.memory_requests,
        plan.memory_conns,
        max_duration=120,
        workdir=workdir,
        log_path=os.path.join(ctx.logdir, "wrk.log"),
    )
    time.sleep(0.2)
    after = rss_bytes(process.tree())
    if not r["completed"]:
        fail(results, f"memory: {name} answered only {r['requests']} requests in 120 s")
    results.setdefault("memory", {}).setdefault(name, []).append(
        {"rss_before": before, "rss_after": after, "requests": r["requests"]}
    )
    log(f"    memory: {before / MIB:.1f} -> {after / MIB:.1f} MiB "
        f"after {r['requests']} requests")


def section_memory(ctx, servers, plan, results, workdir):
    """The memory measurement alone (when the hello section is not run)."""
    for name in servers:
        log(f"[memory] {name}")
        try:
            process, port = launch(ctx, name, "apps:hello")
        except ServerError as exc:
            fail(results, f"memory: {name} did not start: {exc}")
            continue
        try:
            measure_memory(ctx, name, process, port, plan, results, workdir)
        finally:
            process.stop()


# ------------------------------------------------------------- targets ---


def fail(results, message):
    log("problem: " + message)
    results.setdefault("failures", []).append(message)


def evaluate_targets(results):
    targets = []
    med = report.median

    def add(name, measured, goal, passed):
        targets.append({"name": name, "measured": measured, "goal": goal, "pass": passed})

    if "hello" in results:
        rs = report.hello_median(results, "runserver", "ka10")
        for peer, factor in (("werkzeug", 8), ("gunicorn", 3), ("cheroot", 4)):
            other = report.hello_median(results, peer, "ka10")
            ratio = rs / other if rs and other else None
            add(f"keep-alive, 10 conns: ≥ {factor}× {peer}",
                "–" if ratio is None else f"{ratio:.2f}×", f"≥ {factor}×",
                None if ratio is None else ratio >= factor)
        ceiling = report.hello_median(results, "ceiling", "ka10")
        share = rs / ceiling if rs and ceiling else None
        add("keep-alive, 10 conns: share of the bare-socket ceiling",
            "–" if share is None else f"{100 * share:.0f} %", "≥ 40 %",
            None if share is None else share >= 0.40)
        peers = {
            n: report.hello_median(results, n, "close10")
            for n in results["hello"] if n not in ("runserver", "runserver-pypy", "ceiling")
        }
        peers = {n: v for n, v in peers.items() if v}
        rs_close = report.hello_median(results, "runserver", "close10")
        best = max(peers, key=peers.get) if peers else None
        ratio = rs_close / peers[best] if rs_close and best else None
        add(f"Connection: close: ≥ 1.5× the best peer ({best or '–'})",
            "–" if ratio is None else f"{ratio:.2f}×", "≥ 1.5×",
            None if ratio is None else ratio >= 1.5)
    if "file" in results:
        rs = report.file_median(results, "runserver")
        nginx = report.file_median(results, "nginx")
        share = rs / nginx if rs and nginx else None
        add("256 MiB file: share of nginx's throughput",
            "–" if share is None else f"{100 * share:.0f} %", "≥ 90 %",
            None if share is None else share >= 0.90)
    if "reload" in results:
        reload = results["reload"]
        lat = reload.get("latency", {}).get("runserver")
        values = lat["latencies"] if lat else []
        missed = sum(1 for v in values if v is None)
        m = med(values)
        if lat and missed:
            add("reload: save → new response, median", f"{missed} of {len(values)} missed",
                "≤ 0.35 s", False)
        else:
            add("reload: save → new response, median", "–" if m is None else f"{m:.3f} s",
                "≤ 0.35 s", None if m is None else m <= 0.35)
        errors = None if lat is None else len(lat["errors"]) + lat["bad_status"]
        add(f"reload: connection errors in {len(values) or 5} reloads",
            "–" if errors is None else str(errors), "0",
            None if errors is None else errors == 0)
        idle = reload.get("idle", {}).get("runserver", {}).get("cpu_percent")
        add(f"reload: idle CPU watching {reload.get('idle_files', 2000)} files",
            "–" if idle is None else f"{idle:.2f} %", "≤ 2 %",
            None if idle is None else idle <= 2.0)
        launch_time = med(reload.get("launch", {}).get("runserver", []))
        add("launch → first response (reloader on)",
            "–" if launch_time is None else f"{launch_time:.3f} s", "≤ 0.15 s",
            None if launch_time is None else launch_time <= 0.15)
    return targets


# ---------------------------------------------------------------- main ---


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Benchmark runserver.py against other WSGI servers (see bench/README.md)."
    )
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs (~4 min)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help="sections to run, comma-separated: " + ",".join(SECTIONS))
    parser.add_argument("--servers", default=",".join(ALL_SERVERS + ["nginx"]),
                        help="servers, comma-separated: " + ",".join(ALL_SERVERS)
                        + " (nginx is added to the file section when installed)")
    parser.add_argument("--runserver", default=os.path.join(HERE, "..", "runserver.py"),
                        help="path to runserver.py (default: ../runserver.py)")
    parser.add_argument("--reload-interval", type=float, default=None,
                        help="pass --reload-interval to runserver.py (default: its own)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="override the number of runs per measurement")
    parser.add_argument("--output-dir", default=HERE,
                        help="where results.md/.svg/.json go (default: bench/)")
    parser.add_argument("--venv", default=os.path.join(HERE, ".venv"),
                        help="virtualenv for the peers (default: bench/.venv)")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in args.only if s not in SECTIONS]
    if bad:
        parser.error(f"unknown section(s): {', '.join(bad)}")
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    bad = [s for s in args.servers if s not in ALL_SERVERS + ["nginx"]]
    if bad:
        parser.error(f"unknown server(s): {', '.join(bad)}")
    return args


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not loadgen.wrk_path():
        print(
            "wrk (the HTTP load generator) is not installed.\n"
            "Install it with your package manager, e.g.:  sudo apt-get install wrk\n"
            "(Fedora: dnf install wrk; macOS: brew install wrk)",
            file=sys.stderr,
        )
        return 1
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if inherited as ignored
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)

    plan = Plan(args.quick)
    if args.repeat:
        plan.hello_reps = plan.file_reps = args.repeat
    peers = ensure_venv(os.path.abspath(args.venv))
    workdir = tempfile.mkdtemp(prefix="runserver-bench-")
    logdir = os.path.join(workdir, "logs")
    os.makedirs(logdir)
    ctx = Context(os.path.abspath(args.venv), os.path.abspath(args.runserver), logdir,
                  reload_interval=args.reload_interval)
    machine, cores = machine_info()
    results = {
        "meta": {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine,
            "cores": cores,
            "python": platform.python_version(),
            "wrk": tool_version(["wrk", "--version"]) or "wrk",
            "nginx": tool_version([nginx_binary(), "-v"]) if nginx_binary() else None,
            "peers": peers,
            "runserver": ctx.runserver,
            "command": " ".join(["python3 bench/run.py"] + [shlex.quote(a) for a in sys.argv[1:]]),
            "plan": plan.as_dict(),
            "sections": args.only,
        },
        "servers": {},
    }
    servers = [s for s in ALL_SERVERS if s in args.servers]
    if "runserver" in servers:
        results["meta"]["runserver_version"] = runserver_fingerprint(ctx.runserver)
        available, why = runserver_status(ctx)
        ctx.runserver_available = available
        results["servers"]["runserver"] = {"description": DESCRIPTIONS["runserver"],
                                           "available": available, "error": why}
        if not available:
            log(f"runserver.py not available: {why}")
            servers.remove("runserver")
    if "runserver-pypy" in servers and not (ctx.pypy and "runserver" in servers):
        why = "pypy3 is not installed" if not ctx.pypy else "runserver.py is not available"
        results["servers"]["runserver-pypy"] = {"description": DESCRIPTIONS["runserver-pypy"],
                                                "available": False, "error": why}
        log(f"runserver.py under PyPy not measured: {why}")
        servers.remove("runserver-pypy")
    for name in servers:
        results["servers"].setdefault(name, {"description": DESCRIPTIONS[name],
                                             "available": True, "error": ""})
    with_nginx = "nginx" in args.servers and nginx_binary() is not None
    if "file" in args.only and "nginx" in args.servers and not with_nginx:
        results.setdefault("notes", {})["file"] = (
            "nginx is not installed, so there is no nginx comparison "
            "(`apt-get install nginx-light` adds it)."
        )
        log("note: " + results["notes"]["file"])

    log(f"logs in {logdir}")
    started = time.monotonic()
    interrupted = False
    try:
        timings = results["meta"]["section_seconds"] = {}
        for section in SECTIONS:
            if section not in args.only:
                continue
            if section == "memory" and "hello" in args.only:
                continue  # measured during the hello section
            t0 = time.monotonic()
            if section == "hello":
                section_hello(ctx, servers, plan, results, workdir, "memory" in args.only)
            elif section == "file":
                section_file(ctx, servers, plan, results, workdir, with_nginx)
            elif section == "reload":
                section_reload(ctx, servers, plan, results, workdir)
            elif section == "memory":
                section_memory(ctx, servers, plan, results, workdir)
            timings[section] = round(time.monotonic() - t0, 1)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping every server")
    finally:
        stop_all()
    results["meta"]["seconds"] = round(time.monotonic() - started, 1)
    if interrupted:
        shutil.rmtree(workdir, ignore_errors=True)
        return 130

    results["targets"] = evaluate_targets(results)
    text = report.markdown(results)
    print(text)
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "results.md"), "w") as f:
        f.write(text + "\n")
    svg = report.svg_chart(results)
    if svg:
        with open(os.path.join(args.output_dir, "results.svg"), "w") as f:
            f.write(svg)
    report.write_json(results, os.path.join(args.output_dir, "results.json"))
    log(f"done in {results['meta']['seconds']:.0f} s; wrote results.md, results.svg, "
        f"results.json in {args.output_dir}")
    if results.get("failures"):
        for entry in os.listdir(workdir):
            if entry != "logs":
                shutil.rmtree(os.path.join(workdir, entry), ignore_errors=True)
        log(f"logs kept in {logdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_all()
