"""The appliance's Prometheus metrics: counting, rendering and the scrape endpoint."""

from __future__ import annotations

import timeit

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance.metrics import CONTENT_TYPE, MODES, ROUTES, Metrics, start_metrics_server


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the rendered text, keyed by (name, labels): parses what a scraper would see."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, frozenset(labels.items()))]


def make() -> Metrics:
    return Metrics(site="par1", serial="PA-0001", version="1.2.3", process_metrics=False)


def test_every_route_is_exported_at_zero_from_the_start() -> None:
    m = make()
    for route in ROUTES:
        assert value(m, "appliance_calls_active", route=route) == 0
        assert value(m, "appliance_calls_total", route=route) == 0


def test_call_lifecycle_moves_active_gauge_and_total_counter() -> None:
    m = make()
    m.call_started("cloud")
    m.call_started("cloud")
    m.call_started("pri")
    assert value(m, "appliance_calls_active", route="cloud") == 2
    assert value(m, "appliance_calls_total", route="cloud") == 2
    assert value(m, "appliance_calls_active", route="pri") == 1
    m.call_ended("cloud")
    assert value(m, "appliance_calls_active", route="cloud") == 1
    assert value(m, "appliance_calls_total", route="cloud") == 2


def test_failover_moves_a_live_call_between_routes() -> None:
    m = make()
    m.call_started("cloud")
    m.call_routed("cloud", "ivr")
    assert value(m, "appliance_calls_active", route="cloud") == 0
    assert value(m, "appliance_calls_active", route="ivr") == 1
    assert value(m, "appliance_calls_total", route="ivr") == 1
    assert value(m, "appliance_calls_total", route="cloud") == 1
    assert value(m, "appliance_call_failovers_total", from_route="cloud", to_route="ivr") == 1
    m.call_ended("ivr")
    assert value(m, "appliance_calls_active", route="ivr") == 0


def test_unknown_route_is_a_caller_bug() -> None:
    m = make()
    with pytest.raises(ValueError, match="route"):
        m.call_started("moon")
    with pytest.raises(ValueError, match="route"):
        m.call_ended("moon")
    with pytest.raises(ValueError, match="route"):
        m.call_routed("cloud", "moon")
    # A rejected call does not half-count.
    assert value(m, "appliance_calls_active", route="cloud") == 0


def test_requests_by_direction_and_method_with_unknown_methods_grouped() -> None:
    m = make()
    m.request("in", "INVITE")
    m.request("in", "INVITE")
    m.request("out", "BYE")
    m.request("in", "FROBNICATE")
    m.request("in", "invite")  # methods are case-sensitive (RFC 3261 §7.1): not an INVITE
    assert value(m, "appliance_sip_requests_total", direction="in", method="INVITE") == 2
    assert value(m, "appliance_sip_requests_total", direction="out", method="BYE") == 1
    assert value(m, "appliance_sip_requests_total", direction="in", method="other") == 2
    methods = {dict(k[1])["method"] for k in samples(m) if k[0] == "appliance_sip_requests_total"}
    assert "FROBNICATE" not in methods
    assert "invite" not in methods
    with pytest.raises(ValueError, match="direction"):
        m.request("sideways", "INVITE")


def test_responses_by_status_class() -> None:
    m = make()
    m.response("out", 100)
    m.response("out", 180)
    m.response("out", 200)
    m.response("in", 486)
    m.response("in", 699)
    assert value(m, "appliance_sip_responses_total", direction="out", **{"class": "1xx"}) == 2
    assert value(m, "appliance_sip_responses_total", direction="out", **{"class": "2xx"}) == 1
    assert value(m, "appliance_sip_responses_total", direction="in", **{"class": "4xx"}) == 1
    assert value(m, "appliance_sip_responses_total", direction="in", **{"class": "6xx"}) == 1
    assert value(m, "appliance_sip_responses_total", direction="in", **{"class": "2xx"}) == 0
    for bad in (99, 700, 0, -200):
        with pytest.raises(ValueError, match="status"):
            m.response("out", bad)
    with pytest.raises(ValueError, match="direction"):
        m.response("up", 200)


def test_rejects_prebound_new_and_bounded() -> None:
    m = make()
    assert value(m, "appliance_sip_rejects_total", reason="rate_limited") == 0
    m.reject("rate_limited")
    m.reject("tls_handshake")
    m.reject("tls_handshake")
    assert value(m, "appliance_sip_rejects_total", reason="rate_limited") == 1
    assert value(m, "appliance_sip_rejects_total", reason="tls_handshake") == 2
    for bad in ("Bad Reason", "x" * 80, "", "1abc", "a-b"):
        with pytest.raises(ValueError, match="snake_case"):
            m.reject(bad)
    for i in range(200):
        m.reject(f"reason_{i}")
    reasons = {dict(k[1])["reason"] for k in samples(m) if k[0] == "appliance_sip_rejects_total"}
    assert len(reasons) <= 65
    assert value(m, "appliance_sip_rejects_total", reason="other") > 0


