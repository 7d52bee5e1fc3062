"""Who may reach the review UI: the OIDC allow-list and the host names the server answers.

Pure functions over settings and claims, so each rule is tested without a server; the CLI
(``gapfill ui``) and the UI's sign-in call them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from generator.errors import ConfigError, GapfillError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")


class NotAllowedError(GapfillError):
    """An OIDC account the provider accepted but the allow-list does not. Seen by that person."""


@dataclass(frozen=True)
class OidcPolicy:
    """Who may sign in with OIDC: these exact addresses, and every address of these domains."""

    emails: frozenset[str]
    domains: frozenset[str]

    @classmethod
    def of(cls, emails: Sequence[str], domains: Sequence[str]) -> OidcPolicy:
        """The policy of the settings ``oidc_allowed_emails``/``oidc_allowed_domains``.

        Raises ConfigError when both are empty (the provider alone would decide, and a public
        provider accepts anyone) or an entry is not an address or a plain domain."""
        policy = cls(
            frozenset(_email_entry(e) for e in emails),
            frozenset(_domain_entry(d) for d in domains),
        )
        if not policy.emails and not policy.domains:
            raise ConfigError(
                "OIDC sign-in needs an allow-list: set oidc_allowed_emails and/or "
                "oidc_allowed_domains (a provider alone admits anyone it knows)"
            )
        return policy

    def admit(self, claims: Mapping[str, object]) -> str:
        """The signed-in person's e-mail (lower case) when the policy admits them.

        Raises NotAllowedError, with the reason, unless the provider says the address is
        verified and it is on the list or its domain is (exactly: no subdomains)."""
        email = claims.get("email")
        if not isinstance(email, str) or not email.strip():
            raise NotAllowedError("the provider gave no e-mail address")
        address = _address(email)
        if not _verified(claims.get("email_verified")):
            raise NotAllowedError(f"{address}: the provider has not verified this address")
        if address in self.emails or address.rpartition("@")[2] in self.domains:
            return address
        raise NotAllowedError(f"{address} is not allowed to sign in here")


def _verified(claim: object) -> bool:
    # A boolean per OIDC Core; some providers (AWS Cognito) send the string "true".
    return claim is True or (isinstance(claim, str) and claim.strip().lower() == "true")


def _address(email: str) -> str:
    """The address in lower case; only plain ASCII ``local@domain`` addresses, so no case-folding
    trick (the Kelvin sign lowers to "k") or second "@" can match another domain."""
    address = email.strip()
    local, _, domain = address.partition("@")
    plain = address.isascii() and address.isprintable() and " " not in address
    if not plain or not local or not domain or "@" in domain:
        raise NotAllowedError(f"{email!r} is not a plain e-mail address")
    return address.lower()


def _email_entry(entry: str) -> str:
    try:
        return _address(entry)
    except NotAllowedError:
        raise ConfigError(f"oidc_allowed_emails: {entry!r} is not an e-mail address") from None


def _domain_entry(entry: str) -> str:
    domain = entry.strip().lower().removeprefix("@")
    if not domain or not domain.isascii() or any(c in domain for c in "@*/: ") or "." not in domain:
        raise ConfigError(
            f"oidc_allowed_domains: {entry!r} is not a domain (exact domains only, such as "
            "example.com; no wildcards)"
        )
    return domain


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_ui_flags(host: str, *, local: bool, oidc: bool) -> None:
    """Refuse ``gapfill ui`` flags that contradict each other or expose the local mode."""
    if local and oidc:
        raise ConfigError("--local and --oidc contradict each other: choose one sign-in")
    if local and not is_loopback(host):
        raise ConfigError(
            f"--local signs everyone in as you: it serves loopback only, not --host {host} "
            "(use tokens or --oidc on a network)"
        )


def allowed_hosts(host: str, configured: Sequence[str]) -> list[str]:
    """Streamlit's ``server.allowedHosts`` for a UI bound to ``host``: the Host headers it
    answers, so that a page on another site cannot reach it by DNS rebinding.

    A loopback bind answers the loopback names; any other address or name answers itself; a
    bind to every address (0.0.0.0, ::) cannot know the names it is reached by, so it needs
    ``ui_allowed_hosts`` and raises ConfigError without them."""
    names = [n.strip().lower().rstrip(".") for n in configured if n.strip()]
    if "*" in names:
        raise ConfigError("ui_allowed_hosts: '*' would answer any Host; list the names instead")
    bind = host.strip().strip("[]").lower()
    if bind in WILDCARD_BINDS:
        if not names:
            raise ConfigError(
                f"--host {host or '(all)'} listens on every address: set ui_allowed_hosts to the "
                "names the UI is reached by (it guards against DNS rebinding)"
            )
        own = list(LOOPBACK_NAMES)
    elif is_loopback(bind):
        own = [*LOOPBACK_NAMES, bind]
    else:
        own = [bind]
    return list(dict.fromkeys([*own, *names]))
