"""HTTPS: an emulated fleet with certificates shaped like a real instance's (a leaf per
address under an intermediate, a root the client trusts), over real TLS on loopback."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from monitor.emulator import Emulator, FleetOptions
from monitor.emulator.tls import HOSTS, write_certificates
from monitor.http import transport_failure
from tests.emulator.calls import PROBE, get_table, tokens


def test_each_address_has_a_certificate_naming_it_under_an_intermediate(
    tmp_path: Path,
) -> None:
    files = write_certificates(tmp_path)
    root = x509.load_pem_x509_certificate(files.ca.read_bytes())
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for host in ("127.0.0.1", "127.0.0.2", "127.0.0.254"):
        leaf, middle = x509.load_pem_x509_certificates(files.chain(host).read_bytes())
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == [host]
        assert names.get_values_for_type(x509.DNSName) == ["localhost"]
        assert leaf.issuer == middle.subject
        assert middle.issuer == root.subject
        leaf.verify_directly_issued_by(middle)
        middle.verify_directly_issued_by(root)
    assert len(HOSTS) == 254
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    with pytest.raises(ValueError, match=r"no certificate for '10\.0\.0\.1'"):
        files.chain("10.0.0.1")


@pytest.mark.parametrize("addressing", ["hosts", "prefix"])
async def test_a_client_that_trusts_the_certificate_talks_https(
    tmp_path: Path, addressing: str
) -> None:
    files = write_certificates(tmp_path)
    options = FleetOptions(instances=3, addressing=addressing, max_sockets=2)
    async with Emulator(options, tls=files) as emu:
        trusting = ssl.create_default_context(cafile=files.ca)
        connector = aiohttp.TCPConnector(ssl=trusting)
        async with aiohttp.ClientSession(connector=connector) as session:
            for instance in emu.instances:
                assert instance.base_url.startswith("https://127.0.0.")
                granted = await tokens(session, instance)
                status, _, _ = await get_table(session, instance, PROBE, granted["access_token"])
                assert status == 200
        assert emu.totals().table_requests == {200: 3}


async def test_a_client_that_does_not_is_a_tls_failure(tmp_path: Path) -> None:
    files = write_certificates(tmp_path)
    async with (
        Emulator(FleetOptions(instances=1), tls=files) as emu,
        aiohttp.ClientSession() as session,  # the system's trust store only
    ):
        with pytest.raises(aiohttp.ClientError) as caught:
            await get_table(session, emu.instances[0], PROBE, "no-token")
    assert transport_failure(caught.value) == "tls"
