"""Secrets in the formats that leak today: cloud, code hosting, payments, LLM API and model-hub
keys, chat tokens, JWTs and private keys.

detect-secrets' plugins (used by ``generator.filters.pii``) date from before most of these formats:
they miss OpenAI project keys (``sk-proj-…`` with ``-`` and ``_`` in the key), Anthropic, Groq,
Hugging Face and Replicate keys, fine-grained GitHub tokens, and private keys whose PEM label is
not one of seven fixed strings. The rules below add them. The formats come from the providers'
documentation and gitleaks' rule set (config/gitleaks.toml): a distinctive prefix, the key's
alphabet and length, and, where the format defines one, a structural check (a JWT's header is
JSON naming its ``alg``). Providers whose keys have no prefix (Mistral, Cohere, Together) are left
out on purpose: a bare 32- or 40-character string cannot be told from a hash or an identifier.

Each match must also look random: placeholders such as ``sk_live_xxxxxxxxxxxxxxxxxxxxxxxx`` and
``AKIAAAAAAAAAAAAAAAAA`` have too little entropy to be keys.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import orjson


@dataclass(frozen=True)
class Finding:
    """One match: what it is (``kind``) and the matched text (masked before it is shown)."""

    kind: str
    value: str


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value``'s own character distribution."""
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def random_enough(value: str) -> bool:
    """Random keys of 20+ characters score above 3.5 bits per character; placeholders and
    repeated characters score far below 3 (gitleaks uses 3 for most key rules too)."""
    return shannon_entropy(value) >= 3.0


def mixed_random(value: str) -> bool:
    """Random enough, with upper- and lower-case letters and a digit: a random key of 36+
    base62 characters lacks one of them with a chance under 1 in 500, while a long hyphenated
    name ("sk-proj-my-long-project-name-...") has no capital or digit."""
    return (
        random_enough(value)
        and any(c.isupper() for c in value)
        and any(c.islower() for c in value)
        and any(c.isdigit() for c in value)
    )


def mixed_case(value: str) -> bool:
    """Random enough, with both cases after the prefix (``hf_``): random letters, not a
    lower-case identifier."""
    body = value.rsplit("_", 1)[-1]
    return random_enough(body) and body != body.lower() and body != body.upper()


def jwt_header_valid(token: str) -> bool:
    """The first part of a JWT is base64url JSON with an ``alg`` member (RFC 7515 4.1.1)."""
    header = token.split(".", 1)[0]
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(decoded, dict) and isinstance(decoded.get("alg"), str)


def _always(_value: str) -> bool:
    return True


@dataclass(frozen=True)
class SecretRule:
    """A key format: its pattern (group 1 is the secret when the pattern has a group) and a check
    on the matched secret."""

    kind: str
    family: str
    pattern: re.Pattern[str]
    check: Callable[[str], bool] = random_enough

    def matches(self, text: str) -> list[tuple[int, int, Finding]]:
        found = []
        group = 1 if self.pattern.groups else 0
        for match in self.pattern.finditer(text):
            value = match.group(group)
            if self.check(value):
                found.append((match.start(group), match.end(group), Finding(self.kind, value)))
        return found


# A key is not part of a longer token: nothing from its alphabet right before or after it.
_START = r"(?<![A-Za-z0-9_-])"
_END = r"(?![A-Za-z0-9_-])"


def _token(body: str) -> re.Pattern[str]:
    return re.compile(_START + body + _END)


CLOUD = "cloud"
CODE = "code hosting"
PAYMENTS = "payments"
LLM = "LLM API"
HUB = "model hub"
CHAT = "chat"
JWT = "JWT"
PRIVATE_KEY = "private key"

