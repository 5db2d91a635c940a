"""Price catalog validation and `chargeback prices check FILE`: every problem listed at once,
unit mistakes (per 1K vs per 1M) caught, the deployments and the traffic a catalog leaves
unpriced, and the shipped catalog itself."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pipeline.domain.pricing import CatalogError
from pipeline.entrypoints.cli import main
from pipeline.inputs.catalog import check_price_catalog, load_price_catalog, shipped_catalog_path
from tests.conftest import WriteFile
from tests.factories import event, jsonl, usage

HEADER = ("model,deployment_type,region,effective_from,effective_to,currency,"
          "input_per_1m,cached_input_per_1m,output_per_1m")
SOURCED = "# source: our Azure price sheet, contract 42\n# date: 2026-11-01\n"


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def flat(text: str) -> str:
    return " ".join(text.split())


def test_the_shipped_catalog_names_source_and_date_and_covers_every_deployment_type() -> None:
    path = shipped_catalog_path()
    text = path.read_text(encoding="utf-8")
    assert "# source:" in text and "# date: 2026-11-26" in text and "per 1M" in text
    check = check_price_catalog(path)
    assert check.ok, check.errors
    catalog = check.catalog()
    types_by_model: dict[str, set[str]] = {}
    for price in catalog.prices:
        types_by_model.setdefault(price.model, set()).add(price.deployment_type)
    for model in ("gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o", "gpt-4o-mini", "o4-mini", "o3"):
        assert types_by_model[model] == {"global", "datazone", "regional", "batch"}, model
    # batch is half of global, data zone 10% above it, for every model that has both
    for price in catalog.prices:
        global_ = next(p for p in catalog.prices if p.model == price.model and p.deployment_type == "global") \
            if "global" in types_by_model[price.model] else None
        if global_ is None:
            continue
        if price.deployment_type == "batch":
            assert price.input_per_1m * 2 == global_.input_per_1m, price.model
            assert price.output_per_1m * 2 == global_.output_per_1m, price.model
        if price.deployment_type in ("datazone", "regional"):
            assert price.input_per_1m == global_.input_per_1m * Decimal("1.1"), price.model


def test_prices_check_accepts_the_shipped_catalog(home: Path) -> None:
    result = run("prices", "check", str(shipped_catalog_path()))
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "ok: no overlapping ranges, negative prices, unknown currencies or unit mistakes found" in out
    assert "source: Azure OpenAI Service pricing page" in out and "date: 2026-11-26" in out
    assert "deployment types batch, datazone, global, regional" in out


BAD = SOURCED + HEADER + "\n" + "\n".join([
    "gpt-4o,global,*,2024-05-13,,USD,0.0025,0.00125,0.01",  # 4: per-1K prices in a per-1M column
    "gpt-4o,datazone,*,2024-05-13,,USD,2.75,1.375,11000",  # 5: output 1000x
    "m-new,global,*,2026-01-01,,USD,-1,,4",  # 6: negative
    "m-new,batch,*,2026-01-01,,XYZ,1,,4",  # 7: unknown currency
    "m-old,global,*,2026-01-01,2026-07-01,USD,1,,4",  # 8
    "m-old,global,*,2026-06-01,,USD,2,,8",  # 9: overlaps line 8
    "m-old,regional,*,2026-01-01,,USD,1,,four",  # 10: not a number
]) + "\n"


def test_prices_check_lists_every_problem_at_once(home: Path, write_file: WriteFile) -> None:
    path = write_file("bad-prices.csv", BAD)
    result = run("prices", "check", str(path))
    assert result.exit_code == 1
    out = flat(result.output)
    assert "input_per_1m 0.0025 for gpt-4o (global, USD) is 1/1,000 the shipped catalog's 2.50" in out
    assert "a price per 1K tokens? Prices here are per 1M tokens: multiply per-1K prices by 1000" in out
    assert f"{path}:4" in out
    assert "output_per_1m 11000 for gpt-4o (datazone, USD) is 1,000x the shipped catalog's 11.00" in out
    assert f"{path}:6: input_per_1m '-1' must be a finite price >= 0" in out
    assert f"{path}:7: currency 'XYZ' is unknown" in out
    assert f"{path}:9: overlapping prices for m-old / global" in out
    assert f"{path}:10: output_per_1m 'four' is not a number" in out
    assert "8 problem(s) in" in out  # gpt-4o global: its three prices
    with pytest.raises(CatalogError) as raised:  # a report refuses it with the same list
        load_price_catalog(path)
    assert str(raised.value).count("\n") == 7


@pytest.mark.parametrize(("text", "words"), [
    (HEADER.replace("_per_1m", "_per_1k") + "\nm,global,*,2026-01-01,,USD,1,,4\n",
     "column(s) input_per_1k, cached_input_per_1k, output_per_1k are not per 1M tokens"),
    (HEADER + ",unit\nm,global,*,2026-01-01,,USD,0.001,,0.004,per 1K tokens\n",
     "unit 'per 1K tokens': prices here are per 1M tokens; multiply a per-1K price by 1000"),
    (HEADER + ",unit\nm,global,*,2026-01-01,,USD,1,,4,token\n", "multiply a per-token price by 1,000,000"),
    (HEADER + ",unit\nm,global,*,2026-01-01,,USD,1,,4,per request\n", "unit 'per request' is not known"),
])
def test_unit_mistakes_are_named(write_file: WriteFile, text: str, words: str) -> None:
    with pytest.raises(CatalogError, match="per") as raised:
        load_price_catalog(write_file("prices.csv", text))
    assert words in str(raised.value)


def test_an_explicit_per_1m_unit_column_is_accepted(write_file: WriteFile) -> None:
    text = HEADER + ",unit\nm,global,*,2026-01-01,,USD,1,,4,per 1M tokens\nn,global,*,2026-01-01,,USD,1,,4,1M\n"
    assert len(load_price_catalog(write_file("prices.csv", text)).prices) == 2


def test_prices_in_another_currency_are_not_compared_with_the_usd_catalog(home: Path, write_file: WriteFile) -> None:
    path = write_file("yen.csv", SOURCED + HEADER + "\ngpt-4o,global,*,2024-05-13,,JPY,375,187.5,1500\n")
    result = run("prices", "check", str(path))
    assert result.exit_code == 0, result.output
    assert "prices in JPY were not compared with the shipped catalog (it is in USD)" in flat(result.output)


def test_a_catalog_without_source_or_date_is_noted(home: Path, write_file: WriteFile) -> None:
    result = run("prices", "check", str(write_file("p.csv", HEADER + "\nm,global,*,2026-01-01,,USD,1,,4\n")))
    assert result.exit_code == 0, result.output
    assert "note: the file names no source" in flat(result.output)
    assert "note: the file names no date" in flat(result.output)


def test_prices_check_lists_deployments_and_traffic_it_cannot_price(home: Path, write_file: WriteFile,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    deployments = write_file("deployments.csv", "deployment,model,deployment_type,region\n"
                             "chat,gpt-4o,global,\nnew,gpt-9,global,\nptu,gpt-4.1,provisioned,\n")
    monkeypatch.setenv("CHARGEBACK_DEPLOYMENTS", str(deployments))
    events = [event(deployment="chat", model="gpt-4o", timestamp="2026-10-05T10:00:00Z", usage=usage(100, 10)),
              event(deployment="new", model=None, timestamp="2026-10-05T10:00:00Z", usage=usage(1000, 10)),
              event(deployment="new", model=None, timestamp="2026-10-06T10:00:00Z", usage=usage(1000, 10))]
    assert run("ingest", str(write_file("events.jsonl", jsonl(events)))).exit_code == 0
    result = run("prices", "check", str(shipped_catalog_path()), "--month", "2026-10")
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "Deployments of" in out and "new │ gpt-9 │ global" in out
    assert "chat │" not in out.split("Unpriced models")[0]  # priced; the PTU one is priced by capacity
    assert "Unpriced models: add them to the price catalog" in out
    assert "gpt-9 │ global │ no-price │ 2 │ 2,020" in out


def test_the_report_lists_unpriced_models(home: Path, write_file: WriteFile,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARGEBACK_DEPLOYMENTS", str(write_file("deployments.csv", (
        "deployment,model,deployment_type,region\npreview,gpt-5-preview,global,\n"))))
    events = [event(deployment="preview", model="gpt-5-preview", timestamp="2026-10-05T10:00:00Z",
                    usage=usage(1000, 100))]
    assert run("ingest", str(write_file("events.jsonl", jsonl(events)))).exit_code == 0
    result = run("report", "--month", "2026-10", "--out", str(home / "out"))
    assert result.exit_code == 0, result.output
    assert "gpt-5-preview │ global │ no-price │ 1 │ 1,100" in flat(result.output)


def test_golden_shipped_prices_global_data_zone_batch_cached_and_reasoning(home: Path, write_file: WriteFile,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Hand-checked with the shipped catalog, per 1M tokens: gpt-4.1 global 2.00 / 0.50 cached / 8.00,
    data zone 2.20 / 0.55 / 8.80, batch 1.00 / 0.25 / 4.00; o4-mini data zone 1.21 / 0.3025 / 4.84."""
    monkeypatch.setenv("CHARGEBACK_DEPLOYMENTS", str(write_file("deployments.csv", (
        "deployment,model,deployment_type,region\ng41,gpt-4.1,global,\ndz41,gpt-4.1,datazone,westeurope\n"
        "b41,gpt-4.1,batch,\nreason,o4-mini,datazone,swedencentral\n"))))
    day = "2026-10-10T10:00:00Z"
    same = usage(1_000_000, 100_000, cached=200_000)
    events = [event(deployment="g41", model="gpt-4.1-2025-04-14", timestamp=day, usage=same),
              event(deployment="dz41", model=None, timestamp=day, usage=same),
              event(deployment="b41", model=None, timestamp=day, usage=same),
              event(deployment="reason", model="o4-mini", timestamp=day,
                    usage=usage(100_000, 50_000, reasoning=40_000))]
    assert run("ingest", str(write_file("events.jsonl", jsonl(events)))).exit_code == 0
    out = home / "out"
    result = run("report", "--month", "2026-10", "--out", str(out), "--format", "csv,focus")
    assert result.exit_code == 0, result.output
    with (out / "chargeback-2026-10.csv").open(newline="") as file:
        costs = {(r["model"], r["deployment_type"]): r["cost"] for r in csv.DictReader(file)}
    assert costs == {
        ("gpt-4.1-2025-04-14", "global"): "2.5",  # 800k x 2.00 + 200k x 0.50 + 100k x 8.00
        ("gpt-4.1", "datazone"): "2.75",  # 800k x 2.20 + 200k x 0.55 + 100k x 8.80
        ("gpt-4.1", "batch"): "1.25",  # 800k x 1.00 + 200k x 0.25 + 100k x 4.00
        ("o4-mini", "datazone"): "0.363",  # 100k x 1.21 + 50k x 4.84; reasoning is output, counted once
    }
    with (out / "chargeback-2026-10-focus.csv").open(newline="") as file:
        billed = sum((Decimal(r["BilledCost"]) for r in csv.DictReader(file)), Decimal(0))
    assert billed == Decimal("6.863")
