#!/usr/bin/env python3
"""Loads Swagger UI from a running server in headless Chromium, under the server's own
Content-Security-Policy, and checks that it renders every operation of the spec it fetched by
its relative URL, with no CSP violation. Usage: swagger_ui_check.py http://127.0.0.1:PORT/api/v1"""
import json
import re
import subprocess
import sys
import tempfile
import urllib.request

base = sys.argv[1].rstrip("/")
spec = json.load(urllib.request.urlopen(f"{base}/openapi.json"))
methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
expected = sum(1 for item in spec["paths"].values() for m in item if m in methods)

with tempfile.TemporaryDirectory() as profile:
    run = subprocess.run(
        [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=15000", "--dump-dom", f"{base}/docs/",
        ],
        capture_output=True, text=True, timeout=120,
    )
dom, log = run.stdout, run.stderr
rendered = len(re.findall(r'class="opblock opblock-(?:get|put|post|delete|patch)', dom))
violations = [line for line in log.splitlines() if "Content Security Policy" in line or "Refused to" in line]
print(f"Swagger UI rendered {rendered} of {expected} operations; CSP violations: {len(violations)}")
for line in violations[:10]:
    print("  " + line)
if run.returncode != 0 or rendered != expected or violations:
    sys.exit(1)
