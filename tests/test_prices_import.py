"""`chargeback prices import`: recorded-shape Retail Prices pages to a catalog (fixtures: see
tests/fixtures/retail_prices/README.md)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.entrypoints.cli import main
from pipeline.inputs.catalog import load_price_catalog
from pipeline.inputs.retail_prices import MeterMapping, map_meter

PAGES = Path(__file__).parent / "fixtures" / "retail_prices"
HEADER = ("model,deployment_type,region,effective_from,effective_to,currency,input_per_1m,cached_input_per_1m,"
          "output_per_1m,service_tier,audio_input_per_1m,audio_output_per_1m")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["prices", "import", *args])
    return result.exit_code, result.output


def test_meter_names_are_read_word_by_word() -> None:
    assert map_meter("gpt 4.1 mini cchd Inp glbl") == MeterMapping("gpt-4.1-mini", "cached_input", "global",
                                                                   "standard")
    assert map_meter("GPT 5 Mini Outpt Flex Glbl") == MeterMapping("gpt-5-mini", "output", "global", "flex")
    assert map_meter("5.4 mini Inp Gl") == MeterMapping("gpt-5.4-mini", "input", "global", "standard")
    assert map_meter("gpt 4o Outp DZone") == MeterMapping("gpt-4o", "output", "datazone", "standard")
    assert map_meter("gpt 4o Inp Batch") == MeterMapping("gpt-4o", "input", "batch", "standard")
    assert map_meter("o3 mini Inp Data Zone") == MeterMapping("o3-mini", "input", "datazone", "standard")
    assert map_meter("ShortCo Mystery glbl") == "neither or both of input/output in the name"


def test_import_two_pages(tmp_path: Path) -> None:
    out = tmp_path / "prices.csv"
    code, output = run(str(PAGES / "page-1.json"), str(PAGES / "page-2.json"), "--out", str(out))
    assert code == 0, output
    lines = out.read_text().splitlines()
    assert lines[0] == "# source: Azure Retail Prices API (page-1.json, page-2.json), list prices per 1M tokens"
    assert lines[1].startswith("# date: ")
    assert lines[2:] == [
        HEADER,
        "gpt-4.1-mini,global,eastus2,2025-04-15,,USD,0.4,0.1,1.6,,,",
        "gpt-4o,batch,eastus2,2025-04-15,,USD,1.25,,5,,,",
        "gpt-4o,datazone,eastus2,2025-04-15,,USD,2.75,,11,,,",
        "gpt-5-mini,global,eastus2,2025-04-15,,USD,0.125,,1,flex,,",  # the flex tier: a price row of its own
        "gpt-5-mini,global,eastus2,2025-04-15,,USD,0.25,0.025,2,,,",
        "gpt-5.4-mini,global,eastus2,2026-01-01,2026-06-01,USD,0.3,,2,,,",
        "gpt-5.4-mini,global,eastus2,2026-06-01,,USD,0.25,,1.8,,,",
    ]
    assert "skipped: Global Provisioned Managed (m-17): unit 1/Hour" in output
    assert "skipped: gpt 4o Inp glbl (m-18): type DevTestConsumption" in output
    assert "unmapped: ShortCo Mystery glbl (m-20): neither or both of input/output in the name" in output
    assert "not written: realtime-gpt-4o global eastus2 standard from 2025-04-15: no input price" in output
    catalog = load_price_catalog(out)
    assert len(catalog.prices) == 7
    flex = catalog.find("gpt-5-mini", "global", "eastus2", date(2025, 5, 1), "flex")
    assert flex is not None and flex.input_per_1m == Decimal("0.125")
    assert {p.input_per_1m for p in catalog.prices if p.model == "gpt-4.1-mini"} == {Decimal("0.4")}


def test_overrides_win_and_region(tmp_path: Path) -> None:
    overrides = tmp_path / "overrides.csv"
    overrides.write_text("meter,model,token_class,deployment_type,service_tier\n"
                         "m-19,gpt-4o-realtime,audio_input,global,\nGPT 5 Mini Inpt Flex Glbl,skip\n"
                         "GPT 5 Mini Outpt Flex Glbl,skip\n")
    out = tmp_path / "p.csv"
    code, output = run(str(PAGES / "page-1.json"), "--region", "swedencentral", "--out", str(out),
                       "--overrides", str(overrides))
    assert code == 0, output
    assert out.read_text().splitlines()[3:] == [
        "gpt-4.1-mini,global,swedencentral,2025-04-15,,USD,0.4,0.1,1.6,,,",
        "gpt-5-mini,global,swedencentral,2025-04-15,,USD,0.25,0.025,2,,,",
    ]
    assert "skipped: GPT 5 Mini Inpt Flex Glbl (m-07): skip in the overrides" in output


def test_bad_pages_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    cases = {"[1]": "not a Retail Prices page (a JSON object with `Items`)",
             "{nope": "not JSON",
             '{"NextPageLink": null}': "no `Items` list: not a Retail Prices page",
             '{"Items": [{"meterId": "x1", "meterName": "a"}]}': "item 0 (meterId x1) lacks retailPrice"}
    for number, (text, problem) in enumerate(cases.items()):
        page = tmp_path / f"bad-{number}.json"
        page.write_text(text)
        code, output = run(str(page), "--out", str(out))
        assert code == 1
        assert output.startswith(f"Error: {page}: {problem}")
        assert len(output.strip().splitlines()) == 1
        assert not out.exists()


def test_no_mapped_meter_is_an_error(tmp_path: Path) -> None:
    page = tmp_path / "only-ptu.json"
    page.write_text('{"Items": [], "NextPageLink": null}')
    out = tmp_path / "out.csv"
    code, output = run(str(page), "--out", str(out))
    assert code == 1
    assert "no meter of 0 item(s) maps to a catalog row: nothing written" in output
    assert not out.exists()


def test_flex_rows_with_a_tier_aware_loader() -> None:
    from pipeline.inputs.retail_prices import import_pages, read_page

    page = PAGES / "page-1.json"
    result = import_pages([read_page(page, page.read_bytes())])
    assert [r for r in result.rows if r["service_tier"]] == [
        {"model": "gpt-5-mini", "deployment_type": "global", "region": "eastus2", "effective_from": "2025-04-15",
         "effective_to": "", "currency": "USD", "input_per_1m": "0.125", "cached_input_per_1m": "",
         "output_per_1m": "1", "service_tier": "flex", "audio_input_per_1m": "", "audio_output_per_1m": ""}]


def test_fetch_follows_next_page_link() -> None:
    from pipeline.adapters.azure.retail_prices_api import fetch_pages, first_url

    recorded = {first_url("eastus2"): (PAGES / "page-1.json").read_bytes(),
                "https://prices.azure.com/api/retail/prices?$filter=serviceName%20eq%20%27Foundry%20Models%27&$skip=8":
                    (PAGES / "page-2.json").read_bytes()}
    asked: list[str] = []

    def get(url: str) -> bytes:
        asked.append(url)
        return recorded[url]

    pages = list(fetch_pages("eastus2", get))
    assert asked == [first_url("eastus2"), list(recorded)[1]]
    assert first_url("eastus2") == ("https://prices.azure.com/api/retail/prices?$filter=serviceName%20eq%20%27Foundry"
                                    "%20Models%27%20and%20armRegionName%20eq%20%27eastus2%27")
    assert [url for url, _ in pages] == asked


def test_unreachable_is_one_line() -> None:
    import pytest

    from pipeline.adapters.azure.retail_prices_api import http_get
    from pipeline.ports import BackendUnavailable

    with pytest.raises(BackendUnavailable, match=r"^Retail Prices API unreachable .*: http://127\.0\.0\.1:9/"):
        http_get("http://127.0.0.1:9/", timeout=2)


def test_files_or_fetch() -> None:
    code, output = run()
    assert code == 2
    assert "give FILE(s) or --fetch, not both" in output


@pytest.mark.parametrize(("name", "expected"), [
    # meter names as they appear in Retail Prices data (the spellings peers-2026.md section 4 lists)
    ("gpt 4.1 mini Inp glbl", ("gpt-4.1-mini", "input", "global", "standard")),
    ("GPT 5 Mini cchd Inpt Glbl", ("gpt-5-mini", "cached_input", "global", "standard")),
    ("5.4 mini Inp Gl", ("gpt-5.4-mini", "input", "global", "standard")),
    ("gpt 4.1 Outp DZone", ("gpt-4.1", "output", "datazone", "standard")),
    ("4o cchd Inp regnl 1M Tokens", ("gpt-4o", "cached_input", "regional", "standard")),
    ("gpt 4o mini Batch Inp Glbl", ("gpt-4o-mini", "input", "batch", "standard")),
    ("gpt 4o 0806 Outp glbl 1K Tokens", ("gpt-4o-0806", "output", "global", "standard")),  # a date version kept
])
def test_meter_names_map_by_the_rules(name: str, expected: tuple[str, str, str, str]) -> None:
    assert map_meter(name) == MeterMapping(*expected)


@pytest.mark.parametrize(("name", "reason"), [
    ("5.6 sol ShortCo Inp Std Gl", "a context-length tier (ShortCo/LongCo)"),
    ("o3 mini 0131 Batch Outp Data Zone Tokens", "data zone batch has no catalog deployment type"),
    ("Provisioned Managed Unit", "neither or both of input/output in the name"),
])
def test_meters_the_rules_cannot_read_are_listed_never_guessed(name: str, reason: str) -> None:
    result = map_meter(name)
    assert isinstance(result, str) and result.startswith(reason)
