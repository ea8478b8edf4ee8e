"""How `epm flower` starts Flower: never open by default.

Flower shows every task's arguments (intents, fills) and can revoke tasks and shut workers down,
so it runs behind HTTP basic auth from `EPM_FLOWER_BASIC_AUTH` (`user:password`, several
comma-separated). Without it `epm flower` refuses to start, unless the operator says
`--insecure-no-auth`, which is accepted only on a loopback address (a laptop, an SSH tunnel).
The credentials reach Flower in-process, never on a command line other users can read.
"""

from __future__ import annotations

import ipaddress

AUTH_ENV = "EPM_FLOWER_BASIC_AUTH"
INSECURE_FLAG = "--insecure-no-auth"


class FlowerConfigError(ValueError):
    """Flower cannot start as asked; the message says what to set."""


def parse_basic_auth(raw: str) -> list[str]:
    """The `user:password` pairs of EPM_FLOWER_BASIC_AUTH, each with a user and a password.

    Raises:
        FlowerConfigError: an empty entry, or one without a user or a password.
    """
    entries = [e.strip() for e in raw.split(",")]
    for number, entry in enumerate(entries, start=1):
        user, sep, password = entry.partition(":")
        if not sep or not user or not password:
            # The entry itself is not repeated: it may be a password typed without its user.
            raise FlowerConfigError(
                f"{AUTH_ENV} must be user:password (several comma-separated); "
                f"entry {number} of {len(entries)} is not"
            )
    return entries


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def flower_argv(*, port: int, address: str, auth: str | None, insecure_no_auth: bool) -> list[str]:
    """Flower's arguments for `celery_app.start`, or a refusal saying what is missing.

    Raises:
        FlowerConfigError: no credentials and no `--insecure-no-auth`, malformed credentials,
            or an open Flower asked for on a non-loopback address.
    """
    if not 0 < port < 65536:
        raise FlowerConfigError(f"--port must be 1-65535, not {port}")
    argv = ["flower", f"--port={port}", f"--address={address}"]
    if auth:
        return [*argv, f"--basic-auth={','.join(parse_basic_auth(auth))}"]
    if not insecure_no_auth:
        raise FlowerConfigError(
            f"refusing to start Flower without authentication: set {AUTH_ENV}=user:password "
            f"(several comma-separated), or pass {INSECURE_FLAG} to run it open on a loopback "
            "address"
        )
    if not _is_loopback(address):
        raise FlowerConfigError(
            f"{INSECURE_FLAG} is only accepted on a loopback address (127.0.0.1, ::1, "
            f"localhost), not {address!r}: anyone reaching it could revoke tasks and stop workers"
        )
    return argv
