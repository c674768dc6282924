"""Turn the raw results into a Markdown report, an SVG chart and JSON."""

import json
import statistics
from xml.sax.saxutils import escape

from servers import ALL_SERVERS, DESCRIPTIONS

HELLO_MODES = [
    ("ka1", "keep-alive, 1 conn"),
    ("ka10", "keep-alive, 10 conns"),
    ("ka100", "keep-alive, 100 conns"),
    ("close10", "Connection: close, 10 conns"),
]
MIB = 1024 * 1024


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def hello_median(results, server, mode):
    samples = results.get("hello", {}).get(server, {}).get(mode, [])
    return median([s["rps"] for s in samples])


def file_median(results, server, key="mbps"):
    return median([s[key] for s in results.get("file", {}).get(server, [])])


def _num(value, digits=0, suffix=""):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}{suffix}"


def _ordered(names):
    known = [n for n in ALL_SERVERS if n in names]
    return known + sorted(n for n in names if n not in ALL_SERVERS)


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for row in rows:
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def markdown(results):
    meta = results["meta"]
    plan = meta["plan"]
    out = ["# runserver.py benchmark", ""]
    out.append(
        f"Run {meta['date']} on {meta['machine']}; Python {meta['python']}; "
        f"{meta['wrk']}; peers: {', '.join(f'{k} {v}' for k, v in meta['peers'].items())}."
    )
    out.append("")
    out.append(f"Command: `{meta['command']}`")
    out.append("")
    if meta.get("runserver_version"):
        out.append(f"runserver.py: {meta['runserver_version']}.")
        out.append("")
    unavailable = {n: s["error"] for n, s in results["servers"].items() if not s["available"]}
    for name, why in unavailable.items():
        out.append(f"- **{name}: not available** ({why})")
    if unavailable:
        out.append("")

    if "hello" in results:
        out.append(
            f"## Hello world, requests/s (median of {plan['hello_reps']} runs, "
            f"wrk -t1 -d{plan['hello_duration']}s, servers interleaved)"
        )
        out.append("")
        base = hello_median(results, "runserver", "ka10")
        header = ["server"] + [label for _, label in HELLO_MODES] + ["runserver ÷ server (10 conns)"]
        rows = []
        for name in _ordered(results["hello"]):
            row = [f"{name} ({DESCRIPTIONS.get(name, '')})"]
            for mode, _ in HELLO_MODES:
                value = hello_median(results, name, mode)
                errors = sum(
                    sum(s["errors"].values()) + s["non_2xx"]
                    for s in results["hello"][name].get(mode, [])
                )
                cell = _num(value)
                if errors:
                    cell += f" ({errors:,} err)"
                row.append(cell)
            other = hello_median(results, name, "ka10")
            ratio = base / other if base and other else None
            row.append(_num(ratio, 2, "×") if name != "runserver" else "")
            rows.append(row)
        out.append(_table(header, rows))
        out.append("")
        out.append("`err` = wrk socket errors + non-2xx responses, summed over the runs.")
        out.append("")

    if "file" in results:
        out.append(
            f"## 256 MiB file through wsgi.file_wrapper (median of {plan['file_reps']} runs, "
            f"{plan['file_conns']} keep-alive connections for {plan['file_duration']} s, "
            "splice client)"
        )
        out.append("")
        nginx = file_median(results, "nginx")
        rows = []
        for name in _ordered(results["file"]):
            mbps = file_median(results, name)
            peak = file_median(results, name, "peak_rss")
            rows.append([
                f"{name} ({DESCRIPTIONS.get(name, '')})",
                _num(mbps),
                _num(100 * mbps / nginx, 0, " %") if nginx and mbps is not None else "–",
                _num(peak / MIB if peak is not None else None, 1),
            ])
        out.append(_table(["server", "MB/s", "of nginx", "peak RSS (MiB)"], rows))
        out.append("")
        if results.get("notes", {}).get("file"):
            out.append(results["notes"]["file"])
            out.append("")

    reload = results.get("reload", {})
    if any(reload.get(key) for key in ("launch", "latency", "idle")):
        out.append(
            f"## Reloader ({plan['reloads']} atomic-rename saves while a client polls every "
            f"10 ms on new connections; idle CPU over {plan['idle_seconds']} s watching "
            f"{reload.get('idle_files', '?')} files: .py modules and HTML templates)"
        )
        out.append("")
        rows = []
        names = set(reload.get("launch", {})) | set(reload.get("latency", {})) | set(reload.get("idle", {}))
        for name in _ordered(names):
            launch = median(reload.get("launch", {}).get(name, []))
            lat = reload.get("latency", {}).get(name, {})
            lats = lat.get("latencies", [])
            missed = sum(1 for v in lats if v is None)
            errors = lat.get("errors")
            idle = reload.get("idle", {}).get(name, {})
            err_cell = "–"
            if errors is not None:
                err_cell = str(len(errors))
                if errors:
                    kinds = {}
                    for kind in errors:
                        kinds[kind] = kinds.get(kind, 0) + 1
                    err_cell += " (" + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + ")"
                if lat.get("bad_status"):
                    err_cell += f" + {lat['bad_status']} non-200"
            rows.append([
                name,
                _num(launch, 3),
                _num(median(lats), 3) + (f" ({missed} missed)" if missed else ""),
                _num(max((v for v in lats if v is not None), default=None), 3),
                err_cell,
                _num(idle.get("cpu_percent"), 2, " %"),
            ])
        out.append(_table([
            "server (reloader on)",
            "launch → first response (s)",
            "save → new response, median (s)",
            "max (s)",
            "connection errors",
            "idle CPU (% of one core)",
        ], rows))
        out.append("")

    if "memory" in results:
        out.append(
            f"## Resident memory (process tree), before and after "
            f"{plan['memory_requests']:,} hello-world requests (wrk, {plan['memory_conns']} conns)"
        )
        out.append("")
        rows = []
        for name in _ordered(results["memory"]):
            samples = results["memory"][name]
            rows.append([
                name,
                _num(median([s["rss_before"] / MIB for s in samples]), 1),
                _num(median([s["rss_after"] / MIB for s in samples]), 1),
            ])
        out.append(_table(["server", "RSS at start (MiB)", "RSS after (MiB)"], rows))
        out.append("")

    if results.get("targets"):
        out.append("## Targets (runserver.py)")
        out.append("")
        rows = []
        for t in results["targets"]:
            verdict = {True: "**pass**", False: "**FAIL**", None: "n/a"}[t["pass"]]
            rows.append([t["name"], t["measured"], t["goal"], verdict])
        out.append(_table(["target", "measured", "goal", "result"], rows))
        out.append("")

    if results.get("failures"):
        out.append("## Problems during the run")
        out.append("")
        for failure in results["failures"]:
            out.append(f"- {failure}")
        out.append("")
    return "\n".join(out)


