"""PII and secrets in candidate text.

Secrets come from two sources: the current key formats in ``generator.filters.secrets`` (cloud,
code hosting, payments, LLM API and model-hub keys, chat tokens, JWTs, private keys), and
detect-secrets' plugins (more SaaS keys, secret keywords, high-entropy strings), used directly
with entropy limits: its ad-hoc ``scan_line`` ignores the limits and flags ordinary words.

Personal data that detect-secrets does not cover is matched here with checks that cut false
positives: e-mail addresses, phone numbers, payment card numbers that pass the Luhn check, IBANs
that pass the mod-97 check, US social security numbers in their valid ranges, and IP addresses
(parsed, so version strings like 1.2.3 are not). Presidio would add NER
for names and addresses, but needs a spaCy model download; that is left out on purpose.

Evidence never repeats a secret: matches are masked to their first and last characters. Every
score records the hash of the content it screened (``generator.screening``), the item's edit if
it has one, so the export can tell a current screen from one made before an edit.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import Any

from generator.filters.secrets import FAMILIES, Finding, find_secrets, random_enough
from generator.schema import Candidate, Score
from generator.screening import SCREENED_HASH, candidate_screened_hash, screened_text

# Bounded parts (RFC 5321: 64-byte local part, 63-byte labels) keep a scan linear: unbounded
# ones backtrack quadratically over a long run like "a-a-a-..." with no "@" after it.
EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,10}[A-Za-z]{2,63}\b")
PHONE = re.compile(
    # not inside a longer run of digit groups (an order or card number is no phone number)
    r"(?<![\w.])(?<!\d[ .-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])"
    r"\d{3,4}[ .-]\d{3,4}(?![\w.])(?![ .-]\d)"
)
CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
SSN = re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b")
IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{1,4}(?![\w:])")


def luhn(number: str) -> bool:
    digits = [int(d) for d in number if d.isdigit()]
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(numeric) % 97 == 1


def mask(value: str) -> str:
    return value[0] + "*" * max(len(value) - 2, 1) + value[-1] if len(value) > 2 else "**"


def _personal(text: str) -> list[Finding]:
    found: list[tuple[int, int, Finding]] = []
    for match in EMAIL.finditer(text):
        found.append((match.start(), match.end(), Finding("email", match.group(0))))
    for match in CARD.finditer(text):
        digits = re.sub(r"\D", "", match.group(0))
        if 13 <= len(digits) <= 19 and luhn(digits) and len(set(digits)) > 1:
            found.append((match.start(), match.end(), Finding("payment card", match.group(0))))
    for match in IBAN.finditer(text):
        if iban_valid(match.group(0)):
            found.append((match.start(), match.end(), Finding("IBAN", match.group(0))))
    for match in SSN.finditer(text):
        found.append((match.start(), match.end(), Finding("US SSN", match.group(0))))
    for pattern in (IPV4, IPV6):
        for match in pattern.finditer(text):
            try:
                address = ipaddress.ip_address(match.group(0))
            except ValueError:
                continue
            if not (address.is_loopback or address.is_unspecified):
                found.append((match.start(), match.end(), Finding("IP address", match.group(0))))
    for match in PHONE.finditer(text):  # last: a card or IBAN also looks like a phone number
        digits = re.sub(r"\D", "", match.group(0))
        inside = any(start < match.end() and match.start() < end for start, end, _ in found)
        if 9 <= len(digits) <= 15 and not inside:
            found.append((match.start(), match.end(), Finding("phone number", match.group(0))))
    return [finding for _, _, finding in sorted(found, key=lambda f: f[0])]


# detect-secrets' findings that are not a key's format: a keyword's value or a URL's password
# can be a human-made word; entropy plugins and the JWT and private-key checks have their own.
_NOT_KEY_FORMATS = {
    "Secret Keyword",
    "Basic Auth Credentials",
    "Private Key",
    "JSON Web Token",
    "Base64 High Entropy String",
    "Hex High Entropy String",
}


def _placeholder(finding: Finding) -> bool:
    """A key-format plugin's match that is no key: detect-secrets checks no entropy, so
    "AKIAXXXXXXXXXXXXXXXX" and "sk_live_xxxx…" count; its GitHub and GitLab plugins report only
    the prefix ("ghp"), and the rules in ``secrets`` already report every real token of theirs."""
    if finding.kind in _NOT_KEY_FORMATS:
        return False
    if finding.kind in FAMILIES and len(finding.value) < 8:
        return True
    return not random_enough(finding.value)


def _same_secret(finding: Finding, others: list[Finding]) -> bool:
    """One key found by two detectors (a rule here, a keyword or entropy plugin there)."""
    value = finding.value
    return bool(value) and any(value in o.value or o.value in value for o in others)


# detect-secrets plugins whose formats generator.filters.secrets matches with tighter rules;
# their own regexes also backtrack quadratically ("sk-" repeated: 27 s per 100 KB line).
_SUPERSEDED = frozenset({"OpenAIDetector", "JwtTokenDetector"})

# detect-secrets scans a line at a time, and some of its regexes are superlinear in the line's
# length: a long line is scanned in overlapping windows, so a hostile 1 MB line costs linear
# time. A key is far shorter than the overlap, so none is cut in two unseen.
_WINDOW = 4096
_OVERLAP = 512


def _windows(line: str) -> Iterator[str]:
    if len(line) <= _WINDOW:
        yield line
        return
    for start in range(0, len(line) - _OVERLAP, _WINDOW - _OVERLAP):
        yield line[start : start + _WINDOW]


class PIIFilter:
    """Fails a candidate containing personal data or a secret. Evidence: kinds and masked values."""

    name = "pii"
    hard = True
    cost = 3

    def __init__(
        self, entropy_base64: float = 4.5, entropy_hex: float = 3.0, *, current_formats: bool = True
    ) -> None:
        """``current_formats=False`` leaves out ``generator.filters.secrets``: detect-secrets'
        plugins alone, as before those rules (the benchmark's baseline)."""
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

        self.current_formats = current_formats
        self.plugins: list[Any] = []
        plugin: Any
        for plugin in get_mapping_from_secret_type_to_class().values():
            if plugin.__name__ == "Base64HighEntropyString":
                self.plugins.append(plugin(limit=entropy_base64))
            elif plugin.__name__ == "HexHighEntropyString":
                self.plugins.append(plugin(limit=entropy_hex))
            elif plugin.__name__ == "IPPublicDetector":  # IPs are matched (and parsed) below
                continue
            elif not (current_formats and plugin.__name__ in _SUPERSEDED):
                self.plugins.append(plugin())

    def secrets(self, text: str) -> list[Finding]:
        """Secrets in ``text``: the current-format rules' matches, then detect-secrets' findings
        that are not the same secret again."""
        ours = [finding for _, _, finding in find_secrets(text)] if self.current_formats else []
        theirs = [f for f in self._detect_secrets(text) if not _same_secret(f, ours)]
        if self.current_formats:
            theirs = [f for f in theirs if not _placeholder(f)]
        return ours + theirs

    def _detect_secrets(self, text: str) -> list[Finding]:
        found: dict[Finding, None] = {}  # ordered, and a key seen by two windows counts once
        for number, line in enumerate(text.splitlines(), start=1):
            for window in _windows(line):
                for plugin in self.plugins:
                    for secret in plugin.analyze_line(
                        filename="candidate", line=window, line_number=number
                    ):
                        found[Finding(str(secret.type), str(secret.secret_value or ""))] = None
        return list(found)

    def findings(self, text: str) -> list[Finding]:
        return self.secrets(text) + _personal(text)

    def score(self, candidates: list[Candidate]) -> list[Score]:
        scores = []
        for candidate in candidates:
            # The content the item holds now: a reviewer's edit is screened, not the original.
            found = self.findings(screened_text(candidate))
            screened = {SCREENED_HASH: candidate_screened_hash(candidate)}
            if found:
                kinds = sorted({f.kind for f in found})
                evidence = {
                    "findings": [{"kind": f.kind, "match": mask(f.value)} for f in found[:20]],
                    **screened,
                }
                scores.append(
                    Score(
                        filter=self.name,
                        value=float(len(found)),
                        passed=False,
                        reason="contains " + ", ".join(kinds),
                        evidence=evidence,
                    )
                )
            else:
                scores.append(
                    Score(
                        filter=self.name,
                        value=0.0,
                        passed=True,
                        reason="no PII or secrets found",
                        evidence=screened,
                    )
                )
        return scores
