"""Reloads are all or nothing: a configuration whose parts cannot be built changes nothing,
leaks nothing, and says why (issue 17)."""

from __future__ import annotations

import gc
from dataclasses import replace
from pathlib import Path

import aiohttp

from exporter.app import RunOptions
from exporter.config import Config, TlsConfig
from exporter.simulator import Simulation, serve
from tests.harness import exposed, one, running_exporter, sim_config, wait_until

RELOAD_OK = "modelarts_exporter_config_last_reload_successful"


def _api_requests(sim: Simulation) -> int:
    return sum(sim.stats.by_endpoint().values())


async def test_a_configuration_that_cannot_be_built_changes_nothing(tmp_path: Path) -> None:
    sim = Simulation(seed=5, services=3, dynamic=False)
    async with serve(sim) as url:
        good = sim_config(url)
        # Parsed fine, then the CA bundle was overwritten before it was used: building the
        # HTTP client is what fails (the config parser checks the file, the builder parses it).
        broken_ca = tmp_path / "ca.pem"
        broken_ca.write_text("not a certificate\n")
        next_config: list[Config] = [replace(good, tls=TlsConfig(ca_file=str(broken_ca)))]
        options = RunOptions(enable_lifecycle=True)
        async with running_exporter(good, options, loader=lambda: next_config[0]) as (base, exp):
            await wait_until(exp.ready, timeout=15, what="first cycle")
            running_http, running_poller = exp._http, exp.poller
            client_type = type(running_http)
            limiters = list(exp._limiters)
            async with (
                aiohttp.ClientSession() as http,
                http.post(base + "/-/reload") as resp,
            ):
                status, text = resp.status, await resp.text()
            assert status == 500
            assert text.startswith("cannot apply the configuration:\nTLS: "), text
            assert one(exposed(exp), RELOAD_OK) == 0
            # the running parts are untouched, and none of the new ones survived
            assert exp.config is good and exp._http is running_http
            assert exp.poller is running_poller and exp._limiters == limiters
            gc.collect()
            clients = [o for o in gc.get_objects() if type(o) is client_type]
            assert clients == [running_http]
            # still polling, with the running client
            before = _api_requests(sim)
            await wait_until(lambda: _api_requests(sim) > before + 3, what="polling goes on")

            next_config[0] = replace(good, polling=replace(good.polling, interval=0.4))
            async with aiohttp.ClientSession() as http, http.post(base + "/-/reload") as resp:
                assert (resp.status, await resp.text()) == (200, "configuration reloaded\n")
            assert one(exposed(exp), RELOAD_OK) == 1
            assert exp.config.polling.interval == 0.4 and exp._http is not running_http
            del running_http, running_poller, clients
            assert len(exp._limiters) == 1 and exp._limiters != limiters
            gc.collect()
            clients = [o for o in gc.get_objects() if type(o) is client_type]
            assert clients == [exp._http]  # the old one was closed and let go
