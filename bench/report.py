#!/usr/bin/env python3
"""Summarise a bench/run results directory: markdown table on stdout, JSON to a file.

Input files (written by bench/run):
  mint.json                         client token-minting rate
  none__direct__0.json              backend measured directly
  <scenario>__<proxy>__<round>.json iwa-loadgen run reports (round "warm" is ignored)
  <scenario>__<proxy>.skip          one line: why that proxy has no numbers there
  idle__<proxy>.json / .skip        RSS with N idle keep-alive connections
"""
import argparse
import datetime
import glob
import json
import os
import platform
import statistics

SCENARIOS = {
    "fresh": "fresh Kerberos token every request",
    "once": "Negotiate once per connection",
    "cookie": "session cookie",
    "none": "no auth",
    "ntlm": "NTLM handshake per connection",
}
PROXIES = ["apache", "iwa", "nginx"]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def median_of(runs, key):
    vals = [key(r) for r in runs]
    return statistics.median(vals) if vals else None


def summarise(runs, scenario):
    good = [r for r in runs if "rps" in r]
    if not good:
        return None
    rate = (lambda r: r["handshakes_per_s"]) if scenario == "ntlm" else (lambda r: r["rps"])
    return {
        "rps": median_of(good, rate),
        "p50_us": median_of(good, lambda r: r["latency_us"]["p50"]),
        "p90_us": median_of(good, lambda r: r["latency_us"]["p90"]),
        "p99_us": median_of(good, lambda r: r["latency_us"]["p99"]),
        "max_us": max(r["latency_us"]["max"] for r in good),
        "errors": sum(r["errors"] for r in good),
        "error_codes": sorted({k for r in good for k in list(r["errors_by_status"]) + list(r["errors_by_kind"])}),
        "requests": sum(r["requests"] for r in good),
        "rounds": len(good),
        "failed_rounds": len(runs) - len(good),
    }


def fmt_rate(x):
    return "—" if x is None else f"{x:,.0f}"


