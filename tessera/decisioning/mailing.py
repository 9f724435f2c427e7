"""Who an email comes from, and the unsubscribe link every email carries, bound to the consent record.

The sender, the shop's postal address and the unsubscribe page are read from the environment
(MailingSettings, one place); the demo defaults point at the reserved domain shop.example, and the
campaign report warns while they are in use.

The unsubscribe link is `$TESSERA_UNSUBSCRIBE_URL?token=<token>`. The token names the consent
record the click revokes, marts.customer_consents (customer_key x channel x purpose), without
personal data:

    <customer_pkey>.<consent channel>.<purpose>.<mac>

customer_pkey is the published pseudonymous key (tessera/privacy/pseudonym.py: the unsubscribe
page cannot link it to a person; the warehouse can, with the salt), the channel and purpose are the
message channel's consent (catalogue.CHANNELS: email -> email marketing), and mac is the first 32
hex digits of HMAC-SHA256(pseudonym salt, "unsubscribe:<pkey>:<channel>:<purpose>"). Whoever holds
the salt verifies a token (verify) and so cannot be sent a forged one for another customer.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tessera.decisioning.catalogue import CHANNELS
from tessera.privacy import pseudonym
from tessera.settings import ConfigurationError

MAC_DIGITS = 32
TOKEN = re.compile(r"^(pk_[0-9a-f]{32})\.([a-z_]+)\.([a-z_]+)\.([0-9a-f]{32})$")
DEFAULT_UNSUBSCRIBE_URL = "https://shop.example/unsubscribe"
DEFAULT_SENDER = "Tessera Shop <news@shop.example>"
DEFAULT_SHOP_NAME = "Tessera Shop"
DEFAULT_SHOP_ADDRESS = "Tessera Shop Ltd, 1 Example Street, London EC1A 1AA, United Kingdom"


class InvalidToken(ValueError):
    """An unsubscribe token that is malformed or was not made with this salt."""


class MailingSettings(BaseSettings):
    """TESSERA_UNSUBSCRIBE_URL, TESSERA_EMAIL_SENDER, TESSERA_SHOP_NAME, TESSERA_SHOP_ADDRESS."""

    model_config = SettingsConfigDict(env_prefix="TESSERA_", frozen=True, extra="ignore")

    # the page that takes the token and records the revoke (outside tessera: the shop's)
    unsubscribe_url: str = DEFAULT_UNSUBSCRIBE_URL
    # the From: of every email, "Name <address>"
    email_sender: str = DEFAULT_SENDER
    shop_name: str = DEFAULT_SHOP_NAME
    # printed in every email's footer (a commercial email names its sender's postal address)
    shop_address: str = Field(DEFAULT_SHOP_ADDRESS, min_length=1)

    @field_validator("unsubscribe_url")
    @classmethod
    def _an_http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.netloc or re.search(r"\s", url) or parts.fragment:
            raise ValueError(
                "must be an http(s) URL without spaces or #fragment, e.g. https://shop.example/unsubscribe"
            )
        return url

    @field_validator("email_sender")
    @classmethod
    def _name_and_address(cls, sender: str) -> str:
        if not re.fullmatch(r"[^<>\r\n]+ <[^<>@\s]+@[^<>@\s]+>", sender):
            raise ValueError("must read 'Name <address@domain>'")
        return sender


def load_mailing_settings() -> MailingSettings:
    try:
        return MailingSettings()
    except ValidationError as e:
        problems = "; ".join(
            f"TESSERA_{'_'.join(str(p) for p in err['loc']).upper()}={err.get('input')!r}: {err['msg']}"
            for err in e.errors()
        )
        raise ConfigurationError(problems) from e


def mac(salt: str, customer_pkey: str, channel: str, purpose: str) -> str:
    message = f"unsubscribe:{customer_pkey}:{channel}:{purpose}".encode()
    return hmac.new(salt.encode(), message, hashlib.sha256).hexdigest()[:MAC_DIGITS]


def token(salt: str, customer_pkey: str, channel: str, purpose: str = "marketing") -> str:
    return f"{customer_pkey}.{channel}.{purpose}.{mac(salt, customer_pkey, channel, purpose)}"


def verify(salt: str, value: str) -> tuple[str, str, str]:
    """(customer_pkey, consent channel, purpose) of a token made with `salt`; InvalidToken otherwise."""
    found = TOKEN.match(value or "")
    if found is None:
        raise InvalidToken("not an unsubscribe token: expected <customer_pkey>.<channel>.<purpose>.<32 hex digits>")
    pkey, channel, purpose, given = found.groups()
    if not hmac.compare_digest(given, mac(salt, pkey, channel, purpose)):
        raise InvalidToken("the token's signature does not match: not made with this deployment's salt")
    return pkey, channel, purpose


def link(base: str, value: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}{urlencode({'token': value})}"


@dataclass(frozen=True)
class Mailing:
    """What every email's context gets beside the customer: the shop (sender, name, address) and
    the salt that signs each customer's unsubscribe link."""

    salt: str
    settings: MailingSettings

    @property
    def shop(self) -> dict:
        s = self.settings
        return {"name": s.shop_name, "address": s.shop_address, "sender": s.email_sender}

    def unsubscribe(self, channel: str, customer_key: str | None = None, customer_pkey: str | None = None) -> dict:
        """The `unsubscribe` context of one message on `channel` (the message channel: email...)."""
        pkey = customer_pkey or pseudonym.pseudonym(self.salt, customer_key)
        consent_channel, purpose = CHANNELS[channel]
        return {"url": link(self.settings.unsubscribe_url, token(self.salt, pkey, consent_channel, purpose))}

    @property
    def uses_defaults(self) -> list[str]:
        """The variables still at their demo defaults (the report warns about them)."""
        s = self.settings
        defaults = {
            "TESSERA_UNSUBSCRIBE_URL": (s.unsubscribe_url, DEFAULT_UNSUBSCRIBE_URL),
            "TESSERA_EMAIL_SENDER": (s.email_sender, DEFAULT_SENDER),
            "TESSERA_SHOP_ADDRESS": (s.shop_address, DEFAULT_SHOP_ADDRESS),
        }
        return [name for name, (value, default) in defaults.items() if value == default]


def mailing_for(salt: str) -> Mailing:
    return Mailing(salt, load_mailing_settings())
