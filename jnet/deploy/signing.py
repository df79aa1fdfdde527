"""Ed25519 signatures of a bundle's manifest in OpenSSH's format (``ssh-keygen -Y sign`` / ``-Y verify``).

Why OpenSSH rather than a Python package: ``ssh-keygen`` (OpenSSH 8.1+) is on every Linux machine, Jetsons
included, and adds no dependency to the package; teams already hold and rotate SSH keys; the SSHSIG format binds
the signature to a namespace (here :data:`NAMESPACE`, so a signature made for git or another tool does not verify)
and is the one git uses for signed commits. A signer runs ``ssh-keygen -t ed25519 -f bundle_key`` once and hands
out ``bundle_key.pub``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from jnet.errors import InputError

__all__ = ["NAMESPACE", "KEY_TYPES", "require_ssh_keygen", "sign_file", "verify_signature", "read_public_key"]

NAMESPACE = "jnet-bundle"
KEY_TYPES = ("ssh-ed25519", "sk-ssh-ed25519@openssh.com")
SIGNER = "jnet-bundle-signer"


def require_ssh_keygen() -> str:
    path = shutil.which("ssh-keygen")
    if path is None:
        raise InputError("ssh-keygen not found: bundle signatures need OpenSSH 8.1 or newer (Debian/Ubuntu: apt install openssh-client).")
    return path


def read_public_key(public_key: str) -> str:
    """The ``<type> <base64>`` of an OpenSSH Ed25519 public key file; :class:`InputError` naming the file otherwise."""
    if not os.path.isfile(public_key):
        raise InputError(f"{public_key}: no such public key file (--trusted_key).")
    with open(public_key) as f:
        parts = f.read().split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise InputError(f"{public_key}: not an OpenSSH Ed25519 public key (expected a line 'ssh-ed25519 AAAA...').")
    return f"{parts[0]} {parts[1]}"


def sign_file(path: str, private_key: str) -> str:
    """Sign ``path`` with the OpenSSH private key ``private_key``; writes and returns ``path + ".sig"``."""
    ssh_keygen = require_ssh_keygen()
    if not os.path.isfile(private_key):
        raise InputError(f"{private_key}: no such private key file (--sign).")
    result = subprocess.run([ssh_keygen, "-Y", "sign", "-q", "-f", private_key, "-n", NAMESPACE, path], capture_output=True, text=True)
    if result.returncode != 0 or not os.path.isfile(path + ".sig"):
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(f"{private_key}: cannot sign with this key ({detail}).")
    return path + ".sig"


def verify_signature(path: str, signature: str, public_key: str, label: str) -> None:
    """Refuse unless ``signature`` is a valid :data:`NAMESPACE` signature of ``path`` by ``public_key``."""
    ssh_keygen = require_ssh_keygen()
    key = read_public_key(public_key)
    if not os.path.isfile(signature):
        raise InputError(f"{label}: not signed (no {os.path.basename(signature)}), but --trusted_key asks for a signature; refusing it.")
    with tempfile.TemporaryDirectory() as tmp:
        allowed = os.path.join(tmp, "allowed_signers")
        with open(allowed, "w") as f:
            f.write(f'{SIGNER} namespaces="{NAMESPACE}" {key}\n')
        with open(path, "rb") as data:
            result = subprocess.run(
                [ssh_keygen, "-Y", "verify", "-f", allowed, "-I", SIGNER, "-n", NAMESPACE, "-s", signature],
                stdin=data, capture_output=True, text=True,
            )
    if result.returncode != 0:
        raise InputError(
            f"{label}: the signature of {os.path.basename(path)} does not verify with {public_key} (signed by another key, "
            "or the manifest was changed after signing); refusing it."
        )
