"""VAPID (RFC 8292): keys in and out, and one signed token per push service until near expiry."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from push_consumer.config import Settings
from push_consumer.vapid import (
    RENEW_BEFORE_S,
    TOKEN_LIFETIME_S,
    VapidAuthorizations,
    audience_of,
    b64url_decode,
    generate_private_key,
    load_private_key,
    private_key_text,
    public_key_text,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def token_and_key(header: str) -> tuple[str, str]:
    scheme, _, params = header.partition(" ")
    assert scheme == "vapid"
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    return fields["t"], fields["k"]


def test_a_generated_key_loads_back_from_its_text_and_from_pem() -> None:
    key = generate_private_key()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()

    for text in (private_key_text(key), pem):
        assert public_key_text(load_private_key(text)) == public_key_text(key)


@pytest.mark.parametrize(
    "text", ["not a key", "AAAA", private_key_text(generate_private_key())[:-4]]
)
def test_a_bad_private_key_is_refused_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValueError, match="VAPID_PRIVATE_KEY"):
        load_private_key(text)


def test_a_key_on_another_curve_is_refused() -> None:
    der = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="P-256"):
        load_private_key(der.decode())


def test_the_public_key_is_the_65_byte_point_browsers_take_as_application_server_key() -> None:
    raw = b64url_decode(public_key_text(generate_private_key()))

    assert len(raw) == 65
    assert raw[0] == 0x04


@pytest.mark.parametrize(
    ("endpoint", "audience"),
    [
        ("https://fcm.googleapis.com/fcm/send/abc", "https://fcm.googleapis.com"),
        ("http://127.0.0.1:8090/push/x?y=1", "http://127.0.0.1:8090"),
    ],
)
def test_the_audience_is_the_origin_of_the_endpoint(endpoint: str, audience: str) -> None:
    assert audience_of(endpoint) == audience


def test_the_token_is_es256_for_the_endpoints_origin_and_verifies_with_k() -> None:
    clock = Clock()
    vapid = VapidAuthorizations(generate_private_key(), "mailto:ops@example.com", clock=clock)

    token, k = token_and_key(vapid.header_for("https://push.example.net/wpush/abc"))
    point = b64url_decode(k)
    public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    claims = jwt.decode(
        token,
        public_key,
        algorithms=["ES256"],
        audience="https://push.example.net",
        options={"verify_exp": False},
    )

    assert k == vapid.public_key
    assert claims == {
        "aud": "https://push.example.net",
        "sub": "mailto:ops@example.com",
        "exp": int(clock.now) + TOKEN_LIFETIME_S,
    }


def test_a_token_is_reused_per_push_service_until_shortly_before_it_expires() -> None:
    clock = Clock()
    vapid = VapidAuthorizations(generate_private_key(), "mailto:ops@example.com", clock=clock)
    first = vapid.header_for("https://a.example/1")

    assert vapid.header_for("https://a.example/2") == first  # same origin: same token
    assert vapid.header_for("https://b.example/1") != first  # another push service

    clock.now += TOKEN_LIFETIME_S - RENEW_BEFORE_S - 1
    assert vapid.header_for("https://a.example/1") == first
    clock.now += 1
    assert vapid.header_for("https://a.example/1") != first


def test_an_origin_py_vapid_cannot_sign_for_is_a_value_error_the_sender_maps() -> None:
    vapid = VapidAuthorizations(generate_private_key(), "mailto:ops@example.com")

    with pytest.raises(ValueError, match=r"cannot sign a VAPID token for 'https://\[::1\]:8443'"):
        vapid.header_for("https://[::1]:8443/push/abc")


@pytest.mark.parametrize("subject", ["ops@example.com", "http://example.com", "mailto:"])
def test_a_subject_that_is_no_contact_is_refused(subject: str) -> None:
    with pytest.raises(ValidationError, match="VAPID_SUBJECT"):
        Settings(vapid_subject=subject)


def test_production_refuses_to_run_on_a_throw_away_key() -> None:
    with pytest.raises(ValidationError, match="VAPID_PRIVATE_KEY must be set"):
        Settings(app_env="prod", vapid_private_key=None)

    key = private_key_text(generate_private_key())
    production = Settings(
        app_env="prod", vapid_private_key=key, amqp_url="amqp://push:a-real-one@rabbit/rsvp"
    )
    assert production.vapid_private_key == key
