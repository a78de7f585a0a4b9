"""Toxiproxy's HTTP API, driven by a real Toxiproxy client and by raw requests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import toxiproxy
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from ..servers import free_port


@pytest.fixture
def client(fault_proxy_server) -> toxiproxy.Toxiproxy:
    """toxiproxy-python pointed at our server (its API consumer is process-global)."""
    server = toxiproxy.Toxiproxy()
    port = int(fault_proxy_server.api_url.rsplit(":", 1)[1])
    server.update_api_consumer("127.0.0.1", port)
    return server


def _http(server, method: str, path: str, body: object = None, agent: str = "test"):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        server.api_url + path, data=data, method=method, headers={"User-Agent": agent}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_client_creates_proxies_and_toxics(client, redis_server) -> None:
    """The real client: create, list, add a toxic, read it back, destroy."""
    proxy = client.create(upstream=f"127.0.0.1:{redis_server.port}", name="redis")
    assert proxy.listen.startswith("127.0.0.1:") and proxy.enabled
    proxy.add_toxic(type="latency", attributes={"latency": 10, "jitter": 2})
    toxic = proxy.toxics()["latency_downstream"]
    assert (toxic.type, toxic.stream, toxic.toxicity) == ("latency", "downstream", 1.0)
    assert toxic.attributes == {"latency": 10, "jitter": 2}
    assert set(client.proxies()) == {"redis"}
    proxy.destroy_toxic("latency_downstream")
    assert proxy.toxics() == {}
    proxy.destroy()
    assert client.proxies() == {}


def test_client_errors_map_to_toxiproxy_status_codes(client, redis_server) -> None:
    """400 invalid toxic, 404 unknown proxy, 409 duplicate: the client's exceptions."""
    proxy = client.create(upstream=f"127.0.0.1:{redis_server.port}", name="redis")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="nonsense")
    proxy.add_toxic(type="timeout", attributes={"timeout": 0})
    with pytest.raises(ProxyExists):
        proxy.add_toxic(type="timeout")
    with pytest.raises(NotFound):
        proxy.destroy_toxic("nope")
    with pytest.raises(ProxyExists):
        client.create(upstream=f"127.0.0.1:{redis_server.port}", name="redis")


def test_client_down_reset_and_populate(client, redis_server) -> None:
    """down() disables and re-enables; reset clears toxics; populate creates."""
    upstream = f"127.0.0.1:{redis_server.port}"
    proxy = client.create(upstream=upstream, name="redis")
    proxy.add_toxic(type="latency", attributes={"latency": 1})
    with proxy.down():
        assert client.get_proxy("redis").enabled is False
    assert client.get_proxy("redis").enabled is True
    assert "latency_downstream" in proxy.toxics()  # disable keeps toxics
    client.reset()
    assert proxy.toxics() == {}
    made = client.populate([{"name": "other", "upstream": upstream, "listen": "127.0.0.1:0"}])
    assert [p.name for p in made] == ["other"]
    assert b"buttress" in client.version()


def test_raw_wire_format(fault_proxy_server, redis_server) -> None:
    """Status codes and error bodies exactly as Toxiproxy sends them."""
    upstream = f"127.0.0.1:{redis_server.port}"
    status, body = _http(fault_proxy_server, "GET", "/proxies/ghost")
    assert (status, json.loads(body)) == (404, {"error": "proxy not found", "status": 404})
    status, body = _http(fault_proxy_server, "POST", "/proxies", {"upstream": upstream})
    assert (status, json.loads(body)) == (
        400,
        {"error": "missing required field: name", "status": 400},
    )
    status, body = _http(
        fault_proxy_server, "POST", "/proxies", {"name": "p", "upstream": upstream}
    )
    assert status == 201
    assert set(json.loads(body)) == {"name", "listen", "upstream", "enabled", "toxics"}
    status, body = _http(fault_proxy_server, "POST", "/proxies/p/toxics", {"type": "slicer"})
    assert status == 400 and b"average_size" in body
    toxic = {"type": "bandwidth", "stream": "upstream", "attributes": {"rate": 100}}
    status, body = _http(fault_proxy_server, "POST", "/proxies/p/toxics", toxic)
    assert status == 200 and json.loads(body)["name"] == "bandwidth_upstream"
    status, body = _http(
        fault_proxy_server, "PATCH", "/proxies/p/toxics/bandwidth_upstream", {"toxicity": 0.5}
    )
    assert json.loads(body)["toxicity"] == 0.5 and json.loads(body)["attributes"]["rate"] == 100
    status, _ = _http(fault_proxy_server, "DELETE", "/proxies/p/toxics/bandwidth_upstream")
    assert status == 204
    status, body = _http(fault_proxy_server, "POST", "/populate", {"not": "a list"})
    assert status == 400
    assert _http(fault_proxy_server, "POST", "/reset")[0] == 204
    assert _http(fault_proxy_server, "GET", "/nowhere")[0] == 404
    assert _http(fault_proxy_server, "PUT", "/proxies")[0] == 405
    assert _http(fault_proxy_server, "GET", "/proxies", agent="Mozilla/5.0")[0] == 403
    assert _http(fault_proxy_server, "DELETE", "/proxies/p")[0] == 204


def _wait_for_port(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("buttress proxy did not start")


def test_cli_serves_the_api_from_a_config_and_stops_on_sigterm(
    tmp_path: Path, redis_server
) -> None:
    """buttress proxy --config populates; SIGTERM stops it cleanly with exit 0."""
    config = tmp_path / "proxies.json"
    listen = free_port()
    config.write_text(
        json.dumps([{"name": "redis", "listen": f"127.0.0.1:{listen}",
                     "upstream": f"127.0.0.1:{redis_server.port}"}])
    )  # fmt: skip
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "buttress.cli",
            "proxy",
            "--port",
            str(port),
            "--config",
            str(config),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_port(port, process)
        with socket.create_connection(("127.0.0.1", listen), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            assert sock.recv(16) == b"+PONG\r\n"
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert f"redis: 127.0.0.1:{listen}" in out


def test_cli_port_in_use_fails_clearly() -> None:
    """A taken API port: exit 1 with the address, nothing left running."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "buttress.cli", "proxy", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=20,
            env={**os.environ, "PYTHONWARNINGS": "error"},
        )
    assert result.returncode == 1
    assert f"listen tcp 127.0.0.1:{port}" in result.stderr


def test_cli_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    """A config that is not a JSON list is refused before anything starts."""
    config = tmp_path / "bad.json"
    config.write_text('{"name": "x"}')
    result = subprocess.run(
        [sys.executable, "-m", "buttress.cli", "proxy", "--port", "0", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert "must hold a JSON list" in result.stderr
