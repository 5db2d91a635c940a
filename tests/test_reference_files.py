"""Reference CSVs: the shipped catalog, the two maps, and an error naming file and line for
every way a file can be wrong."""

from __future__ import annotations

import hashlib
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.domain.mappings import UNASSIGNED
from pipeline.domain.pricing import CatalogError
from pipeline.inputs.catalog import load_price_catalog, shipped_catalog_path
from pipeline.inputs.maps import load_cost_centers, load_deployments
from pipeline.inputs.reference import load_reference

HEADER = ("model,deployment_type,region,effective_from,effective_to,currency,"
          "input_per_1m,cached_input_per_1m,output_per_1m")
GOOD_ROW = "m-alpha,global,*,2026-01-01,,USD,1.00,0.50,4.00"
OCT_15 = date(2026, 10, 15)


def write(tmp_path: Path, text: str | bytes, name: str = "prices.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_shipped_catalog_prices_gpt_4o_global() -> None:
    path = shipped_catalog_path()
    catalog = load_price_catalog(path)
    assert catalog.version == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    gpt_4o = catalog.find("gpt-4o-2024-11-20", "global", "westeurope", OCT_15)
    assert gpt_4o is not None
    assert (gpt_4o.model, gpt_4o.currency, gpt_4o.region) == ("gpt-4o", "USD", "*")
    assert (gpt_4o.input_per_1m, gpt_4o.cached_input_per_1m, gpt_4o.output_per_1m) == (
        Decimal("2.50"), Decimal("1.25"), Decimal("10.00"))
    embedding = catalog.find("text-embedding-3-small", "global", None, OCT_15)
    assert embedding is not None
    assert embedding.cached_input_per_1m == embedding.input_per_1m == Decimal("0.02")
    assert {"gpt-4.1", "gpt-4o-mini", "o3", "o4-mini"} <= catalog.models


def test_catalog_version_is_the_content_hash(tmp_path: Path) -> None:
    text = f"# v1\n{HEADER}\n{GOOD_ROW}\n"
    first = load_price_catalog(write(tmp_path, text, "a.csv")).version
    assert first == hashlib.sha256(text.encode()).hexdigest()[:12]
    assert load_price_catalog(write(tmp_path, text, "b.csv")).version == first  # name does not matter
    assert load_price_catalog(write(tmp_path, text, "a.csv")).version == first  # stable when re-read
    assert load_price_catalog(write(tmp_path, text.replace("# v1", "# v2"), "c.csv")).version != first
    assert load_price_catalog(write(tmp_path, text.replace("4.00", "4.01"), "d.csv")).version != first


def test_comment_and_blank_lines_are_ignored(tmp_path: Path) -> None:
    text = f"# source: test\n\n{HEADER}\n# a comment between rows\n   # indented comment\n{GOOD_ROW}\n\n"
    catalog = load_price_catalog(write(tmp_path, text))
    assert len(catalog.prices) == 1
    assert catalog.prices[0].model == "m-alpha"


def test_empty_cached_price_means_cached_tokens_cost_the_input_price(tmp_path: Path) -> None:
    catalog = load_price_catalog(write(tmp_path, f"{HEADER}\nm-beta,datazone,,2026-01-01,,USD,0.10,,0.40\n"))
    [beta] = catalog.prices
    assert beta.cached_input_per_1m == beta.input_per_1m == Decimal("0.10")
    assert beta.region == "*"  # empty region means any region
    # 1000 prompt, all cached, at 0.10: 100 / 1e6 = 0.0001 -- no discount
    assert beta.cost(1000, 1000, 0) == Decimal("0.0001")


def test_loaded_rows_keep_their_dates(tmp_path: Path) -> None:
    text = f"{HEADER}\nm,global,*,2026-01-01,2026-10-16,USD,1,0.5,4\nm,global,*,2026-10-16,,USD,2,1,8\n"
    catalog = load_price_catalog(write(tmp_path, text))
    old = catalog.find("m", "global", None, date(2026, 10, 15))
    new = catalog.find("m", "global", None, date(2026, 10, 16))
    assert old is not None and new is not None
    assert (old.output_per_1m, new.output_per_1m) == (Decimal(4), Decimal(8))
    assert (old.effective_to, new.effective_to) == (date(2026, 10, 16), None)


# (id, file text, line the error must name, words the message must contain)
BAD_CATALOGS: list[tuple[str, str, int, str]] = [
    ("missing column", f"# c\n{HEADER.replace(',output_per_1m', '')}\n{GOOD_ROW[:-5]}\n", 2, "output_per_1m"),
    ("negative price", f"{HEADER}\n{GOOD_ROW}\nm-b,global,*,2026-01-01,,USD,-1.00,,4\n", 3, "input_per_1m"),
    ("non-number price", f"{HEADER}\n{GOOD_ROW}\nm-b,global,*,2026-01-01,,USD,1.00,,four\n", 3, "output_per_1m"),
    ("infinite price", f"{HEADER}\nm-b,global,*,2026-01-01,,USD,Infinity,,4\n", 2, "input_per_1m"),
    ("currency lower case", f"{HEADER}\n{GOOD_ROW}\nm-b,global,*,2026-01-01,,usd,1,,4\n", 3, "usd"),
    ("currency DOLLARS", f"{HEADER}\n{GOOD_ROW}\nm-b,global,*,2026-01-01,,DOLLARS,1,,4\n", 3, "DOLLARS"),
    ("more than 6 decimals", f"{HEADER}\n{GOOD_ROW}\nm-b,global,*,2026-01-01,,USD,1,0.0000001,4\n", 3,
     "decimals"),
    ("bad date", f"{HEADER}\n{GOOD_ROW}\nm-b,global,*,2026/10/01,,USD,1,,4\n", 3, "2026/10/01"),
    ("bad effective_to", f"{HEADER}\nm-b,global,*,2026-01-01,2026-13-01,USD,1,,4\n", 2, "effective_to"),
    ("effective_to equals effective_from", f"{HEADER}\n{GOOD_ROW}\nm-b,global,*,2026-05-01,2026-05-01,USD,1,,4\n",
     3, "effective_to"),
    ("effective_to before effective_from", f"{HEADER}\nm-b,global,*,2026-05-01,2026-04-01,USD,1,,4\n", 2,
     "effective_to"),
    ("empty model", f"{HEADER}\n{GOOD_ROW}\n,global,*,2026-01-01,,USD,1,,4\n", 3, "model"),
    ("too few values", f"{HEADER}\n{GOOD_ROW}\nm-b,global,*,2026-01-01,,USD,1,4\n", 3, "values"),
    ("quoted field with a line break", f'{HEADER}\n"m-b\nx",global,*,2026-01-01,,USD,1,,4\n', 2, "m-b"),
]


@pytest.mark.parametrize(("text", "line", "words"), [(t, n, w) for _, t, n, w in BAD_CATALOGS],
                         ids=[name for name, _, _, _ in BAD_CATALOGS])
def test_bad_catalog_error_names_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CatalogError) as raised:
        load_price_catalog(path)
    message = str(raised.value)
    assert f"{path}:{line}" in message
    assert words in message