def test_gauges_mode_and_info() -> None:
    m = make()
    for name in MODES:
        assert value(m, "appliance_mode", mode=name) == 0
    m.set_mode("SURVIVABLE")
    assert {name: value(m, "appliance_mode", mode=name) for name in MODES} == {
        "ONLINE": 0,
        "SUSPECT": 0,
        "SURVIVABLE": 1,
        "RECOVERING": 0,
    }
    m.set_mode("RECOVERING")
    assert value(m, "appliance_mode", mode="SURVIVABLE") == 0
    assert value(m, "appliance_mode", mode="RECOVERING") == 1
    with pytest.raises(ValueError, match="mode"):
        m.set_mode("online")

    m.transaction_started()
    m.transaction_started()
    m.transaction_ended()
    assert value(m, "appliance_sip_transactions_active") == 1
    m.set_transactions_active(40)
    assert value(m, "appliance_sip_transactions_active") == 40
    m.set_registrar_bindings(17)
    assert value(m, "appliance_registrar_bindings") == 17
    assert value(m, "appliance_info", site="par1", serial="PA-0001", version="1.2.3") == 1


def test_media_relay_metrics() -> None:
    m = make()
    assert value(m, "appliance_media_relayed_calls_active") == 0
    assert value(m, "appliance_media_packets_total", direction="in") == 0
    m.set_media(relayed_calls=3, workers=2, running=1, restarts=4)
    assert value(m, "appliance_media_relayed_calls_active") == 3
    assert value(m, "appliance_media_workers") == 2
    assert value(m, "appliance_media_workers_running") == 1
    assert value(m, "appliance_media_worker_restarts_total") == 4
    m.media_timeout()
    assert value(m, "appliance_media_timeouts_total") == 1
    assert value(m, "appliance_media_one_way_total") == 0
    m.media_timeout(one_way=True)
    assert value(m, "appliance_media_timeouts_total") == 2
    assert value(m, "appliance_media_one_way_total") == 1
    m.media_stream_totals("in", 100, 16000, 2)
    m.media_stream_totals("in", 50, 8000, -1)  # duplicates: RFC 3550 loss below zero counts as none
    m.media_stream_totals("out", 150, 24000, 0)
    assert value(m, "appliance_media_packets_total", direction="in") == 150
    assert value(m, "appliance_media_octets_total", direction="in") == 24000
    assert value(m, "appliance_media_packets_lost_total", direction="in") == 2
    assert value(m, "appliance_media_packets_total", direction="out") == 150
    with pytest.raises(ValueError, match="direction"):
        m.media_stream_totals("sideways", 1, 1, 0)
    m.worker_stats(0, 1000, (("latch", 3), ("srtp-auth", 1), ("Bad Label", 9)))
    m.worker_stats(0, 1500, (("latch", 5),))
    assert value(m, "appliance_media_worker_packets_relayed_total", worker="0") == 1500
    assert value(m, "appliance_media_worker_packets_dropped_total", worker="0", reason="latch") == 5
    assert value(m, "appliance_media_worker_packets_dropped_total", worker="0", reason="srtp-auth") == 1
    assert ("appliance_media_worker_packets_dropped_total",
            frozenset({("worker", "0"), ("reason", "Bad Label")})) not in samples(m)  # fmt: skip


def test_rendered_text_names_types_and_help() -> None:
    text = make().render().decode()
    assert "# TYPE appliance_calls_total counter" in text
    assert "# TYPE appliance_calls_active gauge" in text
    assert "# TYPE appliance_sip_responses_total counter" in text
    assert "# HELP appliance_mode " in text


def test_instances_do_not_share_state() -> None:
    a, b = make(), make()
    a.call_started("ivr")
    assert value(a, "appliance_calls_total", route="ivr") == 1
    assert value(b, "appliance_calls_total", route="ivr") == 0


def test_process_metrics_are_optional() -> None:
    assert "process_open_fds" in Metrics(process_metrics=True).render().decode()
    assert "process_open_fds" not in make().render().decode()


def test_response_hot_path_cost() -> None:
    """``response("out", 200)`` stays far below a prometheus_client child increment (~400 ns).

    The bound is loose so that a slow CI machine does not fail it; it catches a return to per-call
    allocation or locking, which costs several times more.
    """
    m = make()
    n = 200_000
    best = min(timeit.repeat(lambda: m.response("out", 200), number=n, repeat=5)) / n
    assert best < 2e-6
    assert value(m, "appliance_sip_responses_total", direction="out", **{"class": "2xx"}) == n * 5


async def test_scrape_over_http_on_loopback() -> None:
    m = make()
    m.call_started("agents")
    server = await start_metrics_server(m, "127.0.0.1", 0)
    try:
        assert server.port > 0
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{server.port}/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == CONTENT_TYPE
                assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                body = await resp.text()
            assert 'appliance_calls_active{route="agents"} 1.0' in body
            m.call_ended("agents")
            async with session.get(f"http://127.0.0.1:{server.port}/metrics") as resp:
                assert 'appliance_calls_active{route="agents"} 0.0' in await resp.text()
            async with session.get(f"http://127.0.0.1:{server.port}/") as resp:
                assert resp.status == 404
            async with session.get(f"http://127.0.0.1:{server.port}/metrics/x") as resp:
                assert resp.status == 404
            async with session.post(f"http://127.0.0.1:{server.port}/metrics") as resp:
                assert resp.status == 405
    finally:
        await server.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{server.port}/metrics"):
            pass


async def test_bind_failure_raises_and_leaves_nothing_running() -> None:
    m = make()
    first = await start_metrics_server(m, "127.0.0.1", 0)
    try:
        with pytest.raises(OSError):
            await start_metrics_server(m, "127.0.0.1", first.port)
    finally:
        await first.close()
