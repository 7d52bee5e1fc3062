"""Planted secrets and near misses, shared by tests/test_secrets.py and bench/secrets_recall.py.

Every key is a fake made here from a seeded generator, in the provider's current format (prefix,
alphabet, length; a JWT's parts are real base64url JSON), inside the kind of text a dataset row
holds: prose, a shell line, a config file, a JSON document. None is a real credential.
"""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from random import Random
from urllib.parse import quote

BASE62 = string.ascii_letters + string.digits
URLSAFE = BASE62 + "_-"
HEX = "0123456789abcdef"
LETTERS = string.ascii_letters
BASE32 = string.ascii_uppercase + "234567"


def chars(rng: Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def b64(rng: Random, n_bytes: int) -> str:
    return base64.b64encode(rng.randbytes(n_bytes)).decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pem(rng: Random, label: str, n_bytes: int = 600, escaped: bool = False) -> str:
    body = b64(rng, n_bytes)
    lines = [f"-----BEGIN {label}-----", *(body[i : i + 64] for i in range(0, len(body), 64))]
    lines.append(f"-----END {label}-----")
    return ("\\n" if escaped else "\n").join(lines)


def jwt(rng: Random, alg: str, signature_bytes: int) -> str:
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    claims = {"sub": str(rng.randrange(10**9)), "iat": 1_700_000_000 + rng.randrange(10**7)}
    payload = b64url(json.dumps(claims).encode())
    return f"{header}.{payload}.{b64url(rng.randbytes(signature_bytes))}"


@dataclass(frozen=True)
class Planted:
    """A fake secret of one format (``name``) in context; ``kind`` is the finding expected."""

    name: str
    family: str
    kind: str
    make: Callable[[Random], tuple[str, str]]  # rng -> (text, the secret in it)


def _in(template: str, secret: Callable[[Random], str]) -> Callable[[Random], tuple[str, str]]:
    def make(rng: Random) -> tuple[str, str]:
        value = secret(rng)
        return template.format(value), value

    return make


def _key(prefix: str, alphabet: str, n: int) -> Callable[[Random], str]:
    def make(rng: Random) -> str:
        return prefix + chars(rng, alphabet, n)

    return make


def _gcp_service_account(rng: Random) -> tuple[str, str]:
    key = pem(rng, "PRIVATE KEY", 1200)
    document = {
        "type": "service_account",
        "project_id": "demo-project-123",
        "private_key_id": chars(rng, HEX, 40),
        "private_key": key + "\n",
        "client_email": "loader@demo-project-123.iam.gserviceaccount.com",
    }
    text = "Why does this service account file fail to load?\n" + json.dumps(document, indent=2)
    return text, key.split("\n")[1]


def _azure_connection(rng: Random) -> tuple[str, str]:
    key = b64(rng, 64)
    text = (
        "DefaultEndpointsProtocol=https;AccountName=demostore;"
        f"AccountKey={key};EndpointSuffix=core.windows.net"
    )
    return text, key


def _azure_sas(rng: Random) -> tuple[str, str]:
    sig = quote(b64(rng, 32), safe="")
    url = (
        "https://demostore.blob.core.windows.net/reports/q3.pdf?sv=2022-11-02&ss=b&srt=o&sp=r"
        f"&se=2026-01-01T00:00:00Z&spr=https&sig={sig}"
    )
    return f"Download it from {url} before Friday.", sig


def _azure_ad(rng: Random) -> str:
    return chars(rng, BASE62, 3) + str(rng.randrange(10)) + "Q~" + chars(rng, URLSAFE + "~.", 34)


def _openai_project(prefix: str, side: int) -> Callable[[Random], str]:
    def make(rng: Random) -> str:
        return f"sk-{prefix}-" + chars(rng, URLSAFE, side) + "T3BlbkFJ" + chars(rng, URLSAFE, side)

    return make


def _slack_user(rng: Random) -> str:
    digits = "-".join(chars(rng, string.digits, n) for n in (12, 12, 13))
    return f"xoxp-{digits}-{chars(rng, HEX, 32)}"


PLANTED: tuple[Planted, ...] = (
    # cloud
    Planted("AWS access key id (AKIA)", "cloud", "AWS Access Key",
            _in("aws_access_key_id = {}", lambda r: "AKIA" + chars(r, BASE32, 16))),
    Planted("AWS temporary key id (ASIA)", "cloud", "AWS Access Key",
            _in("The STS call returned {} with a session token.",
                lambda r: "ASIA" + chars(r, BASE32, 16))),
    Planted("AWS Bedrock API key", "cloud", "AWS Bedrock API key",
            _in("export AWS_BEARER_TOKEN_BEDROCK={}", lambda r: "ABSK" + b64(r, 99))),
    Planted("Google API key (GCP, Gemini)", "cloud", "Google API key",
            _in("genai.configure(api_key={})", lambda r: "AIza" + chars(r, URLSAFE, 35))),
    Planted("GCP service-account JSON", "cloud", "GCP service-account key", _gcp_service_account),
    Planted("Azure storage connection string", "cloud", "Azure Storage Account access key",
            _azure_connection),
    Planted("Azure SAS URL", "cloud", "Azure SAS token", _azure_sas),
    Planted("Azure AD client secret", "cloud", "Azure AD client secret",
            _in("client_secret: {}", _azure_ad)),
    # code hosting
    *(
        Planted(f"GitHub token ({prefix}_)", "code hosting", "GitHub Token",
                _in("my token is {} and it stopped working",
                    _key(f"{prefix}_", BASE62, 36)))
        for prefix in ("ghp", "gho", "ghu", "ghs", "ghr")
    ),
    Planted("GitHub fine-grained PAT", "code hosting", "GitHub fine-grained token",
            _in("git clone https://x-access-token:{}@github.com/acme/app.git",
                lambda r: "github_pat_" + chars(r, BASE62, 22) + "_" + chars(r, BASE62, 59))),
    Planted("GitLab PAT", "code hosting", "GitLab Token",
            _in("PRIVATE-TOKEN: {}", lambda r: "glpat-" + chars(r, URLSAFE, 20))),
    Planted("GitLab routable PAT", "code hosting", "GitLab Token",
            _in("curl -H 'PRIVATE-TOKEN: {}' https://gitlab.example.com/api/v4/projects",
                lambda r: "glpat-" + chars(r, URLSAFE, 36) + ".01" + chars(r, HEX, 7))),
    Planted("npm token", "code hosting", "NPM tokens",
            _in("//registry.npmjs.org/:_authToken={}", lambda r: "npm_" + chars(r, BASE62, 36))),
    Planted("PyPI token", "code hosting", "PyPI Token",
            _in("password = {}",
                lambda r: "pypi-AgEIcHlwaS5vcmc" + chars(r, URLSAFE, 140))),
    # payments
    Planted("Stripe secret key", "payments", "Stripe Access Key",
            _in("stripe.api_key = {}", lambda r: "sk_live_51" + chars(r, BASE62, 97))),
    Planted("Stripe restricted key", "payments", "Stripe Access Key",
            _in("Use {} for the reporting job.", lambda r: "rk_live_" + chars(r, BASE62, 99))),
    Planted("Stripe webhook secret", "payments", "Stripe webhook secret",
            _in("STRIPE_WEBHOOK_SECRET={}", lambda r: "whsec_" + chars(r, BASE62, 32))),
    Planted("Braintree access token", "payments", "Braintree access token",
            _in("BT_TOKEN={}", lambda r: "access_token$production$" + chars(r, HEX, 16) + "$"
                + chars(r, HEX, 32))),
    Planted("Square access token", "payments", "Square access token",
            _in("square token {}", lambda r: "sq0atp-" + chars(r, URLSAFE, 22))),
    Planted("Shopify access token", "payments", "Shopify access token",
            _in("X-Shopify-Access-Token: {}", lambda r: "shpat_" + chars(r, HEX, 32))),
    # LLM APIs
    Planted("OpenAI legacy key", "LLM API", "OpenAI Token",
            _in("openai.api_key = {}",
                lambda r: "sk-" + chars(r, BASE62, 20) + "T3BlbkFJ" + chars(r, BASE62, 20))),
    Planted("OpenAI project key (sk-proj-)", "LLM API", "OpenAI Token",
            _in("Here is my key {} why do I get a 429?", _openai_project("proj", 74))),
    Planted("OpenAI service-account key (sk-svcacct-)", "LLM API", "OpenAI Token",
            _in("OPENAI_API_KEY={}", _openai_project("svcacct", 74))),
    Planted("OpenAI admin key (sk-admin-)", "LLM API", "OpenAI Token",
            _in("admin key: {}", _openai_project("admin", 58))),
    Planted("Anthropic API key", "LLM API", "Anthropic API key",
            _in("ANTHROPIC_API_KEY={}",
                lambda r: "sk-ant-api03-" + chars(r, URLSAFE, 93) + "AA")),
    Planted("Anthropic admin key", "LLM API", "Anthropic API key",
            _in("the admin key {} was pasted in the ticket",
                lambda r: "sk-ant-admin01-" + chars(r, URLSAFE, 93) + "AA")),
    Planted("Groq API key", "LLM API", "Groq API key",
            _in("client = Groq(api_key={})", lambda r: "gsk_" + chars(r, BASE62, 52))),
    Planted("xAI API key", "LLM API", "xAI API key",
            _in("XAI_API_KEY={}", lambda r: "xai-" + chars(r, BASE62, 80))),
    Planted("Perplexity API key", "LLM API", "Perplexity API key",
            _in("Authorization: Bearer {}", lambda r: "pplx-" + chars(r, BASE62, 48))),
    Planted("OpenRouter API key", "LLM API", "OpenRouter API key",
            _in("OPENROUTER_API_KEY={}", lambda r: "sk-or-v1-" + chars(r, HEX, 64))),
    Planted("LangSmith API key", "LLM API", "LangSmith API key",
            _in("LANGSMITH_API_KEY={}",
                lambda r: "lsv2_pt_" + chars(r, HEX, 32) + "_" + chars(r, HEX, 10))),
    # model hubs
    Planted("Hugging Face user token", "model hub", "Hugging Face token",
            _in("huggingface-cli login --token {}", lambda r: "hf_" + chars(r, LETTERS, 34))),
    Planted("Hugging Face organisation token", "model hub", "Hugging Face token",
            _in("HF org token {} for the mirror", lambda r: "api_org_" + chars(r, LETTERS, 34))),
    Planted("Replicate API token", "model hub", "Replicate API token",
            _in("REPLICATE_API_TOKEN={}", lambda r: "r8_" + chars(r, BASE62, 37))),
    # chat
    Planted("Slack bot token", "chat", "Slack Token",
            _in("the bot uses {}", lambda r: "xoxb-" + chars(r, string.digits, 12) + "-"
                + chars(r, string.digits, 13) + "-" + chars(r, BASE62, 24))),
    Planted("Slack user token", "chat", "Slack Token", _in("token={}", _slack_user)),
    Planted("Slack app-level token", "chat", "Slack Token",
            _in("SLACK_APP_TOKEN={}", lambda r: "xapp-1-A" + chars(r, BASE32, 10) + "-"
                + chars(r, string.digits, 13) + "-" + chars(r, HEX, 64))),
    # JWTs
    Planted("JWT (HS256)", "JWT", "JSON Web Token",
            _in("Authorization: Bearer {}", lambda r: jwt(r, "HS256", 32))),
    Planted("JWT (RS256) in prose", "JWT", "JSON Web Token",
            _in("The session cookie was {} until it expired.", lambda r: jwt(r, "RS256", 256))),
    # private keys
    *(
        Planted(f"PEM private key ({label})", "private key", "Private Key",
                _in("Fix my deploy script, the key is:\n{}\nThanks!",
                    partial(pem, label=label)))
        for label in (
            "RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "PRIVATE KEY",
            "ENCRYPTED PRIVATE KEY", "PGP PRIVATE KEY BLOCK",
        )
    ),
    Planted("PEM private key in a JSON string", "private key", "Private Key",
            _in('{{"tls_key": "{}"}}', lambda r: pem(r, "EC PRIVATE KEY", 120, escaped=True))),
)  # fmt: skip


# Text that looks like a key (a prefix, a word that starts like one, a placeholder, an ordinary
# identifier) and must not be reported as a secret.
NEAR_MISSES: dict[str, str] = {
    "OpenAI": "Our sk-project-plan covers Q3; keys start with sk-proj- and are never shared.",
    "OpenAI hyphenated name": "Name the folder sk-proj-my-long-project-name-for-the-demo-app-x.",
    "Anthropic": "Anthropic keys look like sk-ant-api03-... and are 108 characters long.",
    "Hugging Face": "from huggingface_hub import hf_hub_download; hf_hub_download('gpt2')",
    "Hugging Face identifier": "hf_transformersmodelcheckpointsdir = load()",
    "Replicate": "r8_register() is called before r8_cleanup().",
    "Groq": "The gsk_config module sets gsk_timeout = 30.",
    "xAI": "Use xai-grok-beta or xai-org/grok-1 for the comparison.",
    "AWS": "AWS key ids begin with AKIA (long-term) or ASIA (temporary); ASIA-PACIFIC region.",
    "AWS placeholder": "aws_access_key_id = AKIAXXXXXXXXXXXXXXXX",
    "Google": "The AIza prefix marks a Google API key; AIzaSy is common.",
    "GitHub": "github_pat_ tokens replace ghp_ tokens; see gh_pages_branch_name.",
    "GitHub placeholder": "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "GitLab": "Set glpat-token-name in the settings page.",
    "Stripe": "Live keys start with sk_live_ and test keys with sk_test_.",
    "Stripe placeholder": "stripe.api_key = sk_live_xxxxxxxxxxxxxxxxxxxxxxxx",
    "Slack": "xoxb- tokens are bot tokens and xoxp- tokens are user tokens.",
    "Azure": "AccountKey=<your storage key>;EndpointSuffix=core.windows.net",
    "JWT header only": "A JWT starts with eyJhbGciOiJIUzI1NiJ9 as its header.",
    "public key": "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1Lf\n-----END PUBLIC KEY-----",
    "certificate": "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBa\n"
    "-----END CERTIFICATE-----",
    "identifiers": "user_id_1234567890 = my_variable_name + request_id_abcdef; "
    "uuid 123e4567-e89b-12d3-a456-426614174000",
}