# ------------------------------------------------------------------- SVG ---


def svg_chart(results):
    """Horizontal bar charts of hello-world req/s (keep-alive and close)."""
    panels = []
    for mode, title in (("ka10", "Hello world, keep-alive, 10 connections"),
                        ("close10", "Hello world, Connection: close, 10 connections")):
        bars = []
        for name in _ordered(results.get("hello", {})):
            value = hello_median(results, name, mode)
            if value is not None:
                bars.append((name, value))
        if bars:
            bars.sort(key=lambda b: -b[1])
            panels.append((title, bars))
    if not panels:
        return None

    width, label_w, value_w = 760, 110, 110
    bar_h, gap, title_h, panel_gap = 22, 6, 30, 24
    plot_w = width - label_w - value_w - 20
    colors = {"runserver": "#d9480f", "ceiling": "#adb5bd"}
    default_color = "#4263eb"
    plan = results["meta"]["plan"]
    header = 62
    height = header + sum(title_h + len(b) * (bar_h + gap) + panel_gap for _, b in panels) + 10

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        '<text x="20" y="28" font-size="18" font-weight="bold" fill="#212529">'
        "WSGI servers: requests per second (higher is better)</text>",
        f'<text x="20" y="48" font-size="12" fill="#495057">{escape(_subtitle(results, plan))}</text>',
    ]
    y = header
    for title, bars in panels:
        parts.append(
            f'<text x="20" y="{y + 18}" font-size="14" font-weight="bold" fill="#343a40">'
            f"{escape(title)}</text>"
        )
        y += title_h
        top = max(v for _, v in bars)
        for name, value in bars:
            w = max(1.0, plot_w * value / top)
            color = colors.get(name, default_color)
            parts.append(
                f'<text x="{label_w + 10}" y="{y + bar_h * 0.72:.1f}" font-size="13" '
                f'text-anchor="end" fill="#212529">{escape(name)}</text>'
            )
            parts.append(
                f'<rect x="{label_w + 20}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                f'fill="{color}" rx="2"/>'
            )
            parts.append(
                f'<text x="{label_w + 26 + w:.1f}" y="{y + bar_h * 0.72:.1f}" font-size="13" '
                f'fill="#212529">{value:,.0f}</text>'
            )
            y += bar_h + gap
        y += panel_gap
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _subtitle(results, plan):
    meta = results["meta"]
    return (
        f"wrk -t1 -d{plan['hello_duration']}s, median of {plan['hello_reps']} runs, "
        f"127.0.0.1, {meta['cores']} cores, Python {meta['python']}, {meta['date'][:10]}"
    )


def write_json(results, path):
    with open(path, "w") as f:
        json.dump(results, f, indent=1, sort_keys=False)
        f.write("\n")
