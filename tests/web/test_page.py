"""The status page's HTML over HTTP (what a browser shows is checked in test_browser.py)."""

from __future__ import annotations

import re

import pytest

from monitor.model import State
from monitor.web.html import CSP
from monitor.web.page import duration_words, render_page
from tests.web.conftest import READ, Client, bearer
from tests.web.fakes import T0, make_status

R = bearer(READ)


async def get_page(client: Client, path: str = "/") -> str:
    response = await client.get(path, headers=R)
    assert response.status == 200
    assert response.content_type == "text/html"
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    return await response.text()


async def test_groups_are_worst_first_and_empty_groups_are_left_out(client: Client) -> None:
    page = await get_page(client)
    sections = re.findall(r'<section id="([a-z_]+)" class="group">', page)
    assert sections == ["credentials_expired", "failing", "pending", "healthy"]


async def test_the_page_needs_nothing_from_elsewhere(client: Client) -> None:
    page = await get_page(client)
    assert "<script" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert 'name="viewport"' in page
    assert '<meta http-equiv="refresh" content="30; url=/">' in page


async def test_cards_say_how_long_and_why(client: Client) -> None:
    page = await get_page(client)
    card = re.search(
        r'<li class="card s-credentials_expired" data-id="acme-prod">'
        r'.*?(?=<li class="card|</section>)',
        page,
    )
    assert card is not None
    text = card.group(0)
    assert "for <time" in text
    assert ">2 h 5 min</time>" in text
    assert "auth_rejected: refresh rejected: ***" in text
    assert "died 1 h ago" in text
    assert 'href="/connect/acme-prod">Re-authorize</a>' in text


async def test_re_authorize_only_where_the_grant_allows(client: Client) -> None:
    page = await get_page(client)
    assert page.count('href="/connect/acme-prod"') == 2  # the card and the expiring list
    assert 'href="/connect/acme-test"' in page  # expiring in 2 days, authorization_code
    assert 'href="/connect/globex-prod"' not in page  # password grant: fix the config


async def test_expiring_refresh_tokens_soonest_first(client: Client) -> None:
    page = await get_page(client)
    section = re.search(r'<section id="expiring">.*?</section>', page)
    assert section is not None
    assert re.findall(r"<li><b>([a-z-]+)</b>", section.group(0)) == ["acme-prod", "acme-test"]
    assert "dies in 2 d" in section.group(0)


async def test_label_filter(client: Client) -> None:
    page = await get_page(client, "/?label=customer:acme")
    assert re.findall(r'data-id="([a-z-]+)"', page) == ["acme-prod", "acme-test"]
    assert '<option value="customer:acme" selected>' in page
    assert 'content="30; url=/?label=customer%3Aacme"' in page
    assert "clear filter" in page
    nobody = await get_page(client, "/?label=customer:nobody")
    assert "No connections to show." in nobody


async def test_a_slack_link_shows_its_one_connection(client: Client) -> None:
    page = await get_page(client, "/?connection=acme-prod")  # what notify.routing links to
    assert re.findall(r'data-id="([a-z-]+)"', page) == ["acme-prod"]
    assert "only acme-prod" in page
    assert 'content="30; url=/?connection=acme-prod"' in page
    both = await get_page(client, "/?label=customer:acme&connection=acme-test")
    assert re.findall(r'data-id="([a-z-]+)"', both) == ["acme-test"]
    gone = await get_page(client, "/?connection=removed-meanwhile")
    assert "No connections to show." in gone


async def test_a_bad_label_filter_is_a_400_page(client: Client) -> None:
    response = await client.get("/?label=nocolon", headers={**R, "Accept": "text/html"})
    assert response.status == 400
    assert "key:value" in await response.text()


async def test_everything_from_outside_is_escaped(client: Client) -> None:
    hostile = make_status(
        "evil-1",
        state=State.FAILING,
        labels={"team": "<script>alert(1)</script>"},
        last_error='"><img src=x onerror=alert(1)>',
    )
    page = render_page([hostile], now=T0, label=None, can_reauthorize=lambda _: False)
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;" in page


def test_big_groups_are_cut_with_a_note() -> None:
    statuses = [make_status(f"c-{i:04d}") for i in range(250)]
    page = render_page(statuses, now=T0, label=None, can_reauthorize=lambda _: False)
    assert page.count('<li class="card') == 100
    assert "Showing 100 of 250" in page
    assert "<details><summary>Show them</summary>" in page  # healthy: behind a click


async def test_a_few_healthy_connections_are_shown_open(client: Client) -> None:
    page = await get_page(client)
    assert "<details>" not in page


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "0 s"),
        (59.9, "59 s"),
        (60, "1 min"),
        (3599, "59 min"),
        (3600, "1 h"),
        (7500, "2 h 5 min"),
        (47 * 3600, "47 h"),
        (48 * 3600, "2 d"),
        (50 * 3600, "2 d 2 h"),
        (-5, "0 s"),
    ],
)
def test_duration_words(seconds: float, words: str) -> None:
    assert duration_words(seconds) == words