def test_overlapping_ranges_error_names_file_and_line(tmp_path: Path) -> None:
    # Same model, type (compared loosely) and region; the second row starts before the first ends.
    path = write(tmp_path, f"{HEADER}\n{GOOD_ROW}\n# overlap below\nm-b,global,*,2026-01-01,2026-07-01,USD,1,,4\n"
                 "m-b,Global,*,2026-06-01,,USD,2,,8\n")
    with pytest.raises(CatalogError, match="overlapping") as raised:
        load_price_catalog(path)
    message = str(raised.value)
    assert f"{path}:4" in message or f"{path}:5" in message, message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "\ufeff"], ids=["empty", "blank", "comment", "bom"])
def test_empty_catalog_is_an_error_naming_the_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CatalogError, match="empty file") as raised:
        load_price_catalog(path)
    assert str(path) in str(raised.value)


def test_catalog_without_prices_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, f"# header only\n{HEADER}\n")
    with pytest.raises(CatalogError, match="no prices") as raised:
        load_price_catalog(path)
    assert str(path) in str(raised.value)


def test_unreadable_or_non_utf8_catalog_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read"):
        load_price_catalog(tmp_path / "absent.csv")
    path = write(tmp_path, f"{HEADER}\ncaf\xe9,global,*,2026-01-01,,USD,1,,4\n".encode("latin-1"))
    with pytest.raises(CatalogError, match="not UTF-8") as raised:
        load_price_catalog(path)
    assert str(path) in str(raised.value)