# Kind names follow detect-secrets' where it has the same kind ("AWS Access Key", "GitHub
# Token", ...), so a reason reads the same whichever detector found the key first.
RULES: tuple[SecretRule, ...] = (
    # -- cloud ---------------------------------------------------------------------------------
    # Access key ids: a four-letter type (AKIA long-term, ASIA temporary STS, ...) and 16
    # base32 characters.
    SecretRule("AWS Access Key", CLOUD, _token(r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}")),
    SecretRule("AWS Bedrock API key", CLOUD, _token(r"ABSK[A-Za-z0-9+/]{109,269}={0,2}")),
    # GCP and Google AI Studio (Gemini) share one format: "AIza" and 35 characters.
    SecretRule("Google API key", CLOUD, _token(r"AIza[0-9A-Za-z_-]{35}")),
    # A service-account JSON file: the key sits in "private_key", its newlines escaped.
    SecretRule(
        "GCP service-account key",
        CLOUD,
        re.compile(
            r'"private_key"\s*:\s*"(-----BEGIN (?:RSA )?PRIVATE KEY-----(?:\\n)+'
            r"[A-Za-z0-9+/=]{40,})"
        ),
    ),
    # 64 random bytes in base64: 86 characters and "==".
    SecretRule(
        "Azure Storage Account access key",
        CLOUD,
        re.compile(r"AccountKey=([A-Za-z0-9+/]{86}==)"),
    ),
    SecretRule(
        "Azure SAS token",
        CLOUD,
        re.compile(r"\bsv=\d{4}-\d{2}-\d{2}&[^\s\"'<>]*?\bsig=([A-Za-z0-9%+/]{40,}(?:%3D|=)*)"),
    ),
    # Entra ID (Azure AD) client secrets: 3 characters, a digit, "Q~", then 31 to 34.
    SecretRule(
        "Azure AD client secret",
        CLOUD,
        re.compile(r"(?<![A-Za-z0-9_~.-])([A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.-]{31,34})(?![\w~.-])"),
    ),
    # -- code hosting and package registries ---------------------------------------------------
    SecretRule("GitHub Token", CODE, _token(r"gh[pousr]_[A-Za-z0-9]{36}")),
    SecretRule(
        "GitHub fine-grained token", CODE, _token(r"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}")
    ),
    # Personal, deploy, runner, feed, ... tokens; the routable form ends in ".<2><7>".
    SecretRule(
        "GitLab Token",
        CODE,
        _token(
            r"(?:glpat|gldt|glrt|glft|glsoat|glptt|glcbt|gloas|glimt)-[A-Za-z0-9_-]{20,300}"
            r"(?:\.[0-9a-z]{2}[0-9a-z]{7})?"
        ),
    ),
    SecretRule("NPM tokens", CODE, _token(r"npm_[A-Za-z0-9]{36}")),
    SecretRule("PyPI Token", CODE, _token(r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}")),
    # -- payments ------------------------------------------------------------------------------
    # Secret and restricted keys; newer ones run to 100+ characters.
    SecretRule(
        "Stripe Access Key", PAYMENTS, _token(r"(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{24,247}")
    ),
    SecretRule("Stripe webhook secret", PAYMENTS, _token(r"whsec_[A-Za-z0-9+/]{32,}")),
    SecretRule(
        "Braintree access token",
        PAYMENTS,
        _token(r"access_token\$(?:production|sandbox)\$[0-9a-z]{16}\$[0-9a-f]{32}"),
    ),
    SecretRule("Square access token", PAYMENTS, _token(r"sq0(?:atp|csp)-[A-Za-z0-9_-]{22,43}")),
    SecretRule("Shopify access token", PAYMENTS, _token(r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}")),
    # -- LLM APIs ------------------------------------------------------------------------------
    # Legacy user keys and project/service-account/admin keys carry "T3BlbkFJ" (base64 of
    # "OpenAI") in the middle; project keys also hold "-" and "_", which detect-secrets misses.
    SecretRule("OpenAI Token", LLM, _token(r"sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}")),
    SecretRule(
        "OpenAI Token",
        LLM,
        _token(r"sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}"),
    ),
    # The same prefixes without the marker, should a key come without it: long and random.
    SecretRule(
        "OpenAI Token", LLM, _token(r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,}"), mixed_random
    ),
    SecretRule(
        "Anthropic API key",
        LLM,
        _token(r"sk-ant-(?:api|admin|oat|ort|sid)\d{2}-[A-Za-z0-9_-]{80,}"),
    ),
    SecretRule("Groq API key", LLM, _token(r"gsk_[A-Za-z0-9]{52}")),
    SecretRule("xAI API key", LLM, _token(r"xai-[A-Za-z0-9]{80}")),
    SecretRule("Perplexity API key", LLM, _token(r"pplx-[A-Za-z0-9]{48}")),
    SecretRule("OpenRouter API key", LLM, _token(r"sk-or-v1-[a-f0-9]{64}")),
    SecretRule("LangSmith API key", LLM, _token(r"lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}")),
    # -- model hubs ----------------------------------------------------------------------------
    SecretRule("Hugging Face token", HUB, _token(r"(?:hf_|api_org_)[A-Za-z]{34}"), mixed_case),
    SecretRule("Replicate API token", HUB, _token(r"r8_[A-Za-z0-9]{37}")),
    # -- chat ----------------------------------------------------------------------------------
    # Bounded groups: "(?:\d+-)+" then "(?:-[A-Za-z0-9]+)*" split a run of digit groups in
    # exponentially many ways ("xoxb-" + "1-" * 50,000 took 58 s).
    SecretRule(
        "Slack Token",
        CHAT,
        _token(r"xox[abposr]-\d{1,15}(?:-\d{1,15}){0,3}-[A-Za-z0-9]{8,64}(?:-[A-Za-z0-9]{1,64})?"),
    ),
    SecretRule("Slack Token", CHAT, _token(r"xoxe(?:\.xox[bp])?-\d-[A-Za-z0-9]{140,}")),
    SecretRule("Slack Token", CHAT, _token(r"xapp-\d-[A-Z0-9]+-\d+-[a-z0-9]+")),
    # -- JWTs and private keys -----------------------------------------------------------------
    # Three base64url parts; the header ("eyJ" is '{"') must decode to JSON naming its alg.
    SecretRule(
        "JSON Web Token",
        JWT,
        _token(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{16,}"),
        jwt_header_valid,
    ),
    # Any PEM private key (RSA, EC, DSA, OPENSSH, ENCRYPTED, PGP ... BLOCK) with its body, the
    # newlines real or escaped (as in JSON).
    SecretRule(
        "Private Key",
        PRIVATE_KEY,
        re.compile(
            r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----"
            r"(?:\s|\\n|\\r|[A-Za-z-]+: [^\n\\]*)+[A-Za-z0-9+/=]{40,}"
        ),
        _always,
    ),
    SecretRule(
        "Private Key",
        PRIVATE_KEY,
        re.compile(r"PuTTY-User-Key-File-[23]: [\w-]+(?:\s|\\n)+Encryption: \S+"),
        _always,
    ),
)

FAMILIES: dict[str, str] = {rule.kind: rule.family for rule in RULES}


def find_secrets(text: str) -> list[tuple[int, int, Finding]]:
    """Every rule's matches in ``text`` as (start, end, finding), in order; where two rules match
    overlapping text, the one starting first (then the longer) is kept."""
    found = sorted(
        (span for rule in RULES for span in rule.matches(text)), key=lambda s: (s[0], -s[1])
    )
    kept: list[tuple[int, int, Finding]] = []
    for span in found:
        if not kept or span[0] >= kept[-1][1]:
            kept.append(span)
    return kept
