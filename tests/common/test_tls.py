"""TLS is a settings switch: a server with a certificate serves only TLS clients."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import urllib.error
import urllib.request

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forgeline.client.channel import ChannelOptions, open_channel
from forgeline.common.settings import TlsSettings
from forgeline.registry.service import create_server
from tests.conftest import serving

pytestmark = pytest.mark.integration


@pytest.fixture
def certificate(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TlsSettings(str(cert_file), str(key_file), str(cert_file))


def test_tls_server_answers_tls_clients_only(settings_for, certificate):
    settings = settings_for("registry", tls=certificate, token="t")
    with serving(lambda: create_server(settings)[0]) as server:
        options = ChannelOptions(tls=True, ca_file=certificate.ca_file, token="t", retries=False)
        secure = health_pb2_grpc.HealthStub(open_channel(server.address, options))
        resp = secure.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        plain = health_pb2_grpc.HealthStub(
            open_channel(server.address, ChannelOptions(retries=False))
        )
        with pytest.raises(grpc.RpcError) as info:
            plain.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_tls_service_serves_its_metrics_over_tls(settings_for, certificate):
    settings = settings_for("registry", tls=certificate)
    with serving(lambda: create_server(settings)[0]) as server:
        url = f"https://127.0.0.1:{server.server.metrics_port}/metrics"
        context = ssl.create_default_context(cafile=certificate.ca_file)
        with urllib.request.urlopen(url, context=context, timeout=10) as reply:
            assert b"forgeline_rpc_started_total" in reply.read()
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP is refused
            urllib.request.urlopen(url.replace("https", "http"), timeout=5)