DEPLOYMENTS = "deployment,model,deployment_type,region\nchat-gpt4o,gpt-4o,global,westeurope\nembed,,datazone,\n"


def test_deployments_load(tmp_path: Path) -> None:
    deployments = load_deployments(write(tmp_path, f"# map\n{DEPLOYMENTS}", "deployments.csv"))
    assert len(deployments) == 2
    chat, embed = deployments.get("chat-gpt4o"), deployments.get("embed")
    assert chat is not None and embed is not None
    assert (chat.model, chat.deployment_type, chat.region) == ("gpt-4o", "global", "westeurope")
    assert (embed.model, embed.deployment_type, embed.region) == (None, "datazone", None)
    assert deployments.get("other") is None


def test_duplicate_deployment_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, f"{DEPLOYMENTS}chat-gpt4o,o3,global,\n", "deployments.csv")
    with pytest.raises(CatalogError, match="chat-gpt4o") as raised:
        load_deployments(path)
    assert f"{path}:4" in str(raised.value)


def test_deployment_without_type_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, f"{DEPLOYMENTS}bare,gpt-4o,,\n", "deployments.csv")
    with pytest.raises(CatalogError, match="deployment_type") as raised:
        load_deployments(path)
    assert f"{path}:4" in str(raised.value)


COST_CENTERS = ("subscription_id,cost_center,effective_from,effective_to\n"
                "sub-a,CC-A,,\nsub-b,CC-B1,2026-01-01,2026-10-20\nsub-b,CC-B2,2026-10-20,\n")


def test_cost_centers_load_and_empty_start_means_from_the_beginning(tmp_path: Path) -> None:
    centers = load_cost_centers(write(tmp_path, COST_CENTERS, "cost-centers.csv"))
    assert centers.cost_center("sub-a", date(2015, 1, 1), "CC-CALLER") == "CC-A"
    assert centers.cost_center("sub-a", date(1, 1, 1), None) == "CC-A"
    assert centers.cost_center("sub-b", date(2026, 10, 19), None) == "CC-B1"
    assert centers.cost_center("sub-b", date(2026, 10, 20), None) == "CC-B2"
    assert centers.cost_center("sub-b", date(2025, 12, 31), None) == UNASSIGNED


def test_cost_center_errors_name_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, f"{COST_CENTERS}sub-c,CC-C,2026-05-01,2026-05-01\n", "cost-centers.csv")
    with pytest.raises(CatalogError, match="effective_to") as raised:
        load_cost_centers(path)
    assert f"{path}:5" in str(raised.value)
    path = write(tmp_path, f"{COST_CENTERS}sub-c,,2026-05-01,\n", "cost-centers.csv")
    with pytest.raises(CatalogError, match="cost_center") as raised:
        load_cost_centers(path)
    assert f"{path}:5" in str(raised.value)


def test_overlapping_cost_centers_error_names_file_and_line(tmp_path: Path) -> None:
    # sub-a is CC-A from the beginning, open-ended; line 5 assigns it again.
    path = write(tmp_path, f"{COST_CENTERS}sub-a,CC-X,2026-05-01,\n", "cost-centers.csv")
    with pytest.raises(CatalogError, match="sub-a") as raised:
        load_cost_centers(path)
    assert f"{path}:5" in str(raised.value) or f"{path}:2" in str(raised.value), str(raised.value)


def test_load_reference_defaults(tmp_path: Path) -> None:
    reference = load_reference(None, tmp_path / "absent-deployments.csv", None)
    assert reference.catalog.version == load_price_catalog(shipped_catalog_path()).version
    assert len(reference.deployments) == 0
    assert reference.cost_centers.cost_center("sub-a", OCT_15, None) == UNASSIGNED


def test_load_reference_reads_all_three_files(tmp_path: Path) -> None:
    reference = load_reference(write(tmp_path, f"{HEADER}\n{GOOD_ROW}\n"),
                               write(tmp_path, "deployment,model,deployment_type,region\ndep,m-alpha,global,\n",
                                     "deployments.csv"),
                               write(tmp_path, COST_CENTERS, "cost-centers.csv"))
    assert len(reference.catalog.prices) == 1
    assert reference.deployments.get("dep") is not None
    assert reference.cost_centers.cost_center("sub-a", OCT_15, None) == "CC-A"