def fmt_ms(us):
    return "—" if us is None else f"{us / 1000:.2f}"


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def fmt_ratio(x):
    return "" if x is None else f"{x:.2f}×"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("out_json")
    ap.add_argument("--settings", default="")
    a = ap.parse_args()
    d = a.results
    settings = dict(kv.split("=", 1) for kv in a.settings.split() if "=" in kv)

    out = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "kernel": platform.release()},
        "settings": settings,
        "client_mint": load(os.path.join(d, "mint.json")),
        "backend_direct": None,
        "scenarios": {},
        "idle": {},
    }
    direct = load(os.path.join(d, "none__direct__0.json"))
    if direct and "rps" in direct:
        out["backend_direct"] = summarise([direct], "none")

    lines = []
    lines.append("| scenario | proxy | req/s | p50 ms | p99 ms | errors | iwa/Apache req/s | iwa/Apache p99 |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|")
    best_proxy = 0.0
    for s, label in SCENARIOS.items():
        present = glob.glob(os.path.join(d, f"{s}__*"))
        if not present:
            continue
        sc = {"label": label}
        for p in PROXIES:
            runs = [
                load(f)
                for f in sorted(glob.glob(os.path.join(d, f"{s}__{p}__*.json")))
                if not f.endswith("__warm.json")
            ]
            runs = [r for r in runs if r is not None]
            skip = os.path.join(d, f"{s}__{p}.skip")
            if os.path.exists(skip):
                sc[p] = {"skipped": open(skip).read().strip()}
            elif runs:
                sc[p] = summarise(runs, s) or {"skipped": "n/a (all runs failed)"}
        a_ = sc.get("apache") or {}
        i_ = sc.get("iwa") or {}
        n_ = sc.get("nginx") or {}
        # A ratio over runs with errors would compare different work: leave it out.
        clean = not i_.get("errors") and not a_.get("errors")
        sc["ratio_rps"] = ratio(i_.get("rps"), a_.get("rps")) if clean else None
        sc["ratio_p99"] = ratio(i_.get("p99_us"), a_.get("p99_us")) if clean else None
        if s == "none":
            sc["ratio_rps_vs_nginx"] = ratio(i_.get("rps"), n_.get("rps"))
            sc["apache_vs_nginx"] = ratio(a_.get("rps"), n_.get("rps"))
        out["scenarios"][s] = sc
        name = label + (" (handshakes/s)" if s == "ntlm" else "")
        for p in PROXIES:
            r = sc.get(p)
            if r is None:
                continue
            shown = {"apache": "Apache + mod_auth_gssapi", "iwa": "iwa", "nginx": "nginx (plain proxy, ceiling)"}[p]
            if s == "ntlm" and p == "apache":
                shown = "Apache + mod_auth_gssapi + gss-ntlmssp"
            if "skipped" in r:
                lines.append(f"| {name} | {shown} | {r['skipped']} | | | | | |")
                continue
            if p != "nginx":  # nginx as a proxy is the ceiling, not a measured proxy
                best_proxy = max(best_proxy, r["rps"] or 0)
            rr = fmt_ratio(sc["ratio_rps"]) if p == "iwa" else ""
            rp = fmt_ratio(sc["ratio_p99"]) if p == "iwa" else ""
            if p == "iwa" and r["errors"]:
                codes = ", ".join(sorted(r.get("error_codes", [])))
                rr = f"n/a: errors ({codes})" if codes else "n/a: errors"
            if p == "iwa" and s == "none" and sc.get("ratio_rps_vs_nginx"):
                rr += f" ({sc['ratio_rps_vs_nginx']:.2f}× nginx)"
            lines.append(
                f"| {name} | {shown} | {fmt_rate(r['rps'])} | {fmt_ms(r['p50_us'])} | "
                f"{fmt_ms(r['p99_us'])} | {r['errors']} | {rr} | {rp} |"
            )

    print("\n".join(lines))
    print()
    bd = out["backend_direct"]
    if bd:
        headroom = bd["rps"] / best_proxy if best_proxy else None
        out["backend_headroom"] = headroom
        verdict = "" if headroom is None else (
            f" = {headroom:.1f}× the fastest Apache/iwa result "
            f"({'OK, ≥ 3×' if headroom >= 3 else 'BELOW the 3× requirement: results are backend-bound'})")
        print(f"Backend (nginx, fixed body) measured directly: {fmt_rate(bd['rps'])} req/s{verdict}.")
    m = out["client_mint"]
    if m:
        print(
            f"Client ceiling for fresh Kerberos: minting {m['rate_per_core']:,.0f} tokens/s per core "
            f"({m['us_per_token']:.0f} µs/token); tokens are pre-minted before each run."
        )

    idle_lines = []
    for p in PROXIES:
        f = os.path.join(d, f"idle__{p}.json")
        skip = os.path.join(d, f"idle__{p}.skip")
        if os.path.exists(skip):
            out["idle"][p] = {"skipped": open(skip).read().strip()}
        elif os.path.exists(f):
            out["idle"][p] = load(f)
    if out["idle"]:
        n = settings.get("idle_connections", "?")
        print()
        print(f"| RSS with {n} idle keep-alive connections | open | ok | RSS before | RSS held | per connection | iwa/Apache |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        a_rss = (out["idle"].get("apache") or {}).get("rss_kib")
        for p in PROXIES:
            r = out["idle"].get(p)
            if r is None:
                continue
            if "skipped" in r:
                print(f"| {p} | {r['skipped']} | | | | | |")
                continue
            opened = r.get("open", 0)
            per = (r["rss_kib"] - r["rss_base_kib"]) / opened if opened else None
            rr = fmt_ratio(ratio(r["rss_kib"], a_rss)) if p == "iwa" else ""
            if p == "iwa":
                out["idle_ratio_rss"] = ratio(r["rss_kib"], a_rss)
            per_s = "—" if per is None else f"{per:.1f} KiB"
            print(
                f"| {p} | {opened} | {r.get('ok', 0)} | {r['rss_base_kib'] / 1024:.1f} MiB | "
                f"{r['rss_kib'] / 1024:.1f} MiB | {per_s} | {rr} |"
            )
    with open(a.out_json, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
