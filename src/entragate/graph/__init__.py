"""Identity (msal) and the Microsoft Graph named-locations client."""

from entragate.graph.client import GraphClient, NamedLocation
from entragate.graph.identity import TokenProvider

__all__ = ["GraphClient", "NamedLocation", "TokenProvider"]
