"""The naive forwarder: the Flask app a user would write without rentgate.

It forwards each order body to the upstream stub with a new ``requests.post``
(so a new connection each time) and books nothing. ``BENCH_STUB_URL`` is the
stub's root URL.
"""

from __future__ import annotations

import os

import requests
from flask import Flask, jsonify, request

STUB_URL = os.environ["BENCH_STUB_URL"].rstrip("/")

app = Flask(__name__)


@app.post("/rent_resource")
def rent_resource():  # noqa: ANN201 - kept as plain as a user would write it
    answer = requests.post(f"{STUB_URL}/rent", json=request.get_json(), timeout=10)
    answer.raise_for_status()
    return jsonify({"status": "success", **answer.json()}), 201
