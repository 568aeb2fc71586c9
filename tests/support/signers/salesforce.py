"""How Salesforce authenticates an Outbound Message, written from its documentation.

Outbound Messages carry no signature and no authentication header: the sending organization is
named by ``<OrganizationId>`` inside the SOAP body, and Salesforce recommends TLS, a client
certificate and an IP allow-list around the listener ("Considerations for Security",
developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging_security.htm).
So ``headers`` returns nothing, and ``envelope`` builds a body as Salesforce lays it out
(notifications() in the outbound messaging WSDL), with the organization id in it.
Independent of ``services``: nothing here is imported from the code under test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from xml.sax.saxutils import escape

CONTENT_TYPE = "text/xml; charset=utf-8"


def headers(
    body: bytes, *, secret: str, url: str, method: str = "POST", now: datetime
) -> dict[str, str]:
    """Return the authentication headers Salesforce sends with an Outbound Message: none."""
    return {}


def notification(notification_id: str, sobject_type: str, fields: Mapping[str, str | None]) -> str:
    """Return one ``<Notification>``: fields in the given order; None is sent as xsi:nil."""
    parts = []
    for name, value in fields.items():
        if value is None:
            parts.append(f'<sf:{name} xsi:nil="true"/>')
        else:
            parts.append(f"<sf:{name}>{escape(value)}</sf:{name}>")
    return (
        f"<Notification><Id>{escape(notification_id)}</Id>"
        f'<sObject xsi:type="sf:{sobject_type}" '
        'xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        + "".join(parts)
        + "</sObject></Notification>"
    )


def envelope(
    org_id: str,
    notifications: Sequence[str],
    *,
    action_id: str = "04k5w000000TSwMAAW",
    instance: str = "https://example.my.salesforce.com",
) -> str:
    """Return an outbound message from organization ``org_id`` holding ``notifications``."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        " <soapenv:Body>\n"
        '  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">\n'
        f"   <OrganizationId>{escape(org_id)}</OrganizationId>\n"
        f"   <ActionId>{escape(action_id)}</ActionId>\n"
        '   <SessionId xsi:nil="true"/>\n'
        f"   <EnterpriseUrl>{instance}/services/Soap/c/62.0/{org_id[:15]}</EnterpriseUrl>\n"
        f"   <PartnerUrl>{instance}/services/Soap/u/62.0/{org_id[:15]}</PartnerUrl>\n"
        + "".join(f"   {item}\n" for item in notifications)
        + "  </notifications>\n </soapenv:Body>\n</soapenv:Envelope>\n"
    )
