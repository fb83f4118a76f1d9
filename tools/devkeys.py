"""Key material for the local stack: the dev issuer's key and a service-account key that signs
attachment URLs against the Cloud Storage emulator. Generated locally; never leaves the machine."""

from __future__ import annotations

import json
import os

# GATEHOUSE_DEV_DIR moves it (the tests run `make dev` in a directory of their own).
DEV_DIR = os.environ.get("GATEHOUSE_DEV_DIR") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".dev"
)


def new_rsa_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_service_account(
    path: str, private_pem: bytes, email: str = "signer@gatehouse-dev.iam.gserviceaccount.com"
) -> None:
    with open(path, "w") as f:
        json.dump(
            {
                "type": "service_account",
                "project_id": "gatehouse-dev",
                "private_key_id": "local",
                "private_key": private_pem.decode(),
                "client_email": email,
                "client_id": "0",
                "token_uri": "https://oauth2.googleapis.com/token",
            },
            f,
        )


def ensure(directory: str = DEV_DIR) -> tuple[str, str]:
    """(dev issuer key file, signer key file) in `directory`, created once and then reused."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    dev_key, signer = os.path.join(directory, "dev-issuer.pem"), os.path.join(directory, "signer.json")
    if not os.path.exists(dev_key):
        with open(os.open(dev_key, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(new_rsa_pem())
    if not os.path.exists(signer):
        write_service_account(signer, new_rsa_pem())
    return dev_key, signer
