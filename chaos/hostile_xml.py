"""Hostile Salesforce Outbound Messages (XML bombs and friends) and oversized request heads.

The XML cases target what an XML parser can be made to do: expand entities exponentially
(billion laughs) or quadratically (one big entity referenced many times), fetch an external
entity or DTD (XXE: a local file, or a URL on a loopback canary the scenario listens on, so a
fetch would be seen), nest without bound, or build a huge tree. Salesforce signs nothing: its
organisation id is inside the body, so every case that must reach the parser carries the
configured organisation's id.
"""

from __future__ import annotations

import re

from chaos.hostile_corpus import BODY_LIMIT, DEEP, FIXTURES, Hostile

SF = "salesforce"
XML = "text/xml; charset=utf-8"
FIXTURE_XML = "opportunity_closed_won.xml"


def _base() -> str:
    return (FIXTURES / SF / FIXTURE_XML).read_text()


def _field(xml: str, name: str, value: str) -> str:
    """Return ``xml`` with sObject field ``sf:name`` set to ``value`` (raw XML text)."""
    return re.sub(rf"<sf:{name}>[^<]*</sf:{name}>", f"<sf:{name}>{value}</sf:{name}>", xml)


def _with_doctype(doctype: str, body: str = "&x;") -> bytes:
    """An outbound message preceded by ``doctype``, ``body`` in the opportunity's Name."""
    xml = _field(_base(), "Name", body)
    head, _, rest = xml.partition("\n")  # keep the XML declaration first
    return f"{head}\n{doctype}\n{rest}".encode()


def bombs(canary_url: str) -> list[Hostile]:
    """XML bombs and external entities: all refused (400) before anything expands or loads."""
    laughs = ['<!ENTITY x0 "lol">'] + [
        f'<!ENTITY x{i} "{f"&x{i - 1};" * 10}">' for i in range(1, 10)
    ]
    billion = "<!DOCTYPE lolz [" + "".join(laughs) + '<!ENTITY x "&x9;">]>'
    quadratic = '<!DOCTYPE q [<!ENTITY x "' + "A" * 100_000 + '">]>'
    cases = [
        ("billion_laughs", _with_doctype(billion)),
        ("quadratic_blowup", _with_doctype(quadratic, "&x;" * 50_000)),
        ("xxe_local_file", _with_doctype('<!DOCTYPE x [<!ENTITY x SYSTEM "file:///etc/passwd">]>')),
        ("xxe_canary_url", _with_doctype(f'<!DOCTYPE x [<!ENTITY x SYSTEM "{canary_url}/xxe">]>')),
        ("external_dtd", _with_doctype(f'<!DOCTYPE x SYSTEM "{canary_url}/evil.dtd">', "x")),
        (
            "parameter_entity",
            _with_doctype(f'<!DOCTYPE x [<!ENTITY % p SYSTEM "{canary_url}/p.dtd"> %p;]>', "x"),
        ),
    ]
    return [
        Hostile("xml_bomb", name, SF, body, content_type=XML, statuses=(400,),
                names=("dtd", "entity"))
        for name, body in cases
    ]  # fmt: skip


def salesforce(canary_url: str) -> list[Hostile]:
    """Every hostile Salesforce message: bombs, then broken, deep, wide and mistyped XML."""
    base = _base()

    def bad(category: str, name: str, xml: str, *names: str, statuses=(400, 422)) -> Hostile:
        return Hostile(category, name, SF, xml.encode(), content_type=XML, names=names,
                       statuses=statuses)  # fmt: skip

    xinclude = base.replace(
        "<OrganizationId>00D5w000004qGTOEA2</OrganizationId>",
        '<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
        f'href="{canary_url}/xinclude" parse="text"/>',
    )
    deep = base.replace("<sf:Name>", "<sf:Name>" + "<a>" * DEEP + "</a>" * DEEP, 1)
    wide = base.replace("<sf:Name>", "<sf:Name>" + "<a/>" * 200_000, 1)
    huge = base.replace("<sf:Name>", "<sf:Name>" + "x" * (BODY_LIMIT + 1024), 1)
    unknown = base.replace('xsi:type="sf:Opportunity"', 'xsi:type="sf:Spaceship"')
    return [
        *bombs(canary_url),
        bad("xml_bomb", "xinclude_canary", xinclude, "organizationid", statuses=(401,)),
        bad("malformed_xml", "unclosed_tag", base.replace("</sf:Name>", "", 1), "xml"),
        bad("malformed_xml", "not_soap", "<a><b>1</b></a>", "soap", "envelope"),
        bad("malformed_xml", "json_body", '{"type": "touch"}', "xml"),
        Hostile("invalid_utf8", "byte_ff", SF, _field(base, "Name", "X").encode().replace(
            b"<sf:Name>X", b"<sf:Name>\xff\xfe"), content_type=XML, names=("xml", "token")),
        bad("deep_nesting", "elements_100k", deep, "nest", "deep"),
        bad("deep_nesting", "elements_200k_wide", wide, "elements"),
        Hostile("huge_body", "over_limit_declared", SF, huge.encode(), content_type=XML,
                statuses=(413,), names=("exceeds",)),
        bad("wrong_types", "amount_text", _field(base, "Amount", "lots"), "amount"),
        bad("wrong_types", "is_won_maybe", _field(base, "IsWon", "maybe"), "iswon"),
        bad("wrong_types", "id_too_short", _field(base, "Id", "006"), "sobject.id", "id"),
        bad("float_money", "amount_too_precise", _field(base, "Amount", "47250.505"), "amount"),
        bad("float_money", "amount_1e400", _field(base, "Amount", "1e400"), "amount"),
        bad("float_money", "amount_negative", _field(base, "Amount", "-5"), "amount"),
        bad("naive_timestamp", "no_offset",
            _field(base, "LastModifiedDate", "2020-06-30T16:12:05.000"), "lastmodifieddate"),
        bad("naive_timestamp", "created_no_offset",
            _field(base, "CreatedDate", "2020-05-08T13:40:22"), "createddate"),
        Hostile("unknown_type", "sobject_spaceship", SF, unknown.encode(), content_type=XML,
                expect="ignored"),
        Hostile("media_type", "text_plain", SF, base.encode(), content_type="text/plain",
                statuses=(415,), names=("content-type",)),
        Hostile("bad_auth", "foreign_org", SF,
                base.replace("00D5w000004qGTOEA2", "00D000000000999").encode(),
                content_type=XML, statuses=(401,), names=("organizationid",)),
    ]  # fmt: skip


def head_cases(endpoint: str) -> list[Hostile]:
    """Oversized request heads (refused 431 by the server before any route runs)."""
    return [
        Hostile("oversized_headers", "one_70kb_header", endpoint, b"{}", statuses=(431,),
                names=("header",), sign=False, headers={"X-Padding": "p" * 70 * 1024}),
        Hostile("oversized_headers", "2000_headers", endpoint, b"{}", statuses=(431,),
                names=("header",), sign=False,
                headers={f"X-Pad-{i}": "p" * 40 for i in range(2000)}),
        Hostile("oversized_headers", "one_1mb_header", endpoint, b"{}", statuses=(431,),
                names=("header",), sign=False, headers={"X-Padding": "p" * 1024 * 1024}),
    ]  # fmt: skip
