"""The device's side of the registry API (see cloud_stub/registry/server.py), over HTTPS."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from provisioning.system import ProvisionError


class RegistryRefused(ProvisionError):
    """The registry answered, and said no."""


def _context(ca_file: Path | None, cert: Path | None = None, key: Path | None = None):
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key else None)
    return context


def call(
    method: str,
    url: str,
    body: dict[str, Any],
    *,
    ca_file: Path | None,
    cert: Path | None = None,
    key: Path | None = None,
    timeout: float = 20.0,
) -> dict[str, Any]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(
            request, timeout=timeout, context=_context(ca_file, cert, key)
        ) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error", exc.reason)
        except (ValueError, AttributeError):
            reason = exc.reason
        raise RegistryRefused(f"registry refused ({exc.code}): {reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        why = getattr(exc, "reason", exc)
        raise ProvisionError(f"registry {url} unreachable: {why}") from exc
    except ValueError as exc:
        raise ProvisionError(f"registry {url} sent something that is not JSON") from exc


def enrol(url: str, ca_file: Path | None, token: str, device_id: str, csr: bytes):
    return call(
        "POST",
        f"{url}/v1/enrol",
        {"token": token, "device_id": device_id, "csr": csr.decode()},
        ca_file=ca_file,
    )


def put_deployment(
    url: str, ca_file: Path | None, cert: Path, key: Path, record: dict[str, Any]
) -> dict[str, Any]:
    from urllib.parse import quote

    return call(
        "PUT",
        f"{url}/v1/deployments/{quote(record['deploymentID'], safe='')}",
        record,
        ca_file=ca_file,
        cert=cert,
        key=key,
    )
